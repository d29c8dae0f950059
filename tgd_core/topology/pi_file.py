"""Stream persistence images into one ``.npz`` file, chunk by chunk, in bounded memory.

The file is an ordinary npz (``np.load(path)`` reads it) with the entries ``pi_raw`` (unless
``raw_dtype`` is None), ``pi_uint8``, ``names`` and ``config``. Zip entries are written one after
the other, so :class:`PIFileWriter` writes the raw PIs straight into their entry as each chunk
arrives and parks the uint8 PIs in a temporary ``.npy`` file beside the output (plain writes,
not a memory map, so they do not count against the process's memory), copied into their entry
at the end: that copy is 8× smaller than copying float64 PIs would be. Without raw PIs, the
uint8 PIs go straight into their entry and no temporary file is made. After each chunk the
output's written bytes are handed to the disk (:func:`start_writeback`), so that writing the
file overlaps computing the next chunks instead of all waiting for the final fsync.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

#: ``--raw`` choices: the dtype of ``pi_raw``, or None for no ``pi_raw``.
RAW_DTYPES = {"float64": np.float64, "float32": np.float32, "none": None}

_COPY_BLOCK = 1 << 20  # bytes per read when copying the parked uint8 PIs into the zip


def _write_npy_header(f: IO[bytes], dtype, shape: tuple) -> IO[bytes]:
    """Write the ``.npy`` header of a C-order ``dtype`` array of ``shape`` to ``f`` (the
    caller then writes the array's bytes); returns ``f``."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
              "fortran_order": False, "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(f, header)
    return f


def _open_array_entry(zf: zipfile.ZipFile, key: str, dtype, shape: tuple) -> IO[bytes]:
    """Open the zip entry ``<key>.npy`` for writing, its ``.npy`` header written."""
    return _write_npy_header(zf.open(f"{key}.npy", "w", force_zip64=True), dtype, shape)


def _write_bytes(entry: IO[bytes], chunk: np.ndarray, dtype) -> None:
    """Write ``chunk`` as ``dtype`` in C order (no copy when it already is)."""
    entry.write(memoryview(np.ascontiguousarray(chunk, dtype=dtype)).cast("B"))


def start_writeback(f: IO[bytes]) -> None:
    """Flush ``f`` and start writing its dirty pages to the disk now, without waiting for them
    (Linux: ``POSIX_FADV_DONTNEED`` starts asynchronous writeback of the whole file and drops
    its pages that are already clean from the page cache). Otherwise the kernel holds up to its
    dirty-page threshold (gigabytes) unwritten and the caller's final fsync waits for all of it:
    3.5 GB of float64 PIs of 25,600 images took 36 s end to end without, 13–16 s with
    (benchmarks/bench_cli.py). What is written and the final fsync's guarantee are unchanged;
    nothing more happens where the call is unsupported (no ``posix_fadvise``, no file
    descriptor, a pipe). Errors of the flush itself (disk full, …) propagate."""
    f.flush()
    advise = getattr(os, "posix_fadvise", None)
    with contextlib.suppress(OSError):  # io.UnsupportedOperation (no fileno) is an OSError
        if advise is not None:
            advise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


class PIFileWriter:
    """Writes ``n`` images' PIs (each ``pi_shape``) into the open binary file ``f`` as an npz.

    Use as a context manager: :meth:`add` each chunk's ``(pi_raw, pi_uint8)`` in image order,
    then :meth:`finish` with the names and config. ``park_path`` is the temporary uint8 ``.npy``
    (needed with raw PIs; put it beside the output, on the same disk); it is always removed.
    """

    def __init__(self, f: IO[bytes], n: int, pi_shape: tuple, *, raw_dtype=np.float64,
                 compress: bool = False, park_path: str | Path | None = None):
        self.shape = (n, *pi_shape)
        self.raw_dtype = raw_dtype
        self.written = 0
        method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self.zf = zipfile.ZipFile(f, "w", method, allowZip64=True)
        if raw_dtype is not None and park_path is None:
            raise ValueError("park_path is needed to write both pi_raw and pi_uint8")
        self.park_path = Path(park_path) if raw_dtype is not None else None
        self.raw_entry = self.parked = self.u8_entry = None
        if raw_dtype is None:
            self.u8_entry = _open_array_entry(self.zf, "pi_uint8", np.uint8, self.shape)
        else:
            self.raw_entry = _open_array_entry(self.zf, "pi_raw", raw_dtype, self.shape)
            self.parked = _write_npy_header(open(self.park_path, "wb"), np.uint8, self.shape)

    def __enter__(self) -> PIFileWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, pi_raw: np.ndarray | None, pi_uint8: np.ndarray) -> None:
        """Append the next chunk of PIs (``pi_raw`` is ignored without raw output)."""
        end = self.written + len(pi_uint8)
        if end > self.shape[0] or pi_uint8.shape[1:] != self.shape[1:]:
            raise ValueError(f"chunk {pi_uint8.shape} does not fit PIs {self.shape} "
                             f"after {self.written}")
        if self.raw_entry is not None:
            _write_bytes(self.raw_entry, pi_raw, self.raw_dtype)
            _write_bytes(self.parked, pi_uint8, np.uint8)
        else:
            _write_bytes(self.u8_entry, pi_uint8, np.uint8)
        self.written = end
        start_writeback(self.zf.fp)

    def finish(self, names, config: dict) -> None:
        """Close the PI entries (copying the parked uint8 PIs in) and write names and config."""
        if self.written != self.shape[0]:
            raise ValueError(f"{self.written} of {self.shape[0]} images written")
        if self.raw_entry is not None:
            self.raw_entry.close()
            self.parked.close()
            with open(self.park_path, "rb") as src, self.zf.open("pi_uint8.npy", "w",
                                                                 force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, _COPY_BLOCK)
        else:
            self.u8_entry.close()
        self._write_array("names", np.asarray(names))
        self._write_array("config", np.asarray(json.dumps(config)))
        self.zf.close()

    def _write_array(self, key: str, array: np.ndarray) -> None:
        """One small array as the entry ``<key>.npy``."""
        with self.zf.open(f"{key}.npy", "w", force_zip64=True) as entry:
            np.lib.format.write_array(entry, array, allow_pickle=False)

    def close(self) -> None:
        """Release the temporary uint8 file, and on an abort (:meth:`finish` not reached) the
        half-written zip: the caller discards the file it was writing into."""
        if self.parked is not None:
            self.parked.close()
        if self.park_path is not None:
            self.park_path.unlink(missing_ok=True)
        if self.zf.fp is None:
            return
        try:
            for entry in (self.raw_entry, self.u8_entry):
                if entry is not None and not entry.closed:
                    entry.close()
            self.zf.close()
        except (OSError, ValueError):
            self.zf.fp = None  # abandoned (disk full, …): nothing more to flush
