"""Crash a real process at each write point (``TGD_FAULT``, :mod:`tgd_core.core.fileio`) and check
what resuming finds: nothing lost, nothing duplicated, no temporary files, and the result of an
uninterrupted run — training (checkpoints, metrics rows, result.json) and the PI cache.

Every killed process dies by SIGKILL at the named point, after the temporary file is complete
and before it replaces the target; the tests wait for processes to exit and read files, so they
do not depend on timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tgd_core.nets.checkpoints import load_checkpoint, named_tensors
from tgd_core.topology.cache import PICache
from tgd_core.topology.representation import compute_pis

pytestmark = pytest.mark.usefixtures("cifar_test_images")  # needs the CIFAR-10 data

# 2 steps per epoch, 2 epochs, a checkpoint after every step: latest.pt is written 4 times
# (epoch 1 step 1, end of epoch 1, epoch 2 step 1, end of epoch 2)
TRAIN = [sys.executable, "-m", "tgd_core", "train", "--model", "wrn16_1", "--train-subset", "128",
         "--test-subset", "64", "--epochs", "2", "--batch-size", "64", "--threads", "2",
         "--checkpoint-every-steps", "1", "--augment", "--no-progress", "--set", "milestones=[1]"]
TIMING = {"epoch_seconds", "images_per_second"}


def run(cmd: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` to its end, with ``TGD_FAULT=fault`` when given."""
    env = {k: v for k, v in os.environ.items() if k != "TGD_FAULT"}
    if fault:
        env["TGD_FAULT"] = fault
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def killed(cmd: list[str], fault: str, folder: Path) -> None:
    """Run ``cmd`` until it kills itself at ``fault``, leaving a temporary file in ``folder``."""
    proc = run(cmd, fault)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    assert temp_files(folder), f"{fault}: no write was in progress"


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def without_timing(row: dict | None) -> dict | None:
    return None if row is None else {k: v for k, v in row.items() if k not in TIMING}


def metric_rows(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [without_timing(json.loads(line)) for line in lines]


def tensors(path: Path) -> dict[str, torch.Tensor]:
    """Weights, BatchNorm buffers and optimizer state of a checkpoint, by name."""
    ckpt = load_checkpoint(path)
    return dict(named_tensors({"model": ckpt.state_dict, "optimizer": ckpt.optimizer}))


def assert_same_run(cut: Path, full: Path) -> None:
    """``cut`` (killed, then resumed) ends exactly as the uninterrupted ``full``."""
    for name in ("latest.pt", "best.pt"):
        a, b = tensors(full / name), tensors(cut / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
        assert load_checkpoint(cut / name).epoch == load_checkpoint(full / name).epoch
    assert [r["epoch"] for r in metric_rows(cut)] == [1, 2]  # one row per epoch
    assert metric_rows(cut) == metric_rows(full)
    a, b = (json.loads((d / "result.json").read_text()) for d in (full, cut))
    assert (b["best_epoch"], without_timing(b["best"]), without_timing(b["last"])) == (
        a["best_epoch"], without_timing(a["best"]), without_timing(a["last"]))
    assert temp_files(cut) == []


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    proc = run([*TRAIN, "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.parametrize("fault", [
    "checkpoint-latest.pt:2",  # end of epoch 1: latest.pt still holds epoch 1, step 1
    "checkpoint-latest.pt:4",  # end of epoch 2: latest.pt still holds epoch 2, step 1
    "checkpoint-best.pt:1",  # latest.pt done, best.pt not: resume rewrites best.pt
    "metrics-row:1",  # checkpoints done, row 1 not: resume rewrites it from latest.pt
    "metrics-row:2",  # the last row: resume only repairs the files and writes result.json
    "result",  # everything but result.json
])
def test_training_killed_at_a_write_point_resumes_to_the_uninterrupted_run(
        tmp_path: Path, uninterrupted: Path, fault: str) -> None:
    out = tmp_path / "run"
    killed([*TRAIN, "--out", str(out)], fault, out)
    resumed = run([*TRAIN, "--out", str(out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(out, uninterrupted)


def test_pi_command_killed_while_writing_a_part_resumes(tmp_path: Path,
                                                        cifar_test_images: np.ndarray) -> None:
    """`tgd pi` killed with its part complete but not in place: the rerun removes the temporary
    file, computes the part and the cache equals an uninterrupted computation."""
    cmd = [sys.executable, "-m", "tgd_core", "pi", "--dataset", "cifar10", "--split",
           "test_lossless_1k", "--cache-dir", str(tmp_path)]
    killed(cmd, "pi-cache-part", tmp_path)
    (entry,) = (tmp_path / "pi").iterdir()
    assert not list(entry.glob("part-*.npy"))
    proc = run(cmd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert temp_files(tmp_path) == []
    parts = sorted(entry.glob("part-*.npy"))
    np.testing.assert_array_equal(np.concatenate([np.load(p) for p in parts]),
                                  compute_pis(cifar_test_images)[1])


def test_pi_cache_killed_at_its_meta_file_or_second_part_loses_nothing(tmp_path: Path) -> None:
    """The cache API in a subprocess, with parts of 8 rows: killed writing meta.json, then
    killed writing the second part. Each rerun keeps what was complete (the first part is not
    recomputed), and the final cache equals an uninterrupted computation."""
    images = np.random.default_rng(0).integers(0, 256, size=(30, 12, 12, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    script = (
        "import sys, numpy as np\n"
        "from tgd_core.topology import PaperPIConfig, cache\n"
        "cache.PART_ROWS = 8\n"
        "images = np.load(sys.argv[1])\n"
        "cache.cached_pis(images, PaperPIConfig(), 'toy', 'train', cache_dir=sys.argv[2])\n")
    cmd = [sys.executable, "-c", script, str(tmp_path / "images.npy"), str(tmp_path / "cache")]
    killed(cmd, "pi-cache-meta", tmp_path / "cache")
    (root,) = (tmp_path / "cache" / "pi").iterdir()
    assert not (root / "meta.json").exists()
    killed(cmd, "pi-cache-part:2", tmp_path / "cache")
    assert [p.name for p in root.glob("part-*.npy")] == ["part-0000000-0000008.npy"]
    first = (root / "part-0000000-0000008.npy").stat()
    assert run(cmd).returncode == 0
    assert temp_files(tmp_path) == [] and (root / "meta.json").exists()
    assert (root / "part-0000000-0000008.npy").stat().st_mtime_ns == first.st_mtime_ns
    entry = PICache(root, len(images), compute_pis(images[:1])[1].shape[1:])
    assert [(a, b) for a, b, _ in entry.parts()] == [(0, 8), (8, 16), (16, 24), (24, 30)]
    np.testing.assert_array_equal(entry.load(), compute_pis(images)[1])


def test_atomic_write_replaces_only_a_regular_file(tmp_path: Path) -> None:
    """os.replace would put a file in the place of a FIFO or a device (as root, /dev/null):
    atomic_write refuses to, and leaves no temporary file."""
    from tgd_core.core.errors import TGDError
    from tgd_core.core.fileio import atomic_write

    fifo, folder, link = tmp_path / "fifo", tmp_path / "folder", tmp_path / "link"
    os.mkfifo(fifo)
    folder.mkdir()
    link.symlink_to(tmp_path / "target")
    for path, kind in ((fifo, "not a regular file"), (folder, "a folder")):
        with pytest.raises(TGDError, match=f"cannot write {path}: it is {kind}"):
            atomic_write(path, b"x")
    assert fifo.is_fifo() and folder.is_dir()
    atomic_write(tmp_path / "file", b"1")
    atomic_write(tmp_path / "file", b"2")
    atomic_write(link, b"3")  # a dangling link is replaced by the file, as before
    assert (tmp_path / "file").read_bytes() == b"2" and link.read_bytes() == b"3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "file", "folder", "link"]


def test_a_run_folder_is_trained_by_one_process_at_a_time(tmp_path: Path) -> None:
    """While a run trains, its folder is locked (flock): a second process training the same
    folder — a second experiment on the same --out, a worker a killed experiment left — is
    refused in one line, not interleaved with it. Taken here as that second process would."""
    from tgd_core.core.errors import TGDError
    from tgd_core.core.fileio import folder_lock
    from tgd_core.training import TrainConfig, run_training
    from tgd_core.training.stopping import StopWhen

    cfg = TrainConfig.build(epochs=1, train_subset=8, test_subset=8, batch_size=4,
                            out_dir=str(tmp_path / "run"))
    with folder_lock(tmp_path / "run", "training this run"):
        with pytest.raises(TGDError, match="another process is training this run in this fold"):
            run_training(cfg, progress=False)
    assert run_training(cfg, progress=False)["last"]["epoch"] == 1  # released with the block
    assert not StopWhen(None, os.getppid()).should_stop()
    assert StopWhen(None, -1).should_stop()  # orphaned: its experiment is gone


def test_stale_temporary_files_are_told_by_their_writers_host_and_process(tmp_path: Path) -> None:
    """A temporary file of this machine and PID namespace is a dead writer's when its process
    id is gone; one of another (a shared volume: another node, a container) is left alone —
    its process id means nothing here (before, a live writer there lost its file) — until it
    has not changed for FOREIGN_STALE_S, as is one named without a tag by an earlier version."""
    from tgd_core.core.fileio import FOREIGN_STALE_S, host_tag, remove_stale_temps, temp_path

    other = "0123abcd" if host_tag() != "0123abcd" else "abcd0123"
    names = {"mine, dead": f".a.{host_tag()}-999999999.tmp",
             "mine, alive": temp_path(tmp_path / "b").name,
             "theirs, dead here": f".c.{other}-999999999.tmp",
             "theirs, alive here": f".d.{other}-{os.getpid()}.tmp",
             "untagged": ".e.999999999.tmp", "not a temp": ".f.tmp"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    changed = max((tmp_path / name).stat().st_mtime for name in names.values())

    def left() -> set[str]:
        return {key for key, name in names.items() if (tmp_path / name).exists()}

    assert remove_stale_temps(tmp_path, now=changed + FOREIGN_STALE_S - 1) == [
        tmp_path / names["mine, dead"]]
    assert left() == set(names) - {"mine, dead"}
    remove_stale_temps(tmp_path, now=changed + FOREIGN_STALE_S + 1)
    assert left() == {"mine, alive", "not a temp"}


def test_the_host_tag_differs_in_another_pid_namespace() -> None:
    """Process ids are compared only under one tag: a process in another PID namespace (a
    container) gets another one."""
    import shutil

    from tgd_core.core.fileio import host_tag

    code = "from tgd_core.core.fileio import host_tag; print(host_tag())"
    same = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert same.stdout.strip() == host_tag()
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to start a process in a new PID namespace")
    other = subprocess.run(["unshare", "--pid", "--fork", sys.executable, "-c", code],
                           capture_output=True, text=True)
    if other.returncode != 0:
        pytest.skip(f"unshare --pid is not permitted here: {other.stderr.strip()}")
    assert other.stdout.strip() not in ("", host_tag())
