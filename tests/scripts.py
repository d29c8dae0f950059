"""The project's scripts (``scripts/*.py``) imported as modules by the tests."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tgd_core.core.paths import PROJECT_ROOT


def load_script(name: str) -> ModuleType:
    """The script ``scripts/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / f"scripts/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
