"""The PI parameter schema: every parameter of every PI representation, declared once.

Each :class:`Param` names one field of a config dataclass and says which section it belongs to
(``paper`` → :class:`~tgd_core.topology.paper.PaperPIConfig`, ``cubical`` →
:class:`~tgd_core.topology.cubical.CubicalConfig`, ``image`` →
:class:`~tgd_core.topology.pimage.PersistenceImageConfig`), its type, default, bounds or
choices, and help text. From this one table come

- the dataclasses' defaults and validation (:func:`default`, :func:`validate`),
- the scikit-learn transformers' parameters (a test checks their signatures against it),
- the ``tgd pi`` flags (``flag``; :mod:`tgd_core.commands.pi`),
- the topology explorer's controls and their bounds (``control``; :mod:`app.topology_view`).

A representation's mode selects sections: paper mode reads ``paper``; cubical mode reads
``cubical`` (the diagrams) and ``image`` (their persistence images).

This module imports no other topology module, so the config modules can import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from tgd_core.core.errors import TGDError

#: Representation mode → the sections of parameters it reads.
MODES = {"paper": ("paper",), "cubical": ("cubical", "image")}
MAX_PIXELS = 1024


@dataclass(frozen=True)
class Control:
    """How the topology explorer shows a parameter: its label and the range its slider offers
    (narrower than what the engine accepts). ``key`` names the control (one control may set
    the same-named parameter of several sections). ``high_end``: a (low, high) pair whose
    control sets only the high end (the low end stays at its default). ``choice_format``:
    how choices are shown."""

    key: str
    label: str
    ge: float | None = None
    le: float | None = None
    step: float | None = None
    high_end: bool = False
    choice_format: str = "{}"

    def choice_label(self, choice: Any) -> str:
        """How the control shows one of a parameter's choices (e.g. homology 1 as "H1")."""
        return self.choice_format.format(choice)


@dataclass(frozen=True)
class Param:
    """One PI parameter.

    shape: ``scalar``; ``per_side`` (an int pair (cols, rows), given as one number for both);
    ``range`` (a finite float pair low < high); ``subset`` (a non-empty subset of ``choices``,
    kept sorted). ``gt``/``ge``: lower bounds of scalars (``ge``/``le`` bound ``per_side``
    pixels). ``flag``: the ``tgd pi`` option (None: not on the command line); ``negated``: the
    flag is a switch that sets the parameter to False (``switch_help`` says what it does).
    ``control``: shown in the explorer.
    """

    section: str
    name: str
    type: type
    default: Any
    help: str
    shape: str = "scalar"
    choices: tuple = ()
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    flag: str | None = None
    negated: bool = False
    control: Control | None = None
    switch_help: str | None = None

    @property
    def flag_help(self) -> str:
        """The help of :attr:`flag`: the parameter's, or what a negated switch does."""
        return self.switch_help if self.negated else self.help

    @property
    def key(self) -> str:
        """``section.name``: unique over the schema."""
        return f"{self.section}.{self.name}"

    @property
    def dest(self) -> str | None:
        """The argparse attribute of :attr:`flag`."""
        return self.flag.lstrip("-").replace("-", "_") if self.flag else None

    def check(self, value: Any) -> Any:
        """``value`` validated (TGDError naming the parameter otherwise) and normalised the
        way the configs store it: pairs and subsets as tuples; scalars unchanged."""
        if self.shape == "per_side":
            return self._check_pixels(value)
        if self.shape == "range":
            return self._check_range(value)
        if self.shape == "subset":
            return self._check_subset(value)
        if self.choices:
            if value not in self.choices:
                raise TGDError(f"{self.name} must be {_alternatives(self.choices)}, got {value!r}")
        elif self.type is float:
            self._check_number(value)
        elif self.type is int:
            return self._check_integer(value)
        return value

    def _check_integer(self, value) -> int:
        """An integer (not a bool, not a float) of at least ``ge``, as a Python int."""
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TGDError(f"{self.name} must be an integer, got {value!r}")
        if self.ge is not None and value < self.ge:
            raise TGDError(f"{self.name} must be >= {self.ge:g}, got {value}")
        return int(value)

    def _check_number(self, value) -> None:
        """Finite, and above ``gt`` / at least ``ge``."""
        if self.gt is not None and not (np.isfinite(value) and value > self.gt):
            word = "a positive number" if self.gt == 0 else f"> {self.gt}"
            raise TGDError(f"{self.name} must be {word}, got {value}")
        if self.ge is not None and not (np.isfinite(value) and value >= self.ge):
            raise TGDError(f"{self.name} must be >= {self.ge}, got {value}")
        if not np.isfinite(value):
            raise TGDError(f"{self.name} must be a finite number, got {value}")

    def _check_pixels(self, value) -> tuple[int, int]:
        pixels = tuple(int(r) for r in np.broadcast_to(value, (2,)))
        if not all(self.ge <= r <= self.le for r in pixels):
            raise TGDError(f"{self.name} must be between {self.ge} and {self.le} pixels, "
                           f"got {pixels}")
        return pixels

    def _check_range(self, value) -> tuple[float, float]:
        lo, hi = (float(v) for v in value)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise TGDError(f"{self.name} must be finite (low, high) with low < high, "
                           f"got {(lo, hi)}")
        return lo, hi

    def _check_subset(self, value) -> tuple:
        chosen = tuple(sorted({self.type(v) for v in value}))
        if not chosen or not set(chosen) <= set(self.choices):
            raise TGDError(f"{self.name} must be a non-empty subset of {self.choices}, got "
                           f"{value}")
        return chosen


def _alternatives(choices: tuple) -> str:
    """``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    quoted = [repr(c) for c in choices]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]]) if len(quoted) > 1 else quoted[0]


_RESOLUTION = Control("resolution", "PI resolution", ge=8, le=100, step=1)

#: The schema, in command-line order (also the explorer's control order).
PARAMETERS: tuple[Param, ...] = (
    # paper mode: persim.PersImage(pixels, spread, specs={"minBD", "maxBD"}), TGD_METHOD.md §2
    Param("paper", "resolution", int, (50, 50), "PI pixels per side", "per_side", ge=1,
          le=MAX_PIXELS, flag="--resolution", control=_RESOLUTION),
    Param("paper", "spread", float, 0.01, "Gaussian standard deviation", gt=0,
          flag="--spread", control=Control("spread", "σ (spread)", 0.002, 0.05, 0.001)),
    Param("paper", "min_bd", float, 0.0, "low end of the birth window (persim minBD)",
          flag="--min-bd"),
    Param("paper", "max_bd", float, 0.3, "high end of the birth and persistence window "
          "(persim maxBD)", gt=0, flag="--max-bd",
          control=Control("max_bd", "window max", 0.05, 1.0, 0.01)),
    Param("paper", "threshold", float, 0.02, "keep death - birth > this", ge=0,
          flag="--threshold",
          control=Control("threshold", "persistence threshold", 0.0, 0.2, 0.005)),
    # cubical mode: the diagrams (GUDHI CubicalComplex semantics)
    Param("cubical", "homology_dimensions", int, (0, 1), "homology dimensions", "subset",
          choices=(0, 1), flag="--homology",
          control=Control("homology", "homology", choice_format="H{}")),
    Param("cubical", "filtration", str, "sublevel", "filter by increasing (sublevel) or "
          "decreasing (superlevel) value", choices=("sublevel", "superlevel"),
          flag="--filtration", control=Control("filtration", "filtration")),
    Param("cubical", "channels", str, "rgb", "one diagram per RGB channel, or of the grey "
          "image", choices=("rgb", "grey"), flag="--channels",
          control=Control("channels", "channels")),
    Param("cubical", "construction", str, "top", "pixels as top-dimensional cubes or as "
          "vertices", choices=("top", "vertex"), flag="--construction",
          control=Control("construction", "pixels as cubes (top) or vertices")),
    Param("cubical", "scale", float, 255.0, "uint8 pixels are divided by this", gt=0),
    # spatial layout: PIs of a g×g grid of patches, tiled in the grid's layout (not an explorer
    # control: most uploads' sizes are not multiples of g, and the /explore API order stays)
    Param("cubical", "patches", int, 1, "split each image into a g×g grid of equal patches "
          "and tile their PIs in that layout (1: the whole image)", ge=1, flag="--patches"),
    # cubical mode: the persistence images of the diagrams (Adams et al. 2017)
    Param("image", "resolution", int, (32, 32), "PI pixels per side", "per_side", ge=1,
          le=MAX_PIXELS, flag="--pi-resolution", control=_RESOLUTION),
    Param("image", "sigma", float, 0.02, "Gaussian standard deviation", gt=0,
          flag="--sigma", control=Control("sigma", "σ", 0.005, 0.1, 0.005)),
    Param("image", "birth_range", float, (0.0, 1.0), "birth extent (low, high)", "range",
          flag="--birth-range"),
    Param("image", "pers_range", float, (0.0, 1.0), "persistence extent (low, high)", "range",
          flag="--pers-range",
          control=Control("pers_max", "persistence max", 0.1, 1.0, 0.05, high_end=True)),
    Param("image", "weight", str, "linear", "weight of a point of persistence p: 1, p or "
          "p ** power", choices=("constant", "linear", "power"), flag="--weight"),
    Param("image", "power", float, 1.0, "exponent of the power weight", gt=0, flag="--power"),
    Param("image", "integrate", bool, True, "integrate the Gaussian over each pixel (False: "
          "sample it at pixel centres)", flag="--sampled", negated=True,
          switch_help="sample at pixel centres, not integrate"),
)

_BY_KEY = {p.key: p for p in PARAMETERS}


def parameters(section: str) -> tuple[Param, ...]:
    """The parameters of one section, in schema order."""
    if section not in {s for sections in MODES.values() for s in sections}:
        raise TGDError(f"unknown PI parameter section {section!r}")
    return tuple(p for p in PARAMETERS if p.section == section)


def param(section: str, name: str) -> Param:
    """One parameter by section and name."""
    return _BY_KEY[f"{section}.{name}"]


def default(section: str, name: str) -> Any:
    """A parameter's default (what the config dataclasses declare as theirs)."""
    return param(section, name).default


def defaults(section: str) -> dict[str, Any]:
    """``{name: default}`` of one section."""
    return {p.name: p.default for p in parameters(section)}


def validate(config: Any, section: str) -> None:
    """Check each field of a frozen config dataclass against the schema and store its
    normalised value (called from ``__post_init__``); TGDError naming the first bad field."""
    names = {f.name for f in fields(config)}
    declared = {p.name for p in parameters(section)}
    if names != declared:
        raise TypeError(f"{type(config).__name__} fields {sorted(names)} differ from the "
                        f"schema's {sorted(declared)}")
    for p in parameters(section):
        object.__setattr__(config, p.name, p.check(getattr(config, p.name)))


def section_values(section: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: value}`` of one section from values keyed by :attr:`Param.key`; parameters
    absent from ``values`` take their defaults."""
    return {p.name: values.get(p.key, p.default) for p in parameters(section)}


def estimator_values(estimator: Any, section: str) -> dict[str, Any]:
    """``{name: value}`` of one section's parameters as a scikit-learn transformer holds them
    (its constructor takes each as a keyword, as ``get_params``/``set_params`` require)."""
    return {p.name: getattr(estimator, p.name) for p in parameters(section)}
