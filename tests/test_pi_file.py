"""tgd_core/topology/pi_file.py: the streamed npz, and its writeback after each chunk."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os

import numpy as np
import pytest

from tgd_core.topology import pi_file
from tgd_core.topology.pi_file import PIFileWriter, start_writeback


def _chunks(n: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    raw = rng.random((n, 2, 3, 4))
    u8 = rng.integers(0, 256, (n, 2, 3, 4), dtype=np.uint8)
    return raw, u8, [(raw[i:i + size], u8[i:i + size]) for i in range(0, n, size)]


@pytest.mark.parametrize("raw_dtype", [np.float64, np.float32, None])
def test_written_file_loads_as_the_chunks_and_each_chunk_is_handed_to_the_disk(
        tmp_path, monkeypatch, raw_dtype):
    calls = []
    monkeypatch.setattr(os, "posix_fadvise",
                        lambda fd, offset, length, advice: calls.append((fd, offset, length,
                                                                         advice)))
    raw, u8, chunks = _chunks(7, 3)
    with open(tmp_path / "o.npz", "wb") as f, PIFileWriter(
            f, 7, (2, 3, 4), raw_dtype=raw_dtype, park_path=tmp_path / "park") as writer:
        for chunk_raw, chunk_u8 in chunks:
            writer.add(chunk_raw, chunk_u8)
        fd = f.fileno()
        writer.finish([str(i) for i in range(7)], {"mode": "paper"})
    assert calls == [(fd, 0, 0, os.POSIX_FADV_DONTNEED)] * len(chunks)
    with np.load(tmp_path / "o.npz") as npz:
        assert np.array_equal(npz["pi_uint8"], u8)
        if raw_dtype is None:
            assert "pi_raw" not in npz.files
        else:
            assert npz["pi_raw"].dtype == raw_dtype
            assert np.array_equal(npz["pi_raw"], raw.astype(raw_dtype))
    assert not (tmp_path / "park").exists()


def test_a_laid_out_archive_after_other_bytes_reads_back(tmp_path):
    """Written into a file that already holds bytes, the archive starts where the file was."""
    raw, u8, chunks = _chunks(5, 2, seed=6)
    with open(tmp_path / "o.npz", "wb") as f:
        f.write(b"preamble")
        with PIFileWriter(f, 5, (2, 3, 4), park_path=tmp_path / "park") as writer:
            for chunk_raw, chunk_u8 in chunks:
                writer.add(chunk_raw, chunk_u8)
            writer.finish([str(i) for i in range(5)], {})
    import zipfile

    assert (tmp_path / "o.npz").read_bytes()[:8] == b"preamble"
    with zipfile.ZipFile(tmp_path / "o.npz") as zf:  # np.load wants the zip at byte 0
        assert zf.testzip() is None
        for key, expected in (("pi_raw", raw), ("pi_uint8", u8)):
            with zf.open(f"{key}.npy") as entry:
                assert np.array_equal(np.lib.format.read_array(entry), expected)


def test_a_file_without_descriptor_is_written_all_the_same():
    buffer = io.BytesIO()
    raw, u8, chunks = _chunks(5, 2)
    with PIFileWriter(buffer, 5, (2, 3, 4), raw_dtype=None) as writer:
        for chunk_raw, chunk_u8 in chunks:
            writer.add(chunk_raw, chunk_u8)
        writer.finish([str(i) for i in range(5)], {})
    buffer.seek(0)
    with np.load(buffer) as npz:
        assert np.array_equal(npz["pi_uint8"], u8)


def test_writeback_without_posix_fadvise_only_flushes(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "posix_fadvise")
    with open(tmp_path / "f", "wb") as f:
        f.write(b"abc")
        start_writeback(f)
        assert (tmp_path / "f").read_bytes() == b"abc"


def test_writeback_passes_on_a_failing_flush(monkeypatch):
    class FullDisk(io.BytesIO):
        def flush(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError, match="No space left"):
        start_writeback(FullDisk())


def test_writeback_ignores_an_unsupported_advice(tmp_path, monkeypatch):
    def refuse(*args):
        raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))

    monkeypatch.setattr(pi_file.os, "posix_fadvise", refuse)
    with open(tmp_path / "f", "wb") as f:
        f.write(b"abc")
        start_writeback(f)
    assert (tmp_path / "f").read_bytes() == b"abc"


def _npy_data_offsets(path) -> dict[str, int]:
    """File offset where each entry's array bytes start (after its local and .npy headers)."""
    import struct
    import zipfile

    offsets = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            f.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack("<HH", f.read(4))
            start = info.header_offset + 30 + name_len + extra_len
            f.seek(start)
            np.lib.format.read_magic(f)
            np.lib.format.read_array_header_1_0(f)
            offsets[info.filename] = f.tell()
    return offsets


@pytest.mark.parametrize("raw_dtype", [np.float64, np.float32, None])
def test_pi_entries_start_on_a_block_and_aligned_chunks_go_around_the_page_cache(
        tmp_path, monkeypatch, raw_dtype):
    """Both PI entries are laid out at once and each chunk goes straight to its place in them:
    whole blocks of block-aligned chunks (aligned_empty) at block offsets with O_DIRECT, the
    rest (headers, a short last chunk, the central directory) written normally, no parked
    file. float32 PIs are converted into an aligned buffer, so they go around it too."""
    import fcntl

    writes = []
    real_pwrite = os.pwrite

    def pwrite(fd, data, offset):
        writes.append((bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT), len(data), offset))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(pi_file.os, "pwrite", pwrite)
    n, block = 9, pi_file.DIRECT_BLOCK  # 2×16×32 PIs: a float64 image is 2 blocks, uint8 1/4
    raw = pi_file.aligned_empty((n, 2, 16, 32), np.float64)
    u8 = pi_file.aligned_empty((n, 2, 16, 32), np.uint8)
    raw[...] = np.random.default_rng(1).random(raw.shape)
    u8[...] = np.random.default_rng(2).integers(0, 256, u8.shape)
    with open(tmp_path / "o.npz", "wb") as f, PIFileWriter(
            f, n, (2, 16, 32), raw_dtype=raw_dtype, park_path=tmp_path / "park") as writer:
        for start in range(0, n, 4):  # chunks of 4, 4, 1 images
            writer.add(raw[start:start + 4], u8[start:start + 4])
        assert not (tmp_path / "park").exists()
        writer.finish([str(i) for i in range(n)], {})
    with np.load(tmp_path / "o.npz") as npz:
        assert np.array_equal(npz["pi_uint8"], u8)
        assert raw_dtype is None or np.array_equal(npz["pi_raw"], raw.astype(raw_dtype))
        assert npz["names"].tolist() == [str(i) for i in range(n)]
    offsets = _npy_data_offsets(tmp_path / "o.npz")
    u = offsets["pi_uint8.npy"]
    assert u % block == 0
    direct = [(size, offset) for is_direct, size, offset in writes if is_direct]
    if raw_dtype is None:  # uint8 chunks of 4 images are one block each, the last a quarter
        assert direct == [(block, u), (block, u + block)]
    else:
        r, per_image = offsets["pi_raw.npy"], np.dtype(raw_dtype).itemsize // 4  # blocks
        assert r % block == 0
        assert direct == [(4 * per_image * block, r), (block, u),
                          (4 * per_image * block, r + 4 * per_image * block), (block, u + block),
                          (per_image * block, r + 8 * per_image * block)]
    assert (False, 1024, u + 2 * block) in writes  # the last uint8 chunk: a quarter block


def test_the_laid_out_zip_reads_as_zipfile_writes_it(tmp_path):
    """zipfile reads the laid-out archive (CRC-32s checked on every entry) and lists the same
    entries, sizes and ZIP64 layout as the zipfile-written one (compress=False through a file
    object without a descriptor takes that path)."""
    import zipfile

    raw, u8, chunks = _chunks(11, 4, seed=4)
    buffer = io.BytesIO()
    for target in (tmp_path / "o.npz", buffer):
        with (open(target, "wb") if isinstance(target, os.PathLike) else contextlib.nullcontext(
                target)) as f, PIFileWriter(f, 11, (2, 3, 4), park_path=tmp_path / "park") as w:
            for chunk_raw, chunk_u8 in chunks:
                w.add(chunk_raw, chunk_u8)
            w.finish(["a", "b"] * 5 + ["c"], {"k": 1})
    buffer.seek(0)
    with zipfile.ZipFile(tmp_path / "o.npz") as ours, zipfile.ZipFile(buffer) as theirs:
        assert ours.testzip() is None
        assert [(i.filename, i.file_size, i.compress_type) for i in ours.infolist()] == [
            (i.filename, i.file_size, i.compress_type) for i in theirs.infolist()]
    with np.load(tmp_path / "o.npz") as npz:
        assert np.array_equal(npz["pi_raw"], raw) and np.array_equal(npz["pi_uint8"], u8)
        assert json.loads(str(npz["config"])) == {"k": 1}


def test_direct_writes_fall_back_to_the_file_where_o_direct_is_refused(tmp_path, monkeypatch):
    def refuse(fd, data, offset):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(pi_file.os, "pwrite", refuse)
    data = pi_file.aligned_empty((3 * pi_file.DIRECT_BLOCK + 5,), np.uint8)
    data[...] = np.arange(len(data)) % 251
    with open(tmp_path / "x", "wb") as f:
        out = pi_file.DirectFile(f)
        assert out.direct
        out.write(data)
        assert not out.direct  # refused once: the rest of the file goes through f
        out.write(data[:10])
    assert (tmp_path / "x").read_bytes() == data.tobytes() + data[:10].tobytes()


def test_unaligned_memory_or_position_is_written_through_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(pi_file.os, "pwrite", lambda *a: pytest.fail("no direct write expected"))
    data = pi_file.aligned_empty((2 * pi_file.DIRECT_BLOCK + 1,), np.uint8)
    data[...] = 7
    with open(tmp_path / "x", "wb") as f:
        out = pi_file.DirectFile(f)
        out.write(data[1:-1])  # memory off the block
        out.write(data)  # file position off the block
    assert (tmp_path / "x").read_bytes() == data[1:-1].tobytes() + data.tobytes()


@pytest.mark.parametrize("refused", [False, True])
def test_read_direct_reads_whole_blocks_and_the_short_end(tmp_path, monkeypatch, refused):
    if refused:
        def refuse(fd, buffers, offset):
            raise OSError(errno.EINVAL, "Invalid argument")

        monkeypatch.setattr(pi_file.os, "preadv", refuse)
    content = np.random.default_rng(3).integers(0, 256, 3 * pi_file.DIRECT_BLOCK + 77,
                                                dtype=np.uint8)
    (tmp_path / "x").write_bytes(content.tobytes())
    block = pi_file.aligned_empty((2 * pi_file.DIRECT_BLOCK,), np.uint8)
    with open(tmp_path / "x", "rb") as f:
        assert pi_file.read_direct(f, pi_file.DIRECT_BLOCK, block) == len(block)
        assert np.array_equal(block, content[pi_file.DIRECT_BLOCK:3 * pi_file.DIRECT_BLOCK])
        assert pi_file.read_direct(f, 3 * pi_file.DIRECT_BLOCK, block) == 77
        assert np.array_equal(block[:77], content[3 * pi_file.DIRECT_BLOCK:])
        assert pi_file.read_direct(f, 4 * pi_file.DIRECT_BLOCK, block) == 0


@pytest.mark.parametrize("shape, dtype", [((0, 6, 5, 5), np.uint8), ((3,), np.float32),
                                          ((2, 4096), np.uint8), ((5, 3, 2), np.int64)])
def test_save_npy_loads_as_np_save_and_aligned_data_goes_around_the_page_cache(
        tmp_path, monkeypatch, shape, dtype):
    direct = []
    real_pwrite = os.pwrite
    monkeypatch.setattr(pi_file.os, "pwrite",
                        lambda fd, data, offset: (direct.append((len(data), offset)),
                                                  real_pwrite(fd, data, offset))[1])
    array = pi_file.aligned_empty(shape, dtype)
    array[...] = np.arange(array.size).reshape(shape) % 100
    with open(tmp_path / "a.npy", "wb") as f:
        pi_file.save_npy(f, array)
    back = np.load(tmp_path / "a.npy")
    assert back.dtype == array.dtype and np.array_equal(back, array)
    whole = array.nbytes // pi_file.DIRECT_BLOCK * pi_file.DIRECT_BLOCK
    assert direct == ([(whole, pi_file.DIRECT_BLOCK)] if whole else [])


def test_a_full_disk_during_a_direct_write_is_raised_and_the_descriptor_restored(tmp_path,
                                                                                   monkeypatch):
    import fcntl

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pi_file.os, "pwrite", full)
    data = pi_file.aligned_empty((2 * pi_file.DIRECT_BLOCK,), np.uint8)
    with open(tmp_path / "x", "wb") as f:
        out = pi_file.DirectFile(f)
        with pytest.raises(OSError) as info:
            out.write(data)
        assert info.value.errno == errno.ENOSPC
        assert not fcntl.fcntl(f.fileno(), fcntl.F_GETFL) & os.O_DIRECT
        assert out.direct  # a full disk is not a refused O_DIRECT


def test_without_o_direct_everything_goes_through_the_file(tmp_path, monkeypatch):
    """Platforms without O_DIRECT (macOS, Windows) write and read the same file normally."""
    import fcntl

    o_direct = getattr(os, "O_DIRECT", 0)
    monkeypatch.delattr(os, "O_DIRECT", raising=False)
    real_pwrite = os.pwrite

    def pwrite(fd, data, offset):
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & o_direct
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(pi_file.os, "pwrite", pwrite)
    n = 6
    raw = pi_file.aligned_empty((n, 2, 16, 32), np.float64)
    u8 = pi_file.aligned_empty((n, 2, 16, 32), np.uint8)
    raw[...], u8[...] = 0.5, 9
    with open(tmp_path / "o.npz", "wb") as f, PIFileWriter(
            f, n, (2, 16, 32), park_path=tmp_path / "park") as writer:
        writer.add(raw[:4], u8[:4])
        writer.add(raw[4:], u8[4:])
        writer.finish([str(i) for i in range(n)], {})
    with np.load(tmp_path / "o.npz") as npz:
        assert np.array_equal(npz["pi_raw"], raw) and np.array_equal(npz["pi_uint8"], u8)
