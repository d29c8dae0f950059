"""Topological guidance-based distillation — Jeon, Khurana, Pathak & Turaga, "Leveraging
Topological Guidance for Improved Knowledge Distillation" (2024); the method as implemented is
specified in TGD_METHOD.md §4.

    L = (1−λ)·CE + λ·τ²·L_KD + (β/3)·Σ_l mean((G̃_S^l − G̃_T^l)²)
    G̃_T^l = row_normalise(α·G_T1^l + (1−α)·G_T2^l),   G^l = F^l F^lᵀ (b × b)

L_KD is the two-teacher term of :mod:`.mtkd`; the teachers' similarity maps are merged *before*
row normalisation (:func:`.losses.merged_teacher_similarity`). Defaults τ = 4, λ = 0.9,
α = 0.99, β = 3000 (applied as β/3 per group sum). With β = 0 the similarity term is 0 whatever
the maps, so none is made: the teachers give only logits (a cache keeps only those) and the step
is MTKD's, bit for bit.
"""

from __future__ import annotations

import torch
from pydantic import Field

from tgd_core.distill import losses
from tgd_core.distill.mtkd import MTKD, MTKDParams
from tgd_core.distill.registry import register_method


class TGDParams(MTKDParams):
    beta: float = Field(3000.0, ge=0)


@register_method("tgd")
class TGD(MTKD):
    """TGD (Jeon et al. 2024, TGD_METHOD.md §4): two-teacher KD plus similarity maps merged
    before row normalisation, L = (1−λ)·CE + λ·τ²·L_KD + (β/3)·Σ_l mean((G̃_S^l − G̃_T^l)²)
    with G̃_T^l = row_normalise(α·G_T1^l + (1−α)·G_T2^l). The student may start from a scratch
    student ("annealing": ``init_student`` in the training config)."""

    Params = TGDParams
    needs_student_features = True
    batch_level_terms = ("sim",)

    def __init__(self, student, teachers=None, params=None) -> None:
        super().__init__(student, teachers, params)
        self.needs_student_features = self.uses_similarity

    @property
    def uses_similarity(self) -> bool:
        """Whether the similarity term counts (β > 0): else no features are computed."""
        return self.params.beta > 0

    def teacher_rows(self, inputs):
        if not self.uses_similarity:
            return super().teacher_rows(inputs)
        rows = {}
        for role in ("t1", "t2"):
            rows[f"{role}_logits"], features = self.teacher_forward(role, inputs, features=True)
            rows.update({f"{role}_f{i + 1}": f for i, f in enumerate(features)})
        return rows

    @torch.no_grad()
    def targets_from_rows(self, rows):
        """Both teachers' logits, and each layer's merged G̃_T from their features."""
        if not self.uses_similarity:
            return dict(rows)
        weights = [self.params.alpha, 1 - self.params.alpha]
        return {"t1_logits": rows["t1_logits"], "t2_logits": rows["t2_logits"],
                **{f"sim{layer}": losses.merged_teacher_similarity(
                    [rows[f"t1_f{layer}"], rows[f"t2_f{layer}"]], weights)
                   for layer in (1, 2, 3)}}

    def compute_losses(self, logits, features, targets, labels):
        terms = super().compute_losses(logits, features, targets, labels)
        if not self.uses_similarity:
            return {**terms, "sim": logits.new_zeros((), dtype=torch.float32)}
        sim = sum(losses.similarity_loss(f, targets[f"sim{i + 1}"])
                  for i, f in enumerate(features))
        terms["sim"] = self.params.beta / 3 * sim
        return terms
