"""tgd_core/topology/pi_file.py: the streamed npz, and its writeback after each chunk."""

from __future__ import annotations

import errno
import io
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
