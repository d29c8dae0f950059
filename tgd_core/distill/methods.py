"""The methods, one small Distiller each, registered by name in :data:`METHODS`.

Defaults: τ = 4, λ = 0.9 (KD weight), α = 0.99 (T1's share), β = 3000 (TGD similarity, applied
as β/3 per group sum), AT β = 1000 with p = 2, SP γ = 3000 (γ/3 per group sum, as TGD), FitNet
hint weight 100 on group 2. KL terms use ``batchmean`` (the per-sample KL, Hinton's KD) unless
``compat=True``, which reproduces the TGD reference code's ``nn.KLDivLoss()`` 'mean' reduction
(the per-sample KL divided by the number of classes).
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tgd_core.distill import losses
from tgd_core.distill.base import Distiller, MethodParams


class Scratch(Distiller):
    """Cross-entropy on the labels: L = CE(z_S, y)."""

    name = "scratch"

    def compute_losses(self, logits, features, targets, labels):
        return {"ce": F.cross_entropy(logits, labels)}


class KDParams(MethodParams):
    temperature: float = Field(4.0, gt=0)
    lambda_kd: float = Field(0.9, ge=0, le=1)
    compat: bool = False


class KD(Distiller):
    """Hinton KD from T1: L = (1−λ)·CE + λ·τ²·KL(p^τ(z_T1) ‖ p^τ(z_S))."""

    name = "kd"
    Params = KDParams
    teacher_roles = ("t1",)
    per_sample_targets = ("t1_logits",)

    def teacher_targets(self, inputs):
        return {"t1_logits": self.teacher_forward("t1", inputs)}

    def _kd(self, logits, teacher_logits):
        p = self.params
        return losses.kd_loss(logits, teacher_logits, p.temperature,
                              "mean" if p.compat else "batchmean")

    def compute_losses(self, logits, features, targets, labels):
        p = self.params
        return {"ce": (1 - p.lambda_kd) * F.cross_entropy(logits, labels),
                "kd": p.lambda_kd * p.temperature**2 * self._kd(logits, targets["t1_logits"])}


class MTKDParams(KDParams):
    alpha: float = Field(0.99, ge=0, le=1)


class MTKD(KD):
    """Two-teacher logit KD: L = (1−λ)·CE + λ·τ²·[α·KL(T1 ‖ S) + (1−α)·KL(T2 ‖ S)]."""

    name = "mtkd"
    Params = MTKDParams
    teacher_roles = ("t1", "t2")
    per_sample_targets = ("t1_logits", "t2_logits")

    def teacher_targets(self, inputs):
        return {"t1_logits": self.teacher_forward("t1", inputs),
                "t2_logits": self.teacher_forward("t2", inputs)}

    def compute_losses(self, logits, features, targets, labels):
        p = self.params
        kl = (p.alpha * self._kd(logits, targets["t1_logits"])
              + (1 - p.alpha) * self._kd(logits, targets["t2_logits"]))
        return {"ce": (1 - p.lambda_kd) * F.cross_entropy(logits, labels),
                "kd": p.lambda_kd * p.temperature**2 * kl}


class TGDParams(MTKDParams):
    beta: float = Field(3000.0, ge=0)


class TGD(MTKD):
    """TGD (Jeon et al. 2024, TGD_METHOD.md §4): two-teacher KD plus similarity maps merged
    before row normalisation, L = (1−λ)·CE + λ·τ²·L_KD + (β/3)·Σ_l mean((G̃_S^l − G̃_T^l)²)
    with G̃_T^l = row_normalise(α·G_T1^l + (1−α)·G_T2^l). The student may start from a scratch
    student ("annealing": ``init_student`` in the training config)."""

    name = "tgd"
    Params = TGDParams
    needs_student_features = True
    batch_level_terms = ("sim",)

    def teacher_targets(self, inputs):
        p = self.params
        logits1, f1 = self.teacher_forward("t1", inputs, features=True)
        logits2, f2 = self.teacher_forward("t2", inputs, features=True)
        out = {"t1_logits": logits1, "t2_logits": logits2}
        for layer in range(3):
            out[f"sim{layer + 1}"] = losses.merged_teacher_similarity(
                [f1[layer], f2[layer]], [p.alpha, 1 - p.alpha])
        return out

    def compute_losses(self, logits, features, targets, labels):
        terms = super().compute_losses(logits, features, targets, labels)
        sim = sum(losses.similarity_loss(f, targets[f"sim{i + 1}"])
                  for i, f in enumerate(features))
        terms["sim"] = self.params.beta / 3 * sim
        return terms


class SPParams(MethodParams):
    gamma: float = Field(3000.0, ge=0)


class SP(Distiller):
    """Similarity-preserving KD from T1 (Tung & Mori, ICCV 2019):
    L = CE + (γ/3)·Σ_l mean((G̃_S^l − G̃_T1^l)²)."""

    name = "sp"
    Params = SPParams
    teacher_roles = ("t1",)
    needs_student_features = True
    batch_level_terms = ("sim",)

    def teacher_targets(self, inputs):
        _, feats = self.teacher_forward("t1", inputs, features=True)
        return {f"sim{i + 1}": losses.row_normalise(losses.similarity_matrix(f))
                for i, f in enumerate(feats)}

    def compute_losses(self, logits, features, targets, labels):
        sim = sum(losses.similarity_loss(f, targets[f"sim{i + 1}"])
                  for i, f in enumerate(features))
        return {"ce": F.cross_entropy(logits, labels), "sim": self.params.gamma / 3 * sim}


class ATParams(MethodParams):
    beta: float = Field(1000.0, ge=0)
    p: float = Field(2.0, gt=0)


class AT(Distiller):
    """Attention transfer from T1 (Zagoruyko & Komodakis, ICLR 2017), on the three group
    outputs: L = CE + β·Σ_l mean((Q_S^l − Q_T1^l)²)."""

    name = "at"
    Params = ATParams
    teacher_roles = ("t1",)
    per_sample_targets = ("att1", "att2", "att3")
    needs_student_features = True

    def teacher_targets(self, inputs):
        _, feats = self.teacher_forward("t1", inputs, features=True)
        return {f"att{i + 1}": losses.attention_map(f, self.params.p) for i, f in enumerate(feats)}

    def compute_losses(self, logits, features, targets, labels):
        at = sum(losses.attention_loss(f, targets[f"att{i + 1}"], self.params.p)
                 for i, f in enumerate(features))
        return {"ce": F.cross_entropy(logits, labels), "at": self.params.beta * at}


class FitNetParams(MethodParams):
    weight: float = Field(100.0, ge=0)
    hint_layer: int = Field(2, ge=1, le=3)


class FitNet(Distiller):
    """FitNets (Romero et al., ICLR 2015), single stage: a learned 1×1 conv + BN adapter maps
    the student's group-``hint_layer`` features to the teacher's width;
    L = CE + w·MSE(adapter(F_S), F_T1)."""

    name = "fitnet"
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

    def teacher_targets(self, inputs):
        _, feats = self.teacher_forward("t1", inputs, features=True)
        return {"hint": feats[self.params.hint_layer - 1]}

    def compute_losses(self, logits, features, targets, labels):
        adapted = self.adapter(features[self.params.hint_layer - 1])
        if adapted.shape != targets["hint"].shape:
            raise ValueError(f"FitNet hint shapes differ: {tuple(adapted.shape)} vs "
                             f"{tuple(targets['hint'].shape)}")
        return {"ce": F.cross_entropy(logits, labels),
                "hint": self.params.weight * losses.hint_loss(adapted, targets["hint"])}


METHODS: dict[str, type[Distiller]] = {
    cls.name: cls for cls in (Scratch, KD, MTKD, TGD, SP, AT, FitNet)
}
