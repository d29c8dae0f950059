"""The training engine's semantics pinned against independent references (a mutation audit of
tgd_core/training: each test kills mutants the other tests let live).

References are hand-computed values, loops written here in plain PyTorch (crops, SGD), and the
standard loop for the fast one (both on the CPU, tiny data: 40 images in batches of 16, the
last one partial). Every run here is seconds long.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tgd_core.core.errors import TGDError
from tgd_core.nets.checkpoints import load_checkpoint
from tgd_core.training import Stopped, TrainConfig
from tgd_core.training.data import (
    TrainData,
    _generator,
    apply_crop_flip,
    draw_crop_flip,
    pi_normalization,
    raw_normalization,
)
from tgd_core.training.fast import FastTrainer
from tgd_core.training.loop_state import LoopState, StepResult
from tgd_core.training.targets import TargetCache, _bytes, why_live
from tgd_core.training.trainer import Trainer, evaluate_distiller

CPU = torch.device("cpu")
ENGINES = {"standard": Trainer, "fast": FastTrainer}


def tiny(tmp_path, name: str = "run", **changes) -> TrainConfig:
    """A seconds-long CPU run: 40 images in batches of 16 (3 steps, the last of 8 images)."""
    values = dict(train_subset=40, test_split="test_lossless_1k", test_subset=16, epochs=1,
                  batch_size=16, threads=2, device="cpu", milestones=[1], augment=False,
                  sync_every_steps=50, out_dir=str(tmp_path / name))
    return TrainConfig.build(**{**values, **changes})


def metric_rows(cfg: TrainConfig) -> list[dict]:
    text = (Path(cfg.out_dir) / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


# -- augmentation and batches (data.py) ------------------------------------------------------

def crop_flip_reference(x: torch.Tensor, oy, ox, flip, pad: int) -> torch.Tensor:
    """Crops of the zero-padded images and horizontal flips, pixel by pixel."""
    n, c, h, w = x.shape
    out = torch.zeros_like(x)
    for i in range(n):
        padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=x.dtype)
        padded[:, pad:pad + h, pad:pad + w] = x[i]
        for r in range(h):
            for col in range(w):
                src = w - 1 - col if flip[i] else col
                out[i, :, r, col] = padded[:, int(oy[i]) + r, int(ox[i]) + src]
    return out


def test_crop_and_flip_equal_a_pixel_loop():
    x = torch.arange(1, 3 * 2 * 5 * 6 + 1, dtype=torch.int64).reshape(3, 2, 5, 6)
    oy, ox = torch.tensor([0, 8, 3]), torch.tensor([5, 1, 8])
    flip = torch.tensor([True, False, True])
    got = apply_crop_flip(x, (oy, ox, flip))
    assert torch.equal(got, crop_flip_reference(x, oy, ox, flip, pad=4))
    # oy = 8, ox = 1: the last image row, shifted right by 3, then the bottom padding
    assert torch.equal(got[1, :, 0, 3:], x[1, :, 4, :3]) and got[1, :, 1:].eq(0).all()
    assert torch.equal(apply_crop_flip(x, (torch.full((3,), 4), torch.full((3,), 4),
                                           torch.zeros(3, dtype=torch.bool))), x)


def test_crop_offsets_cover_the_padding_and_flips_are_fair():
    oy, ox, flip = draw_crop_flip(20_000, torch.Generator().manual_seed(0))
    assert set(oy.tolist()) == set(range(9)) == set(ox.tolist())
    assert abs(flip.float().mean().item() - 0.5) < 0.02


@pytest.mark.usefixtures("cifar_test_images")
def test_epoch_plans_orders_and_augmentation_are_drawn_per_epoch(tmp_path):
    """Each epoch a new permutation (fixed_batches: the same batches, in a new order), every
    sample once an epoch, the last batch partial, and crops drawn per (epoch, step)."""
    data = TrainData(tiny(tmp_path, augment=True), {"raw"}, CPU)
    assert data.steps_per_epoch() == 3
    plans = [data.epoch_plan(e) for e in range(4)]
    for order, batches in plans:
        assert sorted(order.tolist()) == list(range(40)) and batches == [0, 1, 2]
    assert not torch.equal(plans[0][0], plans[1][0])
    batches = list(data.train_batches(1))
    assert [len(b.idx) for b in batches] == [b.global_size for b in batches] == [16, 16, 8]
    assert sorted(torch.cat([b.idx for b in batches]).tolist()) == list(range(40))
    assert torch.equal(batches[1].idx, plans[1][0][16:32])
    crops = {(e, s): data.step_crop_flip(e, s, 16) for e in range(2) for s in range(2)}
    for key, crop in crops.items():
        assert torch.equal(crop[0], draw_crop_flip(16, _generator(1234, *key, 1))[0])
    assert not torch.equal(crops[0, 0][0], crops[1, 0][0])
    assert not torch.equal(crops[0, 0][0], crops[0, 1][0])

    fixed = TrainData(tiny(tmp_path, fixed_batches=True), {"raw"}, CPU)
    plans = [fixed.epoch_plan(e) for e in range(6)]
    first = plans[0][0]
    for order, batches in plans:
        assert torch.equal(order, first) and sorted(batches) == [0, 1, 2]
    assert len({tuple(batches) for _, batches in plans}) > 1
    for b in fixed.train_batches(3):
        assert b.batch == plans[3][1][b.step]
        assert torch.equal(b.idx, first[b.batch * 16:(b.batch + 1) * 16])


@pytest.mark.usefixtures("cifar_test_images")
def test_inputs_are_the_uint8_pixels_over_255(tmp_path):
    data = TrainData(tiny(tmp_path, student_input="pi"), {"raw", "pi"}, CPU)
    for b in data.train_batches(0):
        assert torch.equal(b.inputs["raw"], data.train.raw[b.idx].float() / 255)
        assert torch.equal(b.inputs["pi"], data.train.pi[b.idx].float() / 255)
        assert torch.equal(b.labels, data.train.labels[b.idx])
    (inputs, labels), = list(data.test_batches())
    assert torch.equal(inputs["raw"], data.test.raw.float() / 255)


def test_normalisation_statistics_by_hand():
    pis = np.zeros((2, 2, 1, 2), dtype=np.uint8)
    pis[:, 0] = [[[0, 255]], [[255, 255]]]  # channel 0: 0, 1, 1, 1 -> mean .75, std sqrt(3)/4
    pis[:, 1] = 51  # channel 1: 0.2 everywhere -> std clipped to 1e-6
    norm = pi_normalization(pis)
    assert norm.mean == pytest.approx((0.75, 0.2)) and norm.std == pytest.approx(
        (math.sqrt(3) / 4, 1e-6))
    images = np.zeros((1, 1, 2, 3), dtype=np.uint8)
    images[0, 0] = [[0, 255, 51], [255, 255, 51]]  # N×H×W×3
    norm = raw_normalization(images)
    assert norm.mean == pytest.approx((0.5, 1.0, 0.2)) and norm.std == pytest.approx(
        (0.5, 1e-6, 1e-6))


@pytest.mark.usefixtures("cifar_test_images")
def test_cifar10_uses_the_reference_statistics(tmp_path):
    from tgd_core.data.normalization import CIFAR10_RAW

    assert TrainData(tiny(tmp_path), {"raw"}, CPU).normalizations["raw"] == CIFAR10_RAW


# -- one epoch against plain PyTorch (trainer.py, fast.py) ----------------------------------

def plain_epoch(distiller, data: TrainData, cfg: TrainConfig, steps: int):
    """Epoch 1 of a scratch run in plain PyTorch: normalised inputs, mean cross-entropy, SGD
    with weight decay and (Nesterov) momentum written out, the cosine LR of each step; the
    student and (Σ CE·n, correct) over the epoch."""
    student, norm = copy.deepcopy(distiller.student), distiller.student_norm
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (norm.mean, norm.std))
    params = list(student.parameters())
    bufs = [None] * len(params)
    ce_sum, correct = 0.0, 0
    for b in data.train_batches(0):
        lr = 0.5 * cfg.lr * (1 + math.cos(math.pi * (b.step / steps) / cfg.epochs))
        logits = student((b.inputs["raw"] - mean) / std)
        loss = F.cross_entropy(logits, b.labels)
        ce_sum += loss.item() * len(b.labels)
        correct += int((logits.argmax(1) == b.labels).sum())
        student.zero_grad()
        loss.backward()
        with torch.no_grad():
            for i, p in enumerate(params):
                g = p.grad + cfg.weight_decay * p
                bufs[i] = g.clone() if bufs[i] is None else cfg.momentum * bufs[i] + g
                p -= lr * (g + cfg.momentum * bufs[i] if cfg.nesterov else bufs[i])
    return student, ce_sum, correct


@pytest.mark.usefixtures("cifar_test_images")
@pytest.mark.parametrize("engine", ["standard", "fast"])
def test_one_epoch_is_a_plain_pytorch_sgd_epoch(tmp_path, engine):
    """Weights, BatchNorm statistics and the epoch row (loss = Σ CE·n / N, accuracy) of a
    scratch epoch with Nesterov momentum, weight decay, a per-step cosine LR and a partial last
    batch are those of the loop written out here."""
    cfg = tiny(tmp_path, engine=engine, lr=0.05, momentum=0.8, weight_decay=5e-3,
               nesterov=True, schedule="cosine", epochs=2, augment=True, channels_last=False)
    trainer = ENGINES[engine](cfg, progress=False)
    trainer.setup(resume=False)
    reference, ce_sum, correct = plain_epoch(trainer.distiller, trainer.data, cfg, 3)
    epoch_time = trainer.train_epoch(0)
    row = trainer.epoch_row(0, epoch_time)
    got = trainer.distiller.student.state_dict()
    for k, v in reference.state_dict().items():
        torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert row["train_ce"] == pytest.approx(ce_sum / 40, rel=1e-5)
    assert row["train_accuracy"] == pytest.approx(100.0 * correct / 40)
    assert (trainer.state.seen, trainer.state.step) == (40, 3)


class Recorder:
    """A run context recording progress; stops at the ``stop_at``-th poll."""

    def __init__(self, stop_at: int = 0):
        self.fractions, self.polls, self.stop_at = [], 0, stop_at

    def progress(self, fraction, epoch=None, eta=None, message=None):
        self.fractions.append(fraction)

    def should_stop(self):
        self.polls += 1
        return self.polls == self.stop_at


def recording(engine: str, lrs: list, saves: list):
    """The ``engine``'s trainer class, recording each step's LR and each latest.pt's position."""

    class Recording(ENGINES[engine]):
        def train_step(self, b, epoch):
            result = super().train_step(b, epoch)
            lrs.append(self.optimizer.param_groups[0]["lr"])
            return result

        def save_checkpoint(self, path, row=None):
            super().save_checkpoint(path, row)
            if path == self.latest_path:
                saves.append((self.state.epoch, self.state.step))

    return Recording


@pytest.mark.usefixtures("cifar_test_images")
@pytest.mark.parametrize("engine", ["standard", "fast"])
def test_the_lr_changes_every_step(tmp_path, engine):
    """A cosine schedule sets each step's LR at its fractional epoch (epoch + step / steps)."""
    lrs, saves = [], []
    cfg = tiny(tmp_path, engine=engine, schedule="cosine", epochs=2, lr=0.1)
    recording(engine, lrs, saves)(cfg, progress=False).run()
    expected = [0.05 * (1 + math.cos(math.pi * (e + s / 3) / 2)) for e in (0, 1) for s in range(3)]
    assert lrs == pytest.approx(expected, rel=1e-12)


@pytest.mark.usefixtures("cifar_test_images")
@pytest.mark.parametrize("engine", ["standard", "fast"])
@pytest.mark.parametrize("every, positions", [(1, [(0, 1), (0, 2), (1, 0)]), (2, [(0, 2), (1, 0)])])
def test_mid_epoch_checkpoints_and_progress(tmp_path, engine, every, positions):
    """``checkpoint_every_steps`` saves latest.pt after every such step but the epoch's last
    (the epoch end saves it) — in the fast loop too, whose reads are otherwise 50 steps apart;
    progress reaches 1 and never passes the steps done."""
    lrs, saves, ctx = [], [], Recorder()
    cfg = tiny(tmp_path, engine=engine, checkpoint_every_steps=every)
    recording(engine, lrs, saves)(cfg, ctx=ctx, progress=False).run()
    assert saves == positions
    if engine == "standard":
        assert ctx.fractions == pytest.approx([1 / 3, 2 / 3, 1.0])
    else:
        assert ctx.fractions == pytest.approx([s / 3 for s in range(every, 3, every)] + [1.0])


@pytest.mark.usefixtures("cifar_test_images")
def test_the_fast_loop_names_the_first_non_finite_step(tmp_path):
    """An absurd LR: steps 2 and 3 are non-finite; the fast loop, reading once at the epoch's
    end, names step 2 as the standard loop does, and nothing is saved."""
    messages = {}
    for engine in ENGINES:
        cfg = tiny(tmp_path, engine, engine=engine, lr=1e30)
        with pytest.raises(TGDError, match="loss became non-finite") as info:
            ENGINES[engine](cfg, progress=False).run()
        messages[engine] = str(info.value)
        assert not (tmp_path / engine / "latest.pt").exists()
    assert messages["fast"] == messages["standard"]
    assert messages["fast"].startswith("training diverged at epoch 1, step 2: ")


@pytest.mark.usefixtures("cifar_test_images")
def test_only_full_batches_run_the_compiled_step(tmp_path, monkeypatch):
    """A stand-in compiler: the compiled step sees the full batches only (static shapes); the
    partial last batch runs the step eagerly."""
    sizes = []

    def recording_compile(fn, **options):
        def compiled(inputs, labels, *rest):
            sizes.append(len(labels))
            return fn(inputs, labels, *rest)
        return compiled

    monkeypatch.setattr(torch, "compile", recording_compile)
    FastTrainer(tiny(tmp_path, engine="fast", compile=True, epochs=2), progress=False).run()
    assert sizes == [16, 16, 16, 16]


def test_fused_sgd_on_cuda_only():
    trainer = FastTrainer.__new__(FastTrainer)
    trainer.device = torch.device("cuda")
    assert trainer.optimizer_options() == {"fused": True}
    trainer.device = CPU
    assert trainer.optimizer_options() == {}


# -- setup, resume, epoch rows and evaluation (trainer.py, loop_state.py) -------------------

@pytest.mark.usefixtures("cifar_test_images")
def test_the_student_starts_from_the_seeded_init(tmp_path):
    from tgd_core.nets.models import build_model

    torch.manual_seed(99)
    trainer = Trainer(tiny(tmp_path, seed=7), progress=False)
    trainer.setup(resume=False)
    torch.manual_seed(7)
    reference = build_model("wrn16_1", in_channels=3, num_classes=10).state_dict()
    got = trainer.student.state_dict()
    assert all(torch.equal(got[k], v) for k, v in reference.items())


@pytest.mark.usefixtures("cifar_test_images")
def test_a_resume_uses_this_loops_sgd_implementation(tmp_path):
    """A checkpoint saved by a loop with foreach SGD resumes with this loop's (the default):
    the saved state, not the saved implementation flags; the position and momenta restored."""

    class Foreach(Trainer):
        def optimizer_options(self):
            return {"foreach": True}

    cfg = tiny(tmp_path, epochs=2)
    with pytest.raises(Stopped):
        Foreach(cfg, ctx=Recorder(stop_at=2), progress=False).run()
    saved = load_checkpoint(tmp_path / "run/latest.pt")
    assert saved.optimizer["param_groups"][0]["foreach"] is True
    resumed = Trainer(cfg, progress=False)
    resumed.setup(resume=True)
    assert resumed.optimizer.param_groups[0]["foreach"] is None
    assert (resumed.state.epoch, resumed.state.step, resumed.state.seen) == (0, 2, 32)
    state = resumed.optimizer.state_dict()["state"]
    for k, v in saved.optimizer["state"].items():
        assert torch.equal(state[k]["momentum_buffer"], v["momentum_buffer"])


@pytest.mark.usefixtures("cifar_test_images")
def test_rows_lr_evaluation_cadence_and_the_best_epoch(tmp_path, monkeypatch):
    """Rows carry the LR at each epoch's start; test metrics every ``eval_every`` epochs and at
    the last; the best epoch is the first with the highest accuracy (a tie keeps the earlier),
    and best.pt holds it."""
    accuracies = iter([50.0, 50.0])
    monkeypatch.setattr(Trainer, "evaluate", lambda self: {
        "test_accuracy": next(accuracies), "test_nll": 1.0, "test_ece": 0.1})
    cfg = tiny(tmp_path, epochs=3, eval_every=2, milestones=[1, 2], lr=0.1, gamma=0.2)
    result = Trainer(cfg, progress=False).run()
    rows = metric_rows(cfg)
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.02, 0.004])
    assert ["test_accuracy" in r for r in rows] == [False, True, True]
    assert result["best_epoch"] == 2 and result["last"]["epoch"] == 3
    assert load_checkpoint(tmp_path / "run/best.pt").epoch == 2


def test_loop_state_best_epoch_and_position():
    state = LoopState()
    assert not state.end_epoch({"epoch": 1}, 1.0)  # not evaluated: never the best
    assert state.best_epoch is None
    assert state.end_epoch({"epoch": 2, "test_accuracy": 0.0}, 1.0)
    assert not state.end_epoch({"epoch": 3, "test_accuracy": 0.0}, 1.0)  # a tie
    assert state.best_epoch == 2
    state.add_step(StepResult({"ce": 1.0}, 1, 4, False, False), step=4)  # a resumed stretch
    assert state.step == 5 and state.position() == "epoch 4, step 5"
    state.step = 1
    assert state.position() == "epoch 4, step 1"


@pytest.mark.usefixtures("cifar_test_images")
def test_evaluation_runs_in_eval_mode_and_restores_training_mode(tmp_path):
    from tgd_core.evaluation.metrics import evaluate_logits

    trainer = Trainer(tiny(tmp_path), progress=False)
    trainer.setup(resume=False)
    distiller, data = trainer.distiller, trainer.data
    before = copy.deepcopy(distiller.state_dict())
    student, norm = copy.deepcopy(distiller.student).eval(), distiller.student_norm
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (norm.mean, norm.std))
    with torch.no_grad():
        logits = student((data.test.raw.float() / 255 - mean) / std)
    expected = evaluate_logits(logits, data.test.labels.numpy())
    got = evaluate_distiller(distiller, data)
    assert got.accuracy == expected.accuracy and got.nll == pytest.approx(expected.nll)
    assert distiller.training
    assert all(torch.equal(v, distiller.state_dict()[k]) for k, v in before.items())


# -- the teacher-target cache (targets.py, trainer.py) --------------------------------------

class FakeTeachers:
    """A method whose teachers output per-sample rows ``t`` (2 x) and a per-batch map ``m``
    (x xᵀ); counts the teachers' runs."""

    teachers = {"t1": object()}

    def __init__(self):
        self.runs = 0

    def teacher_targets(self, inputs):
        self.runs += 1
        x = inputs["x"]
        return {"t": 2 * x, "m": x @ x.T}

    def teacher_rows(self, inputs):
        self.runs += 1
        return {"f": 3 * inputs["x"]}


def test_the_cache_serves_only_what_it_holds():
    x = torch.arange(12.0).reshape(6, 2)
    teachers = FakeTeachers()
    cache = TargetCache({"t": torch.zeros(1, 2)}, 6, CPU, per_batch=("m",))
    a, b = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    for idx, batch in ((a, 0), (b, 1)):
        cache.targets(teachers, {"x": x[idx]}, idx, batch)
    assert teachers.runs == 2 and bool(cache.filled.all())
    got = cache.targets(teachers, {"x": x[b]}, b, 1)  # served: batch 1's map, not batch 0's
    assert teachers.runs == 2
    assert torch.equal(got["t"], 2 * x[b]) and torch.equal(got["m"], x[b] @ x[b].T)
    got = cache.targets(teachers, {"x": x[a]}, a, 5)  # samples held, batch 5's map is not
    assert teachers.runs == 3 and torch.equal(got["m"], x[a] @ x[a].T)

    half = TargetCache({"t": torch.zeros(1, 2)}, 6, CPU)
    half.targets(teachers, {"x": x[a]}, a, 0)
    mixed = torch.tensor([2, 3])  # one sample held, one not: the teachers run
    runs = teachers.runs
    assert torch.equal(half.targets(teachers, {"x": x[mixed]}, mixed, 1)["t"], 2 * x[mixed])
    assert teachers.runs == runs + 1

    rows = TargetCache({"f": torch.zeros(1, 2)}, 6, CPU, derive=lambda r: {"s": r["f"].sum(1)})
    rows.targets(teachers, {"x": x[a]}, a, 0)
    runs = teachers.runs
    assert torch.equal(rows.targets(teachers, {"x": x[a]}, a, 0)["s"], 3 * x[a].sum(1))
    assert teachers.runs == runs


def test_why_the_teachers_run_live_and_the_cache_size():
    teachers = FakeTeachers()
    assert why_live(teachers, augment=False, enabled=True) is None
    assert why_live(teachers, augment=True, enabled=True) == (
        "live: augmented inputs change every epoch")
    assert why_live(teachers, augment=False, enabled=False) == "live: teacher_cache is off"
    assert _bytes({"a": torch.zeros(4, 3), "b": torch.zeros(4, dtype=torch.float64)}, 10) == (
        (3 * 4 + 8) * 10)


@pytest.fixture
def random_teacher(tmp_path) -> str:
    from tgd_core.data.normalization import CIFAR10_RAW
    from tgd_core.nets.checkpoints import save_checkpoint
    from tgd_core.nets.models import build_model

    torch.manual_seed(0)
    path = tmp_path / "teacher.pt"
    save_checkpoint(path, build_model("wrn16_1"), input_kind="raw", normalization=CIFAR10_RAW)
    return str(path)


@pytest.mark.usefixtures("cifar_test_images")
def test_how_a_run_serves_its_teachers(tmp_path, random_teacher):
    """Augmented: live. SP with reshuffled batches: the teachers' outputs by sample (a map
    cached by batch id would be another batch's next epoch); with fixed batches: its maps."""
    def served(name, **changes):
        trainer = Trainer(tiny(tmp_path, name, teachers={"t1": random_teacher}, **changes),
                          progress=False)
        trainer.setup(resume=False)
        return trainer.cache, trainer.teacher_targets

    cache, how = served("kd_aug", method="kd", augment=True)
    assert cache is None and how == "live: augmented inputs change every epoch"
    cache, how = served("sp", method="sp")
    assert cache.derive is not None and how.startswith("cached: the teachers' per-sample outputs")
    cache, how = served("sp_fixed", method="sp", fixed_batches=True)
    assert cache.derive is None and how.startswith("cached: the teachers' per-sample targets")



@pytest.mark.usefixtures("cifar_test_images")
def test_the_methods_own_weights_are_saved_and_resumed(tmp_path, random_teacher):
    """FitNet's adapter (trained beside the student) is in latest.pt and comes back on resume."""
    cfg = tiny(tmp_path, method="fitnet", teachers={"t1": random_teacher}, epochs=2)
    stopped = Trainer(cfg, ctx=Recorder(stop_at=1), progress=False)
    with pytest.raises(Stopped):
        stopped.run()
    own = stopped.distiller.extra_state()
    assert any(k.startswith("adapter.") for k in own)
    saved = load_checkpoint(tmp_path / "run/latest.pt").training_state["method"]
    resumed = Trainer(cfg, progress=False)
    resumed.setup(resume=True)
    for state in (saved, resumed.distiller.extra_state()):
        assert state.keys() == own.keys() and all(torch.equal(state[k], v) for k, v in own.items())

# -- groups of students (group.py) ----------------------------------------------------------

@pytest.mark.usefixtures("cifar_test_images")
def test_groups_by_position_keep_fast_runs_and_other_positions_apart(tmp_path):
    """Runs at one position on the standard loop form one group; a run stopped after step 1,
    and each run on the fast loop, train apart."""
    from tgd_core.training.group import groups_by_position, run_position

    stopped = tiny(tmp_path, "stopped", epochs=2)
    with pytest.raises(Stopped):
        Trainer(stopped, ctx=Recorder(stop_at=1), progress=False).run()
    assert run_position(stopped) == (0, 1)
    runs = [("a", tiny(tmp_path, "a", epochs=2)), ("stopped", stopped),
            ("b", tiny(tmp_path, "b", epochs=2, lr=0.2)),
            ("fast1", tiny(tmp_path, "fast1", epochs=2, engine="fast")),
            ("fast2", tiny(tmp_path, "fast2", epochs=2, engine="fast"))]
    assert [[label for label, _ in g] for g in groups_by_position(runs)] == [
        ["a", "b"], ["stopped"], ["fast1"], ["fast2"]]
