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

from tgd_core.core.errors import TGDError
from tgd_core.topology import numba_kernels, schema, transformer_getattr

Weight = Literal["constant", "linear", "power"]


@dataclass(frozen=True)
class PersistenceImageConfig:
    """Grid and kernel of a persistence image.

    birth_range / pers_range: the image's extent in birth and persistence.
    resolution: (cols = birth pixels, rows = persistence pixels).
    sigma: the Gaussian's standard deviation. weight: ``constant`` (1), ``linear`` (p) or
    ``power`` (p ** power). integrate: pixel integrals (True) or samples at pixel centres.
    """

    birth_range: tuple[float, float] = schema.default("image", "birth_range")
    pers_range: tuple[float, float] = schema.default("image", "pers_range")
    resolution: tuple[int, int] = schema.default("image", "resolution")
    sigma: float = schema.default("image", "sigma")
    weight: Weight = schema.default("image", "weight")
    power: float = schema.default("image", "power")
    integrate: bool = schema.default("image", "integrate")

    def __post_init__(self):
        schema.validate(self, "image")

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
        dgm = np.asarray(dgm, dtype=np.float64) if np.size(dgm) else np.zeros((0, 2))
        if dgm.shape == (2,):  # one point given flat
            dgm = dgm[None]
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
    numba_kernels().persistence_images_kernel(births, pers, _weights(pers, config), offsets,
                                              bx, py, float(config.sigma),
                                              bool(config.integrate), out)
    return out


__getattr__ = transformer_getattr(__name__, ("PersistenceImager",))
