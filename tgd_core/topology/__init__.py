"""Persistence diagrams and persistence images of images.

- :mod:`~tgd_core.topology.paper`: the authors' 1-D row/column H0 PIs, exact and fast.
- :mod:`~tgd_core.topology.cubical`: 2-D cubical sublevel/superlevel H0 and H1 (GUDHI semantics).
- :mod:`~tgd_core.topology.pimage`: persistence images of any diagrams on fixed ranges.
- :mod:`~tgd_core.topology.cache`: dataset PI cache on disk.
- :mod:`~tgd_core.topology.reference`: the authors' ripser + persim pipeline (for tests).
- :mod:`~tgd_core.topology.schema`: every PI parameter, declared once (configs, CLI, app).
- :mod:`~tgd_core.topology.transformers`: the scikit-learn transformers of the three above.

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


def numba_kernels():
    """:mod:`tgd_core.topology._kernels` (numba, LLVM), imported where a kernel runs rather than
    with the modules: paper-mode PIs on the C kernel need neither (half a second of start-up
    for ``tgd pi`` and the dataset cache)."""
    return importlib.import_module("tgd_core.topology._kernels")


def transformer_getattr(module: str, names: tuple[str, ...]):
    """A module ``__getattr__`` (PEP 562) that imports ``names`` from
    :mod:`~tgd_core.topology.transformers` on first use, so that a module whose transformer
    subclasses scikit-learn's does not load scikit-learn until the transformer is asked for."""
    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module("tgd_core.topology.transformers"), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return __getattr__


def __getattr__(name: str) -> Any:
    """The paper-mode exports of :data:`__all__`, from :mod:`tgd_core.topology.paper`."""
    if name in __all__:
        return getattr(importlib.import_module("tgd_core.topology.paper"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
