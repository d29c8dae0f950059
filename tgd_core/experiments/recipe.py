"""The recipe of an experiment (YAML): teachers, the scratch student used as TGD's "annealing"
start, the methods, the seeds (any number, distinct; a row may have its own), the evaluation and
the ``baseline`` row the others are compared with (:mod:`.significance`), with TrainConfig fields
shared by all runs (``common``) or set per stage. A teacher entry may be another recipe's teacher
(:class:`TeacherReference`, ``{from_recipe: paper, name: t1}``); ``reuse`` names experiment
folders whose finished runs count as this recipe's where they learned the same
(:mod:`.plan`). ``extends: OTHER`` starts from another recipe's file: each top-level key this
one sets replaces OTHER's whole (so a recipe that changes the rows or seeds of another restates
nothing else). Loading a recipe file fails with one line naming the file and the problem —
also a key given twice in one mapping (YAML would keep the last silently), a recipe file with
no method row, a ``name`` that is not one plain folder name (it names the experiment's folder)
and an ``evaluation`` the runner could not carry out: all refused before anything trains.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tgd_core.core.errors import TGDError
from tgd_core.core.paths import PROJECT_ROOT
from tgd_core.core.validation import validated
from tgd_core.evaluation.sweep import Condition, conditions


def distinct_seeds(seeds: list[int]) -> list[int]:
    """``seeds`` unchanged; ValueError if one repeats."""
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return seeds


class MethodSpec(BaseModel):
    """One row of the comparison: a method, its parameters and which teachers fill its roles."""

    model_config = ConfigDict(extra="forbid")
    method: str | None = None  # default: the row's name
    params: dict[str, Any] = Field(default_factory=dict)
    teachers: dict[str, str] = Field(default_factory=dict, description="role -> teacher name")
    init: bool = False  # start from the recipe's scratch student (TGD's annealing)
    overrides: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] | None = Field(None, min_length=1, description="this row's seeds "
                                    "(default: the recipe's), e.g. more seeds for the rows "
                                    "a question turns on")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        return None if seeds is None else distinct_seeds(seeds)


class EvalSpec(BaseModel):
    """How each student is evaluated: the split (or its first ``subset`` images) and the
    robustness sweep on the first ``corruption_subset`` of them."""

    model_config = ConfigDict(extra="forbid")
    split: str = "test"
    subset: int | None = Field(None, ge=1, description="first N images (None: the whole split)")
    corruptions: list[str] = Field(default_factory=lambda: [
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "gaussian_blur",
        "contrast", "jpeg_compression"])
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    noise_sigmas: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=lambda: [0.05, 0.1, 0.2])  # add_gaussian_noise takes any finite σ >= 0
    corruption_subset: int | None = Field(2000, ge=1)
    seed: int = 0

    @field_validator("corruptions")
    @classmethod
    def _known_corruptions(cls, names: list[str]) -> list[str]:
        """Names :func:`~tgd_core.data.corruptions.corrupt` accepts (its registry)."""
        from tgd_core.data.corruptions import CORRUPTIONS

        unknown = [name for name in names if name not in CORRUPTIONS]
        if unknown:
            raise ValueError(f"unknown corruption(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(sorted(CORRUPTIONS))}")
        return names

    @field_validator("severities")
    @classmethod
    def _known_severities(cls, severities: list[int]) -> list[int]:
        """Severities :func:`~tgd_core.data.corruptions.corrupt` accepts."""
        from tgd_core.data.corruptions import SEVERITIES

        unknown = [str(s) for s in severities if s not in SEVERITIES]
        if unknown:
            raise ValueError(f"unknown severity {', '.join(unknown)}; choose from "
                             f"{', '.join(map(str, SEVERITIES))}")
        return severities

    def conditions(self) -> list[Condition]:
        """The sweep's conditions: clean, every corruption × severity, each noise σ."""
        return conditions(self.corruptions, self.severities, self.noise_sigmas)


# the recipe's name is its experiment's folder (runs/experiments/<name>): one plain folder name
FOLDER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class Recipe(BaseModel):
    """A whole experiment: what to train (teachers, init, methods × seeds) and evaluate.
    ``methods`` may be empty here (a plan of teachers only, as code builds it); a recipe
    file must have a row (:meth:`load`)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    common: dict[str, Any] = Field(default_factory=dict)
    teachers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    init: dict[str, Any] | None = None
    student: dict[str, Any] = Field(default_factory=dict)
    methods: dict[str, MethodSpec]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    evaluation: EvalSpec = Field(default_factory=EvalSpec)
    baseline: str | None = Field("kd_t1", description="the row every other row is compared "
                                 "with (significance); by default kd_t1, if the recipe has it; "
                                 "None: no comparison")
    reuse: list[str] = Field(default_factory=list, description="folders of other experiments "
                             "whose finished runs this recipe would train with the same settings "
                             "are used where they are, not trained again (plan.py)")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        return distinct_seeds(seeds)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        """The name is a folder of ``runs/experiments/``: never a path out of it, nor empty."""
        if not FOLDER_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not one plain folder name (letters, digits, -, _ "
                             "and ., not starting with .): it names the experiment's folder")
        return name

    @field_validator("teachers")
    @classmethod
    def _resolve_references(cls, teachers: dict[str, dict[str, Any]], info: ValidationInfo
                            ) -> dict[str, dict[str, Any]]:
        """Teacher entries ``{from_recipe: ..., name: ...}`` become that recipe's teacher."""
        common = info.data.get("common", {})
        resolved = {}
        for role, spec in teachers.items():
            try:
                resolved[role] = (TeacherReference.resolve(spec, common)
                                  if "from_recipe" in spec else spec)
            except ValueError as exc:
                raise ValueError(f"teacher {role}: {exc}") from None
        return resolved

    @model_validator(mode="after")
    def _known_baseline(self) -> Recipe:
        """An explicitly named baseline must be a row; without the default one (kd_t1) the
        recipe has none (``baseline`` becomes None, so a dumped recipe loads again)."""
        if self.baseline is not None and self.baseline not in self.methods:
            if "baseline" in self.model_fields_set:
                raise ValueError(f"baseline: no method row named {self.baseline!r} (rows: "
                                 f"{', '.join(self.methods)})")
            self.baseline = None
        return self

    @model_validator(mode="after")
    def _evaluation_split(self) -> Recipe:
        """The evaluation split must be a split of every row's dataset (the runner evaluates
        each student on it): refused now, not once everything has trained."""
        from tgd_core.data.datasets import dataset_splits
        from tgd_core.training.config import TrainConfig

        default = TrainConfig.model_fields["dataset"].default
        for row in self.methods:
            dataset = self.row_settings(row).get("dataset", default)
            splits = dataset_splits(dataset)
            if self.evaluation.split not in splits:
                raise ValueError(f"evaluation.split: {self.evaluation.split!r} is not a split "
                                 f"of {dataset} (row {row}); choose from {', '.join(splits)}")
        return self

    def row_settings(self, row: str) -> dict[str, Any]:
        """The TrainConfig fields method row ``row`` sets for its students: ``common``, then
        ``student``, then the row's ``overrides``."""
        return {**self.common, **self.student, **self.methods[row].overrides}

    def seeds_of(self, row: str) -> list[int]:
        """The seeds of method row ``row``: its own, else the recipe's."""
        return self.methods[row].seeds or self.seeds

    def with_baseline(self, row: str) -> Recipe:
        """This recipe with its rows compared with ``row`` instead (training is unchanged);
        TGDError if it has no row of that name."""
        if row not in self.methods:
            raise TGDError(f"baseline: no method row named {row!r} (rows: "
                           f"{', '.join(self.methods)})")
        return self.model_copy(update={"baseline": row})

    def with_placement(self, values: dict[str, Any]) -> Recipe:
        """This recipe with the TrainConfig placement fields ``values`` — where and how fast
        its runs train, never what they learn (``device``, ``compile_mode``, ``threads`` …) —
        set for every run: in ``common`` and over every teacher, stage and row that sets its
        own. TGDError naming any other field."""
        from tgd_core.training.config import TrainConfig

        allowed = TrainConfig.fields_of_kind("placement") - {"out_dir"}
        wrong = sorted(set(values) - allowed)
        if wrong:
            raise TGDError(f"--set {', '.join(wrong)}: a whole experiment takes only where and "
                           f"how fast its runs train ({', '.join(sorted(allowed))}); what a run "
                           "learns is the recipe's")
        if not values:
            return self

        def placed(spec: dict[str, Any]) -> dict[str, Any]:
            return {**spec, **values}

        return self.model_copy(update={
            "common": placed(self.common), "student": placed(self.student),
            "teachers": {role: placed(spec) for role, spec in self.teachers.items()},
            "init": None if self.init is None else placed(self.init),
            "methods": {name: row.model_copy(update={"overrides": placed(row.overrides)})
                        for name, row in self.methods.items()}})

    def check_rows(self, names: list[str] | None, option: str = "--only") -> None:
        """TGDError in one line if any of ``names`` (e.g. ``--only``'s) is not a row."""
        unknown = [name for name in names or [] if name not in self.methods]
        if unknown:
            raise TGDError(f"{option} {' '.join(unknown)}: not a row of recipe {self.name} (its "
                           f"rows: {', '.join(self.methods)})")

    def check_seeds(self, seeds: list[int] | None, rows: list[str] | None = None,
                    option: str = "--seeds") -> None:
        """TGDError in one line if any of ``seeds`` (e.g. ``--seeds``') is a seed of none of
        ``rows`` (default: every row)."""
        where = f"rows {', '.join(rows)}" if rows else f"recipe {self.name}"
        known = sorted({seed for row in rows or self.methods for seed in self.seeds_of(row)})
        unknown = [str(seed) for seed in seeds or [] if seed not in known]
        if unknown:
            raise TGDError(f"{option} {' '.join(unknown)}: not a seed of {where} (their "
                           f"seeds: {', '.join(map(str, known))})")

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """The recipe in the YAML file ``path``; TGDError naming the file and the problem (a
        recipe file with no method row too: it would compare nothing)."""
        recipe = validated(cls, _extended_mapping(path), f"{path}: invalid recipe",
                           show_input=False)
        if not recipe.methods:
            raise TGDError(f"{path}: invalid recipe: methods: names no row (a recipe compares "
                           "at least one method)")
        return recipe


class TeacherReference(BaseModel):
    """A teacher entry that reuses teacher ``name`` of another recipe (``from_recipe``: a bare
    name is ``recipes/<name>.yaml`` of this project, anything else a path): it takes that
    recipe's settings for it — its ``common`` and its entry, with this recipe's ``common``
    unable to change them — and, once that recipe's experiment (``experiment``, by default
    ``runs/experiments/<its name>``, the CLI's default) or a folder that recipe reuses (e.g.
    its archive) holds it trained, its checkpoint, which the runner checks as any
    ``checkpoint:``. Until then this recipe trains the same teacher.
    ``checkpoint`` names that teacher's trained file outright (e.g. the shipped model, a bare
    name in ``checkpoints/``, where that experiment's folder is not on this machine)."""

    model_config = ConfigDict(extra="forbid")
    from_recipe: str
    name: str
    experiment: str | None = None
    checkpoint: str | None = None

    @classmethod
    def resolve(cls, spec: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
        """The teacher spec that ``spec`` (a reference) stands for, under ``common``."""
        ref = validated(cls, spec, "teacher reference", show_input=False)
        other = ref._recipe()
        if ref.name not in other.teachers:
            raise ValueError(f"recipe {other.name!r} has no teacher {ref.name!r} (it has "
                             f"{', '.join(other.teachers) or 'none'})")
        learned = {k: v for k, v in other.common.items() if k not in _unlearned()}
        resolved = {**_defaults(common), **learned, **other.teachers[ref.name]}
        if ref.checkpoint is not None:
            resolved["checkpoint"] = ref.checkpoint
        folders = [ref.experiment or f"runs/experiments/{other.name}", *other.reuse]
        trained = [path for path in (Path(f) / "teachers" / ref.name / "latest.pt"
                                     for f in folders) if path.is_file()]
        if "checkpoint" not in resolved and trained:
            resolved["checkpoint"] = str(trained[0])
        return resolved

    def _recipe(self) -> Recipe:
        """The referenced recipe (a cycle of references is refused)."""
        path = recipe_path(self.from_recipe)
        if path in _LOADING:
            raise ValueError(f"from_recipe: {self.from_recipe} refers back to a recipe that "
                             "refers to it")
        _LOADING.add(path)
        try:
            return Recipe.load(path)
        finally:
            _LOADING.discard(path)


_LOADING: set[Path] = set()  # the recipe files being loaded through references (cycle check)


def recipe_path(name: str) -> Path:
    """The recipe file ``name`` stands for: a bare name is ``recipes/<name>.yaml`` of this
    project, anything else a path."""
    return (PROJECT_ROOT / "recipes" / f"{name}.yaml" if "/" not in name
            and not name.endswith((".yaml", ".yml")) else Path(name)).resolve()


def _extended_mapping(path: str | Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping of the recipe file ``path`` with its ``extends`` resolved: the extended
    recipe's mapping (itself resolved) with every top-level key ``path`` sets replaced."""
    data = _read_yaml_mapping(path)
    if "extends" not in data:
        return data
    base = data.pop("extends")
    if not isinstance(base, str) or not base:
        raise TGDError(f"{path}: extends must name a recipe (e.g. extends: cpu_full), "
                       f"got {base!r}")
    chain = (*seen, Path(path).resolve())
    base_path = recipe_path(base)
    if base_path in chain:
        cycle = " -> ".join(f.name for f in (*chain[chain.index(base_path):], base_path))
        raise TGDError(f"{chain[0]}: recipes extend each other in a cycle ({cycle})")
    return {**_extended_mapping(base_path, chain), **data}


def _defaults(common: dict[str, Any]) -> dict[str, Any]:
    """TrainConfig's defaults of the learned settings in ``common``: what keeps a referenced
    teacher's settings from being changed by the referencing recipe's ``common``."""
    from tgd_core.training.config import TrainConfig

    fields = TrainConfig.model_fields
    return {k: fields[k].get_default(call_default_factory=True) for k in common
            if k in fields and k not in _unlearned()}


def _unlearned() -> frozenset[str]:
    """TrainConfig fields that do not change what a run learns (placement, bookkeeping): a
    referenced teacher takes these from the referencing recipe."""
    from tgd_core.training.config import TrainConfig

    return TrainConfig.fields_of_kind("placement", "bookkeeping")


def _read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path`` (empty for an empty file)."""
    try:
        data = yaml.load(Path(path).read_text(), Loader=UniqueKeyLoader)  # a SafeLoader
    except OSError as exc:
        raise TGDError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise TGDError(f"{path}: cannot read recipe (not a text file)") from None
    except yaml.YAMLError as exc:
        raise TGDError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TGDError(f"{path}: a recipe is a YAML mapping (name:, methods:, ...), got a "
                       f"{type(data).__name__} at the top level")
    return data


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that sets a key twice (plain YAML keeps the
    last value silently: a method row or a seeds list defined twice would lose one). Keys
    merged in with ``<<`` may still be set again: that is what a merge is for."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        """The mapping of ``node``; ConstructorError at the second of a key given twice."""
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(self, node)
        return super().construct_mapping(node, deep=deep)


def _check_unique_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    """ConstructorError at a key ``node`` sets twice, naming it and the line of its first;
    ``<<`` merge entries and unhashable keys (which the loader refuses itself) are left alone."""
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            first = seen.setdefault(key, key_node.start_mark)
        except TypeError:
            continue
        if first is not key_node.start_mark:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first set at line {first.line + 1})",
                key_node.start_mark)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error's problem and where it is, on one line."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"
