"""The training loop on tiny slices: it learns, resumes exactly, and fails cleanly."""

from __future__ import annotations

import json

import pytest
import torch

from tgd_core.checkpoints import load_checkpoint
from tgd_core.errors import TGDError
from tgd_core.training import Stopped, TrainConfig, learning_rate, run_training

pytestmark = pytest.mark.usefixtures("cifar_test_images")  # needs the CIFAR-10 data


def tiny(tmp_path, name="run", **kw) -> TrainConfig:
    values = dict(student="wrn16_1", train_subset=256, test_subset=128, test_split="test",
                  epochs=2, batch_size=64, lr=0.05, milestones=[1], threads=2,
                  out_dir=str(tmp_path / name))
    return TrainConfig.build(**{**values, **kw})


def weights(path):
    return load_checkpoint(path).state_dict


class StopAt:
    """A run context that asks the loop to stop after ``n`` steps."""

    def __init__(self, n):
        self.n, self.calls, self.logged = n, 0, []

    def should_stop(self):
        self.calls += 1
        return self.calls >= self.n

    def log(self, row):
        self.logged.append(row)


def test_two_epochs_lower_the_loss_and_write_the_run(tmp_path):
    cfg = tiny(tmp_path, epochs=3, train_subset=384, augment=True)
    result = run_training(cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["train_ce"] < rows[0]["train_ce"]
    assert {"test_accuracy", "test_nll", "test_ece", "lr", "images_per_second"} <= set(rows[0])
    assert result["best_epoch"] in (1, 2, 3) and result["last"]["epoch"] == 3
    best = load_checkpoint(tmp_path / "run/best.pt")
    assert best.metrics["test_accuracy"] == result["best"]["test_accuracy"]
    assert best.config["augment"] is True and best.input_kind == "raw"
    saved = json.loads((tmp_path / "run/config.json").read_text())
    assert saved["seed"] == 1234 and saved["student"] == "wrn16_1"


@pytest.mark.parametrize("stop_after", [3, 4 + 2])  # mid-epoch 1, mid-epoch 2
def test_resume_after_a_stop_equals_an_uninterrupted_run(tmp_path, stop_after):
    full = tiny(tmp_path, "full", augment=True)
    run_training(full, progress=False)
    cut = tiny(tmp_path, "cut", augment=True)
    with pytest.raises(Stopped):
        run_training(cut, ctx=StopAt(stop_after), progress=False)
    ckpt = load_checkpoint(tmp_path / "cut/latest.pt")
    assert ckpt.training_state["loop"]["step"] > 0  # stopped inside an epoch
    run_training(cut, resume=True, progress=False)
    a, b = weights(tmp_path / "full/latest.pt"), weights(tmp_path / "cut/latest.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "cut/metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]
    full_rows = (tmp_path / "full/metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["train_ce"] == json.loads(full_rows[-1])["train_ce"]


def test_resume_and_overwrite_guards(tmp_path):
    cfg = tiny(tmp_path, epochs=1, train_subset=64)
    with pytest.raises(TGDError, match="nothing to resume"):
        run_training(cfg, resume=True)
    run_training(cfg, progress=False)
    with pytest.raises(TGDError, match="already holds a run"):
        run_training(cfg)
    with pytest.raises(TGDError, match="differs"):
        run_training(tiny(tmp_path, epochs=1, train_subset=64, lr=0.5), resume=True)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    run_training(tiny(tmp_path, epochs=1, train_subset=128), progress=False)
    good = weights(tmp_path / "run/latest.pt")
    # resume the finished run for a second epoch at an absurd learning rate: it diverges
    diverging = tiny(tmp_path, epochs=2, train_subset=128, lr=1e30)
    (tmp_path / "run/config.json").write_text(diverging.model_dump_json())
    with pytest.raises(TGDError, match="loss became"):
        run_training(diverging, resume=True, progress=False)
    assert all(torch.equal(good[k], v) for k, v in weights(tmp_path / "run/latest.pt").items())


@pytest.mark.parametrize("values, field", [
    (dict(epochs=0), "epochs"), (dict(method="nope"), "method"),
    (dict(student="resnet"), "student"), (dict(milestones=[5, 2]), "milestones"),
    (dict(unknown=1), "unknown"), (dict(student_input="depth"), "student_input"),
])
def test_bad_configs_name_the_field(values, field):
    with pytest.raises(TGDError, match=field):
        TrainConfig.build(**values)


def test_learning_rate_schedules():
    step = TrainConfig.build(epochs=200)
    assert learning_rate(step, 0) == 0.1 and learning_rate(step, 39.9) == 0.1
    assert learning_rate(step, 40) == pytest.approx(0.02)
    assert learning_rate(step, 199) == pytest.approx(0.1 * 0.2**4)
    cos = TrainConfig.build(epochs=10, schedule="cosine")
    assert learning_rate(cos, 5) == pytest.approx(0.05) and learning_rate(cos, 10) == 0
    one = TrainConfig.build(epochs=10, schedule="onecycle")
    assert learning_rate(one, 0) == pytest.approx(0.004) and learning_rate(one, 3) == 0.1


def test_evaluate_command_reproduces_the_runs_test_accuracy(tmp_path, capsys):
    """Training-time evaluation and `tgd evaluate` agree, for raw and for PI networks (whose
    PIs `evaluate` computes on the fly)."""
    from tgd_core.cli import main

    for kind in ("raw", "pi"):
        cfg = tiny(tmp_path, kind, epochs=1, train_subset=128, test_subset=96,
                   student_input=kind)
        result = run_training(cfg, progress=False)
        capsys.readouterr()
        assert main(["evaluate", "--checkpoint", str(tmp_path / kind / "best.pt"),
                     "--limit", "96", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["accuracy"] == round(result["best"]["test_accuracy"], 2)
        assert out["nll"] == pytest.approx(result["best"]["test_nll"], rel=1e-5)


def test_a_killed_training_process_resumes_to_the_same_weights(tmp_path):
    """SIGKILL a real `tgd train` process inside its second epoch; `--resume` redoes that epoch
    from the epoch-1 checkpoint and ends with the weights of an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time

    args = ["--model", "wrn16_1", "--train-subset", "192", "--test-subset", "32",
            "--epochs", "3", "--batch-size", "32", "--threads", "2", "--no-progress",
            "--augment", "--set", "milestones=[2]"]
    cmd = [sys.executable, "-m", "tgd_core", "train", *args]
    subprocess.run([*cmd, "--out", str(tmp_path / "full")], check=True, capture_output=True)
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "cut")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    metrics = tmp_path / "cut" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # inside epoch 2
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(tmp_path / "cut/latest.pt").epoch in (1, 2)
    subprocess.run([*cmd, "--out", str(tmp_path / "cut"), "--resume"], check=True,
                   capture_output=True)
    a, b = weights(tmp_path / "full/latest.pt"), weights(tmp_path / "cut/latest.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "cut/metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]
