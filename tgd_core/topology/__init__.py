"""Persistence diagrams and persistence images of images.

- :mod:`~tgd_core.topology.paper`: the authors' 1-D row/column H0 PIs, exact and fast.
- :mod:`~tgd_core.topology.cubical`: 2-D cubical sublevel/superlevel H0 and H1 (GUDHI semantics).
- :mod:`~tgd_core.topology.pimage`: persistence images of any diagrams on fixed ranges.
- :mod:`~tgd_core.topology.cache`: dataset PI cache on disk.
- :mod:`~tgd_core.topology.reference`: the authors' ripser + persim pipeline (for tests).
- :mod:`~tgd_core.topology.schema`: every PI parameter, declared once (configs, CLI, app).

The paper-mode names below are imported on first use (PEP 562), so that importing
:mod:`~tgd_core.topology.schema` (as the command line does to build ``tgd pi``) does not load
SciPy and scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PI_MEAN", "PI_STD", "SCANS", "PaperPIConfig", "PaperPersistenceImages",
    "normalise_pi_stack", "paper_diagrams", "paper_persistence_images", "to_uint8",
]


def __getattr__(name: str) -> Any:
    """The paper-mode exports of :data:`__all__`, from :mod:`tgd_core.topology.paper`."""
    if name in __all__:
        return getattr(importlib.import_module("tgd_core.topology.paper"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
