"""The training loop on tiny slices: it learns, resumes exactly, and fails cleanly."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from tests.waiting import wait_for
from tgd_core.core.errors import TGDError
from tgd_core.nets.checkpoints import load_checkpoint, named_tensors, non_finite_tensors
from tgd_core.training import Stopped, TrainConfig, learning_rate, run_training, trainer

pytestmark = pytest.mark.usefixtures("cifar_test_images")  # needs the CIFAR-10 data


def tiny(tmp_path, name="run", **kw) -> TrainConfig:
    values = dict(student="wrn16_1", train_subset=256, test_subset=128, test_split="test",
                  epochs=2, batch_size=64, lr=0.05, milestones=[1], threads=2,
                  out_dir=str(tmp_path / name))
    return TrainConfig.build(**{**values, **kw})


def weights(path):
    return load_checkpoint(path).state_dict


def strict_rows(path):
    """metrics.jsonl parsed as strict JSON (NaN/Infinity refused)."""
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


TIMING = {"epoch_seconds", "images_per_second"}


def same_rows(path, reference) -> bool:
    """metrics.jsonl at ``path`` has one row per epoch with ``reference``'s values (timing
    aside)."""
    def values(rows):
        return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]

    return values(strict_rows(path)) == values(strict_rows(reference))


def last_good(message: str) -> str:
    return message.rsplit("last good checkpoint: ", 1)[1].split(" (")[0]


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


def test_divergence_leaves_only_finite_checkpoints_and_metrics(tmp_path):
    """#16 problem 4, the issue's run: lr 1e6 with a checkpoint every step stops with one line
    naming where it diverged; every checkpoint on disk (and the one named "last good") is finite
    in all its tensors, and metrics.jsonl holds no NaN."""
    cfg = tiny(tmp_path, epochs=3, train_subset=128, test_subset=64, lr=1e6,
               checkpoint_every_steps=1)
    with pytest.raises(TGDError) as info:
        run_training(cfg, progress=False)
    for name in ("latest.pt", "best.pt"):
        path = tmp_path / "run" / name
        if path.exists():
            bad, total = non_finite_tensors(named_tensors(torch.load(path, weights_only=True)))
            assert bad == [] and total > 69, name  # weights, BN buffers, momentum buffers
    metrics = tmp_path / "run/metrics.jsonl"
    if metrics.exists():
        strict_rows(metrics)
    message = str(info.value)
    assert re.fullmatch(r"training diverged at [^;\n]*epoch \d[^\n]*; last good checkpoint: "
                        r"[^\n]+", message), message
    if last_good(message) != "none":
        assert last_good(message) == str(tmp_path / "run/latest.pt")


def _poison_after(monkeypatch, steps: int, what: str) -> None:
    """Make the optimizer put a NaN into the student's weights (or an inf into a BatchNorm
    variance) right after its ``steps``-th update, while that step's loss was finite."""
    students = []
    build = trainer.build_model
    monkeypatch.setattr(trainer, "build_model",
                        lambda *a, **k: students.append(build(*a, **k)) or students[-1])

    class PoisonedSGD(torch.optim.SGD):
        updates = 0

        def step(self, closure=None):
            out = super().step(closure)
            PoisonedSGD.updates += 1
            if PoisonedSGD.updates == steps:
                bn = students[0].block1.nblockLayer[0].batch_norm1
                tensor = bn.weight if what == "weight" else bn.running_var
                tensor.data[0] = float("nan") if what == "weight" else float("inf")
            return out

    monkeypatch.setattr(trainer.torch.optim, "SGD", PoisonedSGD)


@pytest.mark.parametrize("what", ["weight", "running_var"])
def test_non_finite_weights_after_an_update_are_never_saved(tmp_path, monkeypatch, what):
    """#16 problem 4: the loss check runs one step behind the update, so the save right after a
    poisoning update must itself refuse: the run stops there, latest.pt keeps the end of epoch
    1 (the last checkpoint that passed), and metrics.jsonl holds exactly epoch 1."""
    _poison_after(monkeypatch, steps=3, what=what)  # 2 steps per epoch: epoch 2, step 1
    cfg = tiny(tmp_path, train_subset=128, test_subset=64, checkpoint_every_steps=1)
    with pytest.raises(TGDError) as info:
        run_training(cfg, progress=False)
    message = str(info.value)
    assert message.startswith("training diverged at epoch 2, step 1: 1 of ")
    assert f"batch_norm1.{what}" in message
    assert message.endswith(f"last good checkpoint: {tmp_path / 'run/latest.pt'} "
                            "(end of epoch 1)")
    ckpt = load_checkpoint(tmp_path / "run/latest.pt")  # refuses non-finite weights
    assert (ckpt.epoch, ckpt.training_state["loop"]["step"]) == (1, 0)
    assert [r["epoch"] for r in strict_rows(tmp_path / "run/metrics.jsonl")] == [1]


def test_metrics_rows_are_never_ahead_of_the_checkpoints(tmp_path):
    """#16 problem 7: when an epoch's row reaches metrics.jsonl (and the run context), latest.pt
    (and best.pt, when the epoch is the best) already hold that epoch."""
    seen = []

    class Watch:
        def log(self, row):
            run = tmp_path / "run"
            assert strict_rows(run / "metrics.jsonl")[-1] == row
            assert load_checkpoint(run / "latest.pt").epoch == row["epoch"]
            seen.append(load_checkpoint(run / "best.pt").epoch)

    result = run_training(tiny(tmp_path, train_subset=128, test_subset=64), ctx=Watch(),
                          progress=False)
    assert len(seen) == 2 and seen[-1] == result["best_epoch"]


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


def test_learning_rate_schedules_between_and_beyond_their_knots():
    """Hand values: cosine 0.05·(1 + cos(π·e/E)), 0 from E on; onecycle linear from lr/25 to
    lr over 0.3·E, then lr/1e4 + (lr − lr/1e4)/2·(1 + cos(π·t)), lr/1e4 from E on; a linear
    warm-up multiplies by (e + 1e-8)/warmup_epochs while e < warmup_epochs."""
    cos = TrainConfig.build(epochs=10, schedule="cosine")
    assert learning_rate(cos, 2.5) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    assert learning_rate(cos, 12) == 0
    one = TrainConfig.build(epochs=10, schedule="onecycle")
    assert learning_rate(one, 1.5) == pytest.approx(0.004 + 0.096 * 0.5)
    assert learning_rate(one, 6.5) == pytest.approx(1e-5 + 0.5 * (0.1 - 1e-5))
    assert learning_rate(one, 10) == pytest.approx(1e-5) and learning_rate(one, 12) == \
        pytest.approx(1e-5)
    warm = TrainConfig.build(epochs=10, schedule="cosine", warmup_epochs=2)
    assert learning_rate(warm, 1) == pytest.approx(0.05 * (1 + math.cos(math.pi / 10)) / 2)
    assert learning_rate(warm, 0) == pytest.approx(0.1 * 1e-8 / 2)
    assert learning_rate(warm, 4) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.4)))


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


#: ``python -c`` program: `tgd train ARGS` whose loop, after step 3 of epoch 2, creates the file
#: $TGD_TEST_PAUSED and waits there forever (to be killed): a kill in mid-epoch, at a known point.
PAUSING_TRAIN = """
import os, pathlib, sys, threading
from tgd_core.cli import main
from tgd_core.training.trainer import Trainer

after_step = Trainer.after_step

def pausing_after_step(self, b, epoch, result, bar):
    after_step(self, b, epoch, result, bar)
    if (epoch, b.step) == (1, 2):
        pathlib.Path(os.environ["TGD_TEST_PAUSED"]).touch()
        threading.Event().wait()

Trainer.after_step = pausing_after_step
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_training_process_resumes_to_the_same_weights(tmp_path):
    """SIGKILL a real `tgd train` process in the middle of epoch 2 (its epoch-1 checkpoint
    written, three steps of epoch 2 taken); `--resume` continues from the checkpoint and ends
    with the weights and metrics rows of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys

    args = ["train", "--model", "wrn16_1", "--train-subset", "192", "--test-subset", "32",
            "--epochs", "3", "--batch-size", "32", "--threads", "2", "--no-progress",
            "--augment", "--set", "milestones=[2]"]
    subprocess.run([sys.executable, "-m", "tgd_core", *args, "--out", str(tmp_path / "full")],
                   check=True, capture_output=True)
    paused, log = tmp_path / "paused", tmp_path / "cut.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", PAUSING_TRAIN, *args, "--out",
                                 str(tmp_path / "cut")], stdout=err, stderr=err,
                                env={**os.environ, "TGD_TEST_PAUSED": str(paused)})
    wait_for(lambda: paused.exists() or proc.poll() is not None, what="the pause in epoch 2")
    assert proc.poll() is None, log.read_text()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(tmp_path / "cut/latest.pt").epoch == 1
    subprocess.run([sys.executable, "-m", "tgd_core", *args, "--out", str(tmp_path / "cut"),
                    "--resume"], check=True, capture_output=True)
    a, b = weights(tmp_path / "full/latest.pt"), weights(tmp_path / "cut/latest.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert same_rows(tmp_path / "cut/metrics.jsonl", tmp_path / "full/metrics.jsonl")


@pytest.mark.parametrize("command", ["train", "distill"])
def test_resume_needs_only_the_run_folder(tmp_path, command):
    """``tgd train|distill --out DIR --resume`` continues the run DIR saved (its config.json):
    no option has to be repeated, distill's default method does not override the saved one,
    and the run ends as an uninterrupted one."""
    import os
    import subprocess
    import sys

    from tgd_core.cli import main

    args = [command, "--train-subset", "16", "--test-subset", "8", "--epochs", "2",
            "--batch-size", "8", "--threads", "1", "--no-progress", "--set",
            "test_split=test_lossless_1k"]
    if command == "distill":  # not the default method (tgd), and a teacher
        args += ["--method", "kd", "--teacher1", "checkpoints/t1_wrn16_3_raw.pt"]
    else:
        args += ["--model", "wrn16_1", "--lr", "0.05"]
    cut = subprocess.run([sys.executable, "-m", "tgd_core", *args, "--out", str(tmp_path / "cut")],
                         env={**os.environ, "TGD_FAULT": "checkpoint-latest.pt:2"},
                         capture_output=True)
    assert cut.returncode == -9 and load_checkpoint(tmp_path / "cut/latest.pt").epoch == 1
    assert main([command, "--out", str(tmp_path / "cut"), "--resume", "--no-progress"]) == 0
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    a, b = weights(tmp_path / "whole/latest.pt"), weights(tmp_path / "cut/latest.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = json.loads((tmp_path / "cut/config.json").read_text())
    assert saved["method"] == ("kd" if command == "distill" else "scratch")
