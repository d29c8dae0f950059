"""Bad input to ``tgd experiment`` never crashes and never loses finished work: damaged run
records (eval.json, result.json) and recipes refused at load (evaluation, name, rows,
duplicate keys) — each a one-line TGDError or, for a derived cache, one warning."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.waiting import SLOW
from tgd_core.cli import main
from tgd_core.core.errors import TGDError
from tgd_core.experiments.plan import finished, plan
from tgd_core.experiments.recipe import Recipe
from tgd_core.experiments.runner import run_experiment

SMALL = {
    "name": "small",
    "common": {"train_subset": 16, "test_split": "test_lossless_1k", "test_subset": 8,
               "epochs": 1, "batch_size": 8, "threads": 1, "device": "cpu"},
    "student": {"student": "wrn16_1", "student_input": "raw"},
    "methods": {"scratch": {}},
    "seeds": [0],
    "evaluation": {"split": "test_lossless_1k", "subset": 8, "corruption_subset": 8,
                   "corruptions": ["gaussian_noise"], "severities": [1], "noise_sigmas": []},
}
TORN = b'{\n  "spec": {\n    "split": "te'


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cifar_test_images) -> Path:
    """A finished, evaluated experiment of :data:`SMALL` (copied by :func:`experiment`)."""
    folder = tmp_path_factory.mktemp("trained")
    (folder / "small.yaml").write_text(yaml.safe_dump(SMALL, sort_keys=False))
    run_experiment(Recipe(**SMALL), folder / "exp", log=lambda _: None)
    return folder


@pytest.fixture
def experiment(trained, tmp_path) -> Path:
    """A copy of the :func:`trained` experiment folder (recipe ``small.yaml``, ``exp/``)."""
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    return tmp_path


def _run(folder: Path) -> Path:
    return folder / "exp/scratch/seed0"


@pytest.mark.parametrize("damage", [TORN, b"[1, 2]", b"\xff\xfe\x00"])
def test_a_damaged_eval_json_is_evaluated_again_with_one_warning(experiment, damage):
    run = _run(experiment)
    before = json.loads((run / "eval.json").read_text())
    (run / "eval.json").write_bytes(damage)
    logs: list[str] = []
    rows = run_experiment(Recipe(**SMALL), experiment / "exp", train=False, log=logs.append)
    warnings = [line for line in logs if line.startswith("warning")]
    assert len(warnings) == 1 and f"{run / 'eval.json'} is damaged" in warnings[0]
    assert json.loads((run / "eval.json").read_text()) == before
    assert rows[0]["method"] == "scratch"


def test_eval_json_is_replaced_atomically(experiment):
    """Killed while it replaces eval.json (a new evaluation spec), the experiment leaves the
    old file whole."""
    run = _run(experiment)
    old = (run / "eval.json").read_bytes()
    (experiment / "more.yaml").write_text(yaml.safe_dump(
        {**SMALL, "evaluation": {**SMALL["evaluation"], "severities": [1, 2]}}))
    env = {**os.environ, "TGD_FAULT": "experiment.eval"}
    done = subprocess.run([sys.executable, "-m", "tgd_core", "experiment", "more.yaml",
                           "--out", "exp", "--report-only"], cwd=experiment, env=env,
                          capture_output=True, text=True, timeout=SLOW)  # hangs only
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert (run / "eval.json").read_bytes() == old


def test_a_damaged_result_json_resumes_its_run_from_latest_pt(experiment, capsys):
    """result.json only says the run finished: its latest.pt is at the last epoch, so the run
    resumes, trains nothing and writes the same result again."""
    run = _run(experiment)
    before = json.loads((run / "result.json").read_text())
    (run / "result.json").write_bytes(TORN)
    recipe = Recipe(**SMALL)
    (label, cfg), = plan(recipe, experiment / "exp")
    assert not finished(cfg)
    logs: list[str] = []
    run_experiment(recipe, experiment / "exp", log=logs.append)
    assert f"[resume] {label} -> {cfg.out_dir}" in logs
    assert json.loads((run / "result.json").read_text()) == before


def test_a_damaged_result_json_without_latest_pt_is_refused_in_one_line(experiment, capsys):
    run = _run(experiment)
    (run / "result.json").write_bytes(TORN)
    (run / "latest.pt").unlink()
    best = (run / "best.pt").read_bytes()
    recipe = Recipe(**SMALL)
    problem = f"{run / 'result.json'} is damaged .*: delete it and run the experiment again"
    for train in (True, False):
        with pytest.raises(TGDError, match=problem):
            run_experiment(recipe, experiment / "exp", train=train, log=lambda _: None)
    assert main(["experiment", str(experiment / "small.yaml"), "--out",
                 str(experiment / "exp"), "--plan"]) != 0
    assert "is damaged" in capsys.readouterr().err
    assert (run / "best.pt").read_bytes() == best  # nothing trained over it


def test_a_damaged_run_of_a_reuse_folder_is_not_reused(experiment):
    run = _run(experiment)
    (run / "result.json").write_bytes(TORN)
    (run / "latest.pt").unlink()  # as archived
    recipe = Recipe(**{**SMALL, "reuse": [str(experiment / "exp")]})
    (_, cfg), = plan(recipe, experiment / "other")
    assert cfg.out_dir == str(experiment / "other/scratch/seed0")


def _load(tmp_path: Path, text: str) -> Recipe:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return Recipe.load(path)


def _recipe_text(**changes) -> str:
    return yaml.safe_dump({**SMALL, **changes}, sort_keys=False)


@pytest.mark.parametrize(("evaluation", "problem"), [
    ({"corruptions": ["nope"]}, "evaluation.corruptions: unknown corruption.* nope; choose"),
    ({"severities": [9]}, "evaluation.severities: unknown severity 9; choose from 1, 2"),
    ({"severities": [0]}, "evaluation.severities: unknown severity 0"),
    ({"noise_sigmas": [float("nan")]}, "evaluation.noise_sigmas.0: .*finite"),
    ({"noise_sigmas": [float("inf")]}, "evaluation.noise_sigmas.0: .*finite"),
    ({"noise_sigmas": [-1]}, "evaluation.noise_sigmas.0: .*greater than or equal to 0"),
    ({"split": "nope"}, "evaluation.split: 'nope' is not a split of cifar10 .*test_lossless_1k"),
])
def test_a_bad_evaluation_is_refused_when_the_recipe_loads(tmp_path, evaluation, problem):
    text = _recipe_text(evaluation={**SMALL["evaluation"], **evaluation})
    with pytest.raises(TGDError, match=f"r.yaml: invalid recipe: {problem}"):
        _load(tmp_path, text)


def test_the_evaluation_split_is_one_of_every_rows_dataset(tmp_path, capsys):
    common = {**SMALL["common"], "test_split": "valid"}
    cinic = {"common": {**common, "dataset": "cinic10"}}
    with pytest.raises(TGDError, match="'test_lossless_1k' is not a split of cinic10 .row "
                                       "scratch.; choose from train, valid, test"):
        _load(tmp_path, _recipe_text(**cinic))
    assert _load(tmp_path, _recipe_text(**cinic, evaluation={"split": "valid"}))
    row = {"scratch": {"overrides": {"dataset": "cinic10", "test_split": "valid"}}}
    with pytest.raises(TGDError, match="not a split of cinic10 .row scratch."):
        _load(tmp_path, _recipe_text(methods=row))
    # refused by --plan, before anything is planned or trained
    (tmp_path / "r.yaml").write_text(_recipe_text(evaluation={"split": "nope"}))
    assert main(["experiment", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "x"),
                 "--plan"]) != 0
    assert "evaluation.split" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_every_corruption_and_severity_of_the_registry_is_accepted(tmp_path):
    from tgd_core.data.corruptions import CORRUPTIONS, SEVERITIES

    evaluation = {"corruptions": list(CORRUPTIONS), "severities": list(SEVERITIES),
                  "noise_sigmas": [0, 0.5]}
    assert _load(tmp_path, _recipe_text(evaluation=evaluation)).evaluation.corruptions == list(
        CORRUPTIONS)


@pytest.mark.parametrize("name", ["../../../tmp/x", "", "/etc", "a/b", ".", "..", ".hidden",
                                  "a b", "x\n"])
def test_a_recipe_name_that_is_not_one_folder_name_is_refused(tmp_path, name):
    with pytest.raises(TGDError, match="invalid recipe: name: .* is not one plain folder name"):
        _load(tmp_path, _recipe_text(name=name))


@pytest.mark.parametrize("name", ["tiny", "cpu_full", "v1.2-b", "3"])
def test_plain_folder_names_are_accepted(tmp_path, name):
    assert _load(tmp_path, _recipe_text(name=name)).name == name


def test_a_recipe_file_without_method_rows_is_refused(tmp_path):
    with pytest.raises(TGDError, match="r.yaml: invalid recipe: methods: names no row"):
        _load(tmp_path, _recipe_text(methods={}))


@pytest.mark.parametrize(("text", "problem"), [
    ("name: a\nmethods: {scratch: {}}\nseeds: [0]\nseeds: [5]\n",
     "duplicate key 'seeds' .first set at line 3. at line 4"),
    ("name: a\nmethods:\n  scratch: {seeds: [0]}\n  scratch: {seeds: [7]}\n",
     "duplicate key 'scratch' .first set at line 3. at line 4"),
    ("name: a\nmethods: {scratch: {params: {t: 1, t: 2}}}\n",
     "duplicate key 't' .first set at line 2. at line 2"),
])
def test_a_key_given_twice_is_refused_naming_it_and_its_lines(tmp_path, text, problem):
    with pytest.raises(TGDError, match=f"r.yaml: not valid YAML .{problem}"):
        _load(tmp_path, text)


def test_a_merged_key_may_be_set_again(tmp_path):
    text = ("name: a\nmethods: {scratch: {}}\nstudent: &s {student: wrn16_1, threads: 1}\n"
            "common: {<<: *s, threads: 2}\n")
    assert _load(tmp_path, text).common == {"student": "wrn16_1", "threads": 2}
