"""The Trainer's parts: its loop state and checkpoint payload, the teacher-target cache in a
real run, a variant that overrides one method, and a package import without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tgd_core.training import TrainConfig
from tgd_core.training.loop_state import LoopState, StepResult

# training_state["loop"] of a checkpoint written by the loop before the Trainer (a plain dict):
# mid-epoch 2 of a run whose epoch 1 was the best so far
ROW = {"epoch": 1, "lr": 0.05, "train_ce": 2.1, "train_accuracy": 20.0, "epoch_seconds": 1.5,
       "images_per_second": 85.0, "test_accuracy": 25.0, "test_nll": 2.0, "test_ece": 0.1}
OLD_LOOP = {"epoch": 1, "step": 1, "sums": {"ce": 130.5}, "correct": 14, "seen": 64,
            "elapsed": 1.5, "epoch_elapsed": 0.7, "best_accuracy": 25.0, "best_epoch": 1,
            "best": ROW, "last": ROW}


def test_loop_state_payload_round_trip_and_old_format():
    state = LoopState.from_payload(OLD_LOOP)
    assert state.to_payload() == OLD_LOOP
    assert list(state.to_payload()) == list(OLD_LOOP)  # same keys, same order
    assert LoopState.from_payload(state.to_payload()) == state
    assert state.position() == "epoch 2, step 1"
    state.sums["ce"] += 1  # the payload and the state do not share their sums
    assert OLD_LOOP["sums"] == {"ce": 130.5}
    assert LoopState().to_payload() == {
        "epoch": 0, "step": 0, "sums": {}, "correct": 0, "seen": 0, "elapsed": 0.0,
        "epoch_elapsed": 0.0, "best_accuracy": -1.0, "best_epoch": None, "best": None,
        "last": None}
    assert LoopState().position() == "start"


def test_loop_state_steps_and_epoch_end():
    state = LoopState()
    state.add_step(StepResult({"ce": 64.0}, 10, 32, False, False), step=0)
    state.add_step(StepResult({"ce": 32.0}, 20, 32, False, False), step=1)
    assert (state.step, state.sums, state.correct, state.seen) == (2, {"ce": 96.0}, 30, 64)
    assert state.end_epoch({"epoch": 1, "test_accuracy": 10.0}, epoch_time=2.0)
    assert state.position() == "end of epoch 1"
    assert (state.step, state.sums, state.seen, state.elapsed, state.best_epoch) == (
        0, {}, 0, 2.0, 1)
    assert not state.end_epoch({"epoch": 2, "test_accuracy": 5.0}, epoch_time=1.0)
    assert not state.end_epoch({"epoch": 3}, epoch_time=1.0)  # not evaluated: never the best
    assert (state.epoch, state.best_epoch, state.last["epoch"], state.elapsed) == (3, 1, 3, 4.0)


def test_importing_the_training_package_does_not_import_torch():
    code = ("import sys, tgd_core.training, tgd_core.training.config, tgd_core.training.jobs\n"
            "from tgd_core.jobs import available_kinds\n"
            "assert {'train', 'distill'} <= set(available_kinds())\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_and_distill_kinds_are_registered_by_training():
    from tgd_core.jobs.registry import KINDS, get_kind
    from tgd_core.training.jobs import run_train_job

    for kind in ("train", "distill"):
        assert kind in KINDS
        assert get_kind(kind).config_type() is TrainConfig
        assert get_kind(kind).runner() is run_train_job


@pytest.mark.usefixtures("cifar_test_images")  # needs the CIFAR-10 data
def test_teacher_cache_runs_the_teachers_on_the_first_epoch_only(tmp_path):
    """Without augmentation a KD run's teacher sees the probe batch and epoch 1's batches;
    epoch 2 is served from the cache (a Trainer variant counts the teacher's forward calls)."""
    from tgd_core.data.normalization import CIFAR10_RAW
    from tgd_core.nets.checkpoints import save_checkpoint
    from tgd_core.nets.models import build_model
    from tgd_core.training.trainer import Trainer

    torch.manual_seed(0)
    teacher = tmp_path / "teacher.pt"
    save_checkpoint(teacher, build_model("wrn16_1"), input_kind="raw",
                    normalization=CIFAR10_RAW)
    calls = []

    class CountingTrainer(Trainer):
        def load_teachers(self):
            teachers = super().load_teachers()
            teachers["t1"].model.register_forward_hook(lambda *_: calls.append(self.state.epoch))
            return teachers

    cfg = TrainConfig.build(method="kd", teachers={"t1": str(teacher)}, student="wrn16_1",
                            train_subset=128, test_subset=64, epochs=2, batch_size=64,
                            milestones=[1], threads=2, out_dir=str(tmp_path / "run"))
    run = CountingTrainer(cfg, progress=False)
    result = run.run()
    assert result["last"]["epoch"] == 2
    assert (run.cache.misses, run.cache.hits) == (2, 2)  # 2 steps an epoch
    assert calls == [0, 0, 0]  # the probe batch, then epoch 1's two batches
