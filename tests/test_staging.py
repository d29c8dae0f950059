"""scripts/stage_cifar10.py: CIFAR-10 packed into verified xz parts and unpacked into the
layout the engine reads (issue #14: data for the device machine), on a small fake folder."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.scripts import load_script
from tgd_core.core.errors import TGDError
from tgd_core.core.paths import PROJECT_ROOT
from tgd_core.nets.checkpoints import load_checkpoint

stage_cifar10 = load_script("stage_cifar10")


@pytest.fixture
def fake_cifar(tmp_path):
    """Every CIFAR-10 file: the batches of 130 random images each (two mosaic rows, the second
    one short), the label names."""
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    for name in stage_cifar10.FILES[:-1]:
        batch = {"batch_label": name, "labels": rng.integers(0, 10, 130).tolist(),
                 "data": rng.integers(0, 256, (130, 3072), dtype=np.uint8)}
        (src / name).write_bytes(pickle.dumps(batch))
    (src / "batches.meta").write_bytes(pickle.dumps({"label_names": ["airplane", "cat"]}))
    return src


def test_pack_and_unpack_round_trip(tmp_path, fake_cifar):
    from tgd_core.data.datasets import load_cifar10

    stage = tmp_path / "stage"
    part = 128 * 1024
    assert stage_cifar10.main(["--src", str(fake_cifar), "--stage", str(stage),
                               "--part-mib", str(part / 2**20), "--preset", "1"]) == 0
    manifest = json.loads((stage / "cifar10.manifest.json").read_text())
    sizes = [p["bytes"] for p in manifest["parts"]]
    assert len(sizes) > 3 and max(sizes) == part and all(s <= part for s in sizes)
    pixels = {n: meta.get("pixels") for n, meta in manifest["files"].items()}
    assert pixels.pop("batches.meta") is None  # not a batch: travels as it is
    assert all(p["rows"] == 130 and p["codec"] == "webp-lossless" for p in pixels.values())
    assert [p["name"] for p in manifest["parts"]][:2] == ["cifar10.tar.xz.001",
                                                          "cifar10.tar.xz.002"]
    dest = tmp_path / "data"
    assert stage_cifar10.main(["--unpack", "--stage", str(stage), "--dest", str(dest)]) == 0
    for name in stage_cifar10.FILES:
        assert (dest / "cifar10" / name).read_bytes() == (fake_cifar / name).read_bytes()
    images, labels = load_cifar10("train", data_dir=dest)  # the engine's layout
    assert images.shape == (650, 32, 32, 3) and len(labels) == 650


def test_a_batch_travels_as_its_frame_and_a_lossless_webp(tmp_path, fake_cifar):
    """The pixels leave the pickle for a WebP mosaic and come back bit for bit; pixels that
    do not decode are named in one line."""
    data = (fake_cifar / "test_batch").read_bytes()
    (frame, frame_bytes), (webp, webp_bytes) = stage_cifar10.archive_members(
        fake_cifar / "test_batch", "test_batch", images=True)[0]
    assert (frame, webp) == ("test_batch.frame", "test_batch.webp")
    assert len(frame_bytes) == len(data) - 130 * 3072 and webp_bytes[8:12] == b"WEBP"
    entry = stage_cifar10.archive_members(fake_cifar / "test_batch", "test_batch", True)[1]
    stage_cifar10.write_batch(tmp_path / "again", frame_bytes, webp_bytes, entry["pixels"])
    assert (tmp_path / "again").read_bytes() == data
    assert stage_cifar10.archive_members(fake_cifar / "test_batch", "t", images=False)[0] \
        == [("t", data)]
    batch = pickle.loads(data)  # protocol 2 from Python 3 keeps no run of pixel bytes:
    (tmp_path / "p2").write_bytes(pickle.dumps(batch, protocol=2))  # the file goes whole
    assert stage_cifar10.archive_members(tmp_path / "p2", "p2", images=True)[1].keys() \
        == {"bytes", "sha256"}
    with pytest.raises(TGDError, match=r"^bad: cannot decode its pixels \(.+\)$"):
        stage_cifar10.write_batch(tmp_path / "bad", frame_bytes, webp_bytes[:100],
                                  entry["pixels"])


def test_unpack_names_a_missing_or_damaged_part(tmp_path, fake_cifar, capsys):
    stage = tmp_path / "stage"
    stage_cifar10.pack(fake_cifar, stage, 64 * 1024, preset=0)
    second = stage / "cifar10.tar.xz.002"
    data = second.read_bytes()
    second.unlink()
    with pytest.raises(TGDError, match=r"part\(s\) \['cifar10.tar.xz.002'\] of \d+ not here"):
        stage_cifar10.unpack(stage, tmp_path / "data")
    second.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert stage_cifar10.main(["--unpack", "--stage", str(stage),
                               "--dest", str(tmp_path / "data")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"stage_cifar10: error: {second}: damaged (size or sha256 differs from the manifest)")
    (stage / "cifar10.manifest.json").write_text("[]")
    with pytest.raises(TGDError, match="not a staging manifest"):
        stage_cifar10.unpack(stage, tmp_path / "data")
    (fake_cifar / "test_batch").unlink()
    with pytest.raises(TGDError, match=r"missing CIFAR-10 file\(s\) \['test_batch'\]"):
        stage_cifar10.pack(fake_cifar, stage, 64 * 1024)


def test_device_paper_packs_small_files_first_and_restores_them(tmp_path):
    """scripts/device_paper.py: what fits the budget comes back (small files, then finished
    runs' checkpoints, then the others), the rest is named; a later session restores it."""
    device_paper = load_script("device_paper")
    rng = np.random.default_rng(1)
    out = tmp_path / "paper"
    sizes = {"teachers/t1/result.json": 10, "teachers/t1/latest.pt": 3000,
             "scratch/seed0/latest.pt": 2000, "scratch/seed0/metrics.jsonl": 50,
             "results.md": 20}
    for name, size in sizes.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    assert device_paper.pack_order(out) == [
        "teachers/t1/result.json", "results.md", "scratch/seed0/metrics.jsonl",
        "teachers/t1/latest.pt", "scratch/seed0/latest.pt"]
    manifest = device_paper.pack_runs(out, tmp_path / "OUT", budget_bytes=4000)
    assert manifest["left_out"] == ["scratch/seed0/latest.pt"]
    stage = tmp_path / "stage"
    stage.mkdir()
    for f in (tmp_path / "OUT").iterdir():  # what a later session carries back
        (stage / f.name).write_bytes(f.read_bytes())
    restored = tmp_path / "restored"
    assert device_paper.restore_runs(stage, restored)
    assert sorted(str(p.relative_to(restored)) for p in restored.rglob("*") if p.is_file()) \
        == sorted(set(sizes) - {"scratch/seed0/latest.pt"})
    assert (restored / "teachers/t1/latest.pt").read_bytes() == (
        out / "teachers/t1/latest.pt").read_bytes()
    assert not device_paper.restore_runs(stage, restored)  # never over an existing folder
    looked = tmp_path / "looked"  # here, the same parts unpacked to look at and archive
    assert stage_cifar10.main(["--unpack-runs", str(looked), "--stage", str(stage)]) == 0
    assert (looked / "results.md").read_bytes() == (out / "results.md").read_bytes()


def test_carry_plan_fills_each_call_beside_the_tree(tmp_path):
    """Each call carries the manifest and the parts that fit in the room the tree leaves; the
    first call also the wheels the device needs first; a late wheel rides where there is room
    (docs/device.md's calls)."""
    def file(name, size):
        (tmp_path / name).write_bytes(b"x" * size)
        return tmp_path / name

    manifest = file("m.json", 10)
    parts = [file(f"p.{i}", size) for i, size in enumerate((60, 60, 25, 30))]
    first, late = [file("pydantic.whl", 20)], [file("plotly.whl", 35)]
    calls = stage_cifar10.carry_plan(parts, manifest, 100, first, late)
    assert calls == [[manifest, first[0], parts[0]], [manifest, parts[1], parts[2]],
                     [manifest, parts[3], late[0]]]
    assert stage_cifar10.carry_plan(parts[:1], manifest, 100, first, [file("big.whl", 80)]) \
        == [[manifest, first[0], parts[0]], [tmp_path / "big.whl"]]
    with pytest.raises(TGDError, match=r"p.0: 0.0 MiB does not fit in one call beside the tree"):
        stage_cifar10.carry_plan(parts, manifest, 65)


def test_the_runs_ride_in_the_room_the_data_leaves(tmp_path, monkeypatch, capsys):
    """A later session's plan: CIFAR-10's calls, the runs' manifest and parts in the room they
    leave (docs/device.md's resume), then in as few calls of their own as fit."""
    rng = np.random.default_rng(3)
    src, stage = tmp_path / "src", tmp_path / "stage"
    src.mkdir()
    for name, size in (("cifar", 100_000), ("r0.pt", 30_000), ("r1.pt", 30_000),
                       ("r2.pt", 30_000)):
        (src / name).write_bytes(rng.integers(0, 256, size, np.uint8).tobytes())
    stage_cifar10.pack_files(src, ["cifar"], stage, "cifar10", 40_000, preset=0)
    stage_cifar10.pack_files(src, ["r0.pt", "r1.pt", "r2.pt"], stage, "runs", 25_000, 0)
    data = stage_cifar10.staged_parts(stage, "cifar10")
    runs = stage_cifar10.staged_parts(stage, "runs")
    monkeypatch.setattr(stage_cifar10, "carry_room", lambda root: 70_000)
    for names, parts, n_calls in ((["cifar10", "runs"], [*data, *runs], 3),
                                  (["runs"], runs, 2)):
        assert stage_cifar10.main(["--plan", *names, "--stage", str(stage)]) == 0
        calls = [[stage / Path(p).name for p in json.loads(line.split("carry ", 1)[1])]
                 for line in capsys.readouterr().out.splitlines()]
        assert len(calls) == n_calls
        assert all(sum(p.stat().st_size for p in call) <= 70_000 for call in calls)
        assert sorted(p for call in calls for p in call if ".tar.xz." in p.name) \
            == sorted(parts)  # each once


def test_packing_sizes_parts_to_the_room_and_prints_the_calls(tmp_path, fake_cifar,
                                                              monkeypatch, capsys):
    stage = tmp_path / "stage"
    (stage / "wheels").mkdir(parents=True)
    (stage / "wheels/pydantic-2-py3-none-any.whl").write_bytes(b"w" * 3000)
    (stage / "wheels/plotly-7-py3-none-any.whl").write_bytes(b"w" * 9000)
    room = 20_000 + stage_cifar10.MANIFEST_ROOM
    monkeypatch.setattr(stage_cifar10, "carry_room", lambda root: room)
    assert stage_cifar10.main(["--src", str(fake_cifar), "--stage", str(stage),
                               "--preset", "0"]) == 0
    manifest = json.loads((stage / "cifar10.manifest.json").read_text())
    assert manifest["parts"][0]["bytes"] == 17_000  # room less the first call's wheel
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("call")]
    calls = [[Path(p) for p in json.loads(line.split("carry ", 1)[1])] for line in lines]
    assert all(sum(p.stat().st_size for p in call) <= room for call in calls)
    carried = [p.name for call in calls for p in call if ".tar.xz." in p.name]
    assert carried == [part["name"] for part in manifest["parts"]]  # each once, in order
    assert "pydantic-2-py3-none-any.whl" in [p.name for p in calls[0]]
    assert sum(p.name.startswith("plotly") for call in calls for p in call) == 1
    stage_cifar10.main(["--plan", "cifar10", "--stage", str(stage)])
    assert capsys.readouterr().out.splitlines() == lines


def test_parts_are_cut_evenly_over_the_calls_they_need(tmp_path, fake_cifar, monkeypatch,
                                                      capsys):
    """Packing fills the first parts to the room, then cuts the same stream into even parts
    over as many calls: each call keeps room to spare for a tree that grows before the calls,
    and the parts still unpack bit for bit."""
    stage = tmp_path / "stage"
    (stage / "wheels").mkdir(parents=True)
    (stage / "wheels/pydantic-2-py3-none-any.whl").write_bytes(b"w" * 3000)
    (stage / "wheels/plotly-7-py3-none-any.whl").write_bytes(b"w" * 9000)
    room = 1_300_000
    monkeypatch.setattr(stage_cifar10, "carry_room", lambda root: room)
    assert stage_cifar10.main(["--src", str(fake_cifar), "--stage", str(stage),
                               "--preset", "0"]) == 0
    calls = [[Path(p) for p in json.loads(line.split("carry ", 1)[1])]
             for line in capsys.readouterr().out.splitlines() if line.startswith("call")]
    sizes = [sum(p.stat().st_size for p in call) for call in calls]
    data = sum(p.stat().st_size for p in stage.glob("cifar10.tar.xz.*"))
    assert len(calls) == -(-(data + 12_000) // (room - stage_cifar10.MANIFEST_ROOM))
    assert max(sizes) - min(sizes) < 0.02 * room and max(sizes) < 0.8 * room  # room to spare
    stage_cifar10.unpack(stage, tmp_path / "data")
    for name in stage_cifar10.FILES:
        assert (tmp_path / "data/cifar10" / name).read_bytes() == (fake_cifar / name).read_bytes()


def test_the_project_tree_leaves_room_for_the_data():
    """The tree travels with every device call: it must leave room for CIFAR-10's ~98 MiB of
    parts and the 12.5 MiB of wheels in at most five calls (docs/device.md); committing large
    files breaks that."""
    assert stage_cifar10.carry_room(PROJECT_ROOT) >= 24 * stage_cifar10.MiB


def test_device_paper_packs_within_what_the_device_returns(tmp_path):
    """$OUT returns 8 files and 64 MiB in all: the runs' budget leaves room for the files a
    call wrote there already and for the manifest."""
    device_paper = load_script("device_paper")
    MiB, part = stage_cifar10.MiB, device_paper.PART_BYTES
    out = tmp_path / "OUT"
    assert device_paper.out_budget(out) == 63 * MiB  # nothing there yet: 64 MiB less 1
    out.mkdir()
    (out / "bench.log").write_bytes(b"x" * (10 * MiB))
    assert device_paper.out_budget(out) == 53 * MiB
    for i in range(5):
        (out / f"f{i}").write_bytes(b"")
    assert device_paper.out_budget(out) == part - MiB  # 8 files: 6 there, the manifest, one
    (out / "f5").write_bytes(b"")
    assert device_paper.out_budget(out) == 0
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "result.json").write_text("{}")
    manifest = device_paper.pack_runs(runs, tmp_path / "back", device_paper.out_budget(out))
    assert manifest["left_out"] == ["result.json"]


def test_a_device_call_rehearsed_on_the_cpu(tmp_path, monkeypatch, capfd):
    """docs/device.md's sequence with a tiny recipe, the device played by this machine: the
    data staged in parts, a call that unpacks it, trains within its budget and packs the runs
    into $OUT; here, the runs unpacked, reported and archived; a fresh machine's call that
    restores them trains nothing again."""
    import subprocess
    import sys

    import yaml

    from tests.test_experiments import TINY

    device_paper = load_script("device_paper")
    rng = np.random.default_rng(2)
    src = tmp_path / "cifar"
    src.mkdir()
    for name in stage_cifar10.FILES:
        batch = {"data": rng.integers(0, 256, (64, 3072), dtype=np.uint8),
                 "labels": (np.arange(64) % 10).tolist()}
        (src / name).write_bytes(pickle.dumps(batch))
    stage = tmp_path / "stage"
    stage_cifar10.pack(src, stage, 200_000, preset=0)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "methods": {"kd_t1": TINY["methods"]["kd_t1"]}},
                                     sort_keys=False))
    call = ["--recipe", str(recipe), "--stage", str(stage), "--budget", "900",
            "--pack-reserve", "120", "--parallel", "2"]

    monkeypatch.setenv("OUT", str(tmp_path / "OUT1"))
    assert device_paper.main([*call, "--set", "sync_every_steps=3", "--out",
                              str(tmp_path / "device/exp")]) == 0
    assert "[train] kd_t1 seed 0" in "".join(capfd.readouterr())
    config = json.loads((tmp_path / "device/exp/kd_t1/seed0/config.json").read_text())
    assert config["sync_every_steps"] == 3  # --set reaches every run
    manifest = json.loads((tmp_path / "OUT1/runs.manifest.json").read_text())
    assert manifest["left_out"] == []
    assert {"teachers/t1/latest.pt", "kd_t1/seed0/result.json", "summary.json"} <= set(
        manifest["files"])

    here = tmp_path / "here"  # this machine: what came back, unpacked and archived
    here.mkdir()
    for part in (tmp_path / "OUT1").iterdir():
        (here / part.name).write_bytes(part.read_bytes())
    assert stage_cifar10.main(["--unpack-runs", str(here / "exp"), "--stage", str(here)]) == 0
    env = {**__import__("os").environ, "TGD_DATA_DIR": str(stage / "data")}
    subprocess.run([sys.executable, "-m", "tgd_core", "experiment", str(recipe), "--out",
                    str(here / "exp"), "--report-only", "--archive", str(here / "archive")],
                   check=True, env=env, capture_output=True)
    kept = load_checkpoint(here / "archive/teachers/t1/latest.pt")
    assert kept.optimizer is None and (here / "archive/kd_t1/seed0/eval.json").is_file()

    # a fresh machine: the data and the runs carried again; nothing is trained twice
    fresh = tmp_path / "fresh_stage"
    fresh.mkdir()
    for path in [*stage.glob("cifar10.*"), *(tmp_path / "OUT1").iterdir()]:
        (fresh / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("OUT", str(tmp_path / "OUT2"))
    again = [*call[:2], "--stage", str(fresh), *call[4:], "--out", str(tmp_path / "d2/exp")]
    assert device_paper.main(again) == 0
    printed = "".join(capfd.readouterr())
    assert "restored earlier runs" in printed and "[train]" not in printed
    for name in ("teachers/t1/latest.pt", "kd_t1/seed0/latest.pt"):
        assert (tmp_path / "d2/exp" / name).read_bytes() == (
            tmp_path / "device/exp" / name).read_bytes()


CHILD = """
import os, signal, subprocess, sys, time
mode, ready = sys.argv[1], sys.argv[2]
if mode == "deaf":  # ignores SIGTERM: only the kill ends it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:  # stops on the first SIGTERM or SIGINT, saying which, exit 5
    def stop(signum, frame):
        open(ready + ".signals", "a").write(signal.Signals(signum).name + "\\n")
        os._exit(5)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
worker = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(60)"])
open(ready + ".tmp", "w").write(f"{os.getpid()} {worker.pid}")
os.replace(ready + ".tmp", ready)
while True:
    time.sleep(60)
"""


def _start_group(tmp_path, mode):
    """A child in a process group of its own with a worker of its own (as an experiment with
    --parallel), once both are running and its signal handling is set: (process, pids)."""
    import subprocess
    import sys

    from tests.waiting import wait_for

    ready = tmp_path / f"{mode}.ready"
    process = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(ready)], process_group=0)
    wait_for(ready.exists, what="the child and its worker")
    return process, [int(pid) for pid in ready.read_text().split()]


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie left for its new parent to reap counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.parametrize("mode", ["deaf", "polite"])
def test_device_paper_stops_an_experiment_that_outruns_its_time_with_its_workers(tmp_path,
                                                                                 mode):
    """Past its time the experiment is asked to stop (SIGTERM: a polite one stops at once,
    having seen one signal), then killed with its whole process group, so that no --parallel
    worker outlives the command and the packing; None says it was stopped."""
    from tests.waiting import wait_for

    device_paper = load_script("device_paper")
    process, pids = _start_group(tmp_path, mode)
    assert device_paper.wait_or_stop(process, timeout=0, grace=0.2 if mode == "deaf" else 600) \
        is None
    for pid in pids:
        wait_for(lambda pid=pid: _gone(pid), what=f"process {pid} to end")
    if mode == "polite":
        assert (tmp_path / "polite.ready.signals").read_text() == "SIGTERM\n"


def test_device_paper_returns_the_status_of_an_experiment_within_its_time(tmp_path):
    """An experiment that ends in time gives its exit status; a Ctrl-C to the script while it
    waits is passed on to the experiment (in its own process group, the terminal's Ctrl-C does
    not reach it) and the script's own SIGINT handling comes back afterwards."""
    import os
    import signal
    import threading

    from tests.waiting import wait_for

    device_paper = load_script("device_paper")
    process, pids = _start_group(tmp_path, "polite")
    before = signal.getsignal(signal.SIGINT)

    def interrupt_once_passed_on() -> None:
        wait_for(lambda: signal.getsignal(signal.SIGINT) is not before, what="the handler")
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt_once_passed_on)
    sender.start()
    assert device_paper.wait_or_stop(process, timeout=600, grace=600) == 5
    sender.join()
    assert (tmp_path / "polite.ready.signals").read_text() == "SIGINT\n"
    assert signal.getsignal(signal.SIGINT) is before
    os.kill(pids[1], signal.SIGKILL)  # the worker this child leaves behind
