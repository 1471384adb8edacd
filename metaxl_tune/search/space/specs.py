"""One model per parameter type of a space file: the discriminated union :data:`ParameterSpec`.

``type`` picks the model: ``loguniform`` and ``uniform`` (floats, ``low`` and ``high``), ``int``
(``low``, ``high``, ``step`` (default 1), ``log`` (default false)), ``categorical``
(``values``); each takes ``when`` (see :mod:`metaxl_tune.search.space.space_file` for the
whole schema). A model's validators check what its own keys say; :meth:`Spec.for_field`
checks it against the RunConfig field it samples; :meth:`Spec.parameter` makes the
:class:`~metaxl_tune.search.space.parameter.Parameter` a search samples. Problems are
:class:`~metaxl_tune.search.space.errors.SpaceProblem` naming the key below the spec.
"""

from __future__ import annotations

import math
import re
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, StrictBool, field_validator,
                      model_validator)

from metaxl_tune.config import RunConfig
from metaxl_tune.search.space.errors import SpaceProblem, closest, show
from metaxl_tune.search.space.parameter import Parameter
from metaxl_tune.search.space.placement import placement_label

__all__ = ["PARAMETER_TYPES", "SPECS", "CategoricalSpec", "FieldName", "IntSpec", "LogUniformSpec", "ParameterSpec",
           "Spec", "UniformSpec", "number"]

# Numbers YAML 1.1 (PyYAML) leaves as strings: 1e-7, 3e5, 1.0e7 (no dot or no exponent sign).
_SCIENTIFIC = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


# ---- values ----------------------------------------------------------------------------------


def number(value: Any) -> Any:
    """Read ``1e-7``-style strings as floats; leave everything else alone."""
    return float(value) if isinstance(value, str) and _SCIENTIFIC.match(value.strip()) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int_field(name: str) -> bool:
    annotation = RunConfig.model_fields[name].annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return all(arg in (int, type(None)) for arg in typing.get_args(annotation))
    return annotation is int


def _run_config_field(name: Any) -> str:
    if name not in RunConfig.model_fields:
        raise ValueError(f"unknown RunConfig field{closest(str(name), RunConfig.model_fields)}")
    return name


def _finite(raw: Any) -> float | int:
    value = number(raw)
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"must be a finite number (got {raw!r})")
    return value


def _integral(raw: Any) -> int:
    value = _finite(raw)
    if not float(value).is_integer():
        raise ValueError(f"must be an integer for type int (got {show(value)})")
    return int(value)


def _positive_integer(raw: Any) -> int:
    if not _is_number(raw) or not float(raw).is_integer() or raw < 1:
        raise ValueError(f"must be a positive integer (got {raw!r})")
    return int(raw)


FieldName = Annotated[Any, AfterValidator(_run_config_field)]
"""A key that names a RunConfig field (parameters, fixed values, ``when`` conditions)."""
FloatBound = Annotated[float, BeforeValidator(_finite)]
IntBound = Annotated[int, BeforeValidator(_integral)]
Step = Annotated[int, BeforeValidator(_positive_integer)]
When = dict[FieldName, Any]
"""``{field: value or [values]}``; validated into ``{field: (values, ...)}``."""


# ---- one parameter per type ------------------------------------------------------------------


class Spec(BaseModel):
    """What every parameter type shares: no unknown keys, and a ``when`` condition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("when", check_fields=False)
    @classmethod
    def _allowed_values(cls, when: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
        parsed: dict[str, tuple[Any, ...]] = {}
        for name, allowed in when.items():
            allowed = [number(value) for value in (allowed if isinstance(allowed, list) else [allowed])]
            if not allowed:
                raise SpaceProblem(name, "needs at least one value")
            if name == "rtn_layers":
                try:
                    allowed = [placement_label(value) for value in allowed]
                except ValueError as error:
                    raise SpaceProblem(name, str(error)) from None
            parsed[name] = tuple(allowed)
        return parsed

    def for_field(self, name: str) -> "Spec":
        """This spec checked against the RunConfig field ``name`` it samples (values made canonical)."""
        if name == "rtn_layers":
            raise SpaceProblem("type", "rtn_layers takes placement labels; use type: categorical")
        return self

    def parameter(self, name: str) -> Parameter:
        """The sampled parameter (after :meth:`for_field`)."""
        bounds = {key: getattr(self, key) for key in ("low", "high", "step", "log") if key in type(self).model_fields}
        return Parameter(name, self.type, **bounds, when=dict(self.when))


class UniformSpec(Spec):
    """Floats drawn uniformly from ``[low, high]``."""

    type: Literal["uniform"]
    low: FloatBound
    high: FloatBound
    when: When = {}

    @model_validator(mode="after")
    def _ordered(self) -> "UniformSpec":
        if self.low > self.high:
            raise SpaceProblem("low", f"must be <= high (got {show(self.low)} > {show(self.high)})")
        return self

    def for_field(self, name: str) -> "UniformSpec":
        super().for_field(name)
        if _is_int_field(name):
            raise SpaceProblem("type", f"{self.type} samples floats but {name} is an integer field; use type: int")
        return self


class LogUniformSpec(UniformSpec):
    """Floats drawn uniformly in log space from ``[low, high]``, ``low > 0``."""

    type: Literal["loguniform"]

    @model_validator(mode="after")
    def _positive(self) -> "LogUniformSpec":
        if self.low <= 0:
            raise SpaceProblem("low", f"must be > 0 for loguniform (got {show(self.low)})")
        return self


class IntSpec(Spec):
    """Integers from ``[low, high]`` in steps of ``step``, or log-scaled with ``log: true``."""

    type: Literal["int"]
    low: IntBound
    high: IntBound
    step: Step = 1
    log: StrictBool = False
    when: When = {}

    @model_validator(mode="after")
    def _consistent(self) -> "IntSpec":
        if self.low > self.high:
            raise SpaceProblem("low", f"must be <= high (got {self.low} > {self.high})")
        if self.log and self.step != 1:
            raise SpaceProblem("step", "must be 1 when log is true (Optuna samples log-scaled ints with step 1)")
        if self.log and self.low < 1:
            raise SpaceProblem("low", f"must be >= 1 when log is true (got {self.low})")
        if self.high > self.low and self.step > self.high - self.low:
            raise SpaceProblem("step", f"must be at most high - low ({self.high - self.low}); with step {self.step} "
                                       f"only low ({self.low}) is ever drawn")
        return self


class CategoricalSpec(Spec):
    """One of ``values``, in the listed order."""

    type: Literal["categorical"]
    values: Annotated[list[Any], Strict(), Field(min_length=1)]
    when: When = {}

    def for_field(self, name: str) -> "CategoricalSpec":
        values: list[Any] = []
        for index, value in enumerate(self.values):
            value = number(value)
            if name == "rtn_layers":
                try:
                    value = placement_label(value)
                except ValueError as error:
                    raise SpaceProblem(f"values[{index}]", str(error)) from None
            elif not (value is None or isinstance(value, (bool, int, float, str))):
                raise SpaceProblem(f"values[{index}]", f"must be a single value (got {value!r}); lists only for rtn_layers")
            if value in values:
                raise SpaceProblem(f"values[{index}]", f"{show(value)} is listed twice")
            values.append(value)
        return self.model_copy(update={"values": values})

    def parameter(self, name: str) -> Parameter:
        return Parameter(name, self.type, values=tuple(self.values), when=dict(self.when))


ParameterSpec = Annotated[Union[LogUniformSpec, UniformSpec, IntSpec, CategoricalSpec], Field(discriminator="type")]
"""One sampled parameter, its model picked by its ``type``."""
SPECS: dict[str, type[Spec]] = {typing.get_args(model.model_fields["type"].annotation)[0]: model
                                for model in (LogUniformSpec, UniformSpec, IntSpec, CategoricalSpec)}
"""Each ``type`` and its model, in the order messages list them."""
PARAMETER_TYPES = tuple(SPECS)
