"""One entry point for every PI representation: ``compute_pis(images, representation)``.

A representation is a frozen config: :class:`PaperPIConfig` (the authors' 1-D row/column H0
PIs, 6 per RGB image) or :class:`CubicalPIConfig` (2-D cubical H0/H1 PIs per channel or of the
grey image; with ``cubical.patches=g`` the PIs of a g×g grid of patches, tiled in the grid's
layout into (g·rows)×(g·cols) maps: :mod:`tgd_core.topology.cubical`). Both give ``(pi_raw
float64 N×K×rows×cols, pi_uint8)``, where the uint8 images are each PI (each tiled map) divided
by its maximum × 255 (the authors' normalisation, computed in float64).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from tgd_core.core.errors import TGDError
from tgd_core.topology import schema
from tgd_core.topology.cubical import CubicalConfig, cubical_persistence_images
from tgd_core.topology.paper import (
    PaperPIConfig,
    paper_persistence_images,
    persim_grid,
    to_uint8,
)
from tgd_core.topology.pimage import PersistenceImageConfig


@dataclass(frozen=True)
class CubicalPIConfig:
    """Cubical diagrams (``cubical``) turned into persistence images (``image``)."""

    cubical: CubicalConfig = field(default_factory=CubicalConfig)
    image: PersistenceImageConfig = field(default_factory=PersistenceImageConfig)

    def to_dict(self) -> dict:
        return {"mode": "cubical", "cubical": self.cubical.to_dict(), "image": self.image.to_dict()}

    @property
    def n_maps(self) -> int:
        return self.cubical.n_channels * len(self.cubical.homology_dimensions)


Representation = PaperPIConfig | CubicalPIConfig


def n_maps(rep: Representation) -> int:
    """Number of PIs per image (the PI teacher's input channels)."""
    return 6 if isinstance(rep, PaperPIConfig) else rep.n_maps


def representation_from_dict(d: dict) -> Representation:
    """Inverse of ``rep.to_dict()`` (as saved in caches, checkpoints and job configs); a
    TGDError naming the problem for anything that is not a valid representation."""
    if not isinstance(d, dict):
        raise TGDError(f"a PI representation is an object like {{\"mode\": \"paper\"}}, "
                       f"got {d!r}")
    mode = d.get("mode", "paper")
    if mode not in schema.MODES:
        raise TGDError(f"unknown PI mode {mode!r}: choose 'paper' or 'cubical'")
    try:
        return _paper_from_dict(d) if mode == "paper" else _cubical_from_dict(d)
    except (TypeError, ValueError) as exc:  # wrong or unknown fields, values of the wrong type
        raise TGDError(f"bad PI representation {d}: {exc}") from None


def representation_from_values(mode: str, values: Mapping[str, Any]) -> Representation:
    """The representation of ``mode`` from parameter values keyed ``section.name`` (as
    :mod:`tgd_core.topology.schema` names them; absent ones take their defaults): how the
    command line and the explorer turn their flags and controls into a config."""
    if mode not in schema.MODES:
        raise TGDError(f"unknown PI mode {mode!r}: choose 'paper' or 'cubical'")
    if mode == "paper":
        return PaperPIConfig(**schema.section_values("paper", values))
    return CubicalPIConfig(CubicalConfig(**schema.section_values("cubical", values)),
                           PersistenceImageConfig(**schema.section_values("image", values)))


def _paper_from_dict(d: dict) -> PaperPIConfig:
    """A :class:`PaperPIConfig` from its fields (``mode`` aside)."""
    return PaperPIConfig(**{k: _as_tuple(v) for k, v in d.items() if k != "mode"})


def _cubical_from_dict(d: dict) -> CubicalPIConfig:
    """A :class:`CubicalPIConfig` from ``{"cubical": {...}, "image": {...}}``."""
    unknown = set(d) - {"mode", "cubical", "image"}
    if unknown:
        raise TypeError(f"unexpected field(s) {sorted(unknown)}; cubical mode takes "
                        "'cubical' and 'image'")
    cub, img = (_fields(d, part) for part in ("cubical", "image"))
    cub.pop("mode", None)
    if "homology_dimensions" in cub:
        cub["homology_dimensions"] = _as_tuple(cub["homology_dimensions"])
    img = {k: _as_tuple(v) for k, v in img.items()}
    return CubicalPIConfig(CubicalConfig(**cub), PersistenceImageConfig(**img))


def _fields(d: dict, part: str) -> dict:
    """A copy of the sub-object ``d[part]`` (empty if absent); TypeError if not an object."""
    value = d.get(part, {})
    if not isinstance(value, dict):
        raise TypeError(f"{part!r} must be an object, got {value!r}")
    return dict(value)


def _as_tuple(value):
    """JSON lists as tuples (the configs' sequence fields); anything else unchanged."""
    return tuple(value) if isinstance(value, list) else value


def representation_key(rep: Representation) -> str:
    """Short stable hash of every parameter (for cache keys)."""
    text = json.dumps(rep.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compute_pis(images, rep: Representation | None = None, *, raw: bool = True
                ) -> tuple[np.ndarray | None, np.ndarray]:
    """``(pi_raw, pi_uint8)`` of a batch (array) or a list of images of different sizes;
    ``pi_raw`` is None with ``raw=False`` where that saves work (paper mode)."""
    rep = rep if rep is not None else PaperPIConfig()
    if isinstance(images, list) and len({np.shape(im) for im in images}) > 1:
        parts = [compute_pis(im, rep, raw=raw) for im in images]
        raws = None if parts[0][0] is None else np.concatenate([p[0] for p in parts])
        return raws, np.concatenate([p[1] for p in parts])
    if isinstance(rep, PaperPIConfig):
        return paper_persistence_images(images, rep, raw=raw)
    if isinstance(rep, CubicalPIConfig):
        raw = cubical_persistence_images(images, rep.cubical, rep.image)
        return raw, to_uint8(raw)
    raise TGDError(f"unknown PI representation {rep!r}")


class PIAxes(NamedTuple):
    """Where a PI's pixels lie in the diagram's coordinates. ``extent``: the outer edges of
    its pixels (birth low, birth high, persistence low, persistence high); ``births``: each
    column's centre; ``persistences``: each row's centre, the top row (largest) first."""

    extent: tuple[float, float, float, float]
    births: np.ndarray
    persistences: np.ndarray


def pi_axes(rep: Representation) -> PIAxes:
    """:class:`PIAxes` of one PI under ``rep`` (of one tile, with patches). Paper mode: persim's
    grid (:func:`~tgd_core.topology.paper.persim_grid`), whose pixels are ``maxBD / ny`` wide
    from lower edges ``linspace(minBD, maxBD, n)``, so the last ends at ``maxBD + maxBD / ny``;
    cubical mode: the PI's own pixel edges, or its sampled centres (GUDHI)."""
    if isinstance(rep, PaperPIConfig):
        xs_lower, xs_upper, ys_lower, ys_upper = persim_grid(rep)
        extent = (xs_lower[0], xs_upper[-1], ys_lower[0], ys_upper[-1])
        births, pers = (xs_lower + xs_upper) / 2, (ys_lower + ys_upper) / 2
    else:
        births, pers = rep.image.grid()
        extent = (*rep.image.birth_range, *rep.image.pers_range)
        if rep.image.integrate:  # edges: the centres lie between them
            births, pers = (births[:-1] + births[1:]) / 2, (pers[:-1] + pers[1:]) / 2
    return PIAxes(tuple(float(v) for v in extent), births, pers[::-1].copy())


@dataclass
class TopologySummary:
    """Everything a viewer shows of one image: labelled diagrams and PIs, and the timing.

    ``diagrams``: (label, channel, (k, 2) birth/death array) — one per scan (paper) or per
    channel and homology dimension (cubical), in the order of the PIs; with patches (g > 1) each
    pools the points of the g×g patches' diagrams (label "R H0, 4×4 patches"), whose PIs are the
    tiles of its PI. ``axes``: where a PI's pixels (each tile's, with patches) lie
    (:func:`pi_axes`).
    """

    diagrams: list[tuple[str, str, np.ndarray]]
    pi_raw: np.ndarray
    pi_uint8: np.ndarray
    axes: PIAxes
    seconds: float

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """The PI window: (birth min, birth max, persistence min, persistence max)."""
        return self.axes.extent


def summarise(image, rep: Representation | None = None) -> TopologySummary:
    """Diagrams and PIs of one image (H×W, H×W×C) under ``rep``."""
    import time

    from tgd_core.topology.paper import SCANS, paper_diagrams

    rep = rep if rep is not None else PaperPIConfig()
    t0 = time.perf_counter()
    raw, u8 = compute_pis(image, rep)
    if isinstance(rep, PaperPIConfig):
        dgms = paper_diagrams(image, rep)
        labelled = [(f"{scan} H0", scan[-1], d) for scan, d in zip(SCANS, dgms, strict=True)]
    else:
        labelled = _cubical_diagrams_per_pi(image, rep.cubical)
    return TopologySummary(labelled, raw[0], u8[0], pi_axes(rep), time.perf_counter() - t0)


def _cubical_diagrams_per_pi(image, config: CubicalConfig) -> list[tuple[str, str, np.ndarray]]:
    """One image's labelled cubical diagrams, one per PI (channel-major, then homology
    dimension); with patches, each the points of every patch's diagram together."""
    from tgd_core.topology.cubical import cubical_diagrams, patch_images

    g = config.patches
    patches = cubical_diagrams(patch_images(image, g)[:g * g], replace(config, patches=1))
    names = ["R", "G", "B"] if config.channels == "rgb" else ["grey"]
    where = f", {g}×{g} patches" if g > 1 else ""
    return [(f"{name} H{dim}{where}", name, np.vstack([p[ch][k] for p in patches]))
            for ch, name in enumerate(names)
            for k, dim in enumerate(config.homology_dimensions)]
