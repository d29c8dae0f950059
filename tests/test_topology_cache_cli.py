"""The dataset PI cache (parts, shards, resume, workers) and the ``tgd pi`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tgd_core.cli import main
from tgd_core.core.errors import TGDError
from tgd_core.topology import PaperPIConfig
from tgd_core.topology import cache as cache_mod
from tgd_core.topology.cache import PICache, cached_pis, parse_shard
from tgd_core.topology.representation import (
    CubicalPIConfig,
    compute_pis,
    representation_from_dict,
)


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(30, 12, 12, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def small_parts(monkeypatch):
    monkeypatch.setattr(cache_mod, "PART_ROWS", 8)


def test_cache_fills_once_and_reuses(images, tmp_path):
    rep = PaperPIConfig()
    expected = compute_pis(images, rep)[1]
    calls = []
    first = cached_pis(images, rep, "toy", "train", cache_dir=tmp_path, progress=calls.append)
    np.testing.assert_array_equal(first, expected)
    assert sum(calls) == 30 and len(calls) == 4  # parts of 8, 8, 8, 6 rows
    calls.clear()
    again = cached_pis(images, rep, "toy", "train", cache_dir=tmp_path, progress=calls.append)
    np.testing.assert_array_equal(again, expected)
    assert calls == []  # nothing recomputed
    meta = json.loads(next(tmp_path.glob("pi/toy-train-*/meta.json")).read_text())
    assert meta["n"] == 30 and meta["representation"]["mode"] == "paper"


@pytest.mark.parametrize("kernel, summation", [("c", "persim"), ("numba", "grouped")])
def test_paper_entries_use_the_fastest_summation(images, tmp_path, monkeypatch, request, kernel,
                                                 summation):
    """Paper-mode parts are summed in persim's order on the C kernel and by birth level on
    numba (uint8-identical on CIFAR-10, see benchmarks/check_grouped_uint8.py), and meta.json
    says which."""
    if kernel == "c":
        request.getfixturevalue("c_kernel")
    monkeypatch.setenv("TGD_PAPER_KERNEL", kernel)
    summations = []
    real = cache_mod.paper_persistence_images

    def spy(*args, **kwargs):
        summations.append(kwargs["summation"])
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "paper_persistence_images", spy)
    cached = cached_pis(images, PaperPIConfig(), "toy", "train", cache_dir=tmp_path)
    assert set(summations) == {summation} and len(summations) == 5  # a probe and 4 parts
    np.testing.assert_array_equal(cached, compute_pis(images, PaperPIConfig())[1])
    meta = json.loads(next(tmp_path.glob("pi/toy-train-*/meta.json")).read_text())
    assert meta["summation"] == summation


def test_key_depends_on_parameters_and_content(images, tmp_path):
    a = PICache.for_images(images, PaperPIConfig(), "toy", "train", tmp_path)
    b = PICache.for_images(images, PaperPIConfig(spread=0.02), "toy", "train", tmp_path)
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    c = PICache.for_images(changed, PaperPIConfig(), "toy", "train", tmp_path)
    assert len({a.root, b.root, c.root}) == 3


def test_shards_and_resume_after_a_lost_part(images, tmp_path):
    rep = PaperPIConfig()
    entry = PICache.for_images(images, rep, "toy", "train", tmp_path)
    assert entry.fill(images, rep, shard=(0, 2)) == 15
    assert not entry.complete()
    with pytest.raises(TGDError, match="incomplete"):
        entry.load()
    assert entry.fill(images, rep, shard=(1, 2)) == 15
    assert entry.complete()
    lost = entry.parts()[1][2]
    lost.unlink()  # as if the run was killed while writing this part
    assert entry.missing() == [(8, 15)]
    assert entry.fill(images, rep) == 7
    np.testing.assert_array_equal(entry.load(), compute_pis(images, rep)[1])


def test_cached_pis_reads_back_only_the_parts_it_did_not_compute(images, tmp_path, monkeypatch):
    """Parts computed by this call go straight into the returned array (and to disk); parts
    that were already on disk are read from their files."""
    rep = PaperPIConfig()
    expected = compute_pis(images, rep)[1]
    PICache.for_images(images, rep, "toy", "train", tmp_path).fill(images, rep, shard=(0, 2))
    read = []
    real = PICache._read_part
    monkeypatch.setattr(PICache, "_read_part",
                        lambda self, a, b, path, arr: (read.append((a, b)), real(self, a, b, path,
                                                                                 arr)))
    got = cached_pis(images, rep, "toy", "train", cache_dir=tmp_path)
    np.testing.assert_array_equal(got, expected)
    assert read == [(0, 8), (8, 15)]  # shard 0's parts; 15-23, 23-30 computed in memory
    entry = PICache.for_images(images, rep, "toy", "train", tmp_path)
    np.testing.assert_array_equal(entry.load(), expected)  # and all four parts were written


def test_cached_pis_faults_its_result_in_before_the_first_part(images, tmp_path, monkeypatch):
    """The whole result array is faulted in before any part is computed into it (the kernel's
    threads faulting it part by part while parts are written from it cost the 60,000-image fill
    a second: tgd_core/core/memory.py)."""
    rep = PaperPIConfig()
    events = []
    real_fault_in, real_part = cache_mod.fault_in, cache_mod._part_pis
    monkeypatch.setattr(cache_mod, "fault_in", lambda array: (
        events.append(("fault_in", array.shape)), real_fault_in(array))[1])
    monkeypatch.setattr(cache_mod, "_part_pis", lambda args, out=None: (
        events.append(("part", args[2], args[3])), real_part(args, out))[1])
    got = cached_pis(images, rep, "toy", "train", cache_dir=tmp_path)
    np.testing.assert_array_equal(got, compute_pis(images, rep)[1])
    assert events == [("fault_in", got.shape), ("part", 0, 8), ("part", 8, 16),
                      ("part", 16, 24), ("part", 24, 30)]


def test_a_part_another_process_writes_meanwhile_is_not_lost(images, tmp_path, monkeypatch):
    """Between cached_pis listing the missing parts and filling them, another process fills
    the first part: it is computed again here (not skipped as computed, nor left empty)."""
    rep = PaperPIConfig()
    real_fill = PICache.fill

    def another_process_first(self, *args, **kwargs):
        other = PICache.for_images(images, rep, "toy", "train", tmp_path)
        real_fill(other, images, rep, parts=[(0, 8)])  # the first part this one planned
        return real_fill(self, *args, **kwargs)

    monkeypatch.setattr(PICache, "fill", another_process_first)
    got = cached_pis(images, rep, "toy", "train", cache_dir=tmp_path)
    np.testing.assert_array_equal(got, compute_pis(images, rep)[1])


@pytest.mark.parametrize("content", [b"not numpy", b""])
def test_corrupt_part_gives_clear_error(images, tmp_path, content):
    rep = PaperPIConfig()
    entry = PICache.for_images(images, rep, "toy", "train", tmp_path)
    entry.fill(images, rep)
    entry.parts()[0][2].write_bytes(content)
    with pytest.raises(TGDError, match="unreadable .*: delete it to recompute"):
        entry.load()


def test_worker_processes_give_the_same_result(images, tmp_path):
    rep = CubicalPIConfig()
    out = cached_pis(images, rep, "toy", "test", cache_dir=tmp_path, workers=2)
    np.testing.assert_array_equal(out, compute_pis(images, rep)[1])


def test_parse_shard_and_representation_round_trip():
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) == (0, 1)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(TGDError):
            parse_shard(bad)
    for rep in (PaperPIConfig(resolution=(20, 30)), CubicalPIConfig()):
        assert representation_from_dict(json.loads(json.dumps(rep.to_dict()))) == rep
    with pytest.raises(TGDError, match="unknown PI mode"):
        representation_from_dict({"mode": "nope"})


def test_cli_pi_from_npy(images, tmp_path):
    src, out = tmp_path / "x.npy", tmp_path / "out.npz"
    np.save(src, images[:5])
    assert main(["pi", "--input", str(src), "--out", str(out)]) == 0
    data = np.load(out)
    raw, u8 = compute_pis(images[:5])
    assert data["pi_raw"].dtype == np.float64 and data["pi_raw"].shape == (5, 6, 50, 50)
    np.testing.assert_array_equal(data["pi_raw"], raw)
    np.testing.assert_array_equal(data["pi_uint8"], u8)
    assert json.loads(str(data["config"]))["mode"] == "paper"


def test_cli_pi_from_folder_with_mixed_images(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (20, 28), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)).save(folder / "c.png")
    out = tmp_path / "o.npz"
    assert main(["pi", "--input", str(folder), "--out", str(out), "--mode", "cubical",
                 "--pi-resolution", "16", "--channels", "grey"]) == 0
    data = np.load(out)
    assert data["pi_uint8"].shape == (3, 2, 16, 16)
    assert list(data["names"]) == ["a.png", "b.png", "c.png"]


def test_cli_pi_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["pi", "--input", str(bad), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a readable image" in err
    assert main(["pi", "--input", str(tmp_path / "missing"), "--out", "x.npz"]) == 2
    assert main(["pi", "--input", str(bad)]) == 2  # no --out


def test_cli_pi_dataset_fills_cache(tmp_path, capsys, cifar_test_images):
    args = ["pi", "--dataset", "cifar10", "--split", "test_lossless_1k", "--cache-dir",
            str(tmp_path)]
    assert main(args + ["--shard", "0/2"]) == 0
    assert "partial" in capsys.readouterr().err
    assert main(args + ["--shard", "1/2"]) == 0
    assert "complete" in capsys.readouterr().err
    entry = next(tmp_path.glob("pi/cifar10-test_lossless_1k-*"))
    parts = sorted(entry.glob("part-*.npy"))
    first = np.load(parts[0])
    np.testing.assert_array_equal(first, compute_pis(cifar_test_images[: len(first)])[1])


def test_opening_an_entry_removes_only_dead_writers_temp_files(images, tmp_path):
    """A part killed mid-write leaves ``.part-….npy.<host tag>-<pid>.tmp``; the next open
    removes it, but not the temporary file of a live writer (a concurrent shard: here, this
    process)."""
    from tgd_core.core.fileio import host_tag, temp_path

    rep = PaperPIConfig()
    root = PICache.for_images(images, rep, "toy", "train", tmp_path).root
    dead = root / f".part-0000000-0000008.npy.{host_tag()}-999999999.tmp"  # above any pid
    live = temp_path(root / "part-0000008-0000016.npy")
    dead.write_bytes(b"half")
    live.write_bytes(b"busy")
    PICache.for_images(images, rep, "toy", "train", tmp_path)
    assert not dead.exists() and live.exists()


def test_key_depends_on_the_cache_version(images, tmp_path, monkeypatch):
    rep = CubicalPIConfig()
    old = PICache.for_images(images, rep, "toy", "train", tmp_path)
    monkeypatch.setattr(cache_mod, "CACHE_VERSION", cache_mod.CACHE_VERSION + 1)
    new = PICache.for_images(images, rep, "toy", "train", tmp_path)
    assert new.root != old.root  # PIs of an older engine version are not reused


def test_overlapping_parts_count_as_covered(tmp_path):
    # entries written with other part sizes (5,000 then 5,120 rows) can hold nested parts
    entry = PICache(tmp_path, 20, (1, 2, 2))
    for a, b in ((0, 10), (2, 5), (10, 20)):
        (tmp_path / f"part-{a:07d}-{b:07d}.npy").touch()
    assert entry.missing() == [] and entry.complete()
    (tmp_path / "part-0000010-0000020.npy").unlink()
    assert entry.missing() == [(10, 18), (18, 20)]  # in pieces of PART_ROWS (8 here)


def test_a_part_of_the_wrong_pi_shape_gives_clear_error(images, tmp_path):
    rep = PaperPIConfig()
    entry = PICache.for_images(images, rep, "toy", "train", tmp_path)
    entry.fill(images, rep)
    a, b, path = entry.parts()[0]
    np.save(path, np.zeros((b - a, 1, 1, 1), np.uint8))  # right rows; would broadcast
    with pytest.raises(TGDError, match="holds .*expected .*delete it to recompute"):
        entry.load()
