"""Stream persistence images into one ``.npz`` file, chunk by chunk, in bounded memory.

The file is an ordinary npz (``np.load(path)`` reads it) with the entries ``pi_raw`` (unless
``raw_dtype`` is None), ``pi_uint8``, ``names`` and ``config``. All sizes of the PI entries are
known up front, so :class:`PIFileWriter` lays both out at once (:class:`_StoredZip`, the
layout zipfile writes) and writes each chunk straight to its place in both, computing the
entries' CRC-32s while an I/O thread writes the chunk: 20,000 float64 PIs (2.7 GB) end to end
in 2.3–2.6 s where zipfile's one-entry-after-the-other writing, with the uint8 PIs parked in a
temporary file and copied in at the end, took 3.5–3.7 s. That older path remains for
compressed output and for file objects without a descriptor. After each chunk the output's
written bytes are handed to the disk (:func:`start_writeback`), so that writing the file
overlaps computing the next chunks instead of all waiting for the final fsync.

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
import io
import json
import os
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np

try:  # ISA-L's CRC-32 (requirements.txt): the same values, 3-4x zlib's speed
    from isal.isal_zlib import crc32
except ImportError:  # an install without it
    from zlib import crc32

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
        done = 0
        if self.direct and len(view) >= DIRECT_BLOCK:
            self.f.flush()
            position = self.f.tell()
            done = self._write_direct(view, position)
            self.f.seek(position + done)
        if done < len(view):
            self.f.write(view[done:])
        return len(view)

    def pwrite(self, data, position: int) -> None:
        """Write all of ``data`` at byte ``position`` of the file (``f``'s own position and
        buffer untouched: flush it first where it holds writes), its whole blocks around the
        page cache where aligned as :meth:`write` does."""
        view = memoryview(data).cast("B")
        done = self._write_direct(view, position) if self.direct else 0
        while done < len(view):
            done += os.pwrite(self.f.fileno(), view[done:], position + done)

    def _write_direct(self, view: memoryview, position: int) -> int:
        """Write the whole blocks at the start of ``view`` at byte ``position`` around the page
        cache, if the position and the memory are aligned; returns how many bytes were
        written."""
        import fcntl

        if len(view) < DIRECT_BLOCK or position % DIRECT_BLOCK or _address(view) % DIRECT_BLOCK:
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


def _npy_header(dtype, shape: tuple, position: int = 0) -> bytes:
    """The ``.npy`` (1.0) header of a C-order ``dtype`` array of ``shape``, padded with spaces
    so that the array's bytes start on a :data:`DIRECT_BLOCK` boundary of the file when the
    header starts at byte ``position``."""
    fields = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
              "fortran_order": False, "shape": tuple(shape)}
    text = "{" + "".join(f"{key!r}: {value!r}, " for key, value in fields.items()) + "}"
    prefix = len(np.lib.format.MAGIC_PREFIX) + 2 + 2  # magic, version, header length
    pad = -(position + prefix + len(text) + 1) % DIRECT_BLOCK
    header = (text + " " * pad + "\n").encode("latin1")
    return np.lib.format.magic(1, 0) + len(header).to_bytes(2, "little") + header


def _write_npy_header(f: IO[bytes], dtype, shape: tuple, position: int = 0) -> IO[bytes]:
    """Write :func:`_npy_header` to ``f`` (the caller then writes the array's bytes);
    returns ``f``."""
    f.write(_npy_header(dtype, shape, position))
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


class _StoredZip:
    """A zip archive of stored (uncompressed) ZIP64 entries laid out up front, as zipfile would
    write them (PKWARE APPNOTE.TXT 6.3: local header, data; central directory, ZIP64 end
    records), but with each large entry's place known before its bytes arrive: the local
    header and ``.npy`` header are written first (the CRC-32 patched in at :meth:`close`),
    the data at known offsets, with ``pwrite`` (:class:`DirectFile`: whole aligned blocks
    around the page cache). Small entries are appended at :meth:`close`."""

    _LOCAL = struct.Struct("<IHHHHHIIIHH")      # local file header, then name and extra
    _CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # central directory header
    _VERSION = 45  # ZIP64
    _DATE = 0x21  # 1980-01-01 00:00, as zipfile dates entries opened for writing

    def __init__(self, out: DirectFile):
        self.out = out
        out.flush()
        self.end = out.tell()  # where the archive starts (offsets in it are the file's)
        self.entries = []  # [name, local header offset, size, crc]

    def _local_header(self, name: bytes, size: int, crc: int) -> bytes:
        return (self._LOCAL.pack(0x04034B50, self._VERSION, 0, 0, 0, self._DATE, crc,
                                 0xFFFFFFFF, 0xFFFFFFFF, len(name), 20)
                + name + struct.pack("<HHQQ", 1, 16, size, size))

    def reserve(self, name: str, header: bytes, data_size: int) -> tuple[int, int]:
        """Lay out entry ``name`` (``header``, then ``data_size`` bytes the caller writes with
        :meth:`write_at`) at the end; returns (its index, the file offset of its data)."""
        encoded = name.encode()
        size = len(header) + data_size
        local = self._local_header(encoded, size, 0)
        self.out.pwrite(local + header, self.end)
        self.entries.append([encoded, self.end, size, crc32(header)])
        data = self.end + len(local) + len(header)
        self.end = data + data_size
        return len(self.entries) - 1, data

    def crc(self, index: int, data) -> None:
        """Add the next bytes of entry ``index``'s data, in order, to its CRC-32."""
        self.entries[index][3] = crc32(data, self.entries[index][3])

    def append(self, name: str, payload: bytes) -> None:
        """A whole small entry at the end."""
        index, data = self.reserve(name, b"", len(payload))
        self.crc(index, payload)
        self.out.pwrite(payload, data)

    def header_size(self, name: str) -> int:
        """Bytes of the local header of entry ``name`` (where its ``.npy`` header starts)."""
        return self._LOCAL.size + len(name.encode()) + 20

    def close(self) -> None:
        """Patch the CRC-32s in and write the central directory and the end records."""
        central = b""
        for name, offset, size, crc in self.entries:
            self.out.pwrite(struct.pack("<I", crc), offset + 14)
            central += (self._CENTRAL.pack(0x02014B50, self._VERSION, self._VERSION, 0, 0, 0,
                                           self._DATE, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name),
                                           28, 0, 0, 0, 0, 0xFFFFFFFF)
                        + name + struct.pack("<HHQQQ", 1, 24, size, size, offset))
        n, start = len(self.entries), self.end
        end64 = start + len(central)
        records = (struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, self._VERSION, self._VERSION, 0,
                               0, n, n, len(central), start)
                   + struct.pack("<IIQI", 0x07064B50, 0, end64, 1)
                   + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF),
                                 min(n, 0xFFFF), min(len(central), 0xFFFFFFFF), 0xFFFFFFFF, 0))
        self.out.pwrite(central + records, start)
        self.end = end64 + len(records)
        self.out.seek(self.end)


class PIFileWriter:
    """Writes ``n`` images' PIs (each ``pi_shape``) into the open binary file ``f`` as an npz.

    Use as a context manager: :meth:`add` each chunk's ``(pi_raw, pi_uint8)`` in image order,
    then :meth:`finish` with the names and config. Uncompressed into a file with a descriptor
    (the usual case) both PI entries are laid out at once (:class:`_StoredZip`) and each chunk
    is written straight to its place in both, its CRC-32s computed while an I/O thread writes
    it. Otherwise (``compress``, or a file object without a descriptor) zipfile writes the
    entries one after the other and, with raw PIs, the uint8 PIs are parked in the temporary
    ``.npy`` file ``park_path`` (put it beside the output, on the same disk; always removed)
    and copied into their entry at the end.
    """

    def __init__(self, f: IO[bytes], n: int, pi_shape: tuple, *, raw_dtype=np.float64,
                 compress: bool = False, park_path: str | Path | None = None):
        self.shape = (n, *pi_shape)
        self.raw_dtype = raw_dtype
        self.written = 0
        self.zip = self.zf = self.io = None
        self.converted = {}  # entry index -> buffer (_in_entry_dtype)
        self.park_path = self.raw_entry = self.parked = self.u8_entry = None
        if not compress and _positional(f):
            self.zip = _StoredZip(DirectFile(f))
            if raw_dtype is not None:
                self.raw_entry = self._reserve("pi_raw", raw_dtype)
            self.u8_entry = self._reserve("pi_uint8", np.uint8)
            self.io = ThreadPoolExecutor(1, thread_name_prefix="pi-file-io")
            return
        method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self.zf = zipfile.ZipFile(f if compress else DirectFile(f), "w", method,
                                  allowZip64=True)
        if raw_dtype is not None and park_path is None:
            raise ValueError("park_path is needed to write both pi_raw and pi_uint8")
        self.park_path = Path(park_path) if raw_dtype is not None else None
        if raw_dtype is None:
            self.u8_entry = _open_array_entry(self.zf, "pi_uint8", np.uint8, self.shape)
        else:
            self.raw_entry = _open_array_entry(self.zf, "pi_raw", raw_dtype, self.shape)
            park = _write_npy_header(open(self.park_path, "wb"), np.uint8, self.shape)
            self.parked, self.parked_data = DirectFile(park), park.tell()

    def _reserve(self, key: str, dtype) -> tuple[int, int, int, object]:
        """Lay out entry ``<key>.npy`` in the stored zip: (its index, the file offset of its
        array's bytes, bytes per image, dtype)."""
        name = f"{key}.npy"
        header = _npy_header(dtype, self.shape, self.zip.end + self.zip.header_size(name))
        per_image = int(np.prod(self.shape[1:])) * np.dtype(dtype).itemsize
        index, data = self.zip.reserve(name, header, per_image * self.shape[0])
        return index, data, per_image, dtype

    def __enter__(self) -> PIFileWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, pi_raw: np.ndarray | None, pi_uint8: np.ndarray) -> None:
        """Append the next chunk of PIs (``pi_raw`` is ignored without raw output); the chunk's
        arrays may be reused once this returns."""
        end = self.written + len(pi_uint8)
        if end > self.shape[0] or pi_uint8.shape[1:] != self.shape[1:]:
            raise ValueError(f"chunk {pi_uint8.shape} does not fit PIs {self.shape} "
                             f"after {self.written}")
        if self.zip is not None:
            self._add_stored(pi_raw, pi_uint8)
        elif self.raw_entry is not None:
            _write_bytes(self.raw_entry, pi_raw, self.raw_dtype)
            _write_bytes(self.parked, pi_uint8, np.uint8)
        else:
            _write_bytes(self.u8_entry, pi_uint8, np.uint8)
        self.written = end
        start_writeback(self.zip.out.f if self.zip is not None else self.zf.fp)

    def _add_stored(self, pi_raw, pi_uint8) -> None:
        """The chunk's bytes to their places in the PI entries (I/O thread) while their
        CRC-32s are computed here; returns once they are written."""
        parts = [(entry, memoryview(self._in_entry_dtype(entry, chunk)).cast("B"))
                 for entry, chunk in ((self.raw_entry, pi_raw), (self.u8_entry, pi_uint8))
                 if entry is not None]
        writes = [(view, data + self.written * per_image)
                  for (_, data, per_image, _), view in parts]
        pending = self.io.submit(lambda: [self.zip.out.pwrite(*w) for w in writes])
        try:
            for (index, *_), view in parts:
                self.zip.crc(index, view)
        finally:
            pending.result()

    def _in_entry_dtype(self, entry, chunk: np.ndarray) -> np.ndarray:
        """``chunk`` as entry's dtype, C-contiguous: itself where it is, else converted into a
        block-aligned buffer kept for the next chunks (so that it still goes around the page
        cache: ``--raw float32``)."""
        dtype = entry[3]
        if chunk.dtype == dtype and chunk.flags.c_contiguous:
            return chunk
        buffer = self.converted.get(entry[0])
        if buffer is None or buffer.size < chunk.size:
            buffer = self.converted[entry[0]] = aligned_empty((chunk.size,), dtype)
        out = buffer[:chunk.size].reshape(chunk.shape)
        np.copyto(out, chunk)
        return out

    def finish(self, names, config: dict) -> None:
        """Close the PI entries (copying the parked uint8 PIs in) and write names and config."""
        if self.written != self.shape[0]:
            raise ValueError(f"{self.written} of {self.shape[0]} images written")
        if self.zip is not None:
            self.zip.append("names.npy", _npy_bytes(np.asarray(names)))
            self.zip.append("config.npy", _npy_bytes(np.asarray(json.dumps(config))))
            self.zip.close()
            return
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
        for key, array in (("names", np.asarray(names)),
                           ("config", np.asarray(json.dumps(config)))):
            with self.zf.open(f"{key}.npy", "w", force_zip64=True) as entry:
                entry.write(_npy_bytes(array))
        self.zf.close()

    def close(self) -> None:
        """Release the I/O thread and the temporary uint8 file, and on an abort (:meth:`finish`
        not reached) the half-written zip: the caller discards the file it was writing into."""
        if self.io is not None:
            self.io.shutdown()
        if self.parked is not None:
            self.parked.close()
        if self.park_path is not None:
            self.park_path.unlink(missing_ok=True)
        if self.zf is None or self.zf.fp is None:
            return
        try:
            for entry in (self.raw_entry, self.u8_entry):
                if entry is not None and not entry.closed:
                    entry.close()
            self.zf.close()
        except (OSError, ValueError):
            self.zf.fp = None  # abandoned (disk full, …): nothing more to flush


def _positional(f: IO[bytes]) -> bool:
    """Whether ``f`` can be written at offsets (``os.pwrite`` on its descriptor)."""
    try:
        return hasattr(os, "pwrite") and f.seekable() and f.fileno() >= 0
    except (OSError, ValueError):
        return False


def _npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()
