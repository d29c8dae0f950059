"""Evaluation conditions of a robustness sweep: clean, each corruption × severity, then Gaussian
noise at each σ — one builder (:func:`conditions`) for every sweep (``tgd evaluate --sweep``,
``evaluate`` jobs, experiments), and applying a condition to images (:meth:`Condition.apply`).

Light on import (no torch, no scipy): job configs list their conditions without loading models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

CLEAN = "clean"
NOISE = "gaussian_noise_sigma"  # the ``corruption`` of additive-Gaussian-noise rows


@dataclass(frozen=True)
class Condition:
    """One sweep condition as its table row names it: ``name`` (``clean``, a CIFAR-10-C
    corruption or ``gaussian_noise_sigma``), ``severity`` (0 for clean, None for noise) and
    ``sigma`` (the noise σ, None otherwise)."""

    name: str
    severity: int | None
    sigma: float | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Condition:
        """The condition of a sweep table row."""
        return cls(row["corruption"], row["severity"], row["sigma"])

    @property
    def is_clean(self) -> bool:
        return self.name == CLEAN

    @property
    def is_noise(self) -> bool:
        """Additive Gaussian noise at ``sigma`` (not the CIFAR-10-C ``gaussian_noise``)."""
        return self.sigma is not None

    @property
    def label(self) -> str:
        """A short human description: ``clean``, ``contrast 5``, ``noise σ=0.1``."""
        what = self.name if self.sigma is None else f"noise σ={self.sigma:g}"
        return f"{what} {self.severity or ''}".strip()

    def apply(self, images: np.ndarray, seed: int = 0) -> np.ndarray:
        """``images`` under this condition (the images themselves when clean)."""
        from tgd_core.data.corruptions import add_gaussian_noise, corrupt

        if self.is_clean:
            return images
        if self.is_noise:
            return add_gaussian_noise(images, self.sigma, seed=seed)
        return corrupt(images, self.name, self.severity, seed=seed)

    def row(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The table row of this condition: ``corruption``, ``severity``, ``sigma``, metrics."""
        return {"corruption": self.name, "severity": self.severity, "sigma": self.sigma,
                **metrics}


def conditions(corruptions: Iterable[str] = (), severities: Iterable[int] = (),
               sigmas: Iterable[float] = (), clean: bool = True) -> list[Condition]:
    """The sweep in table order: clean (if ``clean``), every corruption at every severity
    (corruption-major), then Gaussian noise at each σ."""
    severities = tuple(severities)
    built = [Condition(CLEAN, 0, None)] if clean else []
    built += [Condition(name, severity, None) for name in corruptions for severity in severities]
    built += [Condition(NOISE, None, float(sigma)) for sigma in sigmas]
    return built
