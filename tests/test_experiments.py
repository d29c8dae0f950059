"""The experiment runner end to end on a tiny slice: every method from the CLI, resume, tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.scripts import load_script
from tgd_core.cli import main
from tgd_core.core.errors import TGDError
from tgd_core.core.paths import PROJECT_ROOT
from tgd_core.experiments.plan import finished, plan
from tgd_core.experiments.recipe import Recipe

pytestmark = pytest.mark.usefixtures("cifar_test_images")

TINY = {
    "name": "tiny",
    "description": "every method on 64 images, one epoch",
    "common": {"train_subset": 64, "test_split": "test_lossless_1k", "test_subset": 32,
               "epochs": 1, "batch_size": 32, "threads": 2, "fixed_batches": True,
               "channels_last": True},
    "teachers": {"t1": {"student": "wrn16_1", "student_input": "raw"},
                 "t2": {"student": "wrn16_1", "student_input": "pi"}},
    "init": {},
    "student": {"student": "wrn16_1"},
    "methods": {"scratch": {}, "kd_t1": {"method": "kd", "teachers": {"t1": "t1"}},
                "kd_t2": {"method": "kd", "teachers": {"t1": "t2"}},
                "mtkd": {"teachers": {"t1": "t1", "t2": "t2"}},
                "at": {"teachers": {"t1": "t1"}}, "sp": {"teachers": {"t1": "t1"}},
                "fitnet": {"teachers": {"t1": "t1"}},
                "tgd": {"teachers": {"t1": "t1", "t2": "t2"}, "init": True,
                        "params": {"compat": True}}},
    "seeds": [0],
    "evaluation": {"split": "test_lossless_1k", "subset": 48, "corruption_subset": 24,
                   "corruptions": ["gaussian_noise", "contrast"], "severities": [1, 5],
                   "noise_sigmas": [0.1]},
}


@pytest.mark.parametrize("name", ["paper", "ablation"])
def test_a_device_recipe_in_miniature_with_its_device_settings(tmp_path, name):
    """scripts/rehearse_recipe.py: recipes/paper.yaml and recipes/ablation.yaml (which extends
    it and takes its teachers by reference) as the device runs them — every teacher, method and
    parameter, bf16 autocast, channels_last, cached and live teachers, on-the-fly PIs, the fast
    loop, two runs at a time — on 64 images for two epochs (paper.yaml's amp with cached targets
    once crashed every distilled student). Compiled, it takes minutes: docs/device.md."""
    from tgd_core.experiments.recipe import Recipe

    rehearse = load_script("rehearse_recipe")
    path = PROJECT_ROOT / f"recipes/{name}.yaml"
    recipe = rehearse.miniature_recipe(False, path)
    assert recipe["common"]["amp"] and not recipe["common"]["augment"]
    assert recipe["methods"] == Recipe.load(path).model_dump(mode="json")["methods"]
    assert rehearse.rehearse(tmp_path, compile_step=False, parallel=2, recipe=path) == []
    rows = json.loads((tmp_path / "exp/summary.json").read_text())["rows"]
    assert [r["method"] for r in rows] == list(recipe["methods"])
    config = json.loads((tmp_path / "exp/tgd/seed0/config.json").read_text())
    assert config["amp"] and config["engine"] == "fast" and config["student"] == "wrn16_1"
    for teacher in recipe["teachers"]:  # shrunk too, those of another recipe included
        config = json.loads((tmp_path / f"exp/teachers/{teacher}/config.json").read_text())
        assert (config["train_subset"], config["epochs"]) == (64, 2)
    assert rehearse.problems(tmp_path / "exp", recipe, compile_step=True)[0] == (
        "teachers/t1: compiled_step False (compile not asked)")


def test_all_methods_end_to_end_from_the_cli(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY, sort_keys=False))
    out = tmp_path / "exp"
    assert main(["experiment", str(recipe), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    methods = [r["method"] for r in summary["rows"]]
    assert methods == list(TINY["methods"])
    for row in summary["rows"]:
        assert 0 <= row["last_accuracy_mean"] <= 100 and row["seeds"] == 1
        assert "gaussian_noise@5_mean" in row and "noise@0.1_mean" in row
    table = (out / "results.md").read_text()
    assert "| tgd |" in table and "gaussian_noise" in table
    assert (out / "results.csv").read_text().startswith("method,seeds")
    assert (out / "accuracy_vs_severity.html").exists() and (out / "reliability.html").exists()
    tgd_cfg = json.loads((out / "tgd/seed0/config.json").read_text())
    assert tgd_cfg["init_student"].endswith("init/latest.pt")
    assert tgd_cfg["method_params"] == {"compat": True}

    # a second run trains nothing: every run is finished, evaluations are cached
    stamps = {p: p.stat().st_mtime for p in out.rglob("latest.pt")}
    capsys.readouterr()
    assert main(["experiment", str(recipe), "--out", str(out), "--no-progress"]) == 0
    assert "[train]" not in capsys.readouterr().err
    assert stamps == {p: p.stat().st_mtime for p in out.rglob("latest.pt")}

    # the same rows compared with another one: a report, nothing trained or evaluated again
    evaluated = {p: p.stat().st_mtime for p in out.rglob("eval.json")}
    assert main(["experiment", str(recipe), "--out", str(out), "--no-progress",
                 "--baseline", "scratch"]) == 0
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert {r.get("baseline") for r in rows} == {None, "scratch"}
    assert [r["method"] for r in rows if "baseline" not in r] == ["scratch"]
    assert "Δ vs scratch" in (out / "results.md").read_text()
    assert evaluated == {p: p.stat().st_mtime for p in out.rglob("eval.json")}
    capsys.readouterr()
    assert main(["experiment", str(recipe), "--out", str(out), "--baseline", "kd"]) != 0
    assert "no method row named 'kd'" in capsys.readouterr().err


def test_placement_set_for_a_whole_experiment(tmp_path, capsys):
    """``tgd experiment --set FIELD=VALUE``: where and how fast every run trains (over what a
    teacher, stage or row sets itself), never what it learns — a learned field is refused in
    one line naming the ones that may be set."""
    tiny = {**TINY, "methods": {**TINY["methods"], "kd_t1": {
        "method": "kd", "teachers": {"t1": "t1"}, "overrides": {"threads": 2}}}}
    placed = Recipe(**tiny).with_placement({"threads": 1, "compile_mode": "reduce-overhead"})
    runs = plan(placed, tmp_path / "exp")
    assert len(runs) == 3 + len(TINY["methods"])
    assert {(cfg.threads, cfg.compile_mode) for _, cfg in runs} == {(1, "reduce-overhead")}
    with pytest.raises(TGDError, match=r"--set epochs, out_dir: a whole experiment takes only "
                                       r"where and how fast its runs train \(compile, "):
        Recipe(**tiny).with_placement({"epochs": 3, "out_dir": "x", "threads": 1})
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny, sort_keys=False))
    assert main(["experiment", str(recipe), "--out", str(tmp_path / "exp"), "--plan",
                 "--set", "compile_mode=reduce-overhead", "--set", "threads=1"]) == 0
    capsys.readouterr()
    assert main(["experiment", str(recipe), "--plan", "--set", "lr=0.5"]) != 0
    assert "--set lr: a whole experiment takes only" in capsys.readouterr().err


def test_a_killed_experiment_resumes_its_runs(tmp_path):
    from tgd_core.experiments.runner import run_experiment
    from tgd_core.training import Stopped, run_training

    recipe = Recipe(**{**TINY, "methods": {"scratch": {}}, "common": {**TINY["common"],
                                                                     "epochs": 2}})
    out = tmp_path / "exp"
    runs = plan(recipe, out)

    class StopSoon:
        def should_stop(self):
            return True

    label, cfg = runs[0]  # teacher t1, interrupted in its first epoch
    with pytest.raises(Stopped):
        run_training(cfg, ctx=StopSoon(), progress=False)
    logs = []
    run_experiment(recipe, out, log=logs.append)
    assert f"[resume] {label} -> {cfg.out_dir}" in logs
    assert json.loads((out / "teachers/t1/result.json").read_text())["last"]["epoch"] == 2


def test_the_evaluation_stops_before_its_next_run_and_resumes_from_the_evaluated(tmp_path):
    """Past --stop-after's deadline, or when the job asks, no run is evaluated anew: Stopped
    is raised, the eval.json of the runs already evaluated is kept and served, and the same
    call later evaluates only the rest (the device's last call ends inside its budget)."""
    from tgd_core.experiments.runner import evaluate_run, run_experiment
    from tgd_core.training import Stopped, run_training

    recipe = Recipe(**{**TINY, "methods": {"scratch": {}}, "seeds": [0, 1]})
    out = tmp_path / "exp"
    runs = dict(plan(recipe, out))
    for label in ("scratch seed 0", "scratch seed 1"):
        run_training(runs[label], progress=False)
    evals = [Path(runs[f"scratch seed {seed}"].out_dir) / "eval.json" for seed in (0, 1)]

    class StopSoon:
        def should_stop(self):
            return True

    with pytest.raises(Stopped, match="stopped before evaluating"):
        run_experiment(recipe, out, train=False, stop_after=0.0, log=lambda _: None)
    assert not any(path.exists() for path in evals)
    first = evaluate_run(runs["scratch seed 0"], recipe.evaluation)
    written = evals[0].read_bytes()
    for stop in (dict(stop_after=0.0), dict(ctx=StopSoon())):
        with pytest.raises(Stopped, match="stopped before evaluating .*seed1"):
            run_experiment(recipe, out, train=False, log=lambda _: None, **stop)
        assert evals[0].read_bytes() == written and not evals[1].exists()
    rows = run_experiment(recipe, out, train=False, log=lambda _: None)
    assert rows[0]["seeds"] == 2 and evals[1].exists()
    assert json.loads(evals[0].read_text()) == first


def test_an_interim_report_evaluates_the_finished_runs_and_trains_nothing(tmp_path, capsys):
    from tgd_core.training import run_training

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "methods": {"scratch": {}, "kd_t1": TINY[
        "methods"]["kd_t1"]}, "seeds": [0, 1]}, sort_keys=False))
    out = tmp_path / "exp"
    runs = dict(plan(Recipe.load(recipe), out))
    run_training(runs["scratch seed 1"], progress=False)  # the one finished run
    assert main(["experiment", str(recipe), "--out", str(out), "--report-only"]) == 0
    assert "[train]" not in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["method"], r["seeds"]) for r in summary["rows"]] == [("scratch", 1)]
    assert summary["train_seconds"].keys() == {"scratch seed 1"}
    assert not (out / "teachers").exists() and not (out / "scratch/seed0").exists()
    with pytest.raises(SystemExit):
        main(["experiment", str(recipe), "--report-only", "--no-report"])


def test_seeds_train_and_report_only_the_runs_of_those_seeds(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "methods": {"scratch": {}}, "seeds": [0, 1]},
                                     sort_keys=False))
    out = tmp_path / "exp"
    assert main(["experiment", str(recipe), "--out", str(out), "--no-progress",
                 "--seeds", "1"]) == 0
    assert (out / "scratch/seed1/result.json").exists()
    assert not any((out / name).exists() for name in ("scratch/seed0", "teachers", "init"))
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["method"], r["seeds"]) for r in summary["rows"]] == [("scratch", 1)]


def test_plan_rejects_bad_recipes(tmp_path):
    bad = {**TINY, "methods": {"kd": {"teachers": {"t1": "t9"}}}}
    with pytest.raises(TGDError, match="unknown teacher"):
        plan(Recipe(**bad), tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, "common": {"epochs": 0}}))
    with pytest.raises(TGDError, match="epochs"):
        plan(Recipe.load(path), tmp_path)
    path.write_text("name: x\nmethods: {a: {nope: 1}}\n")
    with pytest.raises(TGDError, match="invalid recipe"):
        Recipe.load(path)
    path.write_text("- name: x\n")
    with pytest.raises(TGDError, match="bad.yaml: a recipe is a YAML mapping .* got a list"):
        Recipe.load(path)
    path.write_text("name: [x\n")
    with pytest.raises(TGDError, match="bad.yaml: not valid YAML .* at line 2, column 1"):
        Recipe.load(path)


def test_a_recipe_extends_another_replacing_the_keys_it_sets(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "more.yaml").write_text(yaml.safe_dump({
        "extends": str(tmp_path / "base.yaml"), "name": "more", "seeds": [0, 1, 2],
        "methods": {"kd_t1": TINY["methods"]["kd_t1"]}, "common": {"epochs": 2}}))
    (tmp_path / "most.yaml").write_text(yaml.safe_dump({
        "extends": str(tmp_path / "more.yaml"), "name": "most"}))
    base, more, most = (Recipe.load(tmp_path / f"{n}.yaml") for n in ("base", "more", "most"))
    assert (more.name, more.seeds, list(more.methods)) == ("more", [0, 1, 2], ["kd_t1"])
    assert more.common == {"epochs": 2}  # a key set replaces the base's whole, not merged
    assert (more.teachers, more.init, more.evaluation) == (base.teachers, base.init,
                                                           base.evaluation)
    assert most.model_dump() == {**more.model_dump(), "name": "most"}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**TINY, "extends": str(tmp_path /
                                                                             "most.yaml")}))
    with pytest.raises(TGDError, match=r"most.yaml: recipes extend each other in a cycle "
                       r"\(most.yaml -> more.yaml -> base.yaml -> most.yaml\)"):
        Recipe.load(tmp_path / "most.yaml")
    for bad, problem in ((None, "extends must name a recipe"), (3, "extends must name a recipe"),
                         (str(tmp_path / "gone.yaml"), "gone.yaml: cannot read recipe")):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"extends": bad, "name": "bad"}))
        with pytest.raises(TGDError, match=problem):
            Recipe.load(tmp_path / "bad.yaml")


def test_shipped_recipes_are_valid(tmp_path):
    from tgd_core.experiments.plan import reused_teachers

    for path in sorted((PROJECT_ROOT / "recipes").glob("*.yaml")):
        name = path.stem
        recipe = Recipe.load(path)
        if name == "cpu_topology":
            cpu_topology = recipe
        runs = plan(recipe, tmp_path / name)
        reused = reused_teachers(recipe, tmp_path / name)
        assert len(runs) == (len(recipe.teachers) - len(reused) + (recipe.init is not None)
                             + sum(len(recipe.seeds_of(row)) for row in recipe.methods))
    # cpu_topology's t1 and t2_paper are cpu.yaml's t1 and t2 (its settings; its checkpoints
    # once that experiment has trained them)
    cpu = Recipe.load(PROJECT_ROOT / "recipes" / "cpu.yaml")
    for mine, theirs in (("t1", "t1"), ("t2_paper", "t2")):
        spec = {k: v for k, v in cpu_topology.teachers[mine].items() if k != "checkpoint"}
        assert spec["train_subset"] == cpu.common["train_subset"] == 10000
        assert spec["epochs"] == cpu.common["epochs"]
        assert {k: spec[k] for k in cpu.teachers[theirs]} == cpu.teachers[theirs]
    # cpu_full_ablation extends cpu_full (so it reuses cpu_full's finished runs)
    full, extended = (Recipe.load(PROJECT_ROOT / "recipes" / f"{name}.yaml")
                      for name in ("cpu_full", "cpu_full_ablation"))
    for part in ("common", "init", "student", "evaluation"):
        assert getattr(extended, part) == getattr(full, part), part
    assert {row: extended.methods[row].model_copy(update={"seeds": None})
            for row in full.methods} == full.methods  # the same rows, with seeds of their own
    assert set(full.seeds) < set(extended.seeds)
    assert extended.reuse == ["runs/experiments/cpu_full", "docs/results/runs/cpu_full_ablation"]
    # ... its teachers are cpu_full's as shipped (checked against cpu_full's settings)
    assert reused_teachers(extended, tmp_path / "cpu_full_ablation") == {
        "t1": PROJECT_ROOT / "checkpoints/t1_wrn16_3_raw.pt",
        "t2": PROJECT_ROOT / "checkpoints/t2_wrn16_1_pi.pt"}


def test_only_selects_rows_and_the_teachers_and_init_they_need(tmp_path, capsys):
    from tgd_core.experiments.runner import selected_runs

    recipe = Recipe(**{**TINY, "seeds": [0, 1]})
    runs = plan(recipe, tmp_path / "exp")

    def labels(only):
        return [label for label, _ in selected_runs(recipe, runs, only)]

    assert labels(None) == [label for label, _ in runs]
    assert labels(["kd_t1"]) == ["teacher t1", "kd_t1 seed 0", "kd_t1 seed 1"]
    assert labels(["scratch"]) == ["scratch seed 0", "scratch seed 1"]
    assert labels(["kd_t2", "tgd"]) == ["teacher t1", "teacher t2", "init (scratch student)",
                                        "kd_t2 seed 0", "kd_t2 seed 1", "tgd seed 0",
                                        "tgd seed 1"]
    rows = "scratch, kd_t1, kd_t2, mtkd, at, sp, fitnet, tgd"
    with pytest.raises(TGDError, match=rf"^--only kd_t3 gone: not a row of recipe tiny \(its "
                                       rf"rows: {rows}\)$"):
        labels(["kd_t1", "kd_t3", "gone"])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "seeds": [0, 1]}))
    assert main(["experiment", str(path), "--plan", "--only", "kd_t1", "--out",
                 str(tmp_path / "exp")]) == 0
    assert [line.split()[1:3] for line in capsys.readouterr().out.splitlines()] == [
        ["teacher", "t1"], ["kd_t1", "seed"], ["kd_t1", "seed"]]
    assert main(["experiment", str(path), "--plan", "--only", "kd_t1,scratch", "kd_t2", "--out",
                 str(tmp_path / "exp")]) == 0
    assert sorted({line.split()[1] for line in capsys.readouterr().out.splitlines()}) == [
        "kd_t1", "kd_t2", "scratch", "teacher"]
    with pytest.raises(SystemExit, match="2"):
        main(["experiment", str(path), "--plan", "--only", ","])
    assert "argument --only: ',' names no row" in capsys.readouterr().err


def test_seeds_select_runs_of_those_seeds_with_what_they_need(tmp_path, capsys):
    """``--seeds``: the students of those seeds (of each row's own seeds; with ``--only``, of
    those rows), their teachers and init student; a seed no selected row has is refused."""
    from tgd_core.experiments.runner import selected_runs

    recipe = Recipe(**{**TINY, "seeds": [0, 1],
                       "methods": {**TINY["methods"], "scratch": {"seeds": [0, 1, 2]}}})
    runs = plan(recipe, tmp_path / "exp")

    def labels(only, seeds):
        return [label for label, _ in selected_runs(recipe, runs, only, seeds)]

    assert labels(["kd_t1"], [1]) == ["teacher t1", "kd_t1 seed 1"]
    assert labels(["scratch", "kd_t2"], [2]) == ["scratch seed 2"]
    assert labels(["tgd"], [0, 1]) == labels(["tgd"], None)
    assert labels(None, [2]) == ["scratch seed 2"]
    assert len(labels(None, [0])) == 3 + len(recipe.methods)  # t1, t2, init, a run a row
    with pytest.raises(TGDError, match=r"^--seeds 2 5: not a seed of rows kd_t1, tgd \(their "
                                       r"seeds: 0, 1\)$"):
        labels(["kd_t1", "tgd"], [0, 2, 5])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "seeds": [0, 1]}))
    assert main(["experiment", str(path), "--plan", "--only", "kd_t1", "--seeds", "1",
                 "--out", str(tmp_path / "exp")]) == 0
    assert [line.split()[1:4] for line in capsys.readouterr().out.splitlines()] == [
        ["teacher", "t1", "wrn16_1/raw"], ["kd_t1", "seed", "1"]]


def test_the_pi_teacher_recipe_changes_only_t2_and_reuses_the_cpu_ablation(tmp_path,
                                                                          monkeypatch):
    """recipes/cpu_pi_teacher.yaml: cpu_full_ablation's rows as they were (planned where its
    archive holds them), two rows that differ from its `tgd` in the PI teacher only, one that
    differs from `tgd_patch` in α only, and its control, whose T2 is the init student's
    training stopped after one epoch (no topology); `tgd` and `tgd_b0` at that α."""
    from tgd_core.core.paths import PROJECT_ROOT

    monkeypatch.chdir(PROJECT_ROOT)  # the recipe's reuse folders are relative to the project
    ablation, recipe = (Recipe.load(PROJECT_ROOT / "recipes" / f"{name}.yaml")
                        for name in ("cpu_full_ablation", "cpu_pi_teacher"))
    for part in ("common", "init", "student", "evaluation", "seeds", "baseline"):
        assert getattr(recipe, part) == getattr(ablation, part), part
    shared = set(recipe.methods) & set(ablation.methods)
    assert shared == {"kd_t1", "kd_t1_anneal", "tgd", "tgd_b0"}
    assert all(recipe.methods[row] == ablation.methods[row] for row in shared)
    assert {k: recipe.teachers[k] for k in ("t1", "t2")} == ablation.teachers

    runs = dict(plan(recipe, tmp_path / "cpu_pi_teacher"))
    ablation_runs = ("runs/experiments/cpu_full_ablation/",  # where it ran, else its archive
                     "docs/results/runs/cpu_full_ablation/")
    for row in shared:
        assert recipe.seeds_of(row) == ablation.seeds_of(row) == [0, 1, 2, 3, 4]
        for seed in recipe.seeds_of(row):
            assert runs[f"{row} seed {seed}"].out_dir.startswith(ablation_runs), (row, seed)
    assert runs["init (scratch student)"].out_dir.startswith(ablation_runs)
    for row, teacher in (("tgd_patch", "t2_patch"), ("tgd_cubical", "t2_cubical")):
        mine, paper_t2 = runs[f"{row} seed 1"], runs["tgd seed 1"]
        assert mine.differences(paper_t2.model_dump()) == ["pi", "teachers"]
        assert mine.teachers["t1"] == paper_t2.teachers["t1"]
        assert mine.pi == runs[f"teacher {teacher}"].pi  # the student's PI view is its T2's
    heavy_t2 = runs["tgd_patch_a05 seed 1"]
    assert heavy_t2.differences(runs["tgd_patch seed 1"].model_dump()) == ["method_params"]
    assert heavy_t2.method_params == {"alpha": 0.5}
    control = runs["tgd_raw_a05 seed 1"]
    assert control.differences(heavy_t2.model_dump()) == ["pi", "teachers"]
    assert control.pi == runs["tgd seed 1"].pi  # a raw T2 needs no PI view of its own
    logits_only = runs["tgd_raw_a05_b0 seed 0"]
    assert logits_only.differences(runs["tgd_raw_a05 seed 0"].model_dump()) == ["method_params"]
    assert logits_only.method_params == {"alpha": 0.5, "beta": 0}
    patch_logits_only = runs["tgd_patch_a05_b0 seed 0"]
    assert patch_logits_only.differences(runs["tgd_patch_a05 seed 0"].model_dump()) == [
        "method_params"]
    assert patch_logits_only.differences(logits_only.model_dump()) == ["pi", "teachers"]
    paper_a05, paper_a05_b0 = runs["tgd_a05 seed 1"], runs["tgd_a05_b0 seed 1"]
    assert paper_a05.differences(runs["tgd seed 1"].model_dump()) == ["method_params"]
    assert paper_a05.method_params == {"alpha": 0.5}
    assert paper_a05.differences(heavy_t2.model_dump()) == ["pi", "teachers"]
    assert paper_a05_b0.differences(runs["tgd_b0 seed 1"].model_dump()) == ["method_params"]
    assert paper_a05_b0.differences(runs["tgd_patch_a05_b0 seed 1"].model_dump()) == [
        "pi", "teachers"]
    for beta in (1000, 10000):  # the paper-mode T2's similarity term at other weights
        dose = runs[f"tgd_a05_b{beta} seed 1"]
        assert dose.differences(paper_a05.model_dump()) == ["method_params"]
        assert dose.method_params == {"alpha": 0.5, "beta": beta}
    for row in recipe.methods:  # every row on cpu_full_ablation's five seeds
        assert recipe.seeds_of(row) == [0, 1, 2, 3, 4]
    for row in set(recipe.methods) - shared:  # its own rows, every run archived
        for seed in recipe.seeds_of(row):
            assert runs[f"{row} seed {seed}"].out_dir.startswith(
                "docs/results/runs/cpu_pi_teacher/"), (row, seed)
    weak = runs["teacher t2_raw_weak"]
    assert weak.differences(runs["init (scratch student)"].model_dump()) == ["epochs"]
    assert weak.epochs == 1 and weak.student_input == "raw"
    patch, whole = runs["teacher t2_patch"], runs["teacher t2_cubical"]
    assert patch.differences(whole.model_dump()) == ["pi"]  # the layout, nothing else
    assert patch.pi["cubical"]["patches"] == 4 and "patches" not in whole.pi.get("cubical", {})


def test_a_teacher_can_be_reused_from_a_checkpoint_trained_with_its_settings(tmp_path):
    from tgd_core.experiments.runner import run_experiment
    from tgd_core.training import Stopped, run_training

    first = Recipe(**{**TINY, "methods": {"scratch": {}}})
    run_experiment(first, tmp_path / "first", report=False, log=lambda m: None)
    trained = tmp_path / "first" / "teachers" / "t1" / "latest.pt"
    teachers = {**TINY["teachers"], "t1": {**TINY["teachers"]["t1"], "checkpoint": str(trained)}}
    recipe = Recipe(**{**TINY, "teachers": teachers,
                       "methods": {"kd_t1": {"method": "kd", "teachers": {"t1": "t1"}}}})
    runs = dict(plan(recipe, tmp_path / "second"))
    assert "teacher t1" not in runs and "teacher t2" in runs
    assert runs["kd_t1 seed 0"].teachers == {"t1": str(trained)}

    def with_t1(**changes):
        return Recipe(**{**recipe.model_dump(), "teachers": {
            **teachers, "t1": {**teachers["t1"], **changes}}})

    # where and how fast it ran may differ; anything it learned from may not
    plan(with_t1(threads=1, eval_every=3), tmp_path / "second")
    with pytest.raises(TGDError, match=r"other settings \(seed: recipe 7, checkpoint 1234\)"):
        plan(with_t1(seed=7), tmp_path / "second")
    with pytest.raises(TGDError, match=r"epochs: recipe 2, checkpoint 1"):
        plan(Recipe(**{**recipe.model_dump(), "common": {**TINY["common"], "epochs": 2}}),
             tmp_path / "second")

    class StopSoon:
        def should_stop(self):
            return True

    killed = plan(first, tmp_path / "killed")[0][1]  # teacher t1, stopped in its first epoch
    with pytest.raises(Stopped):
        run_training(killed, ctx=StopSoon(), progress=False)
    with pytest.raises(TGDError, match="stopped at epoch 0 of 1"):
        plan(with_t1(checkpoint=f"{killed.out_dir}/latest.pt"), tmp_path / "second")
    with pytest.raises(TGDError, match="does not exist"):
        plan(with_t1(checkpoint=str(tmp_path / "missing.pt")), tmp_path / "second")


def test_a_recipe_reuses_the_finished_runs_of_another_experiment(tmp_path, monkeypatch):
    from tgd_core.experiments.runner import run_experiment

    monkeypatch.chdir(tmp_path)
    rows = {"kd_t1": TINY["methods"]["kd_t1"], "tgd": TINY["methods"]["tgd"]}
    run_experiment(Recipe(**{**TINY, "methods": {**rows, "scratch": {}}}),
                   tmp_path / "first", report=False, log=lambda m: None)
    stamps = {p: p.stat().st_mtime for p in (tmp_path / "first").rglob("latest.pt")}
    (tmp_path / "first/scratch/seed0/config.json").write_text("{not json")
    # reuse given relative to the working folder, the first experiment ran with absolute paths
    second = Recipe(**{**TINY, "methods": {**rows, "scratch": {}}, "seeds": [0, 1],
                       "reuse": ["first"]})
    runs = dict(plan(second, tmp_path / "second"))
    reused = {label for label, cfg in runs.items() if cfg.out_dir.startswith("first/")}
    assert reused == {"teacher t1", "teacher t2", "init (scratch student)", "kd_t1 seed 0",
                      "tgd seed 0"}  # scratch seed 0's config.json is unreadable: trained
    for label in set(runs) - reused:
        assert runs[label].out_dir == str(tmp_path / "second" / label.replace(" seed ", "/seed"))
    assert runs["tgd seed 1"].init_student == "first/init/latest.pt"
    assert runs["tgd seed 1"].teachers == {"t1": "first/teachers/t1/latest.pt",
                                           "t2": "first/teachers/t2/latest.pt"}

    # a run that learned otherwise (here: TGD's beta) is trained, not reused
    other_beta = {**rows, "tgd": {**rows["tgd"], "params": {"compat": True, "beta": 10.0}}}
    changed = dict(plan(Recipe(**{**second.model_dump(), "methods": other_beta}),
                        tmp_path / "second"))
    assert changed["tgd seed 0"].out_dir == str(tmp_path / "second/tgd/seed0")
    assert changed["kd_t1 seed 0"].out_dir == "first/kd_t1/seed0"
    assert not any(str(cfg.out_dir).startswith("first") for cfg in dict(plan(
        Recipe(**{**second.model_dump(), "common": {**TINY["common"], "lr": 0.05}}),
        tmp_path / "second")).values())

    # a folder copied elsewhere is reused as well: the inputs that were in it are looked for
    # where it is now
    shutil.copytree(tmp_path / "first", tmp_path / "moved")
    moved = dict(plan(Recipe(**{**second.model_dump(), "reuse": ["moved"]}), tmp_path / "second"))
    assert moved["tgd seed 0"].out_dir == "moved/tgd/seed0"
    assert moved["tgd seed 1"].init_student == "moved/init/latest.pt"

    logs = []
    run_experiment(second, tmp_path / "second", log=logs.append)
    assert "[done] kd_t1 seed 0" in logs and "[done] teacher t1" in logs
    trained = sorted(line.split(" -> ")[0] for line in logs if line.startswith("[train]"))
    assert trained == ["[train] kd_t1 seed 1", "[train] scratch seed 0",
                       "[train] scratch seed 1", "[train] tgd seed 1"]
    assert stamps == {p: p.stat().st_mtime for p in (tmp_path / "first").rglob("latest.pt")}
    summary = json.loads((tmp_path / "second/summary.json").read_text())
    assert [(r["method"], r["seeds"]) for r in summary["rows"]] == [
        ("kd_t1", 2), ("tgd", 2), ("scratch", 2)]
    teachers = (tmp_path / "second/results.md").read_text().split("| teacher |")[1]
    assert "| t1 | wrn16_1 | raw | –" not in teachers and "| t1 | wrn16_1 | raw |" in teachers


@pytest.mark.parametrize("group_students", [False, True])
def test_experiment_job_runs_through_a_worker(tmp_path, group_students):
    from tgd_core.jobs import JobStore
    from tgd_core.jobs.worker import Supervisor

    recipe = tmp_path / "small.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "methods": {"scratch": {}, "tgd": {
        "teachers": {"t1": "t1", "t2": "t2"}}}}, sort_keys=False))
    store = JobStore(tmp_path / "state")
    with pytest.raises(TGDError, match="recipe"):
        store.submit("experiment", {"recipe": str(tmp_path / "missing.yaml")})
    job = store.submit("experiment", {"recipe": str(recipe), "group_students": group_students})
    Supervisor(store, concurrency=1, poll=0.2, once=True).run()
    done = store.get(job.id)
    assert done.status == "succeeded", done.error
    assert [r["method"] for r in done.result["rows"]] == ["scratch", "tgd"]
    rows = store.read_metrics(job.id)
    assert {r["run"] for r in rows} >= {"teacher t1", "tgd seed 0"}
    if group_students:  # the two students trained as one group: the same results
        alone = tmp_path / "alone"
        assert main(["experiment", str(recipe), "--out", str(alone), "--no-progress"]) == 0
        rows_alone = json.loads((alone / "summary.json").read_text())["rows"]
        assert json.dumps(done.result["rows"], sort_keys=True) == json.dumps(rows_alone,
                                                                             sort_keys=True)


def test_parallel_runs_in_processes_after_their_teachers_and_resumes_a_stop(tmp_path, capsys):
    """``--parallel 2``: the two teachers start at once in worker processes, each student once
    the runs it needs are done, with the weights an in-process run gives; ``--stop-after``
    stops every running run at a step boundary (exit 3) and the same command resumes them."""
    import os

    import torch

    from tgd_core.experiments.runner import needed_runs
    from tgd_core.nets.checkpoints import load_checkpoint
    from tgd_core.training import run_training

    spec = {**TINY, "methods": {"kd_t1": TINY["methods"]["kd_t1"],
                                "tgd": {"teachers": {"t1": "t1", "t2": "t2"}, "init": True}}}
    recipe = tmp_path / "par.yaml"
    recipe.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "exp"
    assert needed_runs(plan(Recipe(**spec), out)) == {
        "teacher t1": [], "teacher t2": [], "init (scratch student)": [],
        "kd_t1 seed 0": ["teacher t1"], "tgd seed 0": ["teacher t1", "teacher t2",
                                                       "init (scratch student)"]}
    cli = ["experiment", str(recipe), "--out", str(out), "--no-progress", "--parallel", "2"]

    assert main([*cli, "--stop-after", "1e-9"]) == 3  # past the deadline at the first step
    log = capsys.readouterr().err
    assert "[stopped] teacher t1: stopped at epoch 1, step 1" in log
    assert "kd_t1" not in log and "run the same command again to resume" in log

    assert main(cli) == 0
    log = capsys.readouterr().err.splitlines()
    assert any(line.startswith("[resume] teacher t2 ") and line.endswith("(2 running)")
               for line in log)
    done = [line for line in log if line.startswith("[done] ")]
    pids = {int(line.split("(process ")[1].rstrip(")")) for line in done}
    assert len(done) == 5 and os.getpid() not in pids

    def index(prefix: str) -> int:
        return next(i for i, line in enumerate(log) if line.startswith(prefix))

    assert index("[train] kd_t1 seed 0") > index("[done] teacher t1")
    assert index("[train] tgd seed 0") > max(index("[done] teacher t2"), index("[done] init"))
    assert [r["method"] for r in json.loads((out / "summary.json").read_text())["rows"]] == [
        "kd_t1", "tgd"]

    # the run a worker process trained is the run this process trains
    cfg = dict(plan(Recipe(**spec), out))["kd_t1 seed 0"]
    again = cfg.model_copy(update={"out_dir": str(tmp_path / "again")})
    run_training(again, progress=False)
    mine, theirs = (load_checkpoint(f"{c.out_dir}/latest.pt").state_dict for c in (again, cfg))
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)

    assert main(cli) == 0  # everything finished: nothing trains
    assert "[train]" not in capsys.readouterr().err


def test_a_failed_parallel_run_lets_the_others_finish_and_starts_nothing_that_needs_it(
        tmp_path, capsys):
    """``--parallel 2`` resuming with teacher t2's ``latest.pt`` truncated: t2's worker fails
    with a line naming the checkpoint, t1 (started beside it) still finishes and is kept, the
    student that needs both never starts, and the command ends with a one-line error; once the
    bad file is gone the same command trains what is left."""
    spec = {**TINY, "methods": {"mtkd": TINY["methods"]["mtkd"]}}
    recipe = tmp_path / "fail.yaml"
    recipe.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "exp"
    runs = dict(plan(Recipe(**spec), out))
    cli = ["experiment", str(recipe), "--out", str(out), "--no-progress", "--parallel", "2"]
    assert main([*cli, "--stop-after", "1e-9"]) == 3  # both teachers stopped at their first step
    capsys.readouterr()
    bad = Path(runs["teacher t2"].out_dir) / "latest.pt"
    bad.write_bytes(bad.read_bytes()[:1000])  # truncated, as by a full disk

    assert main(cli) == 2
    log = capsys.readouterr().err.splitlines()
    assert any(line.startswith("[failed] teacher t2: ") and "latest.pt" in line
               for line in log), log
    assert any(line.startswith("[done] teacher t1 ") for line in log)
    assert not any("mtkd" in line for line in log)
    assert log[-1].startswith("tgd: error: experiment: ") and "latest.pt" in log[-1]
    assert finished(runs["teacher t1"]) and not finished(runs["mtkd seed 0"])

    bad.unlink()  # t2 starts over
    assert main(cli) == 0
    log = capsys.readouterr().err
    assert "[train] teacher t1" not in log and "[done] mtkd seed 0" in log
