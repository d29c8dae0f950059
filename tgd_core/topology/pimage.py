"""Persistence images of arbitrary diagrams on fixed ranges (Adams et al., JMLR 18(8), 2017).

A diagram's points (birth b, death d) map to (b, p = |d - b|); each point adds
``weight(p) · K(b) · K(p)`` with an isotropic Gaussian K of standard deviation ``sigma``, either
integrated over each pixel (persim ``PersistenceImager`` semantics; note persim takes a
*variance*) or sampled at pixel centres (GUDHI ``PersistenceImage`` semantics, density
normalised by 1 / (2πσ²)). Infinite bars are dropped. Output: ``rows × cols`` with persistence on
rows (largest persistence in the top row) and birth on columns, like paper mode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from tgd_core.core.errors import TGDError
from tgd_core.topology import _kernels

Weight = Literal["constant", "linear", "power"]


@dataclass(frozen=True)
class PersistenceImageConfig:
    """Grid and kernel of a persistence image.

    birth_range / pers_range: the image's extent in birth and persistence.
    resolution: (cols = birth pixels, rows = persistence pixels).
    sigma: the Gaussian's standard deviation. weight: ``constant`` (1), ``linear`` (p) or
    ``power`` (p ** power). integrate: pixel integrals (True) or samples at pixel centres.
    """

    birth_range: tuple[float, float] = (0.0, 1.0)
    pers_range: tuple[float, float] = (0.0, 1.0)
    resolution: tuple[int, int] = (32, 32)
    sigma: float = 0.02
    weight: Weight = "linear"
    power: float = 1.0
    integrate: bool = True

    def __post_init__(self):
        for name in ("birth_range", "pers_range"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise TGDError(f"{name} must be finite (low, high) with low < high, got {(lo, hi)}")
            object.__setattr__(self, name, (lo, hi))
        res = tuple(int(r) for r in np.broadcast_to(self.resolution, (2,)))
        if not all(1 <= r <= 1024 for r in res):
            raise TGDError(f"resolution must be between 1 and 1024 pixels, got {res}")
        object.__setattr__(self, "resolution", res)
        if not (np.isfinite(self.sigma) and self.sigma > 0):
            raise TGDError(f"sigma must be a positive number, got {self.sigma}")
        if self.weight not in ("constant", "linear", "power"):
            raise TGDError(f"weight must be 'constant', 'linear' or 'power', got {self.weight!r}")
        if not (np.isfinite(self.power) and self.power > 0):
            raise TGDError(f"power must be positive, got {self.power}")

    def to_dict(self) -> dict:
        return asdict(self)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Birth and persistence pixel edges (integrate) or pixel centres (sampled)."""
        (b0, b1), (p0, p1) = self.birth_range, self.pers_range
        cols, rows = self.resolution
        if self.integrate:
            return np.linspace(b0, b1, cols + 1), np.linspace(p0, p1, rows + 1)
        hb, hp = (b1 - b0) / cols, (p1 - p0) / rows
        return b0 + (np.arange(cols) + 0.5) * hb, p0 + (np.arange(rows) + 0.5) * hp


def _weights(pers: np.ndarray, config: PersistenceImageConfig) -> np.ndarray:
    if config.weight == "constant":
        return np.ones_like(pers)
    if config.weight == "linear":
        return pers.copy()
    return pers**config.power


def pack_diagrams(diagrams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finite points of many (k, 2) diagrams as (births, persistences, CSR offsets)."""
    births, pers, offsets = [], [], [0]
    for i, dgm in enumerate(diagrams):
        dgm = np.asarray(dgm, dtype=np.float64).reshape(-1, 2) if np.size(dgm) else np.zeros((0, 2))
        if dgm.ndim != 2 or dgm.shape[1] != 2:
            raise TGDError(f"diagram {i}: expected (k, 2) (birth, death) pairs, got {dgm.shape}")
        if np.isnan(dgm).any():
            raise TGDError(f"diagram {i}: contains NaN")
        dgm = dgm[np.isfinite(dgm).all(axis=1)]
        births.append(dgm[:, 0])
        pers.append(np.abs(dgm[:, 1] - dgm[:, 0]))
        offsets.append(offsets[-1] + len(dgm))
    return (np.concatenate(births) if births else np.zeros(0),
            np.concatenate(pers) if pers else np.zeros(0),
            np.asarray(offsets, np.int64))


def persistence_images(diagrams, config: PersistenceImageConfig | None = None) -> np.ndarray:
    """Persistence images (len(diagrams) × rows × cols, float64) of a list of diagrams."""
    config = config or PersistenceImageConfig()
    births, pers, offsets = pack_diagrams(diagrams)
    cols, rows = config.resolution
    out = np.zeros((len(offsets) - 1, rows, cols))
    bx, py = config.grid()
    _kernels.persistence_images_kernel(births, pers, _weights(pers, config), offsets, bx, py,
                                       float(config.sigma), bool(config.integrate), out)
    return out


class PersistenceImager(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: list of diagrams → N × rows × cols persistence images."""

    def __init__(self, birth_range=(0.0, 1.0), pers_range=(0.0, 1.0), resolution=(32, 32),
                 sigma=0.02, weight: Weight = "linear", power=1.0, integrate=True):
        self.birth_range = birth_range
        self.pers_range = pers_range
        self.resolution = resolution
        self.sigma = sigma
        self.weight = weight
        self.power = power
        self.integrate = integrate

    @property
    def config(self) -> PersistenceImageConfig:
        return PersistenceImageConfig(**self.get_params())

    def fit(self, X=None, y=None):
        self.config  # validates
        return self

    def transform(self, X) -> np.ndarray:
        return persistence_images(X, self.config)
