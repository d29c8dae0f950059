"""Distillation methods: one small :class:`Distiller` per method, in a plain dict registry."""

from __future__ import annotations

from tgd_core.core.errors import TGDError
from tgd_core.distill.base import Distiller, MethodParams
from tgd_core.distill.methods import METHODS

__all__ = ["Distiller", "METHODS", "MethodParams", "get_method"]


def get_method(name: str) -> type[Distiller]:
    try:
        return METHODS[name]
    except KeyError:
        raise TGDError(f"unknown method {name!r}; choose from {sorted(METHODS)}") from None
