"""Locations the engine reads and writes, taken from the environment with sensible defaults.

- ``TGD_DATA_DIR``: datasets (``<dir>/cifar10`` in the CIFAR-10 "python version" layout).
  Default: ``../shared/data`` beside the project when it exists, else ``./data``.
- ``TGD_STATE_DIR``: caches, runs and the job store. Default: ``./.tgd`` in the project.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    env = os.environ.get("TGD_DATA_DIR")
    if env:
        return Path(env).expanduser()
    shared = PROJECT_ROOT.parent / "shared" / "data"
    if shared.is_dir():
        return shared
    return PROJECT_ROOT / "data"


def state_dir() -> Path:
    env = os.environ.get("TGD_STATE_DIR")
    return Path(env).expanduser() if env else PROJECT_ROOT / ".tgd"


def cache_dir() -> Path:
    return state_dir() / "cache"
