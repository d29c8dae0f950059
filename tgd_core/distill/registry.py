"""The method registry: each :class:`~tgd_core.distill.base.Distiller` registers itself by name.

A method module decorates its class with ``@register_method("kd")`` (as torchdistill does);
:mod:`tgd_core.distill` imports every method module, so :data:`METHODS` is complete whenever the
package is imported. :func:`get_method` looks a method up by the name users type.
"""

from __future__ import annotations

from collections.abc import Callable

from tgd_core.core.errors import TGDError
from tgd_core.distill.base import Distiller

#: method name → its Distiller class, in registration order
METHODS: dict[str, type[Distiller]] = {}


def register_method(name: str) -> Callable[[type[Distiller]], type[Distiller]]:
    """Class decorator: set the class's ``name`` and add it to :data:`METHODS` under it.
    A name already taken is a programming error (two methods cannot share a name)."""

    def register(cls: type[Distiller]) -> type[Distiller]:
        if name in METHODS:
            raise ValueError(f"method name {name!r} is already registered by "
                             f"{METHODS[name].__module__}.{METHODS[name].__qualname__}; "
                             f"cannot register {cls.__module__}.{cls.__qualname__} under it")
        cls.name = name
        METHODS[name] = cls
        return cls

    return register


def get_method(name: str) -> type[Distiller]:
    """The Distiller class registered as ``name``; TGDError naming the choices otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise TGDError(f"unknown method {name!r}; choose from {sorted(METHODS)}") from None
