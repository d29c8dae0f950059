"""How frozen teachers run when they run live (augmented distillation): the exact float32
network, a BatchNorm-folded copy, or a post-training int8 quantisation.

With augmentation every training view is new, so TGD's two teachers (TGD_METHOD.md §4) run a
forward pass in every step; on a CPU that dominates the step (docs/benchmarks.md). The options
(``TrainConfig.teacher_inference``):

- ``"exact"`` — the network as trained (the default).
- ``"folded"`` — every BatchNorm that directly follows a convolution is folded into it, in eval
  mode: ``W' = W·γ/√(σ²+ε)``, ``b' = β − μ·γ/√(σ²+ε)`` (Ioffe & Szegedy 2015, eq. of the
  inference transform; Jacob et al., CVPR 2018, §3.2). In the pre-activation WRN that is
  ``conv1 → batch_norm2`` of every block and the stem ``conv1 →`` the first block's
  ``batch_norm1`` when that block has a projection shortcut (the stem's output then feeds
  nothing else). The other BatchNorms follow a residual sum and stay. Exact up to float
  rounding (tests/test_teacher_inference.py bounds the logits' difference).
- ``"int8"`` — static post-training quantisation (FX graph mode, PyTorch's ``x86`` backend:
  fbgemm/oneDNN int8 kernels; Jacob et al. 2018): BatchNorms folded, weights int8 per channel,
  activations uint8 with ranges calibrated on training images (:func:`prepare_networks`).
  CPU only; an approximation whose effect on accuracy is measured in docs/benchmarks.md.

:func:`prepare_teacher` returns a module with the teacher's interface
(``forward(x, return_features=False)`` → logits or ``(logits, [f1, f2, f3])``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, get_args

import numpy as np
import torch
from torch import nn

from tgd_core.core.errors import TGDError
from tgd_core.training.config import TeacherInference

if TYPE_CHECKING:
    from tgd_core.nets.network import Network

TEACHER_INFERENCE: tuple[str, ...] = get_args(TeacherInference)
CALIBRATION_IMAGES = 512  # training images whose activations set the int8 ranges
CALIBRATION_BATCH = 128
QUANTIZED_ENGINE = "x86"


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv computing ``bn(conv(x))`` in eval mode: ``W' = W·s``, ``b' = β + (b − μ)·s``
    with ``s = γ/√(σ²+ε)`` per output channel (computed in float64, stored in the conv's
    dtype)."""
    w, dtype = conv.weight.detach().double(), conv.weight.dtype
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                       conv.padding, conv.dilation, conv.groups, bias=True,
                       padding_mode=conv.padding_mode).to(conv.weight.device)
    with torch.no_grad():
        folded.weight.copy_((w * scale.view(-1, 1, 1, 1)).to(dtype))
        folded.bias.copy_((bn.bias.double() + (bias - bn.running_mean.double()) * scale)
                          .to(dtype))
    return folded


def folded_teacher(model: nn.Module) -> nn.Module:
    """An eval-mode copy of the WideResNet ``model`` with each conv → BatchNorm pair folded
    (see the module doc); ``model`` itself is unchanged."""
    from tgd_core.nets.models import WideResNet

    if not isinstance(model, WideResNet):
        raise TGDError(f"teacher_inference 'folded' needs a WideResNet, got "
                       f"{type(model).__name__}")
    model = copy.deepcopy(model).eval()
    blocks = [b for group in (model.block1, model.block2, model.block3)
              for b in group.nblockLayer]
    for block in blocks:
        block.conv1 = fold_conv_bn(block.conv1, block.batch_norm2)
        block.batch_norm2 = nn.Identity()
    first = blocks[0]
    if first.conv_inp is not None:  # the stem's output is read only through batch_norm1
        model.conv1 = fold_conv_bn(model.conv1, first.batch_norm1)
        first.batch_norm1 = nn.Identity()
    return model


class _AllOutputs(nn.Module):
    """``model`` returning ``(logits, f1, f2, f3)`` always: a graph FX can trace."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        logits, features = self.model(x, return_features=True)
        return (logits, *features)


class GraphTeacher(nn.Module):
    """A traced teacher graph (returning logits and features) behind the teacher's interface
    ``forward(x, return_features=False)``."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor, return_features: bool = False):
        logits, *features = self.graph(x)
        return (logits, list(features)) if return_features else logits


def int8_teacher(model: nn.Module, calibration: Iterable[torch.Tensor]) -> nn.Module:
    """Static post-training int8 quantisation of the eval-mode ``model`` (FX graph mode,
    ``x86`` backend qconfig: per-channel int8 weights, histogram-calibrated uint8
    activations), calibrated on ``calibration`` (normalised input batches); ``model`` itself
    is unchanged. Runs on the CPU only."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if QUANTIZED_ENGINE not in torch.backends.quantized.supported_engines:
        raise TGDError(f"teacher_inference 'int8': this PyTorch build lacks the "
                       f"{QUANTIZED_ENGINE!r} quantized engine")
    batches = list(calibration)
    if not batches:
        raise TGDError("teacher_inference 'int8': no calibration batches")
    torch.backends.quantized.engine = QUANTIZED_ENGINE
    float_model = _AllOutputs(copy.deepcopy(model).cpu().eval())
    # the stem stays float32: it reads the network's input, whose range (sparse PI peaks on
    # a near-constant background) one uint8 scale covers badly (first layer in float, as in
    # Jacob et al. 2018 §3 practice); it is 1 of 13 convolutions
    qconfig = get_default_qconfig_mapping(QUANTIZED_ENGINE).set_module_name("model.conv1", None)
    prepared = prepare_fx(float_model, qconfig, example_inputs=(batches[0].cpu(),))
    with torch.no_grad():
        for x in batches:
            prepared(x.cpu())
    return GraphTeacher(convert_fx(prepared)).eval()


def prepare_teacher(model: nn.Module, inference: str,
                    calibration: Iterable[torch.Tensor] | None = None) -> nn.Module:
    """The eval-mode teacher ``model`` run as ``inference`` (:data:`TEACHER_INFERENCE`);
    ``"exact"`` returns ``model`` itself; ``"int8"`` needs ``calibration`` batches and a CPU
    model."""
    if inference not in TEACHER_INFERENCE:
        raise TGDError(f"teacher_inference: unknown {inference!r}; choose from "
                       f"{list(TEACHER_INFERENCE)}")
    if inference == "exact":
        return model
    if inference == "folded":
        return folded_teacher(model)
    if next(model.parameters()).device.type != "cpu":
        raise TGDError("teacher_inference 'int8' runs on the CPU only; use 'exact' or "
                       "'folded' on an accelerator")
    if calibration is None:
        raise TGDError("teacher_inference 'int8' needs calibration images")
    return int8_teacher(model, calibration)


def normalized_batches(network: Network, images: np.ndarray) -> list[torch.Tensor]:
    """What ``network`` (a :class:`~tgd_core.nets.network.Network`) reads for uint8
    N×H×W×3 ``images`` (its PIs for a PI network), normalised, in batches of
    :data:`CALIBRATION_BATCH`: an int8 calibration set, or an evaluation set."""
    from tgd_core.data.normalization import to_model_input

    x = to_model_input(network.input_for(images), network.normalization)
    return list(x.split(CALIBRATION_BATCH))


def prepare_networks(teachers: Mapping[str, Network], inference: str,
                     calibration_images: Callable[[], np.ndarray]) -> dict[str, Network]:
    """Each teacher :class:`Network` with its model run as ``inference``;
    ``calibration_images()`` (uint8 N×H×W×3 training images) is called once, for ``"int8"``
    only, and each teacher is calibrated on what it reads of them."""
    images = calibration_images() if inference == "int8" else None
    return {role: dataclasses.replace(net, model=prepare_teacher(
        net.model, inference, None if images is None else normalized_batches(net, images)))
            for role, net in teachers.items()}
