"""The base of the topology's scikit-learn transformers (after GUDHI's and persim's).

Each transformer takes its parameters as explicit keywords (as ``get_params``/``set_params``
require) with the defaults of one section of :mod:`tgd_core.topology.schema`; its ``config`` is
that section's config object, validated by the schema, and ``fit`` only checks it (the
transformers are stateless).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sklearn.base import BaseEstimator, TransformerMixin

from tgd_core.core.errors import TGDError
from tgd_core.topology import schema


class SchemaTransformer(TransformerMixin, BaseEstimator):
    """``section``: the schema section of the parameters; ``config_class``: the config they
    make; ``outputs``: the values the ``output`` parameter may take (none: no such parameter)."""

    section: ClassVar[str]
    config_class: ClassVar[type]
    outputs: ClassVar[tuple[str, ...]] = ()

    @property
    def config(self) -> Any:
        return self.config_class(**schema.estimator_values(self, self.section))

    def fit(self, X=None, y=None):
        _ = self.config  # validates the parameters
        if self.outputs and self.output not in self.outputs:
            choices = " or ".join(repr(o) for o in self.outputs)
            raise TGDError(f"output must be {choices}, got {self.output!r}")
        return self
