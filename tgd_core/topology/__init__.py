"""Persistence diagrams and persistence images of images.

- :mod:`~tgd_core.topology.paper`: the authors' 1-D row/column H0 PIs, exact and fast.
- :mod:`~tgd_core.topology.cubical`: 2-D cubical sublevel/superlevel H0 and H1 (GUDHI semantics).
- :mod:`~tgd_core.topology.pimage`: persistence images of any diagrams on fixed ranges.
- :mod:`~tgd_core.topology.cache`: dataset PI cache on disk.
- :mod:`~tgd_core.topology.reference`: the authors' ripser + persim pipeline (for tests).
"""

from tgd_core.topology.paper import (
    PI_MEAN,
    PI_STD,
    SCANS,
    PaperPersistenceImages,
    PaperPIConfig,
    normalise_pi_stack,
    paper_diagrams,
    paper_persistence_images,
    to_uint8,
)

__all__ = [
    "PI_MEAN", "PI_STD", "SCANS", "PaperPIConfig", "PaperPersistenceImages",
    "normalise_pi_stack", "paper_diagrams", "paper_persistence_images", "to_uint8",
]
