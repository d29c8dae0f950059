"""The fast training loop (tgd_core.training.fast, issue #14) on the CPU device with tiny data:
the standard loop's numbers, exact resume, divergence, cached teacher targets, device batches.

Tolerances: on the CPU in float32 both loops run the same operations on the same batches (the
fast loop reads its totals later and sums them in another order), so the weights agree to
float32 rounding (rtol 1e-5, atol 1e-6) and the epoch's loss and accuracy to 1e-9 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tgd_core.core.errors import TGDError
from tgd_core.nets.checkpoints import load_checkpoint
from tgd_core.training import TrainConfig, run_training
from tgd_core.training.trainer import Stopped, trainer_class

pytestmark = pytest.mark.usefixtures("cifar_test_images")  # needs the CIFAR-10 data

CLOSE = dict(rtol=1e-5, atol=1e-6)


def tiny(tmp_path, name: str, **changes) -> TrainConfig:
    """A seconds-long run on the CPU: 80 images in batches of 32 (the last one partial)."""
    values = dict(train_subset=80, test_split="test_lossless_1k", test_subset=32, epochs=1,
                  batch_size=32, threads=2, device="cpu", milestones=[1], augment=True,
                  channels_last=True, sync_every_steps=2, out_dir=str(tmp_path / name))
    return TrainConfig.build(**{**values, **changes})


def weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def rows(cfg: TrainConfig) -> list[dict]:
    """The run's metrics rows."""
    text = (Path(cfg.out_dir) / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def assert_same_run(a: TrainConfig, b: TrainConfig) -> None:
    """Same weights (float32 rounding) and the same epoch rows (loss terms, accuracies)."""
    wa, wb = weights(f"{a.out_dir}/latest.pt"), weights(f"{b.out_dir}/latest.pt")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], **CLOSE, msg=k)
    for ra, rb in zip(rows(a), rows(b), strict=True):
        for k, v in ra.items():
            if k.startswith(("train_", "test_")):
                assert rb[k] == pytest.approx(v, rel=1e-9, abs=1e-9), k


def test_engine_selection():
    from tgd_core.training.fast import FastTrainer
    from tgd_core.training.trainer import Trainer

    cpu = dict(device="cpu")
    assert trainer_class(TrainConfig.build(**cpu)) is Trainer  # auto: standard off CUDA
    assert trainer_class(TrainConfig.build(engine="standard", **cpu)) is Trainer
    assert trainer_class(TrainConfig.build(engine="fast", **cpu)) is FastTrainer
    with pytest.raises(TGDError, match="engine"):
        TrainConfig.build(engine="turbo")
    with pytest.raises(TGDError, match="sync_every_steps"):
        TrainConfig.build(sync_every_steps=0)


def test_device_batches_are_the_standard_batches(tmp_path):
    """Same steps, batch ids, indices, crops/flips and inputs, from any start step (a resume),
    with and without fixed batches."""
    from tgd_core.training.data import TrainData
    from tgd_core.training.fast import DeviceData

    for fixed in (False, True):
        cfg = tiny(tmp_path, "run", fixed_batches=fixed)
        data = TrainData(cfg, {"raw"}, torch.device("cpu"))
        for start in (0, 1):
            standard = list(data.train_batches(1, start))
            fast = list(DeviceData(data).train_batches(1, start))
            assert [b.step for b in fast] == [b.step for b in standard] == list(range(start, 3))
            for s, f in zip(standard, fast, strict=True):
                assert (s.batch, s.global_size) == (f.batch, f.global_size)
                assert torch.equal(s.idx, f.idx) and torch.equal(s.labels, f.labels)
                assert torch.equal(s.inputs["raw"], f.inputs["raw"])
        assert [b.global_size for b in fast] != [32, 32, 32]  # a partial batch is among them


def test_first_epoch_matches_the_standard_loop(tmp_path):
    """With augmentation and a partial last batch, two epochs (the LR steps between them)."""
    standard = tiny(tmp_path, "standard", engine="standard", epochs=2)
    fast = tiny(tmp_path, "fast", engine="fast", epochs=2)
    run_training(standard, progress=False)
    run_training(fast, progress=False)
    assert_same_run(standard, fast)
    assert [r["epoch"] for r in rows(fast)] == [1, 2]
    assert json.loads((tmp_path / "fast/result.json").read_text())["epochs"] == 2


def test_resume_gives_the_uninterrupted_weights(tmp_path):
    """Stopped at a read mid-epoch (step 2 of 3 of epoch 1), resumed: the weights and rows of
    an uninterrupted run."""

    class StopOnce:
        calls = 0

        def should_stop(self):
            StopOnce.calls += 1
            return StopOnce.calls == 1

    whole = tiny(tmp_path, "whole", engine="fast", epochs=2)
    run_training(whole, progress=False)
    parts = tiny(tmp_path, "parts", engine="fast", epochs=2)
    with pytest.raises(Stopped, match="stopped at epoch 1, step 2"):
        run_training(parts, ctx=StopOnce(), progress=False)
    state = load_checkpoint(tmp_path / "parts/latest.pt").training_state["loop"]
    assert (state["epoch"], state["step"], state["seen"]) == (0, 2, 64)
    run_training(parts, resume=True, progress=False)
    assert_same_run(whole, parts)


def test_non_finite_loss_stops_with_the_standard_message(tmp_path):
    """Epoch 2 at an absurd LR: the fast loop (reads every 2 steps) names the same step and
    loss as the standard loop (checks every step), and leaves epoch 1's finite checkpoint."""
    messages = {}
    for engine in ("standard", "fast"):
        run_training(tiny(tmp_path, engine, engine=engine, augment=False), progress=False)
        good = weights(tmp_path / engine / "latest.pt")
        diverging = tiny(tmp_path, engine, engine=engine, augment=False, epochs=2, lr=1e30)
        (tmp_path / engine / "config.json").write_text(diverging.model_dump_json())
        with pytest.raises(TGDError, match="loss became non-finite") as info:
            run_training(diverging, resume=True, progress=False)
        messages[engine] = str(info.value).replace(str(tmp_path / engine), "RUN")
        after = weights(tmp_path / engine / "latest.pt")  # the loader refuses non-finite ones
        assert all(torch.equal(good[k], v) for k, v in after.items())
        assert [r["epoch"] for r in rows(diverging)] == [1]
    assert messages["fast"] == messages["standard"]
    assert messages["fast"].startswith("training diverged at epoch 2, step ")
    assert messages["fast"].endswith("last good checkpoint: RUN/latest.pt (end of epoch 1)")


def test_tgd_with_cached_teacher_targets_matches_the_standard_loop(tmp_path):
    """Teachers (raw, PI) trained once; TGD without augmentation: the fast loop fills the
    target cache before its first step and never runs the teachers in a step."""
    from tgd_core.training.fast import FastTrainer

    teachers = {}
    for role, kind in (("t1", "raw"), ("t2", "pi")):
        cfg = tiny(tmp_path, role, student_input=kind, augment=False, engine="fast")
        run_training(cfg, progress=False)
        teachers[role] = f"{cfg.out_dir}/latest.pt"
    common = dict(method="tgd", teachers=teachers, augment=False, fixed_batches=True)
    standard = tiny(tmp_path, "standard", engine="standard", **common)
    fast = tiny(tmp_path, "fast", engine="fast", **common)
    run_training(standard, progress=False)
    calls = []

    class Counting(FastTrainer):
        def build_target_cache(self):
            cache = super().build_target_cache()
            for t in self.distiller.teachers.values():
                t.register_forward_hook(lambda *_: calls.append(self.state.step))
            return cache

    trainer = Counting(fast, progress=False)
    trainer.run()
    assert trainer.cache is not None and trainer.cache_full
    assert trainer.cache.misses == 3 and len(calls) == 2 * 3  # 2 teachers × 3 batches, once
    assert_same_run(standard, fast)


def test_on_the_fly_pis_come_from_the_host_and_match_the_standard_loop(tmp_path):
    """A PI student with augmentation: its PIs are computed from each augmented view on the
    host (the standard batches), the rest of the step is the fast loop's."""
    common = dict(student_input="pi", pi_on_the_fly=True, train_subset=40, batch_size=16)
    standard = tiny(tmp_path, "standard", engine="standard", **common)
    fast = tiny(tmp_path, "fast", engine="fast", **common)
    run_training(standard, progress=False)
    run_training(fast, progress=False)
    assert_same_run(standard, fast)
