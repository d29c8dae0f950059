"""One-line validation errors (tgd_core.core.validation) against fixed messages."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from tgd_core.core.errors import TGDError
from tgd_core.core.validation import validated, validation_message


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(1, ge=1)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(1, ge=1, le=10000)
    name: str
    inner: Inner = Field(default_factory=Inner)
    seeds: list[int] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str) -> str:
        if value == "nope":
            raise ValueError(f"unknown name {value!r}; choose from ['a', 'b']")
        return value

    @model_validator(mode="after")
    def _whole(self) -> Config:
        if self.name == "b" and self.epochs > 1:
            raise ValueError("name 'b' trains for one epoch only")
        return self


@dataclass
class JobConfig:
    steps: int


def message(data, show_input=True):
    with pytest.raises(ValidationError) as info:
        Config.model_validate(data)
    return validation_message(info.value, show_input=show_input)


def test_each_problem_names_its_field_and_shows_the_input():
    assert message({"name": "a", "epochs": 10**12}) == (
        "epochs: Input should be less than or equal to 10000 (got 1000000000000)")
    assert message({"name": "a", "inner": {"size": 0}, "seeds": [1, "x"]}) == (
        "inner.size: Input should be greater than or equal to 1 (got 0); "
        "seeds.1: Input should be a valid integer, unable to parse string as an integer "
        "(got 'x')")


def test_missing_and_unknown_fields_do_not_show_an_input():
    assert message({"inner": {"size": 1, "colour": "red"}}) == (
        "name: Field required; inner.colour: Extra inputs are not permitted")


def test_value_error_prefix_is_dropped_and_whole_object_problems_have_no_field():
    assert message({"name": "nope"}) == (
        "name: unknown name 'nope'; choose from ['a', 'b'] (got 'nope')")
    assert message({"name": "b", "epochs": 2}, show_input=False) == (
        "name 'b' trains for one epoch only")


def test_long_inputs_are_cut_and_show_input_false_hides_them():
    assert message({"name": "a", "epochs": "y" * 100}) == (
        "epochs: Input should be a valid integer, unable to parse string as an integer "
        f"(got '{'y' * 59})")
    assert message({"name": "a", "epochs": 0}, show_input=False) == (
        "epochs: Input should be greater than or equal to 1")


def test_validated_returns_the_object_or_raises_one_line():
    assert validated(Config, {"name": "a"}, "bad config") == Config(name="a")
    with pytest.raises(TGDError) as info:
        validated(Config, {"name": "a", "epochs": 0, "x": 1}, "invalid training config",
                  show_input=False)
    assert str(info.value) == ("invalid training config: epochs: Input should be greater than "
                               "or equal to 1; x: Extra inputs are not permitted")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_validated_accepts_a_type_adapter():
    adapter = TypeAdapter(JobConfig)
    assert validated(adapter, {"steps": 3}, "bad counter config") == JobConfig(steps=3)
    with pytest.raises(TGDError) as info:
        validated(adapter, {"steps": "many"}, "bad counter config")
    assert str(info.value) == ("bad counter config: steps: Input should be a valid integer, "
                               "unable to parse string as an integer (got 'many')")
    with pytest.raises(TGDError, match=r"^bad counter config: steps: Field required$"):
        validated(adapter, {}, "bad counter config")
