"""Knowledge distillation from one teacher — Hinton, Vinyals & Dean, "Distilling the Knowledge
in a Neural Network" (2015).

    L = (1−λ)·CE(z_S, y) + λ·τ²·KL(p^τ(z_T1) ‖ p^τ(z_S)),   p^τ(z) = softmax(z / τ)

Defaults τ = 4, λ = 0.9. The KL term uses ``batchmean`` (the per-sample KL, Hinton's KD) unless
``compat=True``, which reproduces the TGD reference code's ``nn.KLDivLoss()`` 'mean' reduction
(the per-sample KL divided by the number of classes); see :func:`.losses.kd_loss`.
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field

from tgd_core.distill import losses
from tgd_core.distill.base import Distiller, MethodParams
from tgd_core.distill.registry import register_method


class KDParams(MethodParams):
    temperature: float = Field(4.0, gt=0)
    lambda_kd: float = Field(0.9, ge=0, le=1)
    compat: bool = False


@register_method("kd")
class KD(Distiller):
    """Hinton KD from T1: L = (1−λ)·CE + λ·τ²·KL(p^τ(z_T1) ‖ p^τ(z_S))."""

    Params = KDParams
    teacher_roles = ("t1",)
    per_sample_targets = ("t1_logits",)

    def teacher_rows(self, inputs):
        return {"t1_logits": self.teacher_forward("t1", inputs)}

    def _kd(self, logits, teacher_logits):
        """KL(p^τ(teacher) ‖ p^τ(student)) with the configured reduction (no τ² factor)."""
        p = self.params
        return losses.kd_loss(logits, teacher_logits, p.temperature,
                              "mean" if p.compat else "batchmean")

    def compute_losses(self, logits, features, targets, labels):
        p = self.params
        return {"ce": (1 - p.lambda_kd) * F.cross_entropy(logits, labels),
                "kd": p.lambda_kd * p.temperature**2 * self._kd(logits, targets["t1_logits"])}
