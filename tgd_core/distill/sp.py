"""Similarity-preserving KD from one teacher — Tung & Mori, "Similarity-Preserving Knowledge
Distillation" (ICCV 2019).

    L = CE(z_S, y) + (γ/3)·Σ_l mean((G̃_S^l − G̃_T1^l)²),   G̃ = row_normalise(F Fᵀ)

over the three group outputs l; default γ = 3000 (applied as γ/3 per group sum, as TGD's β).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from tgd_core.distill import losses
from tgd_core.distill.base import Distiller, MethodParams
from tgd_core.distill.registry import register_method


class SPParams(MethodParams):
    gamma: float = Field(3000.0, ge=0)


@register_method("sp")
class SP(Distiller):
    """Similarity-preserving KD from T1 (Tung & Mori, ICCV 2019):
    L = CE + (γ/3)·Σ_l mean((G̃_S^l − G̃_T1^l)²)."""

    Params = SPParams
    teacher_roles = ("t1",)
    needs_student_features = True
    batch_level_terms = ("sim",)

    def teacher_rows(self, inputs):
        _, feats = self.teacher_forward("t1", inputs, features=True)
        return {f"t1_f{i + 1}": f for i, f in enumerate(feats)}

    @torch.no_grad()
    def targets_from_rows(self, rows):
        """G̃_T1 of each layer, from T1's features of the batch."""
        return {f"sim{layer}": losses.row_normalise(losses.similarity_matrix(rows[f"t1_f{layer}"]))
                for layer in (1, 2, 3)}

    def compute_losses(self, logits, features, targets, labels):
        sim = sum(losses.similarity_loss(f, targets[f"sim{i + 1}"])
                  for i, f in enumerate(features))
        return {"ce": F.cross_entropy(logits, labels), "sim": self.params.gamma / 3 * sim}
