"""FitNets hints from one teacher, single stage — Romero et al., "FitNets: Hints for Thin Deep
Nets" (ICLR 2015).

    L = CE(z_S, y) + w·MSE(adapter(F_S^l), F_T1^l)

where the adapter is a learned 1×1 conv + BN mapping the student's group-``hint_layer``
features to the teacher's width; defaults w = 100, l = 2.
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tgd_core.distill import losses
from tgd_core.distill.base import Distiller, MethodParams
from tgd_core.distill.registry import register_method


class FitNetParams(MethodParams):
    weight: float = Field(100.0, ge=0)
    hint_layer: int = Field(2, ge=1, le=3)


@register_method("fitnet")
class FitNet(Distiller):
    """FitNets (Romero et al., ICLR 2015), single stage: a learned 1×1 conv + BN adapter maps
    the student's group-``hint_layer`` features to the teacher's width;
    L = CE + w·MSE(adapter(F_S), F_T1)."""

    Params = FitNetParams
    teacher_roles = ("t1",)
    per_sample_targets = ("hint",)
    needs_student_features = True

    def __init__(self, student, teachers=None, params=None):
        super().__init__(student, teachers, params)
        layer = self.params.hint_layer - 1
        s_ch = 16 * self.student.width * 2**layer
        t_ch = 16 * self.teachers["t1"].width * 2**layer
        self.adapter = nn.Sequential(nn.Conv2d(s_ch, t_ch, 1, bias=False), nn.BatchNorm2d(t_ch))

    def teacher_rows(self, inputs):
        _, feats = self.teacher_forward("t1", inputs, features=True)
        return {"hint": feats[self.params.hint_layer - 1]}

    def compute_losses(self, logits, features, targets, labels):
        adapted = self.adapter(features[self.params.hint_layer - 1])
        if adapted.shape != targets["hint"].shape:
            raise ValueError(f"FitNet hint shapes differ: {tuple(adapted.shape)} vs "
                             f"{tuple(targets['hint'].shape)}")
        return {"ce": F.cross_entropy(logits, labels),
                "hint": self.params.weight * losses.hint_loss(adapted, targets["hint"])}
