"""What the views accept: every handler checks its inputs here against what the view offers.

A browser can only pick offered choices and type numbers within the bounds the components
declare, but the HTTP API (``gradio_client``, curl) can send anything. So each handler takes
its choices through :func:`choice` / :func:`pick` and its numbers through a
:class:`NumberField`, whose messages name the field as the user sees it ("Epochs: must be
≤ 10000"). Bounds that the engine's config schemas declare are read from those schemas
(:meth:`NumberField.of`), so the form, its components and the engine agree. Gradio's own bound
check would answer "Value -5 is less than minimum value 1." before the handler, without the
field's name: :meth:`NumberField.number` gives gradio no bounds, :meth:`NumberField.slider`
passes what was sent on unchecked (:func:`app.common.pass_through`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, TypeVar

from pydantic import BaseModel

from tgd_core.core.errors import TGDError

T = TypeVar("T")
COMPARISONS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}
BOUND_WORDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
MAX_WHOLE = 2**63 - 1  # the largest whole number a field takes, whatever its bounds


def choice(value: Any, options: Iterable[str], field: str, what: str = "choices") -> str:
    """``value`` if it is one of ``options``; else TGDError "<field>: not one of the offered
    <what>" (the options are not echoed: they may be long or name server files)."""
    if isinstance(value, str) and value in set(options):
        return value
    raise TGDError(f"{field}: not one of the offered {what}")


def pick(value: Any, offered: Mapping[str, T], field: str, what: str = "choices") -> T:
    """The offered item the user picked by its name (see :func:`choice`)."""
    return offered[choice(value, offered, field, what)]


def _number_text(x: float) -> str:
    """A bound as people write it: 10000, not 10000.0 or 1e+04; 0.005."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class NumberField:
    """A numeric input: its label as the user sees it, whole or not, and its bounds."""

    label: str
    integer: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    @classmethod
    def of(cls, model: type[BaseModel], name: str, label: str, integer: bool = False,
           **bounds: float | None) -> NumberField:
        """Field ``name`` of the pydantic ``model`` with the bounds the schema declares;
        ``bounds`` add to or override them (e.g. ``ge=0`` where the form's 0 means "all")."""
        declared = {key: getattr(m, key) for m in model.model_fields[name].metadata
                    for key in COMPARISONS if getattr(m, key, None) is not None}
        return cls(label, integer, **{**declared, **bounds})

    @property
    def minimum(self) -> float | None:
        """The inclusive lower bound a gr.Number/gr.Slider can show (``gt`` is not one)."""
        return self.ge

    @property
    def maximum(self) -> float | None:
        return self.le

    def check(self, value: Any) -> int | float:
        """``value`` as an int (whole fields) or float; TGDError naming the field when it is
        missing, not a finite number, not whole, beyond 64 bits (whole), or out of bounds."""
        if value is None or value == "":
            raise TGDError(f"{self.label}: a number is required")
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TGDError(f"{self.label}: must be a number, not {type(value).__name__}")
        try:
            number = int(value) if self.integer and isinstance(value, Integral) else \
                float(value)
        except OverflowError:  # an int beyond float's range (JSON carries any length)
            number = math.inf
        if isinstance(number, float) and not math.isfinite(number):
            raise TGDError(f"{self.label}: must be a finite number")
        if self.integer and isinstance(number, float) and not number.is_integer():
            raise TGDError(f"{self.label}: must be a whole number")
        for key, holds in COMPARISONS.items():
            bound = getattr(self, key)
            if bound is not None and not holds(number, bound):
                raise TGDError(f"{self.label}: must be {BOUND_WORDS[key]} {_number_text(bound)}")
        if self.integer and abs(number) > MAX_WHOLE:  # SQLite's and torch's integers: 64 bits
            raise TGDError(f"{self.label}: must lie within ±{MAX_WHOLE} (64-bit)")
        return int(number) if self.integer else float(number)

    def number(self, value: float | None, **kwargs: Any):
        """A ``gr.Number`` showing this field (label, whole or not); the handler checks the
        value and its bounds (:meth:`check`), so gradio is not given them."""
        import gradio as gr

        return gr.Number(value, label=self.label, precision=0 if self.integer else None,
                         **kwargs)

    def slider(self, value: float, step: float, **kwargs: Any):
        """A ``gr.Slider`` over this field's bounds; the handler checks the value."""
        import gradio as gr

        from app.common import pass_through

        return pass_through(gr.Slider(self.minimum, self.maximum, value=value, step=step,
                                      label=self.label, **kwargs))
