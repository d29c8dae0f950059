"""Input normalisation (one home): per-channel mean/std and the conversion images → model input.

Constants from the TGD reference code (``shared/docs/TGD_METHOD.md`` §2 step 6 and §3): raw
CIFAR-10 images use mean (0.507, 0.487, 0.441) / std (0.267, 0.256, 0.276); the 6×50×50 PI stack
uses the PI statistics, repeated for the row and the column triple. The conversion matches
torchvision's ``ToTensor`` + ``Normalize`` in float32, so reference accuracies reproduce exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tgd_core.core.errors import TGDError

# torch is imported where tensors are made, so the PI statistics below can be read without it
# (tgd_core.topology.paper does)
if TYPE_CHECKING:
    import torch

#: CIFAR-10 statistics of the [0, 1]-scaled uint8 paper-mode PI stacks (method notes §2.6), per
#: channel, repeated for the row and the column triple.
PI_MEAN = (0.05165074, 0.05487815, 0.06697452) * 2
PI_STD = (0.12468914, 0.12733056, 0.13768335) * 2


@dataclass(frozen=True)
class Normalization:
    """Per-channel (x − mean) / std applied to inputs scaled to [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise TGDError(f"normalisation mean {self.mean} and std {self.std} differ in length")
        if any(not s > 0 for s in self.std):
            raise TGDError(f"normalisation std must be positive, got {self.std}")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(m) for m in self.mean], "std": [float(s) for s in self.std]}

    @classmethod
    def from_dict(cls, data: Any) -> Normalization:
        try:
            return cls(tuple(float(m) for m in data["mean"]), tuple(float(s) for s in data["std"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise TGDError(f"malformed normalisation {data!r}: {exc}") from None

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise an N×C×H×W float tensor in [0, 1] (returns a new tensor)."""
        import torch

        if x.ndim != 4 or x.shape[1] != self.channels:
            raise TGDError(f"expected N×{self.channels}×H×W input, got {tuple(x.shape)}")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


CIFAR10_RAW = Normalization((0.507, 0.487, 0.441), (0.267, 0.256, 0.276))
CIFAR10_PI = Normalization(PI_MEAN, PI_STD)


def to_unit_batch(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """N×H×W×C images (uint8, or float in [0, 1]) → float32 N×C×H×W array in [0, 1]
    (uint8 / 255 in float32, as torchvision's ``ToTensor``): what an exported model reads.
    In NumPy, so a deployment runtime's thread pool has the cores to itself."""
    x = np.asarray(images)
    if x.ndim != 4:
        raise TGDError(f"expected N×H×W×C images, got shape {tuple(x.shape)}")
    x = x.astype(np.float32) / np.float32(255) if x.dtype == np.uint8 else x.astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def to_model_input(images: np.ndarray | torch.Tensor, normalization: Normalization,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """N×H×W×C images (uint8, or float in [0, 1]) → normalised float32 N×C×H×W tensor on
    ``device``. Off the CPU, uint8 images travel as their bytes (a quarter of float32's) and are
    scaled and normalised there, with the same float32 operations in the same order (uint8 /
    255, then (x − mean) / std: IEEE-rounded alike), so the tensor is the CPU's, bit for bit."""
    import torch

    device = torch.device(device)
    if device.type != "cpu" and isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return normalization.apply(_unit_batch_on(images, device))
    return normalization.apply(torch.from_numpy(to_unit_batch(images))).to(device)


def _unit_batch_on(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """:func:`to_unit_batch` of uint8 images, computed on ``device``."""
    import torch

    if images.ndim != 4:
        raise TGDError(f"expected N×H×W×C images, got shape {tuple(images.shape)}")
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True)
    # 255 as a tensor on the device: CUDA divides by a Python scalar as a product with its
    # reciprocal, which may round differently from NumPy's division
    scale = torch.tensor(255.0, dtype=torch.float32, device=device)
    return (x.permute(0, 3, 1, 2).to(torch.float32) / scale).contiguous()
