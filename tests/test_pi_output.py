"""``tgd pi --input``: the streamed .npz equals a direct computation, bit for bit, in bounded
memory; float64 raw PIs keep the tiny ones float32 flushes to zero."""

from __future__ import annotations

import errno
import json
import os
import tracemalloc

import numpy as np
import pytest

from tgd_core import cli
from tgd_core.commands import pi as pi_command
from tgd_core.topology import paper_persistence_images
from tgd_core.topology.representation import compute_pis, representation_from_values

DEFAULT_CHUNK = pi_command.CHUNK_IMAGES  # before the small_chunks fixture changes it


@pytest.fixture
def images(tmp_path):
    """7 random 32×32 RGB images in imgs.npy; the command computes them 3 at a time."""
    arr = np.random.default_rng(7).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "imgs.npy", arr)
    return arr


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 3 images, so 7 images make chunks that do not divide N."""
    monkeypatch.setattr("tgd_core.commands.pi.CHUNK_IMAGES", 3)


def run_pi(tmp_path, capsys, *extra: str, input_name: str = "imgs.npy") -> tuple[dict, str]:
    """``tgd pi --input INPUT --out o.npz EXTRA``: (the file's arrays, stderr)."""
    status = cli.main(["pi", "--input", str(tmp_path / input_name),
                       "--out", str(tmp_path / "o.npz"), *extra])
    err = capsys.readouterr().err
    assert status == 0, err
    with np.load(tmp_path / "o.npz") as npz:
        return {key: npz[key] for key in npz.files}, err


def assert_bit_equal(a: np.ndarray, b: np.ndarray) -> None:
    """Same dtype, shape and bytes (NaN-safe, and -0.0 ≠ 0.0)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def test_streamed_file_equals_a_direct_computation(tmp_path, capsys, images):
    out, err = run_pi(tmp_path, capsys)
    raw, u8 = paper_persistence_images(images)
    assert list(out) == ["pi_raw", "pi_uint8", "names", "config"]
    assert_bit_equal(out["pi_raw"], raw)
    assert_bit_equal(out["pi_uint8"], u8)
    assert out["names"].tolist() == [str(i) for i in range(7)]
    assert json.loads(str(out["config"]))["mode"] == "paper"
    assert err.count("\n") == 1 and "pi_raw (7, 6, 50, 50) float64, pi_uint8" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs.npy", "o.npz"]  # no temps


def test_float32_is_the_float64_values_cast(tmp_path, capsys, images):
    out, err = run_pi(tmp_path, capsys, "--raw", "float32")
    raw, u8 = paper_persistence_images(images)
    assert_bit_equal(out["pi_raw"], raw.astype(np.float32))
    assert_bit_equal(out["pi_uint8"], u8)
    assert "float32" in err


def test_raw_none_writes_only_the_uint8_pis(tmp_path, capsys, images):
    out, err = run_pi(tmp_path, capsys, "--raw", "none")
    assert list(out) == ["pi_uint8", "names", "config"]
    assert_bit_equal(out["pi_uint8"], paper_persistence_images(images, raw=False)[1])
    assert "pi_raw" not in err


def test_compressed_file_loads_the_same(tmp_path, capsys, images):
    out, _ = run_pi(tmp_path, capsys, "--compress")
    raw, u8 = paper_persistence_images(images)
    assert_bit_equal(out["pi_raw"], raw)
    assert_bit_equal(out["pi_uint8"], u8)


def test_cubical_mode_streams_too(tmp_path, capsys, images):
    out, _ = run_pi(tmp_path, capsys, "--mode", "cubical", "--pi-resolution", "8")
    rep = representation_from_values("cubical", {"image.resolution": (8, 8)})
    raw, u8 = compute_pis(images, rep)
    assert_bit_equal(out["pi_raw"], raw.astype(np.float64))
    assert_bit_equal(out["pi_uint8"], u8)


def tiny_pi_image() -> np.ndarray:
    """A flat image (136) with two dips to 128 in one row: one bar, born far from the PI grid,
    so its raw PIs peak near 1.9e-86 — below float32's range, full-scale in uint8."""
    image = np.full((32, 32, 3), 136, np.uint8)
    image[5, 3] = image[5, 20] = 128
    return image


def test_a_tiny_pi_survives_in_float64(tmp_path, capsys, images):
    np.save(tmp_path / "tiny.npy", np.concatenate([images[:2], tiny_pi_image()[None]]))
    out, _ = run_pi(tmp_path, capsys, input_name="tiny.npy")
    tiny_max = out["pi_raw"][2].max()
    assert 0 < tiny_max < np.finfo(np.float32).tiny
    assert out["pi_uint8"][2].max() == 255
    assert out["pi_raw"][2].astype(np.float32).max() == 0  # what --raw float32 keeps


def traced_peak(tmp_path, n: int) -> int:
    """Peak bytes tracemalloc sees while ``tgd pi`` writes the PIs of ``n`` random images."""
    path = tmp_path / f"{n}.npy"
    np.save(path, np.random.default_rng(n).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    tracemalloc.start()
    try:
        status = cli.main(["pi", "--input", str(path), "--out", str(tmp_path / "o.npz")])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 0
    return peak


def test_memory_stays_bounded(tmp_path, capsys, monkeypatch):
    """4 images at a time: the traced peak does not grow with the number of images, and for
    240 images it is far below their float64 raw PIs (7.2 MB)."""
    monkeypatch.setattr("tgd_core.commands.pi.CHUNK_IMAGES", 4)
    traced_peak(tmp_path, 4)  # warm up (numba, imports)
    small, large = traced_peak(tmp_path, 60), traced_peak(tmp_path, 240)
    assert large < 1.5 * small, (small, large)
    assert large < 240 * 6 * 50 * 50 * 8 / 4, large


def test_a_write_failing_midway_is_one_line_and_leaves_nothing(tmp_path, capsys, images,
                                                               monkeypatch):
    from tgd_core.topology.pi_file import PIFileWriter

    add = PIFileWriter.add

    def add_then_fill_the_disk(self, pi_raw, pi_uint8):
        if self.written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        add(self, pi_raw, pi_uint8)

    monkeypatch.setattr(PIFileWriter, "add", add_then_fill_the_disk)
    status = cli.main(["pi", "--input", str(tmp_path / "imgs.npy"),
                       "--out", str(tmp_path / "o.npz")])
    err = capsys.readouterr().err
    assert status == 2
    assert err == f"tgd: error: pi: cannot write {tmp_path / 'o.npz'}: No space left on device\n"
    assert [p.name for p in tmp_path.iterdir()] == ["imgs.npy"]


def test_paper_chunks_reuse_two_sets_of_buffers(images):
    """Chunk i's arrays are reused by chunk i + 2 (no fresh pages per chunk); each chunk, used
    when it comes, holds its own PIs."""
    from tgd_core.commands.pi import pi_chunks
    from tgd_core.topology import PaperPIConfig

    raw, u8 = paper_persistence_images(images)
    seen, copies = [], []
    for pi_raw, pi_u8 in pi_chunks(images, PaperPIConfig(), raw=True, chunk=3):
        seen.append(pi_raw)
        copies.append((pi_raw.copy(), pi_u8.copy()))
    assert [len(c[1]) for c in copies] == [3, 3, 1]
    assert np.shares_memory(seen[0], seen[2]) and not np.shares_memory(seen[0], seen[1])
    assert_bit_equal(np.concatenate([c[0] for c in copies]), raw)
    assert_bit_equal(np.concatenate([c[1] for c in copies]), u8)


def test_default_chunks_of_paper_pis_are_whole_blocks():
    """Each chunk of paper-mode PIs (6×50×50; uint8, float32, float64) is a whole number of
    blocks, so every chunk of a `tgd pi` file can be written around the page cache."""
    from tgd_core.topology.pi_file import DIRECT_BLOCK

    for itemsize in (1, 4, 8):
        assert DEFAULT_CHUNK * 6 * 50 * 50 * itemsize % DIRECT_BLOCK == 0
