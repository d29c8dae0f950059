"""Wide-ResNet WRN-d-k, the pre-activation CIFAR variant of the TGD reference code.

Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016), as built by the TGD authors
(``shared/docs/TGD_METHOD.md`` §3): conv3×3 (in → 16), three groups of N = (d − 4)/6 blocks with
widths 16k, 32k, 64k and strides 1, 2, 2, then BN → ReLU → global average pool → linear.
Module and parameter names equal the authors' state-dict names, so their checkpoints load with
``strict=True`` and their SGD state lines up (parameters are registered in the same order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tgd_core.core.errors import TGDError


class PreActBlock(nn.Module):
    """BN → ReLU → conv3×3 → BN → ReLU → conv3×3, plus the shortcut.

    With ``projection`` (first block of a group whose width or stride changes) the shortcut is a
    1×1 conv ``conv_inp`` of the *activated* input relu(bn1(x)); otherwise it is x itself.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, projection: bool) -> None:
        super().__init__()
        # registration order = the authors' (batch_norm1, batch_norm2, conv1, conv2, conv_inp)
        self.batch_norm1 = nn.BatchNorm2d(in_planes)
        self.batch_norm2 = nn.BatchNorm2d(out_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.conv_inp: nn.Conv2d | None = (
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False)
            if projection else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.batch_norm1(x), inplace=True)
        out = self.conv1(act)
        out = self.conv2(F.relu(self.batch_norm2(out), inplace=True))
        shortcut = self.conv_inp(act) if self.conv_inp is not None else x
        return out + shortcut


class BlockGroup(nn.Module):
    """N blocks of one width; the attribute name ``nblockLayer`` is the authors'."""

    def __init__(self, n_blocks: int, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        projection = in_planes != out_planes or stride != 1
        blocks = [PreActBlock(in_planes, out_planes, stride, projection)]
        blocks += [PreActBlock(out_planes, out_planes, 1, False) for _ in range(n_blocks - 1)]
        self.nblockLayer = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nblockLayer(x)


class WideResNet(nn.Module):
    """WRN-``depth``-``width`` on ``in_channels`` inputs of any spatial size (global pooling).

    ``forward(x)`` returns logits; ``forward(x, return_features=True)`` returns
    ``(logits, [f1, f2, f3])``, the three group outputs before the final BN/ReLU — the features
    TGD's similarity loss uses (§4).
    """

    def __init__(self, depth: int, width: int, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise TGDError(f"WRN depth must be 6N + 4 with N >= 1, got {depth}")
        if width < 1 or in_channels < 1 or num_classes < 1:
            raise TGDError(f"WRN width, in_channels and num_classes must be >= 1, got "
                           f"{width}, {in_channels}, {num_classes}")
        self.depth, self.width = depth, width
        self.in_channels, self.num_classes = in_channels, num_classes
        n_blocks = (depth - 4) // 6
        widths = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.block1 = BlockGroup(n_blocks, 16, widths[0], 1)
        self.block2 = BlockGroup(n_blocks, widths[0], widths[1], 2)
        self.block3 = BlockGroup(n_blocks, widths[1], widths[2], 2)
        self.batch_norm = nn.BatchNorm2d(widths[2])
        self.fc = nn.Linear(widths[2], num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init as the reference: conv ~ N(0, 2/(k·k·out)); BN weight 1, bias 0; fc bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        f1 = self.block1(self.conv1(x))
        f2 = self.block2(f1)
        f3 = self.block3(f2)
        out = F.relu(self.batch_norm(f3))
        logits = self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
        if return_features:
            return logits, [f1, f2, f3]
        return logits


@dataclass(frozen=True)
class ModelSpec:
    depth: int
    width: int


MODELS: dict[str, ModelSpec] = {
    "wrn16_1": ModelSpec(16, 1),
    "wrn16_2": ModelSpec(16, 2),
    "wrn16_3": ModelSpec(16, 3),
    "wrn16_4": ModelSpec(16, 4),
    "wrn28_1": ModelSpec(28, 1),
    "wrn28_2": ModelSpec(28, 2),
    "wrn40_1": ModelSpec(40, 1),
    "wrn40_2": ModelSpec(40, 2),
}


def model_name(depth: int, width: int) -> str:
    """The registry name of WRN-``depth``-``width`` (``wrn{d}_{k}``); TGDError if unregistered."""
    name = f"wrn{depth}_{width}"
    if name not in MODELS:
        raise TGDError(f"WRN-{depth}-{width} is not a registered model; known: {sorted(MODELS)}")
    return name


def build_model(name: str, in_channels: int = 3, num_classes: int = 10) -> WideResNet:
    """A freshly initialised registered network, e.g. ``build_model("wrn16_3", in_channels=6)``."""
    try:
        spec = MODELS[name]
    except KeyError:
        raise TGDError(f"unknown model {name!r}; choose from {sorted(MODELS)}") from None
    return WideResNet(spec.depth, spec.width, in_channels=in_channels, num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
