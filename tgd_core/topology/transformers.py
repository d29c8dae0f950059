"""The topology engine's scikit-learn transformers (after GUDHI's and persim's), in one module so
that scikit-learn loads only when one is asked for: :mod:`~tgd_core.topology.paper`,
:mod:`~tgd_core.topology.cubical` and :mod:`~tgd_core.topology.pimage` export theirs on first use
(PEP 562, :func:`tgd_core.topology.transformer_getattr`).

Each takes its parameters as explicit keywords with the defaults of one schema section and is
stateless (:class:`~tgd_core.topology.estimator.SchemaTransformer`).
"""

from __future__ import annotations

import numpy as np

from tgd_core.topology import schema
from tgd_core.topology.cubical import (
    CubicalConfig,
    cubical_diagrams,
    cubical_persistence_images,
)
from tgd_core.topology.estimator import SchemaTransformer
from tgd_core.topology.paper import PaperPIConfig, paper_persistence_images
from tgd_core.topology.pimage import PersistenceImageConfig, Weight, persistence_images

_PAPER = schema.defaults("paper")


class PaperPersistenceImages(SchemaTransformer):
    """scikit-learn transformer for paper-mode PIs (stateless: ``fit`` checks parameters).

    >>> pis = PaperPersistenceImages(output="uint8").fit_transform(images)  # N×6×50×50 uint8
    """

    section, config_class, outputs = "paper", PaperPIConfig, ("raw", "uint8")

    def __init__(self, resolution=_PAPER["resolution"], spread=_PAPER["spread"],
                 min_bd=_PAPER["min_bd"], max_bd=_PAPER["max_bd"],
                 threshold=_PAPER["threshold"], output: str = "raw"):
        self.resolution = resolution
        self.spread = spread
        self.min_bd = min_bd
        self.max_bd = max_bd
        self.threshold = threshold
        self.output = output

    def transform(self, X):
        self.fit()
        raw, u8 = paper_persistence_images(X, self.config, raw=self.output == "raw")
        return raw if self.output == "raw" else u8


_CUBICAL = schema.defaults("cubical")


class CubicalPersistence(SchemaTransformer):
    """scikit-learn transformer: images → diagrams (``output="diagrams"``, whole images only)
    or persistence images (``output="images"``, with ``pi`` a :class:`PersistenceImageConfig`;
    tiled patch PIs with ``patches`` > 1)."""

    section, config_class, outputs = "cubical", CubicalConfig, ("diagrams", "images")

    def __init__(self, homology_dimensions=_CUBICAL["homology_dimensions"],
                 filtration=_CUBICAL["filtration"], channels=_CUBICAL["channels"],
                 construction=_CUBICAL["construction"], scale=_CUBICAL["scale"],
                 patches=_CUBICAL["patches"], output="diagrams", pi=None):
        self.homology_dimensions = homology_dimensions
        self.filtration = filtration
        self.channels = channels
        self.construction = construction
        self.scale = scale
        self.patches = patches
        self.output = output
        self.pi = pi

    def transform(self, X):
        self.fit()
        if self.output == "diagrams":
            return cubical_diagrams(X, self.config)
        return cubical_persistence_images(X, self.config, self.pi)


_IMAGE = schema.defaults("image")


class PersistenceImager(SchemaTransformer):
    """scikit-learn transformer: list of diagrams → N × rows × cols persistence images."""

    section, config_class = "image", PersistenceImageConfig

    def __init__(self, birth_range=_IMAGE["birth_range"], pers_range=_IMAGE["pers_range"],
                 resolution=_IMAGE["resolution"], sigma=_IMAGE["sigma"],
                 weight: Weight = _IMAGE["weight"], power=_IMAGE["power"],
                 integrate=_IMAGE["integrate"]):
        self.birth_range = birth_range
        self.pers_range = pers_range
        self.resolution = resolution
        self.sigma = sigma
        self.weight = weight
        self.power = power
        self.integrate = integrate

    def transform(self, X) -> np.ndarray:
        return persistence_images(X, self.config)
