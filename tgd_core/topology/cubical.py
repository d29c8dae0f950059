"""Cubical mode: 2-D persistence (H0 and H1) of image channels, as GUDHI's ``CubicalComplex``.

Each channel (or the grey image) is a filtration of a cubical complex: with ``construction=
"top"`` the pixels are the top-dimensional cells (``CubicalComplex(top_dimensional_cells=...)``,
GUDHI's default: 8-connected components, 4-connected holes); with ``"vertex"`` they are the
vertices (``CubicalComplex(vertices=...)``: 4-connected components, 8-connected holes).
``filtration="superlevel"`` filters by decreasing value (the sublevel filtration of -f); its
diagrams are reported in the image's values, so births lie above deaths.

Diagrams: H0 includes the essential bar (minimum, inf) (for superlevel: (maximum, -inf)), as
GUDHI reports it; zero-length bars are dropped (GUDHI's ``min_persistence=0``). Persistence
images drop the essential bar and use :mod:`tgd_core.topology.pimage`.

Patches (``patches=g`` > 1) keep the spatial layout that a whole-image diagram loses: each image
is cut into a g×g grid of equal h×w patches (H = g·h, W = g·w; :func:`patch_images`), each patch
is a cubical complex of its own (same filtration, construction and channels), and the PIs of the
patches (rows × cols each) are tiled in the grid's layout into one (g·rows) × (g·cols) map per
channel and homology dimension: patch (i, j) — image rows i·h.., columns j·w.. — fills map rows
i·rows.., columns j·cols.. (the top-left patch's PI is the top-left tile, and within each tile
the PI's own orientation is kept). Each tiled map is max-normalised as a whole for uint8, so
the patches' relative magnitudes are kept. The diagrams of patches are those of the images
:func:`patch_images` cuts (``patches=1``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from tgd_core.core.errors import TGDError
from tgd_core.data.images import as_image_batch, to_grey
from tgd_core.topology import numba_kernels, schema, transformer_getattr
from tgd_core.topology.pimage import PersistenceImageConfig, _weights


@dataclass(frozen=True)
class CubicalConfig:
    """What to compute: homology dimensions, filtration direction, channels, construction.

    scale: uint8 pixels are divided by it (255 → values in [0, 1]); float images are used as
    given.
    """

    homology_dimensions: tuple[int, ...] = schema.default("cubical", "homology_dimensions")
    filtration: Literal["sublevel", "superlevel"] = schema.default("cubical", "filtration")
    channels: Literal["rgb", "grey"] = schema.default("cubical", "channels")
    construction: Literal["top", "vertex"] = schema.default("cubical", "construction")
    scale: float = schema.default("cubical", "scale")
    patches: int = schema.default("cubical", "patches")

    def __post_init__(self):
        schema.validate(self, "cubical")

    @property
    def n_channels(self) -> int:
        return 3 if self.channels == "rgb" else 1

    def to_dict(self) -> dict:
        """The fields, ``patches`` only when it is not 1: configs, caches and checkpoints saved
        before it existed keep their dicts and cache keys."""
        d = {"mode": "cubical", **asdict(self)}
        if self.patches == 1:
            del d["patches"]
        return d


def channel_images(images, config: CubicalConfig) -> np.ndarray:
    """The filtration values: N×C×H×W float64 (C = 3 for ``rgb``, 1 for ``grey``)."""
    batch = as_image_batch(images, channels=3 if config.channels == "rgb" else None)
    values = batch.astype(np.float64) / config.scale if batch.dtype == np.uint8 else batch
    if config.channels == "grey":
        values = to_grey(values)[..., None]
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2))


def patch_images(images, g: int) -> np.ndarray:
    """Images (any shape :func:`~tgd_core.data.images.as_image_batch` accepts) → the
    (N·g·g)×h×w×C patches of a g×g grid (h = H/g, w = W/g), image-major and row-major within an
    image: patch (i, j) of image n, its pixels rows i·h.., columns j·w.., at index n·g² + i·g + j.
    TGDError when H or W is not a multiple of g."""
    batch = as_image_batch(images, channels=None)
    n, h, w, c = batch.shape
    if h % g or w % g:
        raise TGDError(f"patches={g}: an image of {h}×{w} pixels (H×W) does not split into a "
                       f"{g}×{g} grid of equal patches; H and W must be multiples of {g}")
    grid = batch.reshape(n, g, h // g, g, w // g, c).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(grid.reshape(n * g * g, h // g, w // g, c))


def tile_patches(maps: np.ndarray, g: int) -> np.ndarray:
    """Inverse layout of :func:`patch_images` for per-patch maps: (N·g·g)×K×r×c →
    N×K×(g·r)×(g·c), patch (i, j)'s map at rows i·r.., columns j·c.."""
    m, k, r, c = maps.shape
    grid = maps.reshape(m // (g * g), g, g, k, r, c).transpose(0, 3, 1, 4, 2, 5)
    return np.ascontiguousarray(grid.reshape(m // (g * g), k, g * r, g * c))


def _bars(values: np.ndarray, config: CubicalConfig):
    """Raw kernel output for M×H×W filtration values (negated for superlevel)."""
    m, h, w = values.shape
    f = -values if config.filtration == "superlevel" else values
    cap = max(h * w, 1)
    out_b = np.zeros((m, 2, cap))
    out_d = np.zeros((m, 2, cap))
    counts = np.zeros((m, 2), np.int64)
    mins = np.zeros(m)
    dims = config.homology_dimensions
    numba_kernels().cubical_batch(np.ascontiguousarray(f), 0 in dims, 1 in dims,
                                  config.construction == "top", out_b, out_d, counts, mins)
    if config.filtration == "superlevel":
        return -out_b, -out_d, counts, -mins
    return out_b, out_d, counts, mins


def cubical_diagrams(images, config: CubicalConfig | None = None, *, chunk: int = 1024):
    """Diagrams of each image: ``result[n][c][k]`` is the (bars, 2) array of (birth, death) of
    channel c in homology dimension ``config.homology_dimensions[k]``. With ``patches`` > 1 a
    TGDError: the diagrams of patches are those of the images :func:`patch_images` cuts."""
    config = config or CubicalConfig()
    if config.patches != 1:
        raise TGDError(f"cubical diagrams are of whole images (patches=1, got "
                       f"{config.patches}): for the diagrams of patches, cut the images with "
                       "tgd_core.topology.cubical.patch_images first")
    values = channel_images(images, config)
    n, c, h, w = values.shape
    ess_death = -np.inf if config.filtration == "superlevel" else np.inf
    result = []
    for start in range(0, n, chunk):
        part = values[start : start + chunk].reshape(-1, h, w)
        b, d, counts, mins = _bars(part, config)
        for i in range(len(part) // c):
            per_channel = []
            for ch in range(c):
                j = i * c + ch
                dgms = []
                for dim in config.homology_dimensions:
                    k = counts[j, dim]
                    dgm = np.stack([b[j, dim, :k], d[j, dim, :k]], axis=1)
                    if dim == 0:
                        dgm = np.vstack([[mins[j], ess_death], dgm])
                    dgms.append(dgm)
                per_channel.append(dgms)
            result.append(per_channel)
    return result


def cubical_persistence_images(images, config: CubicalConfig | None = None,
                               pi: PersistenceImageConfig | None = None, *,
                               chunk: int = 1024) -> np.ndarray:
    """Persistence images N × (C·D) × rows × cols, ordered channel-major: for each channel, one
    image per homology dimension (essential bars dropped). With ``patches=g``: N × (C·D) ×
    (g·rows) × (g·cols), the patches' PIs tiled in the grid's layout (module doc), computed in
    one batch of N·g² patch images."""
    config = config or CubicalConfig()
    pi = pi or PersistenceImageConfig()
    g = config.patches
    if g == 1:
        return _persistence_images(channel_images(images, config), config, pi, chunk)
    patches = channel_images(patch_images(images, g), config)
    return tile_patches(_persistence_images(patches, config, pi, chunk), g)


def _persistence_images(values: np.ndarray, config: CubicalConfig, pi: PersistenceImageConfig,
                        chunk: int) -> np.ndarray:
    """The whole-image PIs of N×C×H×W filtration values (:func:`cubical_persistence_images`)."""
    n, c, h, w = values.shape
    dims = config.homology_dimensions
    cols, rows = pi.resolution
    out = np.zeros((n, c * len(dims), rows, cols))
    bx, py = pi.grid()
    for start in range(0, n, chunk):
        part = values[start : start + chunk].reshape(-1, h, w)
        b, d, counts, _ = _bars(part, config)
        sel = counts[:, list(dims)]  # (M, D) bars per diagram, diagrams in output order
        mask = np.arange(b.shape[2])[None, None, :] < counts[:, :, None]
        mask = mask[:, list(dims)]
        births = b[:, list(dims)][mask]
        pers = np.abs(d[:, list(dims)][mask] - births)
        offsets = np.concatenate([[0], np.cumsum(sel.ravel())]).astype(np.int64)
        block = out[start : start + chunk].reshape(-1, rows, cols)
        numba_kernels().persistence_images_kernel(
            births, pers, _weights(pers, pi), offsets, bx, py, float(pi.sigma),
            bool(pi.integrate), block)
    return out


__getattr__ = transformer_getattr(__name__, ("CubicalPersistence",))
