"""Students trained as a group (tgd_core.training.group, ``tgd experiment --group-students``):
one process, one batch and one teachers' forward per step, and every run's files exactly those
of the run trained alone."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from tgd_core.core.errors import TGDError
from tgd_core.experiments.plan import batch_key, plan, student_groups
from tgd_core.experiments.recipe import Recipe
from tgd_core.nets.checkpoints import load_checkpoint
from tgd_core.training import Stopped, TrainConfig, run_training
from tgd_core.training.group import (
    SharedTeacher,
    StudentGroup,
    groups_by_position,
    run_position,
    train_group,
)

pytestmark = pytest.mark.usefixtures("cifar_test_images")

TIMING = {"epoch_seconds", "images_per_second", "train_seconds", "elapsed",
          "epoch_elapsed"}
COMMON = dict(student="wrn16_1", train_subset=64, test_split="test_lossless_1k", test_subset=32,
              epochs=2, batch_size=32, lr=0.05, schedule="cosine", threads=2, augment=True,
              pi_on_the_fly=True, channels_last=True, seed=7)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Tiny trained teachers: T1 on raw images, T2 on paper-mode PIs."""
    root = tmp_path_factory.mktemp("teachers")
    for name, kind in (("t1", "raw"), ("t2", "pi")):
        run_training(TrainConfig.build(student="wrn16_1", student_input=kind, train_subset=64,
                                       test_split="test_lossless_1k", test_subset=32, epochs=1,
                                       batch_size=32, threads=2, out_dir=str(root / name)),
                     progress=False)
    return {name: str(root / name / "latest.pt") for name in ("t1", "t2")}


def students(root, teachers, **extra) -> list[TrainConfig]:
    """Scratch, KD (T1) and TGD (T1 + T2) students of one seed, augmented, on-the-fly PIs."""
    methods = {"scratch": {}, "kd": {"teachers": {"t1": teachers["t1"]}},
               "tgd": {"teachers": teachers, "method_params": {"beta": 30.0}}}
    return [TrainConfig.build(**{**COMMON, **extra, "method": name, **spec,
                                 "out_dir": str(root / name)})
            for name, spec in methods.items()]


def without_timing(value):
    """JSON-like ``value`` with the timing fields dropped (at any depth)."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def assert_same_run(folder, reference) -> None:
    """Two run folders hold the same run: weights, optimizer and method state of latest.pt and
    best.pt equal bit for bit, equal metrics rows and result.json (timing aside)."""
    for name in ("latest.pt", "best.pt"):
        a, b = load_checkpoint(folder / name), load_checkpoint(reference / name)
        assert a.epoch == b.epoch and without_timing(a.metrics) == without_timing(b.metrics)
        assert a.state_dict.keys() == b.state_dict.keys()
        for k, v in a.state_dict.items():
            assert torch.equal(v, b.state_dict[k]), f"{folder / name}: {k} differs"
        for k, v in a.optimizer["state"].items():
            assert all(torch.equal(t, b.optimizer["state"][k][n]) for n, t in v.items())
        assert without_timing(a.training_state) == without_timing(b.training_state)
    for name in ("metrics.jsonl",):
        rows = [json.loads(line) for line in (folder / name).read_text().splitlines()]
        ref = [json.loads(line) for line in (reference / name).read_text().splitlines()]
        assert without_timing(rows) == without_timing(ref)
    assert without_timing(json.loads((folder / "result.json").read_text())) == without_timing(
        json.loads((reference / "result.json").read_text()))


@pytest.fixture(scope="module")
def alone(tmp_path_factory, teachers):
    """The three students trained alone, one after the other (the reference)."""
    root = tmp_path_factory.mktemp("alone")
    for cfg in students(root, teachers):
        run_training(cfg, progress=False)
    return root


class StopAt:
    """A run context that asks the loop to stop at its ``n``-th poll (one poll a step)."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def should_stop(self):
        self.calls += 1
        return self.calls >= self.n


def test_a_group_trains_each_run_exactly_as_alone_with_one_teachers_forward_a_step(
        tmp_path, teachers, alone):
    cfgs = students(tmp_path, teachers)
    group = StudentGroup(cfgs)
    results = group.run([False] * 3)
    for cfg, result in zip(cfgs, results, strict=True):
        assert result["last"]["epoch"] == 2
        assert_same_run(tmp_path / cfg.method, alone / cfg.method)
    # T1 serves KD and TGD, T2 serves TGD: each ran one forward per step (2 epochs x 2 steps),
    # plus none outside the steps (augmented: no target cache probe)
    forwards = {key[0]: net.model.forwards for key, net in group.teachers.items()}
    assert sorted(forwards.values()) == [4, 4] and len(forwards) == 2


def test_a_stopped_group_resumes_to_the_runs_trained_alone(tmp_path, teachers, alone):
    cfgs = students(tmp_path, teachers)
    with pytest.raises(Stopped, match="epoch 1, step 1"):
        train_group(cfgs, resume=[False] * 3, ctxs=[None, StopAt(1), None])
    assert {run_position(cfg) for cfg in cfgs} == {(0, 1)}  # every run saved the same step
    train_group(cfgs, resume=[True] * 3)
    for cfg in cfgs:
        assert_same_run(tmp_path / cfg.method, alone / cfg.method)


def test_runs_at_other_positions_train_apart_and_still_end_equal(tmp_path, teachers, alone):
    cfgs = students(tmp_path, teachers)
    scratch, kd, tgd = cfgs
    run_training(scratch, progress=False)  # finished
    with pytest.raises(Stopped):
        run_training(kd, progress=False, ctx=StopAt(3))  # epoch 2, step 1
    runs = [(c.method, c) for c in cfgs]
    assert [[label for label, _ in g] for g in groups_by_position(runs)] == [
        ["scratch"], ["kd"], ["tgd"]]
    with pytest.raises(TGDError, match="one position"):
        train_group([kd, tgd], resume=[True, False])
    train_group([kd], resume=[True])
    train_group([tgd], resume=[False])
    for cfg in cfgs:
        assert_same_run(tmp_path / cfg.method, alone / cfg.method)


def test_a_failing_member_leaves_the_group_and_its_error_is_raised_after_the_others(
        tmp_path, teachers, alone):
    scratch, kd, tgd = students(tmp_path, teachers)
    diverging = TrainConfig.build(**{**kd.model_dump(), "lr": 1e30})
    with pytest.raises(TGDError, match="diverged"):
        train_group([scratch, diverging, tgd], resume=[False] * 3)
    for cfg in (scratch, tgd):
        assert_same_run(tmp_path / cfg.method, alone / cfg.method)
    assert not (tmp_path / "kd" / "result.json").exists()


def test_a_group_refuses_runs_that_do_not_share_their_batches(tmp_path, teachers):
    scratch, kd, _ = students(tmp_path, teachers)
    other = TrainConfig.build(**{**kd.model_dump(), "seed": 8})
    with pytest.raises(TGDError, match="share their batches"):
        StudentGroup([scratch, other])
    with pytest.raises(TGDError, match="one output folder"):
        StudentGroup([scratch, scratch])


@pytest.mark.parametrize("inference", ["exact", "int8"])
def test_a_members_student_starts_from_the_weights_of_the_run_alone(tmp_path, teachers,
                                                                     inference):
    """Loading teachers draws from torch's global RNG before the student's init (random
    builds; folded and int8 copies): a member replays its own loading, so its student starts
    where the run alone starts, whatever the group loaded before."""
    from tgd_core.training.trainer import Trainer

    scratch, kd, tgd = students(tmp_path / "group", teachers, teacher_inference=inference)
    group = StudentGroup([scratch, tgd, kd])
    group.setup([False] * 3)
    for member in group.members[1:]:
        cfg = member.cfg.model_copy(update={"out_dir": str(tmp_path / "alone" /
                                                           member.cfg.method)})
        alone = Trainer(cfg, progress=False)
        alone.setup(resume=False)
        mine, theirs = member.student.state_dict(), alone.student.state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_shared_teacher_runs_once_per_batch_and_returns_the_teachers_outputs():
    torch.manual_seed(0)
    from tgd_core.nets.models import build_model

    model = build_model("wrn16_1").eval()
    shared = SharedTeacher(model)
    x, y = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        logits, features = model(x, return_features=True)
        assert torch.equal(shared(x), model(x))  # no batch: the teacher itself
        shared.start_batch((0, 0))
        first = shared(x, return_features=True)
        assert torch.equal(shared(x), logits) and torch.equal(first[0], logits)
        assert all(torch.equal(a, b) for a, b in zip(first[1], features, strict=True))
        assert shared.forwards == 2  # one for the unmemoised call, one for the batch
        shared.start_batch((0, 1))
        assert torch.equal(shared(y), model(y)) and shared.forwards == 3


TINY = {
    "name": "tiny",
    "description": "grouping plan",
    "common": {"train_subset": 64, "test_split": "test_lossless_1k", "test_subset": 32,
               "epochs": 1, "batch_size": 32, "threads": 2, "augment": True,
               "pi_on_the_fly": True},
    "teachers": {"t1": {"student": "wrn16_1", "student_input": "raw"},
                 "t2": {"student": "wrn16_1", "student_input": "pi"}},
    "init": {},
    "student": {"student": "wrn16_1"},
    "methods": {"scratch": {}, "kd": {"teachers": {"t1": "t1"}},
                "tgd": {"teachers": {"t1": "t1", "t2": "t2"}, "init": True},
                "big_batch": {"method": "scratch", "overrides": {"batch_size": 64}},
                "int8": {"method": "kd", "teachers": {"t1": "t1"},
                         "overrides": {"teacher_inference": "int8", "lr": 0.2}}},
    "seeds": [0, 1],
}


def test_student_groups_share_batches_per_seed_and_keep_teachers_alone(tmp_path):
    runs = plan(Recipe(**TINY), tmp_path)
    units = [[label for label, _ in unit] for unit in student_groups(runs)]
    assert units == [["teacher t1"], ["teacher t2"], ["init (scratch student)"],
                     ["scratch seed 0", "kd seed 0", "tgd seed 0", "int8 seed 0"],
                     ["scratch seed 1", "kd seed 1", "tgd seed 1", "int8 seed 1"],
                     ["big_batch seed 0"], ["big_batch seed 1"]]
    cfgs = dict(runs)
    assert batch_key(cfgs["scratch seed 0"]) == batch_key(cfgs["int8 seed 0"])
    assert batch_key(cfgs["scratch seed 0"]) != batch_key(cfgs["scratch seed 1"])


def test_experiment_group_students_from_the_cli_equals_the_default_path(tmp_path, capsys):
    from tgd_core.cli import main

    recipe = {**TINY, "methods": {k: TINY["methods"][k] for k in ("scratch", "kd", "tgd")},
              "seeds": [0], "evaluation": {"split": "test_lossless_1k", "subset": 32,
                                           "corruption_subset": 16,
                                           "corruptions": ["contrast"], "severities": [1],
                                           "noise_sigmas": []}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    grouped, plain = tmp_path / "grouped", tmp_path / "plain"
    assert main(["experiment", str(path), "--out", str(grouped), "--group-students",
                 "--plan"]) == 0
    shown = capsys.readouterr().out
    assert "group 1" in shown and shown.count("group 1") == 3  # the three students
    assert main(["experiment", str(path), "--out", str(plain), "--no-progress"]) == 0
    assert main(["experiment", str(path), "--out", str(grouped), "--no-progress",
                 "--group-students"]) == 0
    assert "[group]" in capsys.readouterr().err
    for run in ("teachers/t1", "teachers/t2", "init", "scratch/seed0", "kd/seed0",
                "tgd/seed0"):
        assert_same_run(grouped / run, plain / run)
    # again: every run is finished, nothing trains
    assert main(["experiment", str(path), "--out", str(grouped), "--no-progress",
                 "--group-students"]) == 0
    err = capsys.readouterr().err
    assert "[train]" not in err and "[group]" not in err and "[done] tgd seed 0" in err


def test_parallel_groups_are_units_of_work_in_worker_processes(tmp_path, capsys):
    """``--parallel 2 --group-students``: each seed's students are one unit, trained in a
    worker process once their teacher is done, with the weights of a run trained alone."""
    import os

    from tgd_core.cli import main

    spec = {**TINY, "teachers": {"t1": TINY["teachers"]["t1"]}, "init": None,
            "methods": {k: TINY["methods"][k] for k in ("scratch", "kd")},
            "evaluation": {"split": "test_lossless_1k", "subset": 32, "corruption_subset": 16,
                           "corruptions": ["contrast"], "severities": [1],
                           "noise_sigmas": []}}
    path = tmp_path / "par.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "exp"
    assert main(["experiment", str(path), "--out", str(out), "--no-progress", "--parallel",
                 "2", "--group-students"]) == 0
    log = capsys.readouterr().err.splitlines()
    done = [line for line in log if line.startswith("[done] ")]
    assert any(line.startswith("[done] scratch seed 1, kd seed 1 in ") for line in done)
    assert os.getpid() not in {int(line.split("(process ")[1].rstrip(")")) for line in done}
    cfg = dict(plan(Recipe(**spec), out))["kd seed 1"]
    alone = cfg.model_copy(update={"out_dir": str(tmp_path / "alone")})
    run_training(alone, progress=False)
    assert_same_run(out / "kd" / "seed1", tmp_path / "alone")
