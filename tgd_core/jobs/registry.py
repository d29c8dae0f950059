"""Job kinds: the mechanism that maps a kind to its config type and its runner.

The registry knows no kind itself: each feature registers its own with :func:`register_kind`
when its module is imported. Feature modules are plugins, imported on the first lookup
(:func:`get_kind`, :func:`available_kinds`, :data:`REGISTRY`): the built-in ones
(:data:`BUILTIN_FEATURES`), then those named in ``TGD_JOB_PLUGINS`` (comma-separated).

A config type is a pydantic model or a dataclass; a runner is ``run(config, ctx) -> dict``.
Either may be given as ``"module:attribute"``, resolved when a job of that kind is submitted or
run. Registering must stay cheap (no torch): a feature module imports its heavy modules inside
its runner, so that listing the kinds (``tgd jobs list``) starts fast.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import TypeAdapter

from tgd_core.core.errors import TGDError
from tgd_core.core.validation import validated

Runner = Callable[[Any, Any], Mapping[str, Any]]

# The engine's own features; each registers its kinds when imported. One that is not part of
# this installation (its module absent) just adds no kinds.
BUILTIN_FEATURES = ("tgd_core.jobs.runners", "tgd_core.training.jobs", "tgd_core.experiments.job")


def _resolve(obj: Any) -> Any:
    if not isinstance(obj, str):
        return obj
    module, _, attr = obj.partition(":")
    return getattr(importlib.import_module(module), attr)


def _module_of(obj: Any) -> str:
    """The module that defines ``obj`` (an object or a ``"module:attribute"`` string)."""
    return obj.partition(":")[0] if isinstance(obj, str) else getattr(obj, "__module__", "")


@dataclass(frozen=True)
class JobKind:
    """A kind's config type and runner (objects or ``"module:attribute"`` strings)."""

    config: type | str
    run: Runner | str

    def config_type(self) -> type:
        return _resolve(self.config)

    def runner(self) -> Runner:
        return _resolve(self.run)


_registry: dict[str, JobKind] = {}  # every registered kind (REGISTRY, once plugins are loaded)
_plugins_loaded: set[str] = set()


def plugin_modules() -> list[str]:
    """The feature modules that register kinds: the built-in ones, then ``TGD_JOB_PLUGINS``."""
    named = (s.strip() for s in os.environ.get("TGD_JOB_PLUGINS", "").split(","))
    return [*BUILTIN_FEATURES, *filter(None, named)]


def load_plugins() -> None:
    """Import the feature modules (once each); a built-in one that is absent is skipped."""
    for name in plugin_modules():
        if name in _plugins_loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            builtin = name in BUILTIN_FEATURES
            if not (builtin and isinstance(exc, ModuleNotFoundError) and exc.name == name):
                where = "job feature" if builtin else "TGD_JOB_PLUGINS"
                raise TGDError(f"{where}: cannot import {name!r} ({exc})") from None
        _plugins_loaded.add(name)


def __getattr__(name: str) -> Any:
    """``REGISTRY`` (every kind: kind → :class:`JobKind`) and ``KINDS`` (the kinds of the
    built-in features), once the feature modules are loaded."""
    if name == "REGISTRY":
        load_plugins()
        return _registry
    if name == "KINDS":
        load_plugins()
        return tuple(k for k, v in _registry.items() if _module_of(v.run) in BUILTIN_FEATURES)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_kind(kind: str, config: type | str, run: Runner | str, *,
                  replace: bool = False) -> JobKind:
    """Add a kind (or, with ``replace``, change one); called by the feature that owns it, when
    its module is imported."""
    if kind in _registry and not replace and _registry[kind] != JobKind(config, run):
        raise ValueError(f"job kind {kind!r} is already registered")
    _registry[kind] = JobKind(config, run)
    return _registry[kind]


def get_kind(kind: str) -> JobKind:
    """The registered kind; TGDError naming the available ones if ``kind`` is unknown."""
    load_plugins()
    if kind in _registry:
        return _registry[kind]
    raise TGDError(f"unknown job kind {kind!r}; available: {available_kinds()}")


def available_kinds() -> list[str]:
    load_plugins()
    return sorted(_registry)


@cache
def _adapter(config_type: type) -> TypeAdapter:
    return TypeAdapter(config_type)


def parse_config(kind: str, config: Mapping[str, Any]) -> Any:
    """``config`` as the kind's typed config object; TGDError naming each bad field."""
    return validated(_adapter(get_kind(kind).config_type()), dict(config), f"bad {kind} config")


def validate_config(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The validated config with defaults filled in, as plain JSON data; TGDError if it
    cannot be (e.g. it is nested deeper than pydantic serializes)."""
    parsed = parse_config(kind, config)
    try:
        return _adapter(type(parsed)).dump_python(parsed, mode="json")
    except (ValueError, RecursionError) as exc:  # "Maximum serialization depth exceeded", ...
        raise TGDError(f"bad {kind} config: cannot be stored as JSON ({exc})") from None
