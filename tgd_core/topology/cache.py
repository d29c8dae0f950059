"""Dataset PI cache: compute the uint8 PIs of a dataset split once, store them, reuse them.

Layout: ``<cache dir>/pi/<dataset>-<split>-<key>/`` where the key hashes the representation's
parameters, the images' content and the engine's cache version. Work is written in parts
(``part-<start>-<stop>.npy``, each with :func:`~tgd_core.core.fileio.atomic_write`, fault point
``pi-cache-part``), so a killed run loses at most the part in progress and resumes where it
stopped (the temporary files of killed writers are removed when the entry is opened again);
``shard=(i, n)`` computes only the i-th of n equal row ranges, for a cluster scheduler.
:meth:`PICache.load` reads the parts into one array once every part exists.

Paper-mode entries are computed with the fastest summation at hand (:func:`paper_summation`,
recorded in ``meta.json``): persim's own (bit for bit) on the C kernel, which is the fastest
path; ``"grouped"`` where only numba runs, faster there than numba's persim order and with the
same uint8 PIs on all 61,000 CIFAR-10 images (train, test and test_lossless_1k, default
parameters; ``benchmarks/check_grouped_uint8.py`` counts 0 differing pixels). Elsewhere the
grouped float64 PIs agree within 1e-13 of each PI's maximum, so a uint8 pixel could differ by
one only where PI / max × 255 falls within that of an integer.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tgd_core.core import paths
from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import atomic_write, remove_stale_temps
from tgd_core.core.memory import fault_in
from tgd_core.data.images import content_hash
from tgd_core.topology import _ckernel
from tgd_core.topology.paper import PaperPIConfig, paper_persistence_images
from tgd_core.topology.pi_file import aligned_empty, save_npy
from tgd_core.topology.representation import (
    Representation,
    compute_pis,
    n_maps,
    representation_from_dict,
    representation_key,
)

CACHE_VERSION = 2  # 2: paper-mode PIs bit-identical to persim (1: within 1e-15)
#: Rows per part file. 5,120 paper-mode uint8 PIs (6×50×50) are a whole number of 4 KiB blocks,
#: so parts computed into a block-aligned array are written around the page cache
#: (tgd_core/topology/pi_file.py); entries written with 5,000-row parts stay valid.
PART_ROWS = 5120
_PART = re.compile(r"part-(\d+)-(\d+)\.npy$")


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (0-based i) → (i, n); None → (0, 1)."""
    if text is None:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 0 <= int(m[1]) < int(m[2]):
        raise TGDError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
    return int(m[1]), int(m[2])


def paper_summation() -> str:
    """How paper-mode cache entries are summed (see the module doc): ``"persim"`` on the C
    kernel, ``"grouped"`` on numba."""
    return "persim" if _ckernel.load() is not None else "grouped"


def _uint8_pis(images: np.ndarray, rep: Representation, out: np.ndarray | None = None
               ) -> np.ndarray:
    """The uint8 PIs a cache entry stores (paper mode with :func:`paper_summation`), into
    ``out`` (C-contiguous) when given."""
    if isinstance(rep, PaperPIConfig):
        return paper_persistence_images(images, rep, raw=False, summation=paper_summation(),
                                        out=None if out is None else (None, out))[1]
    u8 = compute_pis(images, rep, raw=False)[1]
    if out is not None:
        out[...] = u8
    return u8


def _compute_part(args, out: np.ndarray | None = None) -> tuple[int, int]:
    """PIs of rows [start, stop) written to their part file (in a subprocess when pooled;
    into ``out`` as well when given)."""
    _write_part(args, _part_pis(args, out))
    return args[2], args[3]


def _part_pis(args, out: np.ndarray | None = None) -> np.ndarray:
    images, rep_dict, _, _, _, threads = args
    if threads:
        import numba

        numba.set_num_threads(threads)
    return _uint8_pis(images, representation_from_dict(rep_dict), out)


def _write_part(args, u8: np.ndarray) -> None:
    atomic_write(args[4], lambda f: save_npy(f, u8), fault="pi-cache-part")


@dataclass
class PICache:
    """The cache entry of one (dataset, split, representation, images)."""

    root: Path
    n: int
    shape: tuple[int, int, int]

    @classmethod
    def for_images(cls, images: np.ndarray, rep: Representation, dataset: str, split: str,
                   cache_dir: str | Path | None = None) -> PICache:
        images_hash = content_hash(images)
        key = hashlib.sha256(
            f"{representation_key(rep)}|{images_hash}|{len(images)}|v{CACHE_VERSION}"
            .encode()).hexdigest()[:16]
        base = Path(cache_dir) if cache_dir else paths.cache_dir()
        root = base / "pi" / f"{dataset}-{split}-{key}"
        probe = _uint8_pis(images[:1], rep)
        entry = cls(root, len(images), tuple(probe.shape[1:]))
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(root)  # parts and meta of writers killed mid-write
        meta = root / "meta.json"
        if not meta.exists():
            atomic_write(meta, json.dumps({
                "dataset": dataset, "split": split, "n": len(images),
                "representation": rep.to_dict(), "maps": n_maps(rep), "shape": list(entry.shape),
                "images_sha256_tree": images_hash, "cache_version": CACHE_VERSION,
                **({"summation": paper_summation()} if isinstance(rep, PaperPIConfig) else {}),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }, indent=2), fault="pi-cache-meta")
        return entry

    def parts(self) -> list[tuple[int, int, Path]]:
        found = []
        for p in self.root.glob("part-*.npy"):
            m = _PART.search(p.name)
            if m:
                found.append((int(m[1]), int(m[2]), p))
        return sorted(found)

    def missing(self, shard: tuple[int, int] = (0, 1)) -> list[tuple[int, int]]:
        """Row ranges of this shard that no part covers yet, in pieces of at most PART_ROWS."""
        i, n = shard
        lo, hi = i * self.n // n, (i + 1) * self.n // n
        gaps, pos = [], lo
        for a, b, _ in self.parts():
            if a > pos and pos < hi:
                gaps.append((pos, min(a, hi)))
            pos = max(pos, b)
        if pos < hi:
            gaps.append((pos, hi))
        return [(start, min(start + PART_ROWS, b)) for a, b in gaps
                for start in range(a, b, PART_ROWS)]

    def complete(self) -> bool:
        return not self.missing()

    def fill(self, images: np.ndarray, rep: Representation, *, shard=(0, 1), workers: int = 1,
             progress=None, out: np.ndarray | None = None,
             parts: list[tuple[int, int]] | None = None) -> int:
        """Compute the missing parts of ``shard`` (or exactly ``parts``, (start, stop) pairs);
        returns the number of images computed. ``progress(n_done)`` is called after each part
        (e.g. a tqdm ``update``). ``out``: the entry's N×K×rows×cols uint8 array
        (C-contiguous), which receives every part computed here (computed straight into it in
        this process; read back from a pooled worker's file), so that :func:`cached_pis`
        reads back only the parts it did not compute — the parts it names, so that one another
        process writes meanwhile is neither skipped as computed nor left out of ``out``."""
        todo = self.missing(shard) if parts is None else parts
        if not todo:
            return 0
        jobs = [(images[a:b], rep.to_dict(), a, b, str(self._part_path(a, b)),
                 1 if workers > 1 else 0) for a, b in todo]
        done = 0
        if workers > 1:
            import multiprocessing as mp

            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                for a, b in pool.map(_compute_part, jobs):
                    if out is not None:
                        self._read_part(a, b, self._part_path(a, b), out)
                    done += b - a
                    if progress:
                        progress(b - a)
        else:  # each part written by a helper thread while the next one is computed
            with ThreadPoolExecutor(1) as writer:
                writing = None
                for job in jobs:
                    u8 = _part_pis(job, None if out is None else out[job[2]:job[3]])
                    done += self._written(writing, progress)
                    writing = writer.submit(_write_part, job, u8), job[3] - job[2]
                done += self._written(writing, progress)
        return done

    @staticmethod
    def _written(writing, progress) -> int:
        """Waits for a part's write (future, rows) to finish (raising its error); its rows."""
        if writing is None:
            return 0
        future, rows = writing
        future.result()
        if progress:
            progress(rows)
        return rows

    def load(self, out: np.ndarray | None = None, skip=()) -> np.ndarray:
        """The N×K×rows×cols uint8 PIs, read from the part files into one array (``out``, if
        given, where the row ranges in ``skip`` are already filled)."""
        if not self.complete():
            missing = self.missing()
            raise TGDError(f"PI cache {self.root} is incomplete: {len(missing)} part(s) missing, "
                           "run `tgd pi --dataset ...` (all shards) first")
        arr = np.empty((self.n, *self.shape), np.uint8) if out is None else out
        for a, b, p in self.parts():
            if (a, b) not in skip:
                self._read_part(a, b, p, arr)
        return arr

    def _part_path(self, start: int, stop: int) -> Path:
        return self.root / f"part-{start:07d}-{stop:07d}.npy"

    def _read_part(self, start: int, stop: int, path: Path, arr: np.ndarray) -> None:
        """Part file ``path`` (rows [start, stop)) into ``arr[start:stop]``, checked."""
        try:
            part = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as exc:  # EOFError: a zero-byte file
            raise TGDError(f"PI cache part {path} is unreadable ({exc}): delete it to "
                           "recompute") from None
        if part.shape != (stop - start, *self.shape):
            raise TGDError(f"PI cache part {path} holds {part.shape}, expected "
                           f"{(stop - start, *self.shape)}: delete it to recompute")
        arr[start:stop] = part


def cached_pis(images: np.ndarray, rep: Representation, dataset: str, split: str, *,
               cache_dir=None, workers: int = 1, progress=None) -> np.ndarray:
    """The uint8 PIs of ``images``, from the cache or computed (and cached) now."""
    entry = PICache.for_images(images, rep, dataset, split, cache_dir)
    # faulted in whole before the first part is computed into it (core/memory.py): the
    # kernel's threads faulting it part by part while the previous part is written from it
    # made the 60,000-image fill 1.2 s slower
    pis = fault_in(aligned_empty((entry.n, *entry.shape), np.uint8))
    computed = entry.missing()
    entry.fill(images, rep, workers=workers, progress=progress, out=pis, parts=computed)
    return entry.load(out=pis, skip=set(computed))
