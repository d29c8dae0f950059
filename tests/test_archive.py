"""Archived runs (tgd_core/experiments/archive.py): an experiment's finished runs copied into a
small folder outlive the experiment folder; a recipe that reuses the folder trains none of them
again, reports them from their records, and recognises the checkpoints they started from by
content where those lie elsewhere (the shipped models of another checkout)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
import yaml

from tests.test_experiments import TINY
from tgd_core.cli import main
from tgd_core.core.errors import TGDError
from tgd_core.experiments.plan import plan
from tgd_core.experiments.recipe import Recipe
from tgd_core.experiments.runner import run_experiment
from tgd_core.nets.checkpoints import load_checkpoint, strip_checkpoint, weights_sha256

pytestmark = pytest.mark.usefixtures("cifar_test_images")

ROWS = {"kd_t1": TINY["methods"]["kd_t1"], "tgd": TINY["methods"]["tgd"]}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def quiet(message: str) -> None:
    """A log that drops its messages."""


def perturb(checkpoint) -> None:
    """Change one weight of a checkpoint (same settings, other content)."""
    payload = torch.load(checkpoint, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = payload["state_dict"][name] + 1
    torch.save(payload, checkpoint)


def test_archived_runs_outlive_their_experiment_folder(tmp_path, monkeypatch, capsys):
    from tgd_core.experiments.archive import archive_runs

    monkeypatch.chdir(tmp_path)
    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text(yaml.safe_dump({**TINY, "methods": ROWS}, sort_keys=False))
    run_experiment(Recipe.load(recipe_file), "exp", report=False, log=quiet)
    (tmp_path / "exp/kd_t1/seed0/eval.json").unlink()  # as after a stopped sitting
    assert archive_runs(Recipe.load(recipe_file), "exp", "archive", log=quiet) == [
        "teacher t1", "teacher t2", "init (scratch student)", "tgd seed 0"]
    assert not (tmp_path / "archive/kd_t1").exists()  # archived once evaluated (its report)
    first = run_experiment(Recipe.load(recipe_file), "exp", log=quiet)
    assert main(["experiment", str(recipe_file), "--out", "exp", "--report-only",
                 "--archive", "archive"]) == 0
    assert "archive: 1 run(s) added or updated in archive" in capsys.readouterr().err

    # the runs others start from keep their network (not their optimizer state); students
    # keep their records only
    archive = tmp_path / "archive"
    for place in ("teachers/t1", "teachers/t2", "init"):
        kept, trained = (load_checkpoint(root / place / "latest.pt")
                         for root in (archive, tmp_path / "exp"))
        assert kept.optimizer is None and trained.optimizer is not None
        assert kept.state_dict.keys() == trained.state_dict.keys()
        assert all(torch.equal(kept.state_dict[k], v) for k, v in trained.state_dict.items())
        assert (kept.epoch, kept.metrics, kept.versions) == (
            trained.epoch, trained.metrics, trained.versions)
        assert (archive / place / "latest.pt").stat().st_size < (
            tmp_path / "exp" / place / "latest.pt").stat().st_size
    student = archive / "tgd/seed0"
    assert sorted(p.name for p in student.iterdir()) == [
        "config.json", "eval.json", "inputs.json", "metrics.jsonl", "result.json"]
    assert json.loads((student / "inputs.json").read_text()) == {
        "teacher t1": weights_sha256(archive / "teachers/t1/latest.pt"),
        "teacher t2": weights_sha256(archive / "teachers/t2/latest.pt"),
        "init student": weights_sha256(tmp_path / "exp/init/latest.pt")}
    main(["experiment", str(recipe_file), "--out", "exp", "--report-only", "--archive",
          "archive"])
    assert "archive: 0 run(s) added or updated" in capsys.readouterr().err

    # the experiment folder is gone (a new checkout): the archive is every run, finished
    shutil.rmtree(tmp_path / "exp")
    reusing_file = tmp_path / "reusing.yaml"
    reusing_file.write_text(yaml.safe_dump({**TINY, "methods": ROWS, "reuse": ["archive"]},
                                           sort_keys=False))
    reusing = Recipe.load(reusing_file)
    # ... and another recipe's reference to its teacher finds the archived checkpoint
    referring = Recipe(**{**TINY, "teachers": {"t1": {"from_recipe": str(reusing_file),
                                                      "name": "t1"}}, "init": None,
                          "methods": {"kd_t1": ROWS["kd_t1"]}})
    assert referring.teachers["t1"]["checkpoint"] == "archive/teachers/t1/latest.pt"
    runs = plan(reusing, tmp_path / "exp")
    assert all(cfg.out_dir.startswith("archive/") for _, cfg in runs)
    logs = []
    again = run_experiment(reusing, tmp_path / "exp", log=logs.append)
    assert not [line for line in logs if line.startswith(("[train]", "[resume]"))]
    assert [(r["method"], r["last_accuracy_mean"]) for r in again] == [
        (r["method"], r["last_accuracy_mean"]) for r in first]

    # an archived student keeps no checkpoint: another evaluation spec is refused in one line
    other_eval = Recipe(**{**reusing.model_dump(), "evaluation": {
        **reusing.evaluation.model_dump(), "severities": [1, 2]}})
    with pytest.raises(TGDError, match="keeps no checkpoint .* cannot be evaluated again"):
        run_experiment(other_eval, tmp_path / "exp", train=False, log=quiet)

    # the init student replaced at its place: the student archived from the old one is not it
    perturb(archive / "init/latest.pt")
    runs = dict(plan(reusing, tmp_path / "exp"))
    assert runs["tgd seed 0"].out_dir == str(tmp_path / "exp/tgd/seed0")
    assert runs["kd_t1 seed 0"].out_dir == "archive/kd_t1/seed0"


def test_archived_runs_started_from_checkpoints_elsewhere_are_matched_by_content(
        tmp_path, monkeypatch):
    from tgd_core.experiments.archive import archive_runs

    monkeypatch.chdir(tmp_path)
    run_experiment(Recipe(**{**TINY, "methods": {}}), "teachers", report=False, log=quiet)
    (tmp_path / "shipped").mkdir()
    shutil.copy(tmp_path / "teachers/teachers/t1/latest.pt", tmp_path / "shipped/t1.pt")

    def recipe(shipped: str, reuse: list[str]) -> Recipe:
        t1 = {**TINY["teachers"]["t1"], "checkpoint": f"{shipped}/t1.pt"}
        return Recipe(**{**TINY, "teachers": {"t1": t1}, "init": None,
                         "methods": {"kd_t1": ROWS["kd_t1"]}, "reuse": reuse})

    run_experiment(recipe("shipped", []), "exp", log=quiet)
    # results.md's teacher table: a checkpoint without its run's result.json gives the last
    # epoch's accuracy from its own metrics
    teacher = json.loads((tmp_path / "exp/summary.json").read_text())["teachers"]["t1"]
    saved = torch.load(tmp_path / "shipped/t1.pt", weights_only=True)["metrics"]
    assert (teacher["best_accuracy"], teacher["last_accuracy"]) == (None, saved["test_accuracy"])
    assert archive_runs(recipe("shipped", []), "exp", "archive", log=quiet) == ["kd_t1 seed 0"]
    shutil.rmtree(tmp_path / "exp")

    # another checkout holds the same teacher at another path: the student is reused
    (tmp_path / "shipped").rename(tmp_path / "elsewhere")
    (runs,) = plan(recipe("elsewhere", ["archive"]), tmp_path / "exp")
    assert runs[1].out_dir == "archive/kd_t1/seed0"

    # ... or the same network without its optimizer state (a shipped copy): reused as well
    strip_checkpoint(tmp_path / "elsewhere/t1.pt", tmp_path / "elsewhere/t1.pt")
    (runs,) = plan(recipe("elsewhere", ["archive"]), tmp_path / "exp")
    assert runs[1].out_dir == "archive/kd_t1/seed0"

    # an archive written before networks were digested recorded the file's SHA-256: the
    # same file still matches
    inputs = tmp_path / "archive/kd_t1/seed0/inputs.json"
    inputs.write_text(json.dumps({"teacher t1": sha256(tmp_path / "elsewhere/t1.pt")}))
    (runs,) = plan(recipe("elsewhere", ["archive"]), tmp_path / "exp")
    assert runs[1].out_dir == "archive/kd_t1/seed0"

    # a teacher of other content there: the student is trained again
    perturb(tmp_path / "elsewhere/t1.pt")
    (runs,) = plan(recipe("elsewhere", ["archive"]), tmp_path / "exp")
    assert runs[1].out_dir == str(tmp_path / "exp/kd_t1/seed0")


def test_runs_reused_from_another_archive_are_not_copied_again(tmp_path, monkeypatch):
    """A recipe that adds a row to an archived experiment archives its new runs only, also
    where it finds the reused runs in that experiment's working folder, listed before the
    archive; runs it reuses from a working folder that no archive holds are copied as its
    own."""
    from tgd_core.experiments.archive import archive_runs

    monkeypatch.chdir(tmp_path)
    base = Recipe(**{**TINY, "methods": ROWS})
    run_experiment(base, "exp", log=quiet)
    archive_runs(base, "exp", "archive", log=quiet)
    rows = {**ROWS, "scratch": TINY["methods"]["scratch"]}
    from_working = Recipe(**{**TINY, "methods": rows, "reuse": ["exp", "archive"]})
    run_experiment(from_working, "more", log=quiet)
    assert archive_runs(from_working, "more", "more_archive", log=quiet) == ["scratch seed 0"]
    unarchived = Recipe(**{**TINY, "methods": rows, "reuse": ["exp"]})
    assert sorted(archive_runs(unarchived, "more", "own_archive", log=quiet)) == [
        "init (scratch student)", "kd_t1 seed 0", "scratch seed 0", "teacher t1",
        "teacher t2", "tgd seed 0"]
    from_archive = Recipe(**{**TINY, "methods": rows, "reuse": ["archive"]})
    shutil.rmtree(tmp_path / "exp")
    assert archive_runs(from_archive, "more", "new_archive", log=quiet) == ["scratch seed 0"]
    assert sorted(p.name for p in (tmp_path / "new_archive").iterdir()) == ["scratch"]


def test_the_archives_the_recipes_reuse_are_not_ignored_by_git():
    """An archive is kept by committing it: git must not ignore it (as a `runs/` pattern did)."""
    import subprocess

    from tgd_core.core.paths import PROJECT_ROOT

    if not (PROJECT_ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    archives = {folder for path in (PROJECT_ROOT / "recipes").glob("*.yaml")
                for folder in Recipe.load(path).reuse if not folder.startswith("runs/")}
    assert "docs/results/runs/cpu_full_ablation" in archives
    for folder in archives:
        probe = f"{folder}/init/latest.pt"
        ignored = subprocess.run(["git", "check-ignore", "-q", probe], cwd=PROJECT_ROOT)
        assert ignored.returncode == 1, f"{probe} is ignored by git"
