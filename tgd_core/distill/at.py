"""Attention transfer from one teacher — Zagoruyko & Komodakis, "Paying More Attention to
Attention" (ICLR 2017).

    L = CE(z_S, y) + β·Σ_l mean((Q_S^l − Q_T1^l)²),   Q = normalise(mean_c |F|^p)

over the three group outputs l (RepDistiller/mdistiller's AT term); defaults β = 1000, p = 2.
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field

from tgd_core.distill import losses
from tgd_core.distill.base import Distiller, MethodParams
from tgd_core.distill.registry import register_method


class ATParams(MethodParams):
    beta: float = Field(1000.0, ge=0)
    p: float = Field(2.0, gt=0)


@register_method("at")
class AT(Distiller):
    """Attention transfer from T1 (Zagoruyko & Komodakis, ICLR 2017), on the three group
    outputs: L = CE + β·Σ_l mean((Q_S^l − Q_T1^l)²)."""

    Params = ATParams
    teacher_roles = ("t1",)
    per_sample_targets = ("att1", "att2", "att3")
    needs_student_features = True

    def teacher_rows(self, inputs):
        _, feats = self.teacher_forward("t1", inputs, features=True)
        return {f"att{i + 1}": losses.attention_map(f, self.params.p) for i, f in enumerate(feats)}

    def compute_losses(self, logits, features, targets, labels):
        at = sum(losses.attention_loss(f, targets[f"att{i + 1}"], self.params.p)
                 for i, f in enumerate(features))
        return {"ce": F.cross_entropy(logits, labels), "at": self.params.beta * at}
