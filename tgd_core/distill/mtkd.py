"""Multi-teacher logit KD: Hinton et al. (2015) KD from two teachers, their KL terms weighted
by α — the logit part of TGD (Jeon et al. 2024, TGD_METHOD.md §4).

    L = (1−λ)·CE(z_S, y) + λ·τ²·[α·KL(p^τ(z_T1) ‖ p^τ(z_S)) + (1−α)·KL(p^τ(z_T2) ‖ p^τ(z_S))]

Defaults as :mod:`.kd` plus α = 0.99 (T1's share).
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field

from tgd_core.distill.kd import KD, KDParams
from tgd_core.distill.registry import register_method


class MTKDParams(KDParams):
    alpha: float = Field(0.99, ge=0, le=1)


@register_method("mtkd")
class MTKD(KD):
    """Two-teacher logit KD: L = (1−λ)·CE + λ·τ²·[α·KL(T1 ‖ S) + (1−α)·KL(T2 ‖ S)]."""

    Params = MTKDParams
    teacher_roles = ("t1", "t2")
    per_sample_targets = ("t1_logits", "t2_logits")

    def teacher_rows(self, inputs):
        return {"t1_logits": self.teacher_forward("t1", inputs),
                "t2_logits": self.teacher_forward("t2", inputs)}

    def compute_losses(self, logits, features, targets, labels):
        p = self.params
        kl = (p.alpha * self._kd(logits, targets["t1_logits"])
              + (1 - p.alpha) * self._kd(logits, targets["t2_logits"]))
        return {"ce": (1 - p.lambda_kd) * F.cross_entropy(logits, labels),
                "kd": p.lambda_kd * p.temperature**2 * kl}
