"""Distillation losses, each with its paper and formula (tested against hand-computed values).

Notation: z logits, p^τ(z) = softmax(z / τ), F features of shape b × C × H × W, b the batch.

Every loss and teacher target here is computed in float32 (:func:`in_float32`), also inside a
bf16 autocast (``amp``): the networks run in bf16, their outputs are cast up, and the softmaxes,
Gram matrices and reductions run as in float32 training — the same on every device.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal, TypeVar

import torch
import torch.nn.functional as F

from tgd_core.core.distributed import gather_rows

Reduction = Literal["batchmean", "mean"]
Fn = TypeVar("Fn", bound=Callable)


def _up(value):
    """A floating tensor (or a list of them) in float32; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, list):
        return [_up(v) for v in value]
    return value


def _device_type(args) -> str:
    for value in args:
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, torch.Tensor):
            return value.device.type
    return "cpu"


def in_float32(fn: Fn) -> Fn:
    """``fn`` on float32 copies of its tensor arguments with autocast off: under a bf16
    autocast, a loss is computed from the (rounded) network outputs as float32 training
    computes it. Without it, autocast would run the Gram matrices F Fᵀ in bf16 on every device,
    and the KD softmaxes in bf16 on the CPU (CUDA's autocast keeps those in float32). Without
    autocast and on float32 inputs it changes nothing."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.autocast(_device_type([*args, *kwargs.values()]), enabled=False):
            return fn(*map(_up, args), **{k: _up(v) for k, v in kwargs.items()})

    return wrapper


@in_float32
def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
            reduction: Reduction = "batchmean") -> torch.Tensor:
    """KL(p^τ(z_T) ‖ p^τ(z_S)) — Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
    Network" (2015). ``batchmean``: summed over classes, averaged over the batch (the KL per
    sample). ``mean``: averaged over all b·C elements, i.e. ``batchmean`` / C — what
    ``nn.KLDivLoss()`` with its default reduction computes, as in the TGD reference code.
    The τ² factor is applied by the caller."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    # torch's own 'mean' is deprecated (it will become 'batchmean'): divide explicitly
    return kl / student_logits.shape[1] if reduction == "mean" else kl


@in_float32
def similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """G = F Fᵀ of the flattened features, b × b (Tung & Mori, "Similarity-Preserving Knowledge
    Distillation", ICCV 2019). Its size does not depend on C, H or W. In a distributed run the
    rows are the whole global batch's (:func:`tgd_core.core.distributed.gather_rows`)."""
    flat = gather_rows(features.reshape(features.shape[0], -1))
    return flat @ flat.t()


@in_float32
def row_normalise(g: torch.Tensor) -> torch.Tensor:
    """Each row of G divided by its L2 norm: G̃ (Tung & Mori, eq. 2)."""
    return F.normalize(g, p=2, dim=1)


@in_float32
def similarity_loss(student_features: torch.Tensor, teacher_similarity: torch.Tensor
                    ) -> torch.Tensor:
    """mean((G̃_S − G̃_T)²) = ‖G̃_S − G̃_T‖²_F / b² for one layer; ``teacher_similarity`` is the
    teacher's G̃_T (already row-normalised, possibly merged from several teachers)."""
    g_s = row_normalise(similarity_matrix(student_features))
    return (g_s - teacher_similarity).pow(2).mean()


@in_float32
def merged_teacher_similarity(teacher_features: list[torch.Tensor], weights: list[float]
                              ) -> torch.Tensor:
    """G̃_T for TGD: the teachers' similarity maps merged *before* normalisation,
    row_normalise(Σ_k w_k · F_k F_kᵀ) (TGD_METHOD.md §4)."""
    merged = sum(w * similarity_matrix(f)
                 for w, f in zip(weights, teacher_features, strict=True))
    return row_normalise(merged)


@in_float32
def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Q = normalise(mean_c |F|^p) flattened over H·W, unit L2 norm per sample (Zagoruyko &
    Komodakis, "Paying More Attention to Attention", ICLR 2017)."""
    return F.normalize(features.abs().pow(p).mean(1).reshape(features.shape[0], -1),
                       dim=1)


@in_float32
def attention_loss(student_features: torch.Tensor, teacher_attention: torch.Tensor,
                   p: float = 2.0) -> torch.Tensor:
    """mean((Q_S − Q_T)²) over batch and positions (RepDistiller/mdistiller's AT term); the
    spatial sizes of student and teacher must agree."""
    q_s = attention_map(student_features, p)
    if q_s.shape != teacher_attention.shape:
        raise ValueError(f"attention maps differ in size: student {tuple(q_s.shape)}, "
                         f"teacher {tuple(teacher_attention.shape)}")
    return (q_s - teacher_attention).pow(2).mean()


@in_float32
def hint_loss(adapted_student: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """FitNets hint: mean squared error between the adapted student features and the teacher's
    (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015)."""
    return F.mse_loss(adapted_student, teacher_features)
