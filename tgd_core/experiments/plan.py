"""Planning an experiment: the runs a recipe needs, in order, as validated TrainConfigs; the
teachers reused from trained checkpoints instead of being trained; whether a run is finished.

Layout under the experiment folder: ``teachers/<role>/``, ``init/``, ``<method>/seed<k>/``.

:func:`student_groups` plans ``--group-students``: which student runs see identical batches
(and so can train in one process, sharing each step's batch, its on-the-fly PIs and each
teacher's forward: :mod:`tgd_core.training.group`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tgd_core.core.errors import TGDError
from tgd_core.experiments.recipe import Recipe


def _config(**values):
    """The validated TrainConfig of ``values``."""
    from tgd_core.training import TrainConfig

    return TrainConfig.build(**values)


def _resolve_checkpoint(name: str) -> Path:
    """A bare file name is a shipped checkpoint (``TGD_CHECKPOINT_DIR``); a path is as given."""
    from tgd_core.nets.model_zoo import checkpoint_dir

    path = Path(name).expanduser()
    return checkpoint_dir() / path if len(path.parts) == 1 else path


def _teacher_config(recipe: Recipe, role: str, out: Path):
    """The TrainConfig that trains teacher ``role`` (its ``checkpoint:`` left out)."""
    spec = {k: v for k, v in recipe.teachers[role].items() if k != "checkpoint"}
    return _config(**{**recipe.common, "method": "scratch", **spec,
                      "out_dir": str(out / "teachers" / role)})


def reused_teachers(recipe: Recipe, out: Path) -> dict[str, Path]:
    """Teachers whose spec names a trained ``checkpoint`` instead of being trained: name ->
    checkpoint. The checkpoint must have been trained with the spec's settings (its saved
    config equals the one the recipe would train, up to placement and bookkeeping fields) to the
    last epoch."""
    reused = {}
    for role, spec in recipe.teachers.items():
        if "checkpoint" in spec:
            reused[role] = _checked_teacher_checkpoint(recipe, role, out)
    return reused


def _checked_teacher_checkpoint(recipe: Recipe, role: str, out: Path) -> Path:
    """The checkpoint named by teacher ``role``, once checked against the recipe's settings."""
    from tgd_core.nets.checkpoints import load_checkpoint

    path = _resolve_checkpoint(str(recipe.teachers[role]["checkpoint"]))
    if not path.is_file():
        raise TGDError(f"teacher {role}: checkpoint {path} does not exist")
    wanted_cfg = _teacher_config(recipe, role, out)
    wanted = wanted_cfg.model_dump()
    ckpt = load_checkpoint(path)
    if not ckpt.config:
        raise TGDError(f"teacher {role}: {path} holds no training config, so it cannot be "
                       "checked against the recipe; train the teacher instead")
    saved = _config(**{k: v for k, v in ckpt.config.items() if k in wanted}).model_dump()
    differ = wanted_cfg.differences(saved, ignore=("placement", "bookkeeping"))
    if differ:
        shown = "; ".join(f"{k}: recipe {wanted[k]!r}, checkpoint {saved[k]!r}" for k in differ)
        raise TGDError(f"teacher {role}: {path} was trained with other settings ({shown})")
    if ckpt.epoch != wanted["epochs"]:
        raise TGDError(f"teacher {role}: {path} stopped at epoch {ckpt.epoch} of "
                       f"{wanted['epochs']}")
    return path


def plan(recipe: Recipe, out: Path, reused: dict[str, Path] | None = None
         ) -> list[tuple[str, Any]]:
    """The runs in order: (label, TrainConfig). Validates every config before anything runs;
    reused teachers (``checkpoint:``; ``reused`` if already checked) are not trained."""
    reused = reused_teachers(recipe, out) if reused is None else reused
    teacher_paths = {role: reused.get(role, out / "teachers" / role / "latest.pt")
                     for role in recipe.teachers}
    runs = [(f"teacher {role}", _teacher_config(recipe, role, out))
            for role in recipe.teachers if role not in reused]
    if recipe.init is not None:
        runs.append(("init (scratch student)", _config(**{
            **recipe.common, **recipe.student, "method": "scratch", **recipe.init,
            "out_dir": str(out / "init")})))
    for name in recipe.methods:
        runs += _method_runs(recipe, name, out, teacher_paths)
    return runs


def _method_runs(recipe: Recipe, name: str, out: Path, teacher_paths: dict[str, Path]
                 ) -> list[tuple[str, Any]]:
    """The runs of method row ``name``: one per seed."""
    spec = recipe.methods[name]
    unknown = set(spec.teachers.values()) - set(recipe.teachers)
    if unknown:
        raise TGDError(f"method {name}: unknown teacher(s) {sorted(unknown)}")
    if spec.init and recipe.init is None:
        raise TGDError(f"method {name}: init needs the recipe's 'init' stage")
    runs = []
    for seed in recipe.seeds:
        values = {**recipe.common, **recipe.student, **spec.overrides,
                  "method": spec.method or name, "method_params": spec.params,
                  "teachers": {role: str(teacher_paths[t]) for role, t in spec.teachers.items()},
                  "init_student": str(out / "init" / "latest.pt") if spec.init else None,
                  "seed": seed, "out_dir": str(out / name / f"seed{seed}")}
        runs.append((f"{name} seed {seed}", _config(**values)))
    return runs


def finished(cfg) -> bool:
    """Whether the run of ``cfg`` trained to its last epoch (its ``result.json`` says so)."""
    result = Path(cfg.out_dir) / "result.json"
    return result.exists() and json.loads(result.read_text()).get("epochs") == cfg.epochs


# The config fields that fix a run's stream of training batches (order, augmentation, the
# on-the-fly PIs: functions of (seed, epoch, step), tgd_core.training.data), its test split,
# its number of epochs, and how its networks run (device, threads, memory format, autocast,
# loop): student runs equal in all of them see identical batches and compute identical
# teacher outputs, whatever their method, teachers or hyper-parameters.
SHARED_BATCH_FIELDS = ("dataset", "data_dir", "train_subset", "test_split", "test_subset", "pi",
                       "augment", "pi_on_the_fly", "fixed_batches", "epochs", "batch_size",
                       "seed", "device", "threads", "amp", "channels_last", "engine")


def batch_key(cfg) -> str:
    """What a run's batches and teacher outputs depend on (:data:`SHARED_BATCH_FIELDS`), as
    text: runs with equal keys see identical batches."""
    values = cfg.model_dump()
    return json.dumps({k: values[k] for k in SHARED_BATCH_FIELDS}, sort_keys=True)


def is_student(label: str) -> bool:
    """Whether a planned run is a method row's student (``"<method> seed <k>"``), not a
    teacher or the init student."""
    return " seed " in label


def student_groups(runs: list[tuple[str, Any]]) -> list[list[tuple[str, Any]]]:
    """The units of work of ``--group-students``: the student runs of ``runs`` (plan order)
    with equal :func:`batch_key` — e.g. every method's student of one seed — as one group
    each, at the place of its first run; teachers and the init student alone (students
    need them finished, and they never need a student)."""
    units: list[list[tuple[str, Any]]] = []
    by_key: dict[str, list[tuple[str, Any]]] = {}
    for label, cfg in runs:
        if not is_student(label):
            units.append([(label, cfg)])
            continue
        key = batch_key(cfg)
        if key not in by_key:
            by_key[key] = []
            units.append(by_key[key])
        by_key[key].append((label, cfg))
    return units
