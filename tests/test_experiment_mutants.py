"""The experiment runner's decisions checked one by one on small fake run folders and stubs (a
mutation audit of tgd_core/experiments: each test fails on a plausible slip the end-to-end
tests miss): which finished runs are reused or skipped, placement over every stage, the
deadline and the parallel scheduler's limits, resume flags, seeds carried to the report, best
vs last checkpoint, archive order and skips, the report's columns and tables, the α × β grid."""

from __future__ import annotations

import csv
import json
import shutil
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import pytest

from tgd_core.core.errors import TGDError
from tgd_core.experiments import runner
from tgd_core.experiments.plan import finished, plan
from tgd_core.experiments.recipe import Recipe

BASE = {
    "name": "mut",
    "common": {"train_subset": 64, "test_subset": 32, "epochs": 2, "batch_size": 32,
               "threads": 1, "device": "cpu"},
    "student": {"student": "wrn16_1"},
    "methods": {"scratch": {}},
    "seeds": [0],
    "evaluation": {"corruptions": ["contrast"], "severities": [1, 5], "noise_sigmas": [0.1]},
}


def recipe_of(**changes) -> Recipe:
    return Recipe(**{**BASE, **changes})


def finish(cfg, folder: Path | None = None, *, epochs: int | None = None,
           config: dict | None = None, **result) -> Path:
    """Fake the records of a finished run of ``cfg`` in ``folder`` (default: its out_dir):
    config.json as the trainer writes it, result.json saying ``epochs`` were trained."""
    folder = Path(folder or cfg.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    saved = {**cfg.model_dump(), "out_dir": str(folder), **(config or {})}
    (folder / "config.json").write_text(json.dumps(saved))
    (folder / "result.json").write_text(json.dumps({
        "epochs": cfg.epochs if epochs is None else epochs, "train_seconds": 2.5,
        "best": {"test_accuracy": 50.0}, "last": {"test_accuracy": 40.0}, **result}))
    return folder


def planned(recipe: Recipe, out: Path) -> dict:
    return dict(plan(recipe, out))


# --- plan: which finished runs count -----------------------------------------------------------


def test_a_run_is_finished_only_once_trained_to_the_recipes_epochs(tmp_path):
    (_, cfg), = plan(recipe_of(), tmp_path / "exp")
    assert not finished(cfg)
    finish(cfg, epochs=1)  # e.g. the recipe's epochs were raised since: train on
    assert not finished(cfg)
    finish(cfg)
    assert finished(cfg)


def test_a_run_that_learned_otherwise_is_not_reused_even_from_the_same_inputs(tmp_path):
    (_, first), = plan(recipe_of(), tmp_path / "first")
    finish(first)
    reuse = [str(tmp_path / "first")]
    same = planned(recipe_of(reuse=reuse), tmp_path / "second")["scratch seed 0"]
    assert same.out_dir == str(tmp_path / "first/scratch/seed0")
    other_lr = recipe_of(reuse=reuse, common={**BASE["common"], "lr": 0.05})
    assert planned(other_lr, tmp_path / "second")["scratch seed 0"].out_dir == str(
        tmp_path / "second/scratch/seed0")
    # an archived run (inputs.json) that learned otherwise neither
    (tmp_path / "first/scratch/seed0/inputs.json").write_text("{}")
    assert planned(other_lr, tmp_path / "second")["scratch seed 0"].out_dir == str(
        tmp_path / "second/scratch/seed0")
    assert planned(recipe_of(reuse=reuse), tmp_path / "second")["scratch seed 0"].out_dir == str(
        tmp_path / "first/scratch/seed0")


def test_an_unfinished_run_of_a_reuse_folder_is_not_reused(tmp_path):
    (_, first), = plan(recipe_of(), tmp_path / "first")
    finish(first, epochs=1)  # stopped (or trained to fewer epochs)
    cfg = planned(recipe_of(reuse=[str(tmp_path / "first")]), tmp_path / "second")
    assert cfg["scratch seed 0"].out_dir == str(tmp_path / "second/scratch/seed0")


def test_the_first_reuse_folder_that_holds_a_run_is_used(tmp_path):
    """``reuse: [working folder, archive]``: the run where it was trained, its archive second."""
    for folder in ("work", "archive"):
        (_, cfg), = plan(recipe_of(), tmp_path / folder)
        finish(cfg)
    reuse = [str(tmp_path / "work"), str(tmp_path / "archive")]
    runs = planned(recipe_of(reuse=reuse), tmp_path / "new")
    assert runs["scratch seed 0"].out_dir == str(tmp_path / "work/scratch/seed0")
    runs = planned(recipe_of(reuse=reuse[::-1]), tmp_path / "new")
    assert runs["scratch seed 0"].out_dir == str(tmp_path / "archive/scratch/seed0")


def test_a_saved_config_with_a_field_this_version_does_not_know_is_still_reused(tmp_path):
    (_, first), = plan(recipe_of(), tmp_path / "first")
    finish(first, config={"a_field_since_removed": 3})
    runs = planned(recipe_of(reuse=[str(tmp_path / "first")]), tmp_path / "second")
    assert runs["scratch seed 0"].out_dir == str(tmp_path / "first/scratch/seed0")


def test_students_start_from_the_init_student_where_a_reuse_folder_holds_it(tmp_path):
    rows = {"scratch": {}, "annealed": {"method": "scratch", "init": True}}
    first = planned(recipe_of(init={}, methods=rows), tmp_path / "first")
    finish(first["init (scratch student)"])
    runs = planned(recipe_of(init={}, methods=rows, reuse=[str(tmp_path / "first")]),
                   tmp_path / "second")
    assert runs["init (scratch student)"].out_dir == str(tmp_path / "first/init")
    assert runs["annealed seed 0"].init_student == str(tmp_path / "first/init/latest.pt")
    assert runs["scratch seed 0"].init_student is None  # only the rows that ask for it


def test_a_run_differing_in_placement_or_bookkeeping_only_is_reused(tmp_path):
    (_, first), = plan(recipe_of(), tmp_path / "first")
    finish(first, config={"threads": 2, "eval_every": 5, "checkpoint_every_steps": 7})
    runs = planned(recipe_of(reuse=[str(tmp_path / "first")]), tmp_path / "second")
    assert runs["scratch seed 0"].out_dir == str(tmp_path / "first/scratch/seed0")


def _network(path: Path, seed: int) -> Path:
    """A checkpoint of an untrained wrn16_1 (weights drawn from ``seed``)."""
    import torch

    from tgd_core.data.normalization import CIFAR10_RAW
    from tgd_core.nets.checkpoints import save_checkpoint
    from tgd_core.nets.models import build_model

    torch.manual_seed(seed)
    return save_checkpoint(path, build_model("wrn16_1"), input_kind="raw",
                           normalization=CIFAR10_RAW, git_commit="")


def test_reuse_compares_the_networks_a_run_started_from(tmp_path):
    """A finished student is reused only where it started from the networks this plan's run
    would: an archived one (inputs.json) by the digests it recorded, even where the paths
    match; another by the content of the checkpoints where the paths differ."""
    from tgd_core.nets.checkpoints import weights_sha256

    teachers = {"t1": {"student": "wrn16_1"}}
    rows = {"kd_t1": {"method": "kd", "teachers": {"t1": "t1"}}}
    first = planned(recipe_of(teachers=teachers, methods=rows), tmp_path / "first")
    finish(first["teacher t1"])
    teacher = _network(tmp_path / "first/teachers/t1/latest.pt", seed=1)
    student = finish(first["kd_t1 seed 0"])
    reuse = recipe_of(teachers=teachers, methods=rows, reuse=[str(tmp_path / "first")])

    def student_dir(recipe):
        return Path(planned(recipe, tmp_path / "second")["kd_t1 seed 0"].out_dir)

    assert student_dir(reuse) == student  # same paths, no record: the same run
    (student / "inputs.json").write_text(json.dumps({"teacher t1": weights_sha256(teacher)}))
    assert student_dir(reuse) == student
    (student / "inputs.json").write_text(json.dumps({"teacher t1": "0" * 64}))
    assert student_dir(reuse) == tmp_path / "second/kd_t1/seed0"  # it started from another
    (student / "inputs.json").unlink()
    # this recipe's own teacher (other settings, so trained here): compared by content
    own = recipe_of(teachers={"t1": {"student": "wrn16_1", "lr": 0.05}}, methods=rows,
                    reuse=[str(tmp_path / "first")])
    here = planned(own, tmp_path / "second")["teacher t1"]
    assert here.out_dir == str(tmp_path / "second/teachers/t1")
    finish(here)
    _network(tmp_path / "second/teachers/t1/latest.pt", seed=2)
    assert student_dir(own) == tmp_path / "second/kd_t1/seed0"
    shutil.copy(teacher, tmp_path / "second/teachers/t1/latest.pt")  # the same network
    assert student_dir(own) == student


def test_a_teachers_checkpoint_is_checked_against_the_recipes_settings(tmp_path):
    import torch

    from tgd_core.data.normalization import CIFAR10_RAW
    from tgd_core.nets.checkpoints import save_checkpoint
    from tgd_core.nets.models import build_model

    spec = {"student": "wrn16_1"}
    wanted = planned(recipe_of(teachers={"t1": spec}), tmp_path / "exp")["teacher t1"]
    path = tmp_path / "t1.pt"
    for config, epoch, problem in (({"seed": 7}, 2, r"other settings \(seed: recipe 1234, "
                                                  r"checkpoint 7\)"),
                                   ({}, 1, "stopped at epoch 1 of 2"),
                                   ({}, 2, None)):
        torch.manual_seed(0)
        save_checkpoint(path, build_model("wrn16_1"), input_kind="raw",
                        normalization=CIFAR10_RAW, epoch=epoch, git_commit="",
                        config={**wanted.model_dump(), **config})
        recipe = recipe_of(teachers={"t1": {**spec, "checkpoint": str(path)}})
        if problem is None:
            assert "teacher t1" not in planned(recipe, tmp_path / "exp")
        else:
            with pytest.raises(TGDError, match=problem):
                plan(recipe, tmp_path / "exp")


def test_a_rows_overrides_win_over_the_student_stage_and_a_baseline_must_be_a_row(tmp_path):
    recipe = recipe_of(student={"student": "wrn16_1", "lr": 0.2},
                       methods={"scratch": {}, "other": {"method": "scratch",
                                                         "overrides": {"lr": 0.05}}})
    runs = planned(recipe, tmp_path)
    assert (runs["scratch seed 0"].lr, runs["other seed 0"].lr) == (0.2, 0.05)
    assert recipe.with_baseline("other").baseline == "other"
    with pytest.raises(TGDError, match="baseline: no method row named 'kd'"):
        recipe.with_baseline("kd")


def test_a_run_that_started_from_the_init_student_is_not_reused_for_one_from_scratch(tmp_path):
    annealed = {"r": {"method": "scratch", "init": True}}
    first = planned(recipe_of(init={}, methods=annealed), tmp_path / "first")
    finish(first["init (scratch student)"])
    finish(first["r seed 0"])
    reuse = [str(tmp_path / "first")]
    again = planned(recipe_of(init={}, methods=annealed, reuse=reuse), tmp_path / "second")
    assert again["r seed 0"].out_dir == str(tmp_path / "first/r/seed0")
    scratch = planned(recipe_of(methods={"r": {"method": "scratch"}}, reuse=reuse),
                      tmp_path / "second")
    assert scratch["r seed 0"].out_dir == str(tmp_path / "second/r/seed0")


def test_a_run_that_started_from_more_teachers_is_not_reused_for_one_with_fewer(tmp_path):
    teachers = {"t1": {"student": "wrn16_1"}, "t2": {"student": "wrn16_1", "seed": 5}}
    both = {"kd": {"method": "kd", "teachers": {"t1": "t1", "t2": "t2"}}}
    first = planned(recipe_of(teachers=teachers, methods=both), tmp_path / "first")
    for role, seed in (("t1", 1), ("t2", 2)):
        finish(first[f"teacher {role}"])
        _network(tmp_path / f"first/teachers/{role}/latest.pt", seed=seed)
    finish(first["kd seed 0"])
    reuse = [str(tmp_path / "first")]
    same = planned(recipe_of(teachers=teachers, methods=both, reuse=reuse), tmp_path / "second")
    assert same["kd seed 0"].out_dir == str(tmp_path / "first/kd/seed0")
    one = {"kd": {"method": "kd", "teachers": {"t1": "t1"}}}
    fewer = planned(recipe_of(teachers=teachers, methods=one, reuse=reuse), tmp_path / "second")
    assert fewer["kd seed 0"].out_dir == str(tmp_path / "second/kd/seed0")


def test_a_moved_experiment_folder_is_reused_with_the_inputs_it_holds(tmp_path):
    teachers = {"t1": {"student": "wrn16_1"}}
    rows = {"kd_t1": {"method": "kd", "teachers": {"t1": "t1"}}}
    first = planned(recipe_of(teachers=teachers, methods=rows), tmp_path / "first")
    finish(first["teacher t1"])
    _network(tmp_path / "first/teachers/t1/latest.pt", seed=1)
    finish(first["kd_t1 seed 0"])
    shutil.move(tmp_path / "first", tmp_path / "moved")  # e.g. copied from another machine
    runs = planned(recipe_of(teachers=teachers, methods=rows, reuse=[str(tmp_path / "moved")]),
                   tmp_path / "second")
    assert runs["kd_t1 seed 0"].out_dir == str(tmp_path / "moved/kd_t1/seed0")


def test_a_bare_recipe_file_name_is_a_file_of_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text(json.dumps({**BASE, "seeds": [4, 5]}))
    (tmp_path / "more.yaml").write_text(json.dumps({"extends": "base.yaml", "name": "more"}))
    more = Recipe.load("more.yaml")
    assert (more.name, more.seeds) == ("more", [4, 5])


def test_a_teacher_of_another_recipe_takes_its_learned_settings_and_its_trained_checkpoint(
        tmp_path):
    """Its recipe's learned settings (not its placement), this recipe's placement; its
    checkpoint from that recipe's experiment folder, else from a folder that recipe reuses,
    unless the reference names one itself."""
    other = {"name": "other", "common": {"epochs": 3, "threads": 4},
             "teachers": {"t1": {"student": "wrn16_1", "seed": 7}}, "methods": {"scratch": {}},
             "reuse": [str(tmp_path / "archive")]}
    (tmp_path / "other.yaml").write_text(json.dumps(other))
    reference = {"from_recipe": str(tmp_path / "other.yaml"), "name": "t1",
                 "experiment": str(tmp_path / "exp")}

    def teacher(**changes):
        return recipe_of(teachers={"t1": {**reference, **changes}},
                         methods={"kd_t1": {"method": "kd", "teachers": {"t1": "t1"}}})

    runs = planned(teacher(), tmp_path / "mine")
    t1 = runs["teacher t1"]
    assert (t1.epochs, t1.seed, t1.threads) == (3, 7, 1)  # threads: this recipe's
    assert runs["kd_t1 seed 0"].epochs == 2
    archived, trained = (tmp_path / folder / "teachers/t1/latest.pt"
                         for folder in ("archive", "exp"))
    archived.parent.mkdir(parents=True)
    archived.write_bytes(b"")
    assert teacher().teachers["t1"]["checkpoint"] == str(archived)
    trained.parent.mkdir(parents=True)
    trained.write_bytes(b"")
    assert teacher().teachers["t1"]["checkpoint"] == str(trained)
    assert teacher(checkpoint="given.pt").teachers["t1"]["checkpoint"] == "given.pt"


# --- recipe: placement over every stage ---------------------------------------------------------


def test_placement_is_set_over_every_stage_that_sets_its_own(tmp_path):
    recipe = recipe_of(
        teachers={"t1": {"student": "wrn16_1", "threads": 3}}, init={"threads": 3},
        student={"student": "wrn16_1", "threads": 3},
        methods={"scratch": {}, "kd_t1": {"method": "kd", "teachers": {"t1": "t1"}},
                 "annealed": {"method": "scratch", "init": True}})
    runs = planned(recipe.with_placement({"threads": 2}), tmp_path)
    assert list(runs) == ["teacher t1", "init (scratch student)", "scratch seed 0",
                          "kd_t1 seed 0", "annealed seed 0"]
    assert {label: cfg.threads for label, cfg in runs.items()} == dict.fromkeys(runs, 2)


# --- runner: what run_experiment hands to training ----------------------------------------------


@pytest.fixture
def stubbed(monkeypatch):
    """run_experiment with training and evaluation replaced by records of their calls."""
    calls: dict[str, list] = {"train_unit": [], "parallel": [], "evaluate": []}

    def train_unit(runs, *, progress, log, context):
        calls["train_unit"].append(([label for label, _ in runs],
                                    [context(label) for label, _ in runs]))

    def train_parallel(units, workers, *, log, deadline):
        calls["parallel"].append(([[label for label, _ in unit] for unit in units], workers,
                                  deadline))
        return {}

    def evaluate(runs, spec, log, **_):
        calls["evaluate"].append([label for label, _ in runs])
        return {}

    monkeypatch.setattr(runner, "train_unit", train_unit)
    monkeypatch.setattr(runner, "_train_parallel", train_parallel)
    monkeypatch.setattr(runner, "_evaluate", evaluate)
    return calls


def test_stop_after_is_a_number_of_seconds_from_now_zero_included(tmp_path, stubbed):
    recipe = recipe_of()
    for stop_after in (3600.0, 0.0):
        before = time.time()
        runner.run_experiment(recipe, tmp_path, stop_after=stop_after, report=False,
                              log=lambda _: None)
        after = time.time()
        (_, (context,)) = stubbed["train_unit"].pop()
        assert before + stop_after <= context.deadline <= after + stop_after
    runner.run_experiment(recipe, tmp_path, report=False, log=lambda _: None)
    assert stubbed["train_unit"].pop()[1][0].deadline is None  # no stop_after: no deadline


def test_parallel_trains_with_that_many_workers_and_the_same_deadline(tmp_path, stubbed):
    recipe = recipe_of(methods={"scratch": {}, "other": {"method": "scratch",
                                                         "overrides": {"lr": 0.05}}})
    for workers in (2, 3):
        before = time.time()
        runner.run_experiment(recipe, tmp_path, parallel=workers, stop_after=60.0,
                              report=False, log=lambda _: None)
        units, used, deadline = stubbed["parallel"].pop()
        assert units == [["scratch seed 0"], ["other seed 0"]] and used == workers
        assert before + 60.0 <= deadline <= time.time() + 60.0
    assert not stubbed["train_unit"]
    runner.run_experiment(recipe, tmp_path, parallel=1, report=False, log=lambda _: None)
    assert not stubbed["parallel"] and len(stubbed["train_unit"]) == 2  # serially, in order
    with pytest.raises(TGDError, match="parallel runs are separate processes"):
        runner.run_experiment(recipe, tmp_path, parallel=2, ctx=object(), log=lambda _: None)


def test_group_students_hands_the_students_of_a_seed_to_training_as_one_unit(tmp_path, stubbed):
    recipe = recipe_of(methods={"scratch": {}, "other": {"method": "scratch",
                                                         "overrides": {"lr": 0.05}}},
                       seeds=[0, 1])
    runner.run_experiment(recipe, tmp_path, group_students=True, report=False,
                          log=lambda _: None)
    assert [labels for labels, _ in stubbed["train_unit"]] == [
        ["scratch seed 0", "other seed 0"], ["scratch seed 1", "other seed 1"]]
    stubbed["train_unit"].clear()
    runner.run_experiment(recipe, tmp_path, report=False, log=lambda _: None)
    assert len(stubbed["train_unit"]) == 4


def test_finished_runs_are_not_trained_again(tmp_path, stubbed):
    recipe = recipe_of(seeds=[0, 1])
    finish(planned(recipe, tmp_path)["scratch seed 0"])
    logs: list[str] = []
    runner.run_experiment(recipe, tmp_path, report=False, log=logs.append)
    assert [labels for labels, _ in stubbed["train_unit"]] == [[], ["scratch seed 1"]]
    assert "[done] scratch seed 0" in logs


def test_no_report_writes_no_report_and_other_ranks_neither_evaluate_nor_report(
        tmp_path, stubbed, monkeypatch):
    from tgd_core.core import distributed

    recipe = recipe_of()
    runner.run_experiment(recipe, tmp_path / "a", report=False, log=lambda _: None)
    assert stubbed["evaluate"] and not (tmp_path / "a/results.md").exists()
    stubbed["evaluate"].clear()
    monkeypatch.setattr(distributed, "setup", lambda device: (
        SimpleNamespace(enabled=True, is_main=False), None))
    assert runner.run_experiment(recipe, tmp_path / "b", log=lambda _: None) == []
    assert not stubbed["evaluate"] and not (tmp_path / "b/results.md").exists()


def test_a_stop_asked_between_runs_starts_no_further_run(tmp_path, stubbed, monkeypatch):
    import contextlib

    from tgd_core.training import Stopped, stopping

    monkeypatch.setattr(stopping, "interruptible", lambda: contextlib.nullcontext(lambda: True))
    with pytest.raises(Stopped, match="stopped before scratch seed 0"):
        runner.run_experiment(recipe_of(), tmp_path, report=False, log=lambda _: None)
    assert stubbed["train_unit"] == []


def test_train_in_process_passes_the_deadline_to_its_runs(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(runner, "train_unit", lambda runs, *, progress, log, context: seen.append(
        [context(label).deadline for label, _ in runs]))
    (label, cfg), = plan(recipe_of(), tmp_path)
    runner.train_in_process([(label, cfg.model_dump_json())], 1234.5)
    assert seen == [[1234.5]]


# --- runner: resume flags -----------------------------------------------------------------------


def test_a_run_with_a_latest_pt_resumes_and_a_new_one_starts(tmp_path, monkeypatch):
    import tgd_core.training as training
    import tgd_core.training.group as group

    runs = plan(recipe_of(methods={"scratch": {}, "other": {"method": "scratch",
                                                             "overrides": {"lr": 0.05}}}),
                tmp_path)
    alone, grouped = [], []
    monkeypatch.setattr(training, "run_training", lambda cfg, *, resume, progress, ctx:
                        alone.append((Path(cfg.out_dir).parent.name, resume)))
    monkeypatch.setattr(group, "train_group", lambda cfgs, *, resume, progress, ctxs:
                        grouped.append(([Path(c.out_dir).parent.name for c in cfgs], resume)))
    monkeypatch.setattr(group, "groups_by_position", lambda runs: [runs])
    Path(runs[0][1].out_dir).mkdir(parents=True)
    (Path(runs[0][1].out_dir) / "latest.pt").write_bytes(b"")
    logs = []
    for run in runs:
        runner.train_unit([run], progress=False, log=logs.append, context=lambda _: None)
    assert alone == [("scratch", True), ("other", False)]
    assert logs[0].startswith("[resume] scratch seed 0") and logs[2].startswith("[train] other")
    runner.train_unit(runs, progress=False, log=logs.append, context=lambda _: None)
    assert grouped == [(["scratch", "other"], [True, False])]


def test_runs_at_one_position_train_as_one_group(tmp_path, monkeypatch):
    import tgd_core.training as training
    import tgd_core.training.group as group

    runs = plan(recipe_of(methods={"scratch": {}, "other": {"method": "scratch",
                                                             "overrides": {"lr": 0.05}}}),
                tmp_path)
    calls = []
    monkeypatch.setattr(training, "run_training", lambda cfg, **_: calls.append("alone"))
    monkeypatch.setattr(group, "train_group", lambda cfgs, **_: calls.append(len(cfgs)))
    runner.train_unit(runs, progress=False, log=lambda _: None, context=lambda _: None)
    assert calls == [2]  # both new (epoch 0, step 0): one group


# --- runner: the parallel scheduler -------------------------------------------------------------


class FakePool:
    """A process pool that runs nothing: each submitted unit's future is done at once."""

    def __init__(self, fail: set[str] = frozenset()):
        self.submitted: list[list[str]] = []
        self.fail = fail

    def submit(self, fn, unit, deadline):
        labels = [label for label, _ in unit]
        self.submitted.append(labels)
        future = Future()
        if set(labels) & self.fail:
            future.set_exception(RuntimeError(f"{labels} failed"))
        else:
            future.set_result((1, 0.0))
        return future


def _units(tmp_path, n: int):
    rows = {f"r{i}": {"method": "scratch", "overrides": {"lr": 0.01 * (i + 1)}}
            for i in range(n)}
    return [[run] for run in plan(recipe_of(methods=rows), tmp_path)]


def _one_at_a_time(running, log):
    """runner._collect, deterministically: the oldest running unit ends (its failure)."""
    future = next(iter(running))
    labels = running.pop(future)
    log(f"[ended] {labels}")
    return future.exception()


def test_the_scheduler_keeps_at_most_workers_units_running(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_collect", _one_at_a_time)
    todo, logs, pool = _units(tmp_path, 5), [], FakePool()
    failure = runner._schedule(pool, todo, 2, lambda unit: True, log=logs.append,
                               deadline=None, asked=lambda: False, stop=threading.Event())
    assert failure is None and todo == [] and len(pool.submitted) == 5
    running = [int(line.split("(")[-1].split()[0]) for line in logs if line.startswith("[train]")]
    assert running == [1, 2, 2, 2, 2]


def test_after_a_failure_the_scheduler_starts_nothing_more(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_collect", _one_at_a_time)
    todo, pool = _units(tmp_path, 3), FakePool(fail={"r0 seed 0"})
    failure = runner._schedule(pool, todo, 1, lambda unit: True, log=lambda _: None,
                               deadline=None, asked=lambda: False, stop=threading.Event())
    assert isinstance(failure, RuntimeError) and pool.submitted == [["r0 seed 0"]]
    assert [unit[0][0] for unit in todo] == ["r1 seed 0", "r2 seed 0"]


def test_a_stop_request_starts_nothing_and_is_reported_as_a_stop(tmp_path, monkeypatch):
    from tgd_core.training import Stopped

    monkeypatch.setattr(runner, "_collect", _one_at_a_time)
    todo, pool, stop = _units(tmp_path, 2), FakePool(), threading.Event()
    failure = runner._schedule(pool, todo, 2, lambda unit: True, log=lambda _: None,
                               deadline=None, asked=lambda: True, stop=stop)
    assert stop.is_set() and pool.submitted == []
    assert isinstance(failure, Stopped) and str(failure) == "stopped before r0 seed 0"


def test_collect_returns_a_workers_stop_as_the_failure(tmp_path):
    from tgd_core.training import Stopped

    done, stopped = Future(), Future()
    done.set_result((7, 1.0))
    stopped.set_exception(Stopped("stopped at epoch 1, step 1"))
    running = {done: "a", stopped: "b"}
    logs = []
    failure = runner._collect(running, logs.append)
    assert isinstance(failure, Stopped) and running == {}
    assert sorted(logs) == ["[done] a in 1 s (process 7)",
                            "[stopped] b: stopped at epoch 1, step 1"]


def test_a_unit_is_ready_once_every_run_it_needs_is_finished(tmp_path):
    recipe = recipe_of(teachers={"t1": {"student": "wrn16_1"}, "t2": {"student": "wrn16_1"}},
                       methods={"mtkd": {"teachers": {"t1": "t1", "t2": "t2"}}})
    runs = plan(recipe, tmp_path)
    ready = runner._readiness(runs)
    student = [("mtkd seed 0", dict(runs)["mtkd seed 0"])]
    assert ready([runs[0]]) and not ready(student)
    finish(dict(runs)["teacher t1"])
    assert not ready(student)  # t2 not finished yet
    finish(dict(runs)["teacher t2"])
    assert ready(student)


# --- runner: evaluation -------------------------------------------------------------------------


def test_each_evaluation_carries_its_runs_seed(tmp_path, monkeypatch):
    recipe = recipe_of(teachers={"t1": {"student": "wrn16_1"}}, seeds=[3, 7],
                       methods={"kd_t1": {"method": "kd", "teachers": {"t1": "t1"}}})
    monkeypatch.setattr(runner, "evaluate_run", lambda cfg, spec, cache, log, **_: {
        "dir": Path(cfg.out_dir).name})
    evals = runner._evaluate(plan(recipe, tmp_path), recipe.evaluation, lambda _: None)
    assert evals == {"kd_t1": [{"dir": "seed3", "seed": 3}, {"dir": "seed7", "seed": 7}]}


def test_a_cached_evaluation_counts_only_for_its_spec(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"spec": {"split": "test"}, "last": {}}))
    assert runner.cached_evaluation(path, {"split": "test"}, print) == {
        "spec": {"split": "test"}, "last": {}}
    assert runner.cached_evaluation(path, {"split": "test", "subset": 5}, print) is None


@pytest.fixture
def best_and_last(tmp_path, cifar_test_images):
    """A finished run of one epoch whose best.pt is replaced by a network of zeros (another
    network, another epoch): what evaluate_run reads for "best" and for "last" tells apart."""
    import torch

    recipe = recipe_of(common={"train_subset": 16, "test_split": "test_lossless_1k",
                               "test_subset": 8, "epochs": 1, "batch_size": 8, "threads": 1,
                               "device": "cpu"})
    (_, cfg), = plan(recipe, tmp_path)
    from tgd_core.training import run_training

    run_training(cfg, progress=False)
    best = Path(cfg.out_dir) / "best.pt"
    payload = torch.load(best, weights_only=True)
    payload["state_dict"] = {k: torch.zeros_like(v) for k, v in payload["state_dict"].items()}
    payload["epoch"] = 0
    torch.save(payload, best)
    return cfg


def test_best_and_last_are_read_from_their_own_checkpoints_and_the_sweep_from_the_last(
        best_and_last):
    from tgd_core.experiments.recipe import EvalSpec

    spec = EvalSpec(split="test_lossless_1k", subset=40, corruption_subset=40,
                    corruptions=["contrast"], severities=[1], noise_sigmas=[])
    out = runner.evaluate_run(best_and_last, spec, log=lambda _: None)
    assert (out["best"]["epoch"], out["last"]["epoch"]) == (0, 1)
    clean = next(row for row in out["sweep"] if row["corruption"] == "clean")
    assert out["best"]["accuracy"] != out["last"]["accuracy"]  # the zero network differs
    assert clean["accuracy"] == pytest.approx(out["last"]["accuracy"])


# --- archive ------------------------------------------------------------------------------------


def _student(recipe: Recipe, out: Path, *, evaluated: bool = True, **result) -> Path:
    (_, cfg), = plan(recipe, out)
    folder = finish(cfg, **result)
    (folder / "metrics.jsonl").write_text('{"epoch": 1}\n')
    if evaluated:
        (folder / "eval.json").write_text('{"spec": {}}\n')
    return folder


def test_archive_copies_finished_evaluated_runs_once_their_finished_mark_last(
        tmp_path, monkeypatch):
    from tgd_core.experiments import archive

    recipe = recipe_of(seeds=[0])
    run = _student(recipe, tmp_path / "exp", evaluated=False)
    assert archive.archive_runs(recipe, tmp_path / "exp", tmp_path / "ar", log=print) == []
    (run / "eval.json").write_text('{"spec": {}}\n')
    (run / "result.json").write_text(json.dumps({"epochs": 1}))  # not finished
    assert archive.archive_runs(recipe, tmp_path / "exp", tmp_path / "ar", log=print) == []
    assert not (tmp_path / "ar/scratch").exists()
    _student(recipe, tmp_path / "exp")
    written = []
    write = archive.atomic_write
    monkeypatch.setattr(archive, "atomic_write", lambda path, data: (
        written.append(Path(path).name), write(path, data)))
    assert archive.archive_runs(recipe, tmp_path / "exp", tmp_path / "ar", log=print) == [
        "scratch seed 0"]
    assert written[-1] == "result.json" and sorted(written) == [
        "config.json", "eval.json", "inputs.json", "metrics.jsonl", "result.json"]
    for name in ("config.json", "eval.json", "metrics.jsonl", "result.json"):
        assert (tmp_path / "ar/scratch/seed0" / name).read_bytes() == (run / name).read_bytes()
    written.clear()
    assert archive.archive_runs(recipe, tmp_path / "exp", tmp_path / "ar", log=print) == []
    assert written == []  # nothing changed: nothing written


def test_a_run_another_archive_holds_with_another_result_is_archived(tmp_path):
    """An archive the recipe reuses holds a run at the same place that learned otherwise (not
    reused): this experiment's own run there is archived, not taken as kept already."""
    from tgd_core.experiments.archive import archive_runs

    _student(recipe_of(common={**BASE["common"], "lr": 0.5}), tmp_path / "old")
    (tmp_path / "old/scratch/seed0/inputs.json").write_text("{}")  # as archived
    recipe = recipe_of(reuse=[str(tmp_path / "old")])
    run = _student(recipe, tmp_path / "exp", train_seconds=9.0)
    assert Path(planned(recipe, tmp_path / "exp")["scratch seed 0"].out_dir) == run
    assert archive_runs(recipe, tmp_path / "exp", tmp_path / "ar", log=print) == [
        "scratch seed 0"]
    # the same result, archived there: kept there, not copied again
    shutil.copy(run / "result.json", tmp_path / "old/scratch/seed0/result.json")
    assert archive_runs(recipe, tmp_path / "exp", tmp_path / "ar2", log=print) == []


# --- report -------------------------------------------------------------------------------------


def _evaluation(last: float, contrast: tuple[float, float], seed: int) -> dict:
    reliability = [{"count": 4, "confidence": 0.6, "accuracy": 0.5}]
    sweep = [{"corruption": "clean", "severity": 0, "sigma": None, "accuracy": last},
             {"corruption": "contrast", "severity": 1, "sigma": None, "accuracy": contrast[0]},
             {"corruption": "contrast", "severity": 5, "sigma": None, "accuracy": contrast[1]},
             {"corruption": "gaussian_noise_sigma", "severity": None, "sigma": 0.1,
              "accuracy": last - 5}]
    return {"best": {"accuracy": last + 1, "ece": 0.1, "nll": 1.0, "reliability": reliability},
            "last": {"accuracy": last, "ece": 0.1, "nll": 1.0, "reliability": reliability},
            "sweep": sweep, "seed": seed}


def _report(out: Path, recipe: Recipe, evals: dict) -> tuple[str, list[list[str]]]:
    from tgd_core.experiments.report import summarise, write_reports

    write_reports(recipe, out, summarise(recipe, evals), evals, {})
    with open(out / "results.csv") as f:
        return (out / "results.md").read_text(), list(csv.reader(f))


def test_results_csv_columns_are_method_seeds_then_sorted(tmp_path):
    recipe = recipe_of(methods={"scratch": {}, "kd": {"method": "scratch",
                                                      "overrides": {"lr": 0.05}}},
                       baseline="scratch")
    _, table = _report(tmp_path, recipe, {
        "scratch": [_evaluation(50.0, (40.0, 30.0), 0)],
        "kd": [_evaluation(60.0, (50.0, 40.0), 0)]})
    header = table[0]
    assert header[:2] == ["method", "seeds"] and header[2:] == sorted(header[2:])
    assert "baseline" in header and "best_accuracy_mean" in header
    assert [row[:2] for row in table[1:]] == [["scratch", "1"], ["kd", "1"]]


def test_the_corruption_table_is_the_mean_over_seeds_of_each_seeds_mean_over_severities(
        tmp_path):
    recipe = recipe_of(seeds=[0, 1])
    markdown, _ = _report(tmp_path, recipe, {"scratch": [
        _evaluation(50.0, (40.0, 30.0), 0), _evaluation(60.0, (54.0, 50.0), 1)]})
    # per seed: 35 and 52 -> 43.50 ± 12.02 (std of 35, 52)
    assert "| scratch | 43.50 ± 12.02 |" in markdown


def test_the_n_of_a_delta_is_shown_against_the_baselines_own_seeds(tmp_path):
    """The baseline is not the first row: its finished seeds (3) decide whether ``n=`` shows."""
    recipe = recipe_of(seeds=[0, 1, 2], baseline="scratch", methods={
        "other": {"method": "scratch"}, "scratch": {}})
    evals = {"other": [_evaluation(v, (40.0, 30.0), s) for v, s in ((50.0, 0), (53.0, 1))],
             "scratch": [_evaluation(v, (40.0, 30.0), s) for v, s in ((49.0, 0), (50.0, 1),
                                                                      (51.0, 2))]}
    markdown, _ = _report(tmp_path, recipe, evals)
    row = [line for line in markdown.splitlines() if line.startswith("| other | ")][-1]
    assert row.startswith("| other | paired | +2.00 [") and ", n=2/2 |" in row  # 2 of 3


def test_a_teachers_network_is_its_own_and_a_shipped_one_reports_its_saved_metrics(
        tmp_path, monkeypatch):
    from tgd_core.experiments import report

    shipped = tmp_path / "shipped" / "t2.pt"
    shipped.parent.mkdir()
    shipped.write_bytes(b"")
    monkeypatch.setattr(report, "_checkpoint_metrics", lambda path: (
        {"test_accuracy": 77.5} if path == shipped else {}))
    recipe = recipe_of(common={**BASE["common"], "student": "wrn16_1"},
                       teachers={"t1": {"student": "wrn16_3"},
                                 "t2": {"student": "wrn16_3", "checkpoint": str(shipped)}})
    teachers = report.teacher_accuracies(recipe, tmp_path / "exp")
    assert teachers["t1"] == {"network": "wrn16_3", "input": "raw", "best_accuracy": None,
                              "last_accuracy": None}
    assert (teachers["t2"]["best_accuracy"], teachers["t2"]["last_accuracy"]) == (None, 77.5)


# --- the α × β grid -----------------------------------------------------------------------------


def _tgd(alpha=None, beta=None, **spec):
    params = {k: v for k, v in (("alpha", alpha), ("beta", beta)) if v is not None}
    return {"method": "tgd", "teachers": {"t1": "t1", "t2": "t2"}, "params": params, **spec}


GRID_TEACHERS = {"t1": {"student": "wrn16_1"}, "t2": {"student": "wrn16_1"},
                 "t3": {"student": "wrn16_1"}}


def test_rows_that_differ_in_more_than_alpha_and_beta_form_no_grid_together():
    from tgd_core.experiments.grid import alpha_beta_grid

    sweep = {"a": _tgd(0.5, 0), "b": _tgd(0.5, 10), "c": _tgd(0.9, 0)}
    for odd in (_tgd(0.9, 10, overrides={"lr": 0.05}),
                _tgd(0.9, 10, teachers={"t1": "t1", "t2": "t3"}),
                _tgd(0.9, 10, params={"alpha": 0.9, "beta": 10, "compat": True})):
        # the fourth cell differs in something else as well: it is no cell of the grid
        recipe = recipe_of(teachers=GRID_TEACHERS, methods={**sweep, "d": odd})
        grid = alpha_beta_grid(recipe)
        assert grid is not None and "d" not in grid.cells.values()
    whole = alpha_beta_grid(recipe_of(teachers=GRID_TEACHERS,
                                      methods={**sweep, "d": _tgd(0.9, 10)}))
    assert whole.cells == {(0.5, 0): "a", (0.5, 10): "b", (0.9, 0): "c", (0.9, 10): "d"}


def test_two_rows_at_one_cell_the_first_is_shown():
    from tgd_core.experiments.grid import alpha_beta_grid

    methods = {"a": _tgd(0.5, 0), "b": _tgd(0.5, 10), "c": _tgd(0.9, 0), "d": _tgd(0.9, 10),
               "d_again": _tgd(0.9, 10)}
    grid = alpha_beta_grid(recipe_of(teachers=GRID_TEACHERS, methods=methods))
    assert grid.cells[(0.9, 10)] == "d"


def test_the_grid_figure_and_summary_put_alpha_down_beta_across_means_and_stds():
    from tgd_core.experiments.grid import alpha_beta_grid, grid_figure

    methods = {f"a{a}_b{b}": _tgd(a, b) for a in (0.5, 0.9) for b in (0, 10, 100)}
    grid = alpha_beta_grid(recipe_of(teachers=GRID_TEACHERS, methods=methods))
    rows = {name: {"method": name, "seeds": 2, "last_accuracy_mean": 10 * i,
                   "last_accuracy_std": i + 0.5, "corrupted_mean_mean": 5 * i,
                   "corrupted_mean_std": 0.25}
            for i, name in enumerate(methods)}
    heat = grid_figure(grid, rows).data[0]
    assert list(heat.x) == ["β=0", "β=10", "β=100"] and list(heat.y) == ["α=0.5", "α=0.9"]
    assert [list(line) for line in heat.z] == [[0, 10, 20], [30, 40, 50]]
    cell = next(c for c in grid.to_dict(rows)["cells"] if c["method"] == "a0.9_b10")
    assert (cell["alpha"], cell["beta"]) == (0.9, 10)
    assert (cell["last_accuracy_mean"], cell["last_accuracy_std"]) == (40, 4.5)
    assert (cell["corrupted_mean_mean"], cell["corrupted_mean_std"]) == (20, 0.25)

