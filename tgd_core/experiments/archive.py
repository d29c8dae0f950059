"""Archiving an experiment's finished runs, so that they outlive the machine that trained them.

An experiment folder (``runs/experiments/<name>``) is working space: checkpoints of every run,
ignored by git, gone with the checkout. An experiment too long for one sitting (a CPU
ablation: hours per seed) needs its finished runs kept. :func:`archive_runs` copies the record
of each finished run of a recipe into an experiment-shaped folder small enough to commit:

- every run: ``config.json``, ``result.json``, ``metrics.jsonl`` and ``eval.json`` (a
  student's evaluation: a student is archived once the experiment has evaluated it — its
  record is complete — as after a report, ``--report-only`` included);
- the runs that other runs start from (teachers, the init student): ``latest.pt`` as well,
  without its optimizer state (:func:`~tgd_core.nets.checkpoints.stripped_bytes`: a finished
  run is never resumed; half the bytes, which travel with every call to a device machine);
- ``inputs.json``: the digest of each network the run started from (teachers, init student;
  :func:`~tgd_core.nets.checkpoints.weights_sha256`, equal for a checkpoint and its stripped
  copy), by :func:`~.plan.run_inputs` name.

A recipe that extends another's experiment and reuses its archive (``reuse``) archives only
its own runs: the reused ones stay where they are archived, not copied twice — also when the
plan finds them in the other experiment's working folder, listed before its archive, and that
archive holds the same record.

Named in a recipe's ``reuse``, the folder's runs are finished runs like any other
(:func:`~.plan.same_inputs` compares their inputs by content where paths differ): not trained
again, reported from their ``eval.json``. An archived student keeps no checkpoint, so it is
not evaluated again under another evaluation spec (:func:`~.runner.evaluate_run` says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tgd_core.core.fileio import atomic_write, json_text
from tgd_core.experiments.plan import INPUTS_FILE, finished, is_student, plan, run_inputs
from tgd_core.experiments.recipe import Recipe
from tgd_core.nets.checkpoints import stripped_bytes, weights_sha256

RECORD = ("metrics.jsonl", "eval.json", "config.json")  # copied for every run
STARTED_FROM = "latest.pt"  # copied for the runs others start from
FINISHED_MARK = "result.json"  # copied last: an interrupted archive holds no finished run


def archive_runs(recipe: Recipe, out: str | Path, dest: str | Path, *, log=print
                 ) -> list[str]:
    """Copy the records of the finished runs of ``recipe`` (trained in ``out`` or reused
    from its ``reuse`` folders) into ``dest`` at their places in the experiment; the labels
    of the runs whose record changed there. Students not yet evaluated (no ``eval.json``)
    wait for a later archive; files already equal are left alone; runs reused from an
    archive (``dest`` itself or another one the recipe reuses: their folder holds the
    ``inputs.json`` only an archive writes), or held by one at the same place with the same
    result, are kept there already and skipped."""
    out, dest = Path(out), Path(dest)
    roots = [out, *map(Path, recipe.reuse)]
    changed = []
    for label, cfg in plan(recipe, out):
        source = Path(cfg.out_dir)
        place = run_place(source, roots)
        target = dest / place
        if (not finished(cfg) or (source / INPUTS_FILE).is_file()
                or is_student(label) and not (source / "eval.json").is_file()
                or archived_in(source, place, [r for r in roots[1:] if r != dest])):
            continue
        files = {name: (source / name).read_bytes() for name in RECORD
                 if (source / name).is_file()}
        if not is_student(label):
            files[STARTED_FROM] = stripped_bytes(source / STARTED_FROM)
        files[INPUTS_FILE] = (json_text(_input_digests(cfg.model_dump()), indent=2)
                              + "\n").encode()
        files[FINISHED_MARK] = (source / FINISHED_MARK).read_bytes()
        if _write_changed(target, files):
            changed.append(label)
            log(f"[archive] {label} -> {target}")
    return changed


def run_place(folder: Path, roots: list[Path]) -> Path:
    """Where the run at ``folder`` stands in its experiment: its path below the first of
    ``roots`` (the experiment folder, then the ``reuse`` folders) that holds it."""
    for root in roots:
        if folder.is_relative_to(root):
            return folder.relative_to(root)
    raise ValueError(f"{folder} is in none of {', '.join(map(str, roots))}")


def archived_in(source: Path, place: Path, archives: list[Path]) -> bool:
    """Whether one of ``archives`` holds the finished run at ``source`` already: an archived
    run (``inputs.json``) at ``place`` whose ``result.json`` is the same, byte for byte."""
    result = (source / FINISHED_MARK).read_bytes()
    return any((root / place / INPUTS_FILE).is_file()
               and (root / place / FINISHED_MARK).is_file()
               and (root / place / FINISHED_MARK).read_bytes() == result for root in archives)


def _input_digests(values: dict[str, Any]) -> dict[str, str | None]:
    """The weights digest of each checkpoint a run config starts from."""
    return {name: weights_sha256(path) for name, path in run_inputs(values).items()
            if path is not None}


def _write_changed(target: Path, files: dict[str, bytes]) -> bool:
    """Write the ``files`` (name -> bytes, in order) whose content differs in ``target``;
    whether any did."""
    target.mkdir(parents=True, exist_ok=True)
    changed = False
    for name, data in files.items():
        path = target / name
        if path.is_file() and path.read_bytes() == data:
            continue
        atomic_write(path, data)
        changed = True
    return changed
