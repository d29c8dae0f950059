"""Paper mode: the persistence images of the TGD authors, bit for bit, hundreds of times faster.

``shared/docs/TGD_METHOD.md`` §2 (Jeon et al., "Leveraging Topological Guidance for Improved
Knowledge Distillation", GRaM @ ICML 2024). For each RGB uint8 image and each channel, the row
scan and the column scan of the channel are 1-D signals x = pixel / 255; their H0 sublevel
diagrams on the path graph (as ripser computes them, in float32) keep the finite bars with
death - birth > threshold, and each diagram becomes a persistence image with the semantics of
``persim.PersImage(pixels, spread, specs={"minBD", "maxBD"})``: linear weight persistence / max
persistence, isotropic Gaussian of standard deviation ``spread`` integrated over each pixel (CDF
differences on persim's pixel grid), persistence on rows (largest in the top row), birth on
columns. Each PI is then divided by its maximum, times 255, truncated to uint8.

Why this is fast and still exact to the last bit: pixel values take 256 levels, so every
diagram point is a pair of levels. The Gaussian factors of all 256 births and all (birth,
death) pairs are tabulated once with SciPy's own ``norm.cdf`` (the function persim calls, on
the same arguments), the diagrams come from a linear-time monotonic stack, in the order ripser
emits them (increasing death, ties by decreasing edge index), and each PI is summed in compiled
code with persim's operations in persim's order — ``(x_factor * y_factor) * weight`` added
point after point, in 5×8-pixel tiles of explicit 4-wide float64 arithmetic — skipping only
terms that are exactly zero or too small to change the sum they would be added to (below half
an ulp of it). The float64 PIs therefore equal persim's bit for bit, and the uint8 PIs follow.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple, get_args

import numpy as np

from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import atomic_write
from tgd_core.core.memory import faulting_in
from tgd_core.data.images import as_image_batch
from tgd_core.data.normalization import PI_MEAN, PI_STD
from tgd_core.topology import _ckernel, numba_kernels, schema, transformer_getattr

#: Order of the six PIs in a teacher-2 input stack.
SCANS = ("row-R", "row-G", "row-B", "col-R", "col-G", "col-B")


@dataclass(frozen=True)
class PaperPIConfig:
    """Parameters of the authors' persistence images (their values are the defaults; bounds
    and help in :mod:`tgd_core.topology.schema`).

    resolution: persim's ``pixels`` = (birth bins = columns, persistence bins = rows).
    spread: standard deviation of the Gaussian. min_bd/max_bd: persim's ``specs``.
    threshold: keep bars with death - birth > threshold.
    """

    resolution: tuple[int, int] = schema.default("paper", "resolution")
    spread: float = schema.default("paper", "spread")
    min_bd: float = schema.default("paper", "min_bd")
    max_bd: float = schema.default("paper", "max_bd")
    threshold: float = schema.default("paper", "threshold")

    def __post_init__(self):
        schema.validate(self, "paper")
        if not self.min_bd < self.max_bd:
            raise TGDError(f"min_bd must be below max_bd, got {self.min_bd} >= {self.max_bd}")

    def to_dict(self) -> dict:
        return {"mode": "paper", **asdict(self)}


# Filtration values exactly as the reference computes them: float64 pixel / 255.0, cast to
# float32 by ripser. Diagram coordinates are these float32 values (held in float64).
LEVEL_VALUES = (np.arange(256) / 255.0).astype(np.float32).astype(np.float64)
_ALL_BARS = np.zeros(256, np.int32)  # min_death of paper_diagrams(thresholded=False)


def persim_grid(config: PaperPIConfig):
    """Pixel edges of ``persim.PersImage``: (xs_lower, xs_upper, ys_lower, ys_upper).

    As persim builds them: the lower edges are ``linspace(minBD, maxBD, n)`` and each pixel is
    ``maxBD / ny`` wide, so consecutive pixels overlap slightly.
    """
    nx, ny = config.resolution
    max_bd = config.max_bd
    min_bd = min(config.min_bd, 0)
    dx = max_bd / ny
    xs_lower = np.linspace(min_bd, max_bd, nx)
    xs_upper = np.linspace(min_bd, max_bd, nx) + dx
    ys_lower = np.linspace(0, max_bd, ny)
    ys_upper = np.linspace(0, max_bd, ny) + dx
    return xs_lower, xs_upper, ys_lower, ys_upper


class PaperTables(NamedTuple):
    """Per-level tables of one :class:`PaperPIConfig` (read-only; see the module doc).

    keep[b, d]: bar (birth level b, death level d) passes the threshold, i.e. d ≥ min_death[b]
    (persistence grows with d; 256 if no d passes). pers[b, d]: its persistence, death -
    birth (exact in float64). tx[b]: the birth factor of birth level b
    over the image columns, nonzero only in columns cols[b] = [c0, c1). ty[yid[b, d]]: the
    persistence factor of bar (b, d) over the image rows (top row = largest persistence),
    nonzero only in rows rows[yid[b, d]]; bars of equal persistence share one row of ``ty``
    (1,451 distinct rows for the defaults, 0.6 MB, where a row per (b, d) would take 26 MB).
    """

    keep: np.ndarray
    min_death: np.ndarray
    pers: np.ndarray
    tx: np.ndarray
    cols: np.ndarray
    yid: np.ndarray
    ty: np.ndarray
    rows: np.ndarray


class PaperTiles(NamedTuple):
    """The factors of :class:`PaperTables` per tile of the persim-order sums
    (:func:`~tgd_core.topology._kernels._accumulate_pi`): TILE_ROWS × TILE_COLS pixels, the PI
    padded with zero rows and columns to whole tiles.

    txp: tx padded to the tiles' columns, flat (256 × padded columns); typ: ty padded to the
    tiles' rows, flat. xmax/xmin[b, column tile], ymax/ymin[yid, row tile]: each factor's
    largest/smallest value on the tile. ctiles[b], rtiles[yid]: [first, last + 1) of the tiles
    spanned by the nonzero columns/rows.
    """

    txp: np.ndarray
    typ: np.ndarray
    xmax: np.ndarray
    xmin: np.ndarray
    ymax: np.ndarray
    ymin: np.ndarray
    ctiles: np.ndarray
    rtiles: np.ndarray


def _tile_factors(factors: np.ndarray, span: np.ndarray, size: int):
    """(padded flat factors, per-tile max, per-tile min, tile span) of factors over tiles of
    ``size`` entries along the second axis. The minimum is over the PI's own entries: the
    padding past its edge is zero but never output, so a lower bound of the sums needs only
    the real pixels' (with the padding in it, the edge tiles' bound stayed zero and every
    point's far tail there was summed: a third of the sums computed on CIFAR-10)."""
    n, width = factors.shape
    n_tiles = -(-width // size)
    padded = np.zeros((n, n_tiles * size))
    padded[:, :width] = factors
    real_only = np.full_like(padded, np.inf)
    real_only[:, :width] = factors
    tiles = np.stack([span[:, 0] // size, -(-span[:, 1] // size)], axis=1)
    return (padded.ravel(), padded.reshape(n, n_tiles, size).max(axis=2, initial=0.0),
            real_only.reshape(n, n_tiles, size).min(axis=2, initial=np.inf), tiles)


@functools.lru_cache(maxsize=8)
def _tiles(config: PaperPIConfig) -> PaperTiles:
    """:class:`PaperTiles` of ``config`` (read-only)."""
    t = _tables(config)
    if (t.tx < 0).any() or (t.ty < 0).any():  # the tile skip assumes terms >= 0
        raise TGDError("persistence-image factors must be non-negative")
    txp, xmax, xmin, ctiles = _tile_factors(t.tx, t.cols, _ckernel.TILE_COLS)
    typ, ymax, ymin, rtiles = _tile_factors(t.ty, t.rows, _ckernel.TILE_ROWS)
    tiles = PaperTiles(txp, typ, xmax, xmin, ymax, ymin, ctiles, rtiles)
    for arr in tiles:
        arr.setflags(write=False)
    return tiles


def _nonzero_span(factors: np.ndarray) -> np.ndarray:
    """[first, last + 1) of the nonzero entries of each row of ``factors`` ([0, 0) if none)."""
    nonzero = factors != 0
    first = np.argmax(nonzero, axis=1)
    last = factors.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    span = np.stack([first, last], axis=1).astype(np.int64)
    span[~nonzero.any(axis=1)] = 0
    return span


def _norm_cdf(x, loc, scale: float) -> np.ndarray:
    """``scipy.stats.norm.cdf(x, loc, scale)`` for finite arguments and scale > 0, computed as
    SciPy computes it, ``ndtr((x - loc) / scale)`` (the same bits), without importing
    ``scipy.stats`` (over half a second)."""
    from scipy.special import ndtr

    return ndtr((np.asarray(x) - loc) / scale)


def _gaussian_factors(config: PaperPIConfig, pers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tx, fy): the birth factor of every level and the persistence factor of each value in
    ``pers``, differences of :func:`_norm_cdf` over persim's pixel edges. SciPy's bits, kept on
    disk beside the C kernel's builds (``$TGD_KERNEL_CACHE``), keyed by the config, ``pers``
    and the SciPy and NumPy versions, so that a process that finds them there does not import
    SciPy (0.19 s of every ``tgd pi``'s start), and by the code that makes them (the grid's
    bits and this module's source: a change to either is never served stale factors); an
    unreadable or mismatched file is computed again."""
    from importlib.metadata import version

    grid = persim_grid(config)
    xs_lower, xs_upper, ys_lower, ys_upper = grid
    shapes = {"tx": (256, len(xs_upper)), "fy": (len(pers), len(ys_upper))}
    key = hashlib.sha256("|".join([
        repr(config), _digest(pers, *grid), f"scipy {version('scipy')}",
        f"numpy {np.__version__}", _source_digest()]).encode()).hexdigest()[:20]
    path = _ckernel.cache_dir() / f"paper_factors-{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as npz:
            found = {name: npz[name] for name in shapes}
        if all(a.dtype == np.float64 and a.shape == shapes[n] for n, a in found.items()):
            return found["tx"], found["fy"]
    except (OSError, ValueError, KeyError, EOFError):
        pass  # not there yet, or unreadable: computed (again) below
    s, v = config.spread, LEVEL_VALUES
    tx = _norm_cdf(xs_upper[None, :], v[:, None], s) - _norm_cdf(xs_lower[None, :], v[:, None], s)
    fy = (_norm_cdf(ys_upper[None, :], pers[:, None], s)
          - _norm_cdf(ys_lower[None, :], pers[:, None], s))
    buffer = io.BytesIO()
    np.savez(buffer, tx=tx, fy=fy)
    with contextlib.suppress(OSError):  # a read-only cache: computed every time, as before
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, buffer.getvalue())
    return tx, fy


def _digest(*arrays: np.ndarray) -> str:
    """SHA-256 of the arrays' float64 bits, in order."""
    sha = hashlib.sha256()
    for array in arrays:
        sha.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return sha.hexdigest()


@functools.cache
def _source_digest() -> str:
    """SHA-256 of this module's source (what computes the cached factors)."""
    from pathlib import Path

    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=8)
def _tables(config: PaperPIConfig) -> PaperTables:
    """The Gaussian factors with SciPy's ``norm.cdf``, evaluated as persim evaluates them."""
    v = LEVEL_VALUES
    pers = v[None, :] - v[:, None]  # pers[b, d] = death - birth, exact in float64
    keep = pers > config.threshold
    b_idx, d_idx = np.nonzero(keep)
    # the persistence factor is a function of the persistence: evaluate it once per distinct
    # value (a few thousand of the ~32k kept pairs), then keep its distinct rows
    p, p_index = np.unique(pers[b_idx, d_idx], return_inverse=True)
    tx, fy = _gaussian_factors(config, p)
    ty, inverse = np.unique(fy[:, ::-1], axis=0, return_inverse=True)  # largest pers on top
    yid = np.zeros((256, 256), np.int32)
    yid[b_idx, d_idx] = inverse.ravel()[p_index.ravel()]
    min_death = np.where(keep.any(axis=1), np.argmax(keep, axis=1), 256).astype(np.int32)
    assert (keep == (np.arange(256)[None, :] >= min_death[:, None])).all()  # pers grows with d
    tables = PaperTables(keep, min_death, pers, np.ascontiguousarray(tx), _nonzero_span(tx), yid,
                         np.ascontiguousarray(ty), _nonzero_span(ty))
    for arr in tables:
        arr.setflags(write=False)
    return tables


def scan_signals(images: np.ndarray) -> np.ndarray:
    """The six 1-D signals of each image: N×H×W×3 uint8 → N×6×(H·W) uint8, in :data:`SCANS`
    order (row scan = row-major flatten of a channel, column scan = flatten of its transpose)."""
    n, h, w, _ = images.shape
    rows = images.transpose(0, 3, 1, 2).reshape(n, 3, h * w)
    cols = images.transpose(0, 3, 2, 1).reshape(n, 3, h * w)
    return np.ascontiguousarray(np.concatenate([rows, cols], axis=1))


def _as_uint8_rgb(images) -> np.ndarray:
    batch = as_image_batch(images, channels=3)
    if batch.dtype != np.uint8:
        raise TGDError(
            "paper mode works on uint8 images (0-255), as the authors' pipeline does; got float "
            "pixels: convert them with np.round(x * 255).astype(np.uint8) if they lie in [0, 1]"
        )
    return batch


#: How the PI terms are summed (see :func:`paper_persistence_images`).
Summation = Literal["persim", "grouped"]
SUMMATIONS: tuple[str, ...] = get_args(Summation)


def paper_persistence_images(
    images, config: PaperPIConfig | None = None, *, raw: bool = True,
    summation: Summation = "persim", out: tuple[np.ndarray | None, np.ndarray] | None = None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Paper-mode PIs of a batch of images.

    Returns ``(pi_raw, pi_uint8)``: float64 N×6×rows×cols PIs before max normalisation (None
    with ``raw=False``, which saves the memory traffic when only the uint8 images are needed)
    and the uint8 images (each PI / its max × 255, truncated, computed in float64).

    ``summation``: ``"persim"`` sums persim's terms in persim's order (bit for bit);
    ``"grouped"`` sums the same terms grouped by birth level, PI = Σ_b tx[b] ⊗ (Σ_{p born at
    b} w_p · ty[p]), several times faster and equal up to rounding (within 1e-13 of each PI's
    maximum; the uint8 PIs of CIFAR-10 are checked by ``benchmarks/check_grouped_uint8.py``).
    It is an evaluation order, not a parameter of the representation, so it is not part of
    :class:`PaperPIConfig` (configs and cache keys stay the same).

    ``out``: ``(pi_raw, pi_uint8)`` arrays to write into and return (``pi_raw`` None with
    ``raw=False``), C-contiguous, of the result's shape and dtypes: a caller computing many
    batches reuses its buffers instead of having fresh pages zeroed for every batch.
    """
    if summation not in SUMMATIONS:
        raise TGDError(f"summation must be 'persim' or 'grouped', got {summation!r}")
    config = config or PaperPIConfig()
    batch = np.ascontiguousarray(_as_uint8_rgb(images))
    nx, ny = config.resolution
    shape = (len(batch), len(SCANS), ny, nx)
    if out is None:
        pi_raw = np.empty(shape, np.float64) if raw else None
        pi_u8 = np.empty(shape, np.uint8)
    else:
        pi_raw, pi_u8 = _checked_out(out, shape, raw)
    if pi_raw is None:
        pi_raw = np.empty((1, 1, 1, 1), np.float64)  # the numba kernel's placeholder
    lib = _ckernel.load() if summation == "persim" else None
    # with float64 PIs (9x the bytes per image), the outputs' pages are faulted in ahead of
    # the kernel's threads, not by them (core/memory.py)
    with faulting_in(pi_u8, pi_raw) if raw else contextlib.nullcontext():
        if lib is not None:
            _ckernel.paper_pis(lib, batch, _c_tables(config), pi_raw if raw else None, pi_u8,
                               _ckernel.threads())
        else:
            import numba

            with numba.parallel_chunksize(1):  # tasks handed out as threads finish
                numba_kernels().paper_pis_kernel(batch, _tables(config), _tiles(config),
                                                 summation == "grouped", raw, pi_raw, pi_u8)
    return (pi_raw if raw else None), pi_u8


def _checked_out(out, shape: tuple, raw: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """``out`` of :func:`paper_persistence_images`, or a one-line error naming what is wrong."""
    try:
        pi_raw, pi_u8 = out
    except (TypeError, ValueError):
        raise TGDError("out must be a (pi_raw, pi_uint8) pair of arrays") from None
    expected = (("pi_raw", pi_raw, np.float64), ("pi_uint8", pi_u8, np.uint8)) if raw else (
        ("pi_uint8", pi_u8, np.uint8),)
    if not raw and pi_raw is not None:
        raise TGDError("out: pi_raw must be None with raw=False")
    for name, arr, dtype in expected:
        if not (isinstance(arr, np.ndarray) and arr.shape == shape and arr.dtype == dtype
                and arr.flags.c_contiguous and arr.flags.writeable):
            got = (f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray)
                   else type(arr).__name__)
            raise TGDError(f"out: {name} must be a writeable C-contiguous {np.dtype(dtype)} "
                           f"array of shape {shape}, got {got}")
    return pi_raw, pi_u8


@functools.lru_cache(maxsize=8)
def _c_tables(config: PaperPIConfig):
    """The factors of ``config`` as the C kernel reads them (:mod:`._ckernel`)."""
    return _ckernel.tables_struct(_tables(config), _tiles(config))


def to_uint8(pi_raw: np.ndarray) -> np.ndarray:
    """The authors' 8-bit PIs: ``uint8(pi / max(pi) * 255)`` per PI (zero PIs stay zero).

    Pass float64 PIs: a float32 copy flushes the ~0.7 % of CIFAR PIs whose maximum is below
    1.2e-38 to zero, and those are exactly the ones the normalisation brings to full contrast.
    """
    pis = np.ascontiguousarray(pi_raw, dtype=np.float64)
    squeeze = pis.ndim == 3
    if squeeze:
        pis = pis[None]
    if pis.ndim != 4:
        raise TGDError(f"expected N×S×rows×cols PIs, got shape {pi_raw.shape}")
    out = np.empty(pis.shape, np.uint8)
    numba_kernels().max_normalise_uint8(pis, out)
    return out[0] if squeeze else out


def paper_diagrams(image, config: PaperPIConfig | None = None, *, thresholded: bool = True):
    """The six H0 diagrams of one image (in :data:`SCANS` order) as (k, 2) float64 arrays of
    (birth, death) — the float32 filtration values the reference sees, in ripser's order. With
    ``thresholded``, only the bars the PI uses (death - birth > threshold); else every finite
    bar."""
    config = config or PaperPIConfig()
    batch = _as_uint8_rgb(image)
    if len(batch) != 1:
        raise TGDError(f"paper_diagrams takes one image, got {len(batch)}")
    min_death = _tables(config).min_death if thresholded else _ALL_BARS
    signals = scan_signals(batch)[0]
    length = signals.shape[1]
    _kernels = numba_kernels()
    scratch, bucket, b, d = _kernels.bar_scratch(length)
    diagrams = []
    for sig in signals:
        m = _kernels._kept_bars_in_order(sig, length, min_death, scratch, bucket, b, d)
        diagrams.append(np.stack([LEVEL_VALUES[b[:m]], LEVEL_VALUES[d[:m]]], axis=1))
    return diagrams


def normalise_pi_stack(pi_uint8: np.ndarray, mean=PI_MEAN, std=PI_STD) -> np.ndarray:
    """Teacher-2 input: uint8 N×6×rows×cols stacks → float32, scaled to [0, 1] and standardised
    per channel (method notes §2.6)."""
    x = np.asarray(pi_uint8, dtype=np.float32) / 255.0
    shape = (1, -1, 1, 1) if x.ndim == 4 else (-1, 1, 1)
    m = np.asarray(mean, np.float32).reshape(shape)
    s = np.asarray(std, np.float32).reshape(shape)
    return (x - m) / s


__getattr__ = transformer_getattr(__name__, ("PaperPersistenceImages",))
