"""Job kinds: :data:`REGISTRY` maps a kind to its config type and its runner.

A config type is a pydantic model or a dataclass; a runner is ``run(config, ctx) -> dict``.
Either may be given as ``"module:attribute"`` so that heavy modules (torch) are imported only
when a job of that kind is submitted or run. Modules named in ``TGD_JOB_PLUGINS``
(comma-separated) are imported on first use and may add kinds with :func:`register_kind`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from tgd_core.core.errors import TGDError

Runner = Callable[[Any, Any], Mapping[str, Any]]


def _resolve(obj: Any) -> Any:
    if not isinstance(obj, str):
        return obj
    module, _, attr = obj.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class JobKind:
    """A kind's config type and runner (objects or ``"module:attribute"`` strings)."""

    config: type | str
    run: Runner | str

    def config_type(self) -> type:
        return _resolve(self.config)

    def runner(self) -> Runner:
        return _resolve(self.run)


REGISTRY: dict[str, JobKind] = {
    "pi-cache": JobKind("tgd_core.jobs.runners:PICacheJob", "tgd_core.jobs.runners:run_pi_cache"),
    "evaluate": JobKind("tgd_core.jobs.runners:EvaluateJob", "tgd_core.jobs.runners:run_evaluate"),
    "train": JobKind("tgd_core.training.config:TrainConfig",
                     "tgd_core.training.jobs:run_train_job"),
    "distill": JobKind("tgd_core.training.config:TrainConfig",
                       "tgd_core.training.jobs:run_train_job"),
    "experiment": JobKind("tgd_core.experiments.runner:ExperimentJob",
                          "tgd_core.experiments.runner:run_experiment_job"),
}
KINDS = tuple(REGISTRY)  # the engine's own kinds (plugins may add more)

_plugins_loaded: set[str] = set()


def load_plugins() -> None:
    """Import the modules named in ``TGD_JOB_PLUGINS`` (once each)."""
    for name in filter(None, (s.strip() for s in os.environ.get("TGD_JOB_PLUGINS", "").split(","))):
        if name in _plugins_loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise TGDError(f"TGD_JOB_PLUGINS: cannot import {name!r} ({exc})") from None
        _plugins_loaded.add(name)


def register_kind(kind: str, config: type | str, run: Runner | str, *,
                  replace: bool = False) -> JobKind:
    """Add a kind (or, with ``replace``, change one)."""
    if kind in REGISTRY and not replace and REGISTRY[kind] != JobKind(config, run):
        raise ValueError(f"job kind {kind!r} is already registered")
    REGISTRY[kind] = JobKind(config, run)
    return REGISTRY[kind]


def get_kind(kind: str) -> JobKind:
    """The registered kind; TGDError naming the available ones if ``kind`` is unknown."""
    load_plugins()
    if kind in REGISTRY:
        return REGISTRY[kind]
    raise TGDError(f"unknown job kind {kind!r}; available: {available_kinds()}")


def available_kinds() -> list[str]:
    load_plugins()
    return sorted(REGISTRY)


@cache
def _adapter(config_type: type) -> TypeAdapter:
    return TypeAdapter(config_type)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
            msg += f" (got {err['input']!r:.60})"
        parts.append(f"{field}: {msg}" if field else msg)
    return "; ".join(parts)


def parse_config(kind: str, config: Mapping[str, Any]) -> Any:
    """``config`` as the kind's typed config object; TGDError naming each bad field."""
    adapter = _adapter(get_kind(kind).config_type())
    try:
        return adapter.validate_python(dict(config))
    except ValidationError as exc:
        raise TGDError(f"bad {kind} config: {_describe(exc)}") from None


def validate_config(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The validated config with defaults filled in, as plain JSON data."""
    parsed = parse_config(kind, config)
    return _adapter(type(parsed)).dump_python(parsed, mode="json")
