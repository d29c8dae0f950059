"""Validation errors as one line: pydantic's :class:`~pydantic.ValidationError` → :class:`TGDError`.

Every place that validates user data (a training config, a job's config, an experiment recipe)
reports the same way: each problem as ``field.sub: message (got <input>)``, the problems joined
by ``"; "``, after a prefix saying what was being validated::

    bad train config: epochs: Input should be less than or equal to 10000 (got 1000000000000)
    recipe.yaml: invalid recipe: methods: Field required; seeds.0: Input should be a valid integer

pydantic's ``"Value error, "`` prefix (added to a validator's own ``ValueError`` message) is
dropped; a problem of the whole object (no field) is its message alone. The offending input is
shown, its ``repr`` cut to :data:`INPUT_WIDTH` characters, except for a missing or an unknown
field (where it says nothing new) or when ``show_input=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from tgd_core.core.errors import TGDError

#: the most characters of an input's ``repr`` shown in a message
INPUT_WIDTH = 60
#: error types whose input is not shown: the field is missing, or should not be there at all
_INPUT_SAYS_NOTHING = frozenset({"missing", "extra_forbidden"})
_VALUE_ERROR_PREFIX = "Value error, "

Model = TypeVar("Model", bound=BaseModel)


def error_field(error: ErrorDetails) -> str:
    """The dotted path of the field the error is about (``""`` for the whole object)."""
    return ".".join(str(part) for part in error["loc"])


def describe_error(error: ErrorDetails, *, show_input: bool = True) -> str:
    """One pydantic error as ``field: message`` with ``(got <input>)`` when it helps."""
    message = error["msg"].removeprefix(_VALUE_ERROR_PREFIX)
    if show_input and error["type"] not in _INPUT_SAYS_NOTHING and "input" in error:
        message += f" (got {error['input']!r:.{INPUT_WIDTH}})"
    field = error_field(error)
    return f"{field}: {message}" if field else message


def validation_message(exc: ValidationError, *, show_input: bool = True) -> str:
    """All of ``exc``'s problems on one line, ``"; "``-separated (see the module docstring)."""
    return "; ".join(describe_error(error, show_input=show_input) for error in exc.errors())


def validated(schema: type[Model] | TypeAdapter, data: Mapping[str, Any] | Any, what: str, *,
              show_input: bool = True) -> Any:
    """``data`` validated by ``schema`` (a pydantic model class or a :class:`TypeAdapter`).

    Raises ``TGDError(f"{what}: {message}")`` with :func:`validation_message`'s one line
    otherwise (``what`` says what was being validated, e.g. ``"bad train config"``); the
    pydantic traceback is dropped (``from None``).
    """
    try:
        if isinstance(schema, TypeAdapter):
            return schema.validate_python(data)
        return schema.model_validate(data)
    except ValidationError as exc:
        raise TGDError(f"{what}: {validation_message(exc, show_input=show_input)}") from None
