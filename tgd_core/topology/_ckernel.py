"""The C paper-mode kernel (``_paper_kernel.c``): built once per machine, loaded with ctypes.

The numba kernel (:func:`tgd_core.topology._kernels.paper_pis_kernel`) and this one compute the
same persim-order sums, bit for bit; the C one keeps each 5×8 tile's sums in registers while the
points visit it (tile by tile instead of point by point), which the numba version cannot
express; and with only uint8 PIs asked for, it sums in float32 with a proven error bound and
computes persim's float64 sum only for the pixels the bound cannot decide (the same uint8 PIs).
It is compiled with the system C compiler (``$CC``, default ``cc``) at first use into
``$TGD_KERNEL_CACHE`` (default ``~/.cache/tgd/kernels``), keyed by the source, the flags, the
compiler and the CPU, with ``-ffp-contract=off`` (no implicit fused multiply-adds: persim's
bits; only the uint8-only float32 sums use explicit ones, inside their error bound). Where
no compiler works, :func:`load` returns None and paper mode runs on numba.

``TGD_PAPER_KERNEL=numba`` forces the numba kernel, ``=c`` requires this one (an error if it
cannot be built), ``auto`` (default) prefers C.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from tgd_core.core.errors import TGDError

SOURCE = Path(__file__).with_name("_paper_kernel.c")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared",
         "-std=c11")
CHOICES = ("auto", "c", "numba")
#: Images per task; equal to PAPER_CHUNK in the C source.
CHUNK = 16
#: Register tile of the persim-order sums (both kernels): TILE_ROWS × TILE_COLS PI pixels
#: (5 × 8 = ten AVX2 registers of four float64; a 50-row PI is 10 row tiles without padding);
#: equal to the C source's.
TILE_ROWS, TILE_COLS = 5, 8
#: Row tiles whose skip tests run together; equal to ROW_GROUP in the C source.
ROW_GROUP = 12

log = logging.getLogger(__name__)


class _Tables(ctypes.Structure):
    """``tables_t`` of the C source: the factors of PaperTables/PaperTiles."""

    _fields_ = [(name, ctypes.c_void_p) for name in
                ("min_death", "levels", "yid", "txp", "typ", "xmax", "xmin", "ymax", "ymin",
                 "ctiles", "rtiles", "txp32", "xexp", "xpeak", "xmax4", "typ32", "yexp",
                 "ypeak")] + [
        (name, ctypes.c_int64) for name in ("n_ct", "n_rt", "n_rt_padded", "n_ct4")]


def choice() -> str:
    """``$TGD_PAPER_KERNEL`` (auto, c or numba), validated."""
    value = os.environ.get("TGD_PAPER_KERNEL", "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise TGDError(f"TGD_PAPER_KERNEL must be one of {', '.join(CHOICES)}, got {value!r}")
    return value


def threads() -> int:
    """Threads for the kernel: numba's setting where numba is loaded (``numba.set_num_threads``
    applies to both kernels), else ``$NUMBA_NUM_THREADS``, else the CPUs this process may use."""
    numba = sys.modules.get("numba")
    if numba is not None:
        return numba.get_num_threads()
    text = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _cpu_flags() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def cache_dir() -> Path:
    """Where builds (and the paper-mode factor tables, paper.py) are kept."""
    root = os.environ.get("TGD_KERNEL_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tgd" / "kernels"


def _compiler() -> list[str]:
    return (os.environ.get("CC") or "cc").split()


def _library_path(defines: tuple[str, ...] = ()) -> Path:
    """Where the build of this source, flags, compiler and CPU lives."""
    cc = _compiler()
    version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=60,
                             check=True).stdout
    key = hashlib.sha256("\n".join([SOURCE.read_text(), " ".join(FLAGS + defines), " ".join(cc),
                                    version, platform.machine(), _cpu_flags()]).encode())
    return cache_dir() / f"paper_kernel-{key.hexdigest()[:20]}.so"


def _build(path: Path, defines: tuple[str, ...] = ()) -> None:
    """Compile the source into ``path`` (atomically: several processes may build at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        subprocess.run([*_compiler(), *FLAGS, *defines, "-o", tmp, str(SOURCE)],
                       capture_output=True, text=True, timeout=300, check=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build(defines: tuple[str, ...] = ()) -> ctypes.CDLL:
    """The kernel built with extra ``-D`` flags (cached like the default build), e.g.
    ``("-DSTAGES=2",)`` to time its stages (benchmarks/bench_topology.py). Raises OSError or
    subprocess.SubprocessError where it cannot be built."""
    path = _library_path(defines)
    if not path.exists():
        _build(path, defines)
    lib = ctypes.CDLL(str(path))
    lib.paper_pis.restype = ctypes.c_int
    lib.paper_pis.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                              ctypes.POINTER(_Tables), ctypes.c_int64, ctypes.c_int64,
                              ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)]
    return lib


@functools.lru_cache(maxsize=1)
def _load_library() -> ctypes.CDLL | None:
    try:
        return build()
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        log.warning("paper-mode C kernel unavailable, using numba: %s", str(detail).strip())
        return None


def load() -> ctypes.CDLL | None:
    """The compiled kernel, or None where ``TGD_PAPER_KERNEL`` or the machine rules it out."""
    mode = choice()
    if mode == "numba":
        return None
    lib = _load_library()
    if lib is None and mode == "c":
        raise TGDError("TGD_PAPER_KERNEL=c but the C kernel could not be built (is a C compiler "
                       "installed? set CC); unset it to fall back to numba")
    return lib


def _pointer(array: np.ndarray, dtype) -> int:
    if array.dtype != dtype or not array.flags.c_contiguous:
        raise TGDError(f"C kernel: expected a contiguous {np.dtype(dtype)} array, got "
                       f"{array.dtype}")
    return array.ctypes.data


def tables_struct(tables, tiles) -> _Tables:
    """The C view of (PaperTables, PaperTiles) (read-only arrays), the per-row-tile bounds
    zero-padded to whole ROW_GROUPs; it holds every array it points to, so the pointers stay
    valid as long as it lives."""
    i32, i64, f64 = np.int32, np.int64, np.float64
    n_ct, n_rt = tiles.xmax.shape[1], tiles.ymax.shape[1]
    n_rt_padded = -(-n_rt // ROW_GROUP) * ROW_GROUP
    ymax, ymin = (np.pad(bound, ((0, 0), (0, n_rt_padded - n_rt)))
                  for bound in (tiles.ymax, tiles.ymin))
    n_cols, n_rows = n_ct * TILE_COLS, n_rt * TILE_ROWS
    levels, yid = _levels_and_yid(tables)
    txp32, xexp, xpeak = _scaled_float32(tiles.txp.reshape(-1, n_cols))
    typ32, yexp, ypeak = _scaled_float32(tiles.typ.reshape(-1, n_rows))
    xmax4 = np.pad(tiles.xmax, ((0, 0), (0, -n_ct % 4)))
    struct = _Tables(
        _pointer(tables.min_death, i32), _pointer(levels, f64), _pointer(yid, np.uint16),
        _pointer(tiles.txp, f64), _pointer(tiles.typ, f64), _pointer(tiles.xmax, f64),
        _pointer(tiles.xmin, f64), _pointer(ymax, f64), _pointer(ymin, f64),
        _pointer(tiles.ctiles, i64), _pointer(tiles.rtiles, i64), _pointer(txp32, np.float32),
        _pointer(xexp, i32), _pointer(xpeak, f64), _pointer(xmax4, f64),
        _pointer(typ32, np.float32), _pointer(yexp, i32), _pointer(ypeak, f64),
        n_ct, n_rt, n_rt_padded, xmax4.shape[1])
    struct.arrays = (tables, tiles, levels, yid, ymax, ymin, txp32, xexp, xpeak, xmax4, typ32,
                     yexp, ypeak)
    return struct


def _levels_and_yid(tables):
    """The kernel's compact forms of ``tables.pers`` and ``tables.yid``: each level's value
    (row 0 of pers, level 0 being 0), from which the kernel's ``levels[d] - levels[b]`` is
    pers[b, d] bit for bit (checked), and the y-factor rows' ids as uint16 (at most 32,640
    kept pairs, so they fit): 2 KB and 128 KB instead of 512 KB and 256 KB, which the kernel
    reads at random once per point."""
    levels = np.ascontiguousarray(tables.pers[0])
    if not np.array_equal(levels[None, :] - levels[:, None], tables.pers):
        raise TGDError("C kernel: persistence is not death - birth of the level values")
    if tables.yid.max(initial=0) > np.iinfo(np.uint16).max:
        raise TGDError("C kernel: more than 65,536 persistence factors")
    return levels, tables.yid.astype(np.uint16)


def _scaled_float32(factors: np.ndarray):
    """Factor rows as the uint8-only sums (``certified_u8`` in the C source) read them: each
    row times the power of two 2^exponent that brings its peak into [1, 2) (exact), rounded
    to float32, flat; the exponents; the peaks."""
    peak = factors.max(axis=1)
    _, binary = np.frexp(peak)  # peak = mantissa * 2^binary, mantissa in [0.5, 1)
    exponent = np.where(peak > 0, 1 - binary, 0).astype(np.int32)
    scaled = np.ldexp(factors, exponent[:, None]).astype(np.float32)
    return scaled.ravel(), exponent, np.ascontiguousarray(peak)


def paper_pis(lib: ctypes.CDLL, images: np.ndarray, struct: _Tables, raw: np.ndarray | None,
              out_u8: np.ndarray, threads: int) -> None:
    """Fill ``out_u8`` (and ``raw`` unless None) with the persim-order PIs of ``images``
    (N×H×W×3 uint8, contiguous; factors from :func:`tables_struct`), on up to ``threads``
    threads (ctypes releases the GIL)."""
    n, h, w, _ = images.shape
    n_rows, n_cols = out_u8.shape[2:]
    counter = ctypes.c_int64(0)
    status = []
    args = (_pointer(images, np.uint8), n, h, w, ctypes.byref(struct), n_rows, n_cols,
            None if raw is None else _pointer(raw, np.float64), _pointer(out_u8, np.uint8),
            ctypes.byref(counter))

    def work():
        status.append(lib.paper_pis(*args))

    helpers = [threading.Thread(target=work, daemon=True)
               for _ in range(min(threads, -(-n // CHUNK)) - 1)]
    for thread in helpers:
        thread.start()
    work()
    for thread in helpers:
        thread.join()
    if any(status):
        raise TGDError("paper-mode C kernel: out of memory for its scratch")
