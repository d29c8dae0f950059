"""Stream persistence images into one ``.npz`` file, chunk by chunk, in bounded memory.

The file is an ordinary npz (``np.load(path)`` reads it) with the entries ``pi_raw`` (unless
``raw_dtype`` is None), ``pi_uint8``, ``names`` and ``config``. Zip entries are written one after
the other, so :class:`PIFileWriter` writes the raw PIs straight into their entry as each chunk
arrives and parks the uint8 PIs in a temporary ``.npy`` file beside the output (file writes,
not a memory map, so they do not count against the process's memory), copied into their entry
at the end: that copy is 8× smaller than copying float64 PIs would be. Without raw PIs, the
uint8 PIs go straight into their entry and no temporary file is made. After each chunk the
output's written bytes are handed to the disk (:func:`start_writeback`), so that writing the
file overlaps computing the next chunks instead of all waiting for the final fsync.

The PI entries' data start on a :data:`DIRECT_BLOCK` boundary of the file (their ``.npy``
headers are padded to it), so where a chunk's memory is block-aligned too
(:func:`aligned_empty`) :class:`DirectFile` writes it around the page cache (Linux
``O_DIRECT``), and so are the parked uint8 PIs, written and read back (:func:`read_direct`):
copying gigabytes into the page cache and writing them back cost the writing process more CPU
than the PIs themselves (3 GB: 1.5–2.4 s of CPU buffered, 0.1 s direct, at the same disk speed;
``tgd pi`` on 20,000 images: 3.7 s of system CPU before, 0.2–0.8 s after;
``benchmarks/bench_cli.py`` has the end-to-end figures).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

#: ``--raw`` choices: the dtype of ``pi_raw``, or None for no ``pi_raw``.
RAW_DTYPES = {"float64": np.float64, "float32": np.float32, "none": None}

#: Alignment (bytes) of the file offsets, lengths and memory of writes around the page cache.
DIRECT_BLOCK = 4096
_COPY_BLOCK = 256 * DIRECT_BLOCK  # bytes per read when copying the parked uint8 PIs into the zip


def aligned_empty(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a :data:`DIRECT_BLOCK`
    boundary, so that :class:`DirectFile` can hand it to the disk as it is."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    block = np.empty(nbytes + DIRECT_BLOCK, np.uint8)
    start = -block.ctypes.data % DIRECT_BLOCK
    return block[start:start + nbytes].view(dtype).reshape(shape)


def _address(view: memoryview) -> int:
    return np.frombuffer(view, np.uint8).ctypes.data if len(view) else 0


class DirectFile:
    """The binary file ``f`` (open, seekable, with a descriptor) as zipfile writes to it, its
    large writes that start on a :data:`DIRECT_BLOCK` boundary of the file and of memory sent
    to the disk directly (``O_DIRECT`` set on the descriptor for those writes only, whole
    blocks; the tail goes through ``f``). Every other write, and every write where the file
    system or platform refuses ``O_DIRECT``, goes through ``f`` unchanged."""

    def __init__(self, f: IO[bytes]):
        self.f = f
        try:
            f.fileno()
            self.direct = hasattr(os, "O_DIRECT") and f.seekable()
        except (OSError, ValueError):
            self.direct = False

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = self._write_direct(view) if self.direct and len(view) >= DIRECT_BLOCK else 0
        if done < len(view):
            self.f.write(view[done:])
        return len(view)

    def _write_direct(self, view: memoryview) -> int:
        """Write the whole blocks at the start of ``view`` around the page cache, if its file
        position and memory are aligned; returns how many bytes were written."""
        import fcntl

        self.f.flush()
        position = self.f.tell()
        if position % DIRECT_BLOCK or _address(view) % DIRECT_BLOCK:
            return 0
        size = len(view) // DIRECT_BLOCK * DIRECT_BLOCK
        fd = self.f.fileno()
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        done = 0
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
            while done < size:
                n = os.pwrite(fd, view[done:size], position + done)
                done += n
                if n <= 0 or n % DIRECT_BLOCK:
                    break
        except OSError as exc:
            if exc.errno != errno.EINVAL or done:
                raise
            self.direct = False  # this file system does not take O_DIRECT: write through f
        finally:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        self.f.seek(position + done)
        return done

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, *args) -> int:
        return self.f.seek(*args)

    def seekable(self) -> bool:
        return self.f.seekable()

    def flush(self) -> None:
        self.f.flush()

    def fileno(self) -> int:
        return self.f.fileno()

    def close(self) -> None:
        self.f.close()


def read_direct(f: IO[bytes], position: int, buffer: np.ndarray) -> int:
    """Read into ``buffer`` (uint8, block-aligned, a whole number of blocks) from byte
    ``position`` (a block boundary) of ``f`` around the page cache where the file system takes
    ``O_DIRECT``, through ``f`` otherwise; returns the bytes read (short at the end of the
    file)."""
    if hasattr(os, "O_DIRECT"):  # Linux (and where fcntl is; not macOS or Windows)
        import fcntl

        fd = f.fileno()
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
            return os.preadv(fd, [buffer], position)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
        finally:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    f.seek(position)
    return f.readinto(buffer)


def _write_npy_header(f: IO[bytes], dtype, shape: tuple, position: int = 0) -> IO[bytes]:
    """Write the ``.npy`` (1.0) header of a C-order ``dtype`` array of ``shape`` to ``f``
    (the caller then writes the array's bytes), padded with spaces so that the data starts on a
    :data:`DIRECT_BLOCK` boundary of the file when the header starts at byte ``position``;
    returns ``f``."""
    fields = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
              "fortran_order": False, "shape": tuple(shape)}
    text = "{" + "".join(f"{key!r}: {value!r}, " for key, value in fields.items()) + "}"
    prefix = len(np.lib.format.MAGIC_PREFIX) + 2 + 2  # magic, version, header length
    pad = -(position + prefix + len(text) + 1) % DIRECT_BLOCK
    header = (text + " " * pad + "\n").encode("latin1")
    f.write(np.lib.format.magic(1, 0) + len(header).to_bytes(2, "little") + header)
    return f


def save_npy(f: IO[bytes], array: np.ndarray) -> None:
    """``np.save(f, array)`` (any array ``np.load`` reads back the same) with the header padded
    so that the data starts on a block boundary of the file, and the data written around the
    page cache where its memory is block-aligned too and the file system allows
    (:class:`DirectFile`)."""
    array = np.ascontiguousarray(array)
    _write_npy_header(f, array.dtype, array.shape, f.tell())
    if array.size:
        DirectFile(f).write(memoryview(array).cast("B"))


def _open_array_entry(zf: zipfile.ZipFile, key: str, dtype, shape: tuple) -> IO[bytes]:
    """Open the zip entry ``<key>.npy`` for writing, its ``.npy`` header written (padded so
    that the array's bytes start on a block boundary of the file)."""
    entry = zf.open(f"{key}.npy", "w", force_zip64=True)
    return _write_npy_header(entry, dtype, shape, zf.fp.tell())


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
        self.zf = zipfile.ZipFile(f if compress else DirectFile(f), "w", method,
                                  allowZip64=True)
        if raw_dtype is not None and park_path is None:
            raise ValueError("park_path is needed to write both pi_raw and pi_uint8")
        self.park_path = Path(park_path) if raw_dtype is not None else None
        self.raw_entry = self.parked = self.u8_entry = None
        if raw_dtype is None:
            self.u8_entry = _open_array_entry(self.zf, "pi_uint8", np.uint8, self.shape)
        else:
            self.raw_entry = _open_array_entry(self.zf, "pi_raw", raw_dtype, self.shape)
            park = _write_npy_header(open(self.park_path, "wb"), np.uint8, self.shape)
            self.parked, self.parked_data = DirectFile(park), park.tell()

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
            with open(self.park_path, "rb") as src, _open_array_entry(
                    self.zf, "pi_uint8", np.uint8, self.shape) as dst:
                block, position = aligned_empty((_COPY_BLOCK,), np.uint8), self.parked_data
                while n := read_direct(src, position, block):
                    dst.write(block[:n])
                    position += n
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
