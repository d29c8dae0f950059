"""Planning an experiment: the runs a recipe needs, in order, as validated TrainConfigs; the
teachers reused from trained checkpoints instead of being trained; the finished runs of other
experiments (the recipe's ``reuse``) used where they are; whether a run is finished.

Layout under the experiment folder: ``teachers/<role>/``, ``init/``, ``<method>/seed<k>/``.
A run of the plan found finished at the same place in a ``reuse`` folder, trained with the same
settings (placement and bookkeeping aside; input paths compared resolved), is that run: its
``out_dir`` is the other folder, so it is not trained again and the runs that need it (the
students of a reused teacher or init) read its checkpoint there.

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
    differ, saved = learned_differences(wanted_cfg, ckpt.config)
    if differ:
        shown = "; ".join(f"{k}: recipe {wanted[k]!r}, checkpoint {saved[k]!r}" for k in differ)
        raise TGDError(f"teacher {role}: {path} was trained with other settings ({shown})")
    if ckpt.epoch != wanted["epochs"]:
        raise TGDError(f"teacher {role}: {path} stopped at epoch {ckpt.epoch} of "
                       f"{wanted['epochs']}")
    return path


def learned_differences(cfg, saved: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The fields in which the run config ``saved`` (a config.json or a checkpoint's) learns
    otherwise than ``cfg`` — placement and bookkeeping aside, input paths compared resolved —
    and ``saved`` validated as ``cfg`` is (fields it lacks take their defaults)."""
    now = _config(**_resolved_inputs(cfg.model_dump()))
    known = {k: v for k, v in saved.items() if k in type(cfg).model_fields}
    then = _config(**_resolved_inputs({**known, "out_dir": cfg.out_dir})).model_dump()
    return now.differences(then, ignore=("placement", "bookkeeping")), then


def _resolved_inputs(values: dict[str, Any]) -> dict[str, Any]:
    """Config ``values`` with the checkpoints it starts from (teachers, init student) as
    absolute paths: runs planned from another folder or another spelling compare equal."""
    def absolute(path):
        return None if path is None else str(Path(path).expanduser().resolve())

    return {**values, "teachers": {r: absolute(p) for r, p in values.get("teachers", {}).items()},
            "init_student": absolute(values.get("init_student"))}


def _reused_or_planned(recipe: Recipe, cfg, out: Path):
    """The finished run of a ``reuse`` experiment at ``cfg``'s place that learned what ``cfg``
    would (its config with that folder as ``out_dir``; the checkpoints it started from
    compared by path, else by content — always by content for an archived run, which
    recorded it: :func:`same_inputs`), or ``cfg``. An unreadable or unfinished run there is
    not reused."""
    place = Path(cfg.out_dir).relative_to(out)
    for other in recipe.reuse:
        folder = Path(other) / place
        found = cfg.model_copy(update={"out_dir": str(folder)})
        try:
            saved = json.loads((folder / "config.json").read_text())
            if not isinstance(saved, dict) or not finished(found):
                continue
            saved = _relocated(saved, place, Path(other))
            differ = set(learned_differences(cfg, saved)[0])
        except (OSError, ValueError, TypeError, TGDError):
            continue
        if (differ or (folder / INPUTS_FILE).is_file()) and differ <= set(INPUT_FIELDS):
            differ = set() if same_inputs(cfg, saved, folder) else {"inputs"}
        if not differ:
            return found
    return cfg


INPUT_FIELDS = ("teachers", "init_student")  # the config fields naming checkpoints it starts from
INPUTS_FILE = "inputs.json"  # an archived run's record of its inputs' digests (archive.py)


def run_inputs(values: dict[str, Any]) -> dict[str, str | None]:
    """The checkpoints a run config (``model_dump`` or config.json) starts from, by name:
    ``teacher <role>`` and ``init student`` (None: from scratch)."""
    return {**{f"teacher {role}": path for role, path in (values.get("teachers") or {}).items()},
            "init student": values.get("init_student")}


def same_inputs(cfg, saved: dict[str, Any], folder: Path) -> bool:
    """Whether the run at ``folder`` (config ``saved``) started from the same networks as
    ``cfg``'s, whatever their paths: each checkpoint's
    :func:`~tgd_core.nets.checkpoints.weights_sha256` compared with the one the run's archive
    recorded (:data:`INPUTS_FILE`; a run archived on another machine, or in another checkout,
    started from the shipped checkpoints that this one has elsewhere; archives written before
    it recorded whole-file SHA-256s, which match the file itself), else with that of the file
    ``saved`` names, where it is still there."""
    from tgd_core.core.fileio import file_sha256
    from tgd_core.nets.checkpoints import weights_sha256

    now, then = run_inputs(cfg.model_dump()), run_inputs(saved)
    try:
        recorded = json.loads((folder / INPUTS_FILE).read_text())
    except (OSError, ValueError):
        recorded = {}
    if now.keys() != then.keys() or not isinstance(recorded, dict):
        return False
    for name, path in now.items():
        if path is None or then[name] is None:
            if path != then[name]:
                return False
            continue
        digest = weights_sha256(path)
        if recorded.get(name):
            same = recorded[name] in (digest, file_sha256(path))
        else:
            same = digest == weights_sha256(then[name])
        if digest is None or not same:
            return False
    return True


def _relocated(saved: dict[str, Any], place: Path, here: Path) -> dict[str, Any]:
    """The config ``saved`` of a run found at ``here / place``, its inputs that lay in its
    experiment folder when it trained (its ``out_dir`` less ``place``) moved to ``here``: an
    experiment folder copied from another machine or place is reused as well."""
    then = Path(str(saved.get("out_dir") or ""))
    if len(then.parts) <= len(place.parts) or then.parts[-len(place.parts):] != place.parts:
        return saved
    root = Path(*then.parts[:-len(place.parts)])

    def moved(path):
        inside = path is not None and Path(path).is_relative_to(root)
        return str(here / Path(path).relative_to(root)) if inside else path

    return {**saved, "init_student": moved(saved.get("init_student")),
            "teachers": {r: moved(p) for r, p in (saved.get("teachers") or {}).items()}}


def teacher_runs(recipe: Recipe, out: Path, reused: dict[str, Path]) -> dict[str, Any]:
    """The TrainConfigs of the teachers not ``reused`` from a checkpoint: to train in ``out``,
    or finished in a ``reuse`` experiment."""
    return {role: _reused_or_planned(recipe, _teacher_config(recipe, role, out), out)
            for role in recipe.teachers if role not in reused}


def plan(recipe: Recipe, out: Path, reused: dict[str, Path] | None = None
         ) -> list[tuple[str, Any]]:
    """The runs in order: (label, TrainConfig). Validates every config before anything runs;
    reused teachers (``checkpoint:``; ``reused`` if already checked) are not trained; runs
    finished in a ``reuse`` experiment are planned where they are (finished)."""
    reused = reused_teachers(recipe, out) if reused is None else reused
    teachers = teacher_runs(recipe, out, reused)
    teacher_paths = {**reused, **{role: Path(cfg.out_dir) / "latest.pt"
                                  for role, cfg in teachers.items()}}
    runs = [(f"teacher {role}", cfg) for role, cfg in teachers.items()]
    init_path = None
    if recipe.init is not None:
        init = _reused_or_planned(recipe, _config(**{
            **recipe.common, **recipe.student, "method": "scratch", **recipe.init,
            "out_dir": str(out / "init")}), out)
        runs.append(("init (scratch student)", init))
        init_path = Path(init.out_dir) / "latest.pt"
    for name in recipe.methods:
        runs += _method_runs(recipe, name, out, teacher_paths, init_path)
    return runs


def _method_runs(recipe: Recipe, name: str, out: Path, teacher_paths: dict[str, Path],
                 init_path: Path | None) -> list[tuple[str, Any]]:
    """The runs of method row ``name``: one per seed of the row."""
    spec = recipe.methods[name]
    unknown = set(spec.teachers.values()) - set(recipe.teachers)
    if unknown:
        raise TGDError(f"method {name}: unknown teacher(s) {sorted(unknown)}")
    if spec.init and init_path is None:
        raise TGDError(f"method {name}: init needs the recipe's 'init' stage")
    runs = []
    for seed in recipe.seeds_of(name):
        values = {**recipe.row_settings(name), "method": spec.method or name,
                  "method_params": spec.params,
                  "teachers": {role: str(teacher_paths[t]) for role, t in spec.teachers.items()},
                  "init_student": str(init_path) if spec.init else None,
                  "seed": seed, "out_dir": str(out / name / f"seed{seed}")}
        runs.append((f"{name} seed {seed}", _reused_or_planned(recipe, _config(**values), out)))
    return runs


def finished(cfg) -> bool:
    """Whether the run of ``cfg`` trained to its last epoch (its ``result.json`` says so).

    A damaged ``result.json`` (a torn write, a bad copy) counts as unfinished where the run
    keeps its ``latest.pt``: resuming from it at the last epoch trains nothing and writes
    ``result.json`` again, so nothing is lost. Without ``latest.pt`` it is refused (the
    TGDError of :func:`read_result`): training that run again would replace its ``best.pt``
    and metrics, so the user decides."""
    try:
        result = read_result(Path(cfg.out_dir))
    except TGDError:
        if (Path(cfg.out_dir) / "latest.pt").is_file():
            return False
        raise
    return result is not None and result.get("epochs") == cfg.epochs


def read_result(folder: Path) -> dict[str, Any] | None:
    """The ``result.json`` of the run in ``folder`` (None where there is none); TGDError
    naming the file and what to do where it is damaged."""
    path = folder / "result.json"
    if not path.exists():
        return None
    try:
        return json_object(path)
    except (OSError, ValueError) as exc:
        raise TGDError(f"{path} is damaged ({exc}): delete it and run the experiment again "
                       "(a run that keeps its latest.pt resumes from it and writes the file "
                       "anew)") from None


def json_object(path: Path) -> dict[str, Any]:
    """The JSON object in the file ``path``; ValueError saying what is wrong with it (not
    text, not JSON, not an object), OSError where it cannot be read."""
    try:
        value = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise ValueError("not a text file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    return value


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
