"""The recipe of an experiment (YAML): teachers, the scratch student used as TGD's "annealing"
start, the methods, the seeds and the evaluation, with TrainConfig fields shared by all runs
(``common``) or set per stage. Loading a recipe file fails with one line naming the file and the
problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tgd_core.core.errors import TGDError
from tgd_core.core.validation import validated
from tgd_core.evaluation.sweep import Condition, conditions


class MethodSpec(BaseModel):
    """One row of the comparison: a method, its parameters and which teachers fill its roles."""

    model_config = ConfigDict(extra="forbid")
    method: str | None = None  # default: the row's name
    params: dict[str, Any] = Field(default_factory=dict)
    teachers: dict[str, str] = Field(default_factory=dict, description="role -> teacher name")
    init: bool = False  # start from the recipe's scratch student (TGD's annealing)
    overrides: dict[str, Any] = Field(default_factory=dict)


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
    noise_sigmas: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2])
    corruption_subset: int | None = Field(2000, ge=1)
    seed: int = 0

    def conditions(self) -> list[Condition]:
        """The sweep's conditions: clean, every corruption × severity, each noise σ."""
        return conditions(self.corruptions, self.severities, self.noise_sigmas)


class Recipe(BaseModel):
    """A whole experiment: what to train (teachers, init, methods × seeds) and evaluate."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    common: dict[str, Any] = Field(default_factory=dict)
    teachers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    init: dict[str, Any] | None = None
    student: dict[str, Any] = Field(default_factory=dict)
    methods: dict[str, MethodSpec]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    evaluation: EvalSpec = Field(default_factory=EvalSpec)

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """The recipe in the YAML file ``path``; TGDError naming the file and the problem."""
        data = _read_yaml_mapping(path)
        return validated(cls, data, f"{path}: invalid recipe", show_input=False)


def _read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path`` (empty for an empty file)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
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


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error's problem and where it is, on one line."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"
