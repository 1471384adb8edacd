"""What a search-space file may say, as pydantic models; every mistake becomes one line.

Schema (every top-level key is optional; unknown keys are errors)::

    description: NER around the paper protocol   # one line, shown in listings
    metric: dev_f1      # the reported metric to optimise (default dev_f1); the trainer
                        # reports dev_f1, test_f1, best_dev_f1, train_loss, meta_loss
    mode: max           # max | min (default: max for *f1 metrics, min for *loss metrics)
    fixed:              # RunConfig fields set for every trial
      method: metaxl
      epochs: 20
    parameters:         # RunConfig fields sampled per trial
      meta_lr: {type: loguniform, low: 1.0e-7, high: 3.0e-5}
      lr: {type: uniform, low: 1.0e-5, high: 5.0e-5}
      epochs: {type: int, low: 2, high: 10, step: 1, log: false}   # step, log optional
      rtn_bottleneck: {type: categorical, values: [96, 192, 384, 768]}
      rtn_layers: {type: categorical, values: [emb, middle, last, emb+last, [0, 6]]}
      rtn_gate: {type: categorical, values: [false, true], when: {method: metaxl}}

* ``type`` is ``loguniform`` or ``uniform`` (floats; ``low`` and ``high``), ``int`` (``low``,
  ``high``, optional ``step`` (default 1) and ``log`` (default false)) or ``categorical``
  (``values``), one model per type (:data:`~metaxl_tune.search.space.specs.ParameterSpec`).
  Float types are refused for integer fields such as ``rtn_bottleneck``.
* ``when: {field: value}`` or ``{field: [values]}`` makes a parameter conditional on another
  parameter (categorical or int) or on a ``fixed`` field: while the condition is false the
  parameter is not sampled at all (Optuna sees a real conditional) and the trial keeps the
  base config's value. Several fields in one ``when`` must all match. Parameters are sampled
  in file order, moved after the parameters they depend on; cycles are errors.
* ``rtn_layers`` values are placement labels that work for any model depth: ``emb`` (-> [0]),
  ``middle``, ``last``, layer indices, combinations joined with ``+`` (``emb+last`` -> [0,
  "last"]) or lists (``[0, 6]``, shown as ``0+6``). Trials carry the label; it becomes a list
  only in ``SearchSpace.to_run_config`` (see :mod:`metaxl_tune.search.space.placement`).
* Numbers such as ``1e-7``, which YAML 1.1 reads as strings, are read as floats.

Where each check lives: a parameter's model (:mod:`metaxl_tune.search.space.specs`) checks what
its own keys say (``low <= high``, ``step`` with ``log``), and its ``for_field`` checks it
against the RunConfig field it samples (placement labels, integer fields); :class:`SpaceFile`'s
validators check the top-level keys and the space as a whole (``when`` against the other
parameters, cycles); ``SearchSpace.validate`` (:mod:`metaxl_tune.search.space.schema`) checks
the values against the run's base config. :func:`read_space_file` reports the first problem as
one :class:`~metaxl_tune.search.space.errors.SpaceError` line ``file: key: what is wrong``,
e.g. ``my.yaml: parameters.meta_lr.low: must be <= high (got 0.001 > 1e-05)``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional

from pydantic import (BaseModel, BeforeValidator, ConfigDict, PrivateAttr, StrictStr, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from metaxl_tune.search.space.errors import SpaceError, SpaceProblem, closest, show
from metaxl_tune.search.space.parameter import Parameter
from metaxl_tune.search.space.placement import placement_label
from metaxl_tune.search.space.specs import PARAMETER_TYPES, SPECS, FieldName, ParameterSpec, Spec, number

__all__ = ["MODES", "REPORTED_METRICS", "SpaceFile", "read_space_file"]

# The per-epoch numbers every trial reports that a search can rank by (trainer.EpochResult;
# tests/search/space/test_space.py checks they are its fields).
REPORTED_METRICS: tuple[str, ...] = ("dev_f1", "test_f1", "best_dev_f1", "best_test_f1", "train_loss", "meta_loss")
MODES = ("max", "min")
_METRIC = re.compile(r"^[A-Za-z_][\w./-]*$")


# ---- the file --------------------------------------------------------------------------------


def _none_is_empty(value: Any) -> Any:
    return {} if value is None else value  # a key with nothing after it (`fixed:`) is an empty mapping


def _direction(metric: Any) -> str | None:
    """The mode that picks the best trial by ``metric``: max for F1, min for losses."""
    metric = str(metric).lower()
    return "max" if metric.endswith("f1") else "min" if metric.endswith("loss") else None


def _fixed_value(name: str, value: Any) -> Any:
    """A ``fixed:`` value as a trial receives it: a number read as one, a placement as its label."""
    value = number(value)
    if name != "rtn_layers":
        return value
    try:
        return placement_label(value)
    except ValueError as error:
        raise SpaceProblem(name, str(error)) from None


class SpaceFile(BaseModel):
    """A whole space file; :meth:`sampling_order` gives its parameters as a search samples them."""

    model_config = ConfigDict(extra="forbid")

    description: StrictStr = ""
    """One line, shown in listings."""
    metric: StrictStr = "dev_f1"
    """The reported metric that Optuna and ASHA optimise."""
    mode: Optional[Literal["max", "min"]] = None
    """By default the metric's direction."""
    fixed: Annotated[dict[FieldName, Any], BeforeValidator(_none_is_empty)] = {}
    """RunConfig fields shared by every trial (``rtn_layers`` as a placement label)."""
    parameters: Annotated[dict[FieldName, ParameterSpec], BeforeValidator(_none_is_empty)] = {}
    _order: tuple[Parameter, ...] = PrivateAttr(())

    @field_validator("metric")
    @classmethod
    def _reported(cls, metric: str) -> str:
        if not _METRIC.match(metric):
            raise ValueError(f"must be a reported metric name such as dev_f1 (got {metric!r})")
        if metric not in REPORTED_METRICS:
            # A name no trial reports would rank every trial as missing the metric (0.00).
            raise ValueError(f"{metric} is not a metric that trials report; "
                             f"use one of {', '.join(REPORTED_METRICS)}{closest(metric, REPORTED_METRICS)}")
        return metric

    @field_validator("mode", mode="before")
    @classmethod
    def _fits_metric(cls, mode: Any, info: ValidationInfo) -> Any:  # a mode the file gives (not the default)
        metric = info.data.get("metric")
        if mode is None:
            raise ValueError(f"missing (max or min) for metric {metric}")
        if mode not in MODES:
            raise ValueError(f"must be max or min (got {mode!r})")
        direction = _direction(metric) if metric is not None else None
        if direction is not None and mode != direction:
            raise ValueError(f"{mode} would pick the worst trial by {metric}; use {direction}")
        return mode

    @field_validator("fixed")
    @classmethod
    def _fixed_values(cls, fixed: dict[str, Any]) -> dict[str, Any]:
        return {name: _fixed_value(name, value) for name, value in fixed.items()}

    @field_validator("parameters")
    @classmethod
    def _fit_their_fields(cls, parameters: dict[str, Spec]) -> dict[str, Spec]:
        checked = {}
        for name, spec in parameters.items():
            try:
                checked[name] = spec.for_field(name)
            except SpaceProblem as problem:
                raise SpaceProblem(f"{name}.{problem.key}", str(problem)) from None
        return checked

    @model_validator(mode="after")
    def _whole_space(self) -> "SpaceFile":
        if self.mode is None:
            if _direction(self.metric) is None:
                raise SpaceProblem("mode", f"missing (max or min) for metric {self.metric}")
            self.mode = _direction(self.metric)
        for name in self.parameters:
            if name in self.fixed:
                raise SpaceProblem(f"parameters.{name}", "also set in fixed; keep one of the two")
        built = {name: spec.parameter(name) for name, spec in self.parameters.items()}
        for parameter in built.values():
            self._check_when(parameter, built)
        if not built:
            # Without one, every trial would train the same config: a search of nothing.
            raise SpaceProblem("parameters", "none given; a search needs at least one parameter to sample (for one "
                               "fixed config use metaxl-tune train --config, for several seeds metaxl-tune ablate)")
        self._order = _sampling_order(list(built.values()))
        return self

    def _check_when(self, parameter: Parameter, built: dict[str, Parameter]) -> None:
        for name, allowed in parameter.when.items():
            key = f"parameters.{parameter.name}.when.{name}"
            if name == parameter.name:
                raise SpaceProblem(key, "a parameter cannot depend on itself")
            if name in self.fixed:
                if self.fixed[name] not in allowed:
                    raise SpaceProblem(key, f"never true: {name} is fixed to {show(self.fixed[name])}")
            elif name in built:
                parent = built[name]
                domain = parent.grid_values()
                if domain is None:
                    raise SpaceProblem(key, f"conditions need a categorical or int parameter ({name} is {parent.type})")
                for value in allowed:
                    if value not in domain:
                        shown = ", ".join(map(show, domain)) if len(domain) <= 20 else f"{parent.low}..{parent.high}"
                        raise SpaceProblem(key, f"{show(value)} is not a value of {name} ({shown})")
            else:
                raise SpaceProblem(key, f"{name} is neither a parameter nor a fixed field of this space")

    def sampling_order(self) -> tuple[Parameter, ...]:
        """The sampled parameters, each after the parameters its ``when`` names."""
        return self._order


def _sampling_order(parameters: list[Parameter]) -> tuple[Parameter, ...]:
    """File order, with every parameter moved after the parameters its ``when`` names."""
    names = {p.name for p in parameters}
    deps = {p.name: [name for name in p.when if name in names] for p in parameters}
    placed: list[Parameter] = []
    waiting = list(parameters)
    while waiting:
        done = {p.name for p in placed}
        ready = next((p for p in waiting if all(dep in done for dep in deps[p.name])), None)
        if ready is None:  # every waiting parameter waits on another: follow the chain to a cycle
            chain = [waiting[0].name]
            while (step := next(dep for dep in deps[chain[-1]] if dep not in done)) not in chain:
                chain.append(step)
            cycle = chain[chain.index(step):] + [step]
            raise SpaceProblem(f"parameters.{cycle[0]}.when", f"dependency cycle {' -> '.join(cycle)}")
        placed.append(ready)
        waiting.remove(ready)
    return tuple(placed)


# ---- one line per mistake --------------------------------------------------------------------

# What a key must hold, for pydantic's type errors there ({got}: the value the file gave).
_EXPECTED = {
    "description": "must be a string",
    "metric": "must be a reported metric name such as dev_f1 (got {got})",
    "fixed": "must be a mapping of RunConfig fields (got {got})",
    "parameters": "must be a mapping of RunConfig fields to specs",
    "values": "must be a non-empty list (got {got})",
    "log": "must be true or false (got {got})",
    "when": "must be a mapping such as {{method: metaxl}} (got {got})",
}
_MISSING = {"low": "({type} needs low and high)", "high": "({type} needs low and high)", "values": "(a non-empty list)"}
_UNKNOWN_KEY = ("extra_forbidden", "invalid_key")


def read_space_file(data: Any, origin: str) -> SpaceFile:
    """``data`` (a parsed YAML document) as a :class:`SpaceFile`, or :class:`SpaceError` naming
    ``origin``, the key and what to change."""
    try:
        return SpaceFile.model_validate({} if data is None else data)
    except ValidationError as error:
        raise SpaceError(f"{origin}: {_one_line(_first(error.errors()))}") from None


def _first(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The error to report: pydantic's first, unless a mapping around it has an unknown key
    (usually a typo, and the cause: ``paramters:`` leaves ``parameters`` empty)."""
    first = errors[0]
    typos = [e for e in errors if e["type"] in _UNKNOWN_KEY and first["loc"][: len(e["loc"]) - 1] == e["loc"][:-1]]
    return min(typos, key=lambda e: len(e["loc"]), default=first)


def _one_line(error: dict[str, Any]) -> str:
    loc, kind, given = error["loc"], error["type"], error["input"]
    in_spec = len(loc) > 2 and loc[0] == "parameters" and loc[2] in SPECS
    spec_type = loc[2] if in_spec else None
    parts: list[str] = []
    for index, part in enumerate(loc):
        is_key = index + 1 < len(loc) and loc[index + 1] == "[key]" or kind in _UNKNOWN_KEY and index == len(loc) - 1
        if part == "[key]" or (in_spec and index == 2):
            continue  # pydantic's marks for a dict key and for the union member: not part of the file's key
        if isinstance(part, int) and parts and not is_key:
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
    key = ".".join(parts)
    last = parts[-1] if parts else ""

    if kind == "value_error":
        problem = error["ctx"]["error"]
        if isinstance(problem, SpaceProblem) and problem.key:
            key = f"{key}.{problem.key}" if key else problem.key
        message = str(problem)
    elif kind in _UNKNOWN_KEY and len(loc) == 1:
        message = f"unknown key (known: {', '.join(SpaceFile.model_fields)}){closest(last, SpaceFile.model_fields)}"
    elif kind in _UNKNOWN_KEY and spec_type is not None:
        message = f"unknown key for type {spec_type} (known: {', '.join(SPECS[spec_type].model_fields)})"
    elif kind == "missing":
        message = f"missing {_MISSING.get(last, '').format(type=spec_type)}".rstrip()
    elif kind in ("union_tag_not_found", "union_tag_invalid"):
        key, tag = f"{key}.type", given.get("type")
        message = (f"unknown type {tag!r} (one of {', '.join(PARAMETER_TYPES)}){closest(str(tag), PARAMETER_TYPES)}"
                   if tag is not None else f"missing (one of {', '.join(PARAMETER_TYPES)})")
    elif kind == "model_type" and not loc:
        message = f"must be a mapping with {', '.join(SpaceFile.model_fields)} (got {type(given).__name__})"
    elif kind == "model_attributes_type" and len(loc) == 2 and loc[0] == "parameters":
        message = "must be a mapping such as {type: categorical, values: [...]}"
    elif last in _EXPECTED:
        message = _EXPECTED[last].format(got=repr(given))
    else:
        message = error["msg"]
    return f"{key}: {message}" if key else message
