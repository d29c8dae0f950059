"""Compute-device selection (one home): ``auto`` prefers CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import torch

from tgd_core.core.errors import TGDError


def select_device(name: str = "auto") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` → a usable :class:`torch.device`."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TGDError(f"unknown device {name!r}; use auto, cpu, cuda[:N] or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TGDError("device 'cuda' requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TGDError("device 'mps' requested but MPS is not available")
    return device
