"""Search spaces: a small YAML schema that becomes a define-by-run Optuna space over RunConfig.

A space names the fields of :class:`~metaxl_tune.config.RunConfig` that a search varies, how
to sample each, and the fields every trial shares. It is validated against the run's base
config *before* Ray starts, so a value the run config rejects fails in a second, not after
an hour of trials. This module imports neither Ray nor MLflow.

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
  (``values``). Float types are refused for integer fields such as ``rtn_bottleneck``.
* ``when: {field: value}`` or ``{field: [values]}`` makes a parameter conditional on another
  parameter (categorical or int) or on a ``fixed`` field: while the condition is false the
  parameter is not sampled at all (Optuna sees a real conditional) and the trial keeps the
  base config's value. Several fields in one ``when`` must all match. Parameters are sampled
  in file order, moved after the parameters they depend on; cycles are errors.
* ``rtn_layers`` values are placement labels that work for any model depth: ``emb`` (-> [0]),
  ``middle``, ``last``, layer indices, combinations joined with ``+`` (``emb+last`` -> [0,
  "last"]) or lists (``[0, 6]``, shown as ``0+6``). Trials carry the label; it becomes a list
  only in :meth:`SearchSpace.to_run_config` (see :mod:`metaxl_tune.search.placement`).
* Numbers such as ``1e-7``, which YAML 1.1 reads as strings, are read as floats.

Every error is a :class:`SpaceError` with one line ``file: key: what is wrong``, e.g.
``my.yaml: parameters.meta_lr.low: must be <= high (got 0.001 > 1e-05)``.

Example::

    >>> import optuna
    >>> from metaxl_tune.config import RunConfig
    >>> base = RunConfig(task="ner", target="tk", model="tiny", data="synthetic")
    >>> space = load_space("ner")
    >>> space.validate(base)
    >>> trial = optuna.create_study(direction=space.mode + "imize").ask()
    >>> config = space.to_run_config(base, space.sample(trial))
    >>> config.method, config.epochs
    ('metaxl', 20)

With Ray Tune (no ``param_space``; metric and mode go to the searcher)::

    OptunaSearch(space=space.sample, metric=space.metric, mode=space.mode,
                 sampler=optuna.samplers.TPESampler(constant_liar=True))
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from metaxl_tune.config import ConfigError, RunConfig, read_text_file
from metaxl_tune.search.placement import placement_label, resolve_placement

__all__ = ["Parameter", "SearchSpace", "SpaceError", "load_space", "shipped_spaces"]

PARAMETER_TYPES = ("loguniform", "uniform", "int", "categorical")
MODES = ("max", "min")
_TOP_KEYS = ("description", "metric", "mode", "fixed", "parameters")
_SPEC_KEYS = {
    "loguniform": ("type", "low", "high", "when"),
    "uniform": ("type", "low", "high", "when"),
    "int": ("type", "low", "high", "step", "log", "when"),
    "categorical": ("type", "values", "when"),
}
_FIELDS = tuple(RunConfig.model_fields)
# Numbers YAML 1.1 (PyYAML) leaves as strings: 1e-7, 3e5, 1.0e7 (no dot or no exponent sign).
_SCIENTIFIC = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
# The per-epoch numbers every trial reports that a search can rank by (trainer.EpochResult;
# tests/search/test_space.py checks they are its fields).
REPORTED_METRICS: tuple[str, ...] = ("dev_f1", "test_f1", "best_dev_f1", "best_test_f1", "train_loss", "meta_loss")
_METRIC = re.compile(r"^[A-Za-z_][\w./-]*$")
# Finite spaces up to this many corner points are checked combination by combination.
_MAX_CORNERS = 4096
_MAX_GRID = 100_000
_PACKAGE = "metaxl_tune.search_spaces"


class SpaceError(ConfigError):
    """A search space is invalid; the message is one line ``file: key: what is wrong``."""


# ---- helpers ---------------------------------------------------------------------------------


def _is_int_field(name: str) -> bool:
    annotation = RunConfig.model_fields[name].annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return all(arg in (int, type(None)) for arg in typing.get_args(annotation))
    return annotation is int


def _number(value: Any) -> Any:
    """Read ``1e-7``-style strings as floats; leave everything else alone."""
    return float(value) if isinstance(value, str) and _SCIENTIFIC.match(value.strip()) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)


def _closest(name: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {match[0]}?)" if match else ""


def _config_problem(error: ConfigError) -> tuple[str | None, str]:
    """Split RunConfig's ``config: field: message`` into (top-level field, message)."""
    text = str(error).removeprefix("config: ")
    head, sep, rest = text.partition(": ")
    top = head.split(".")[0]
    return (top, rest) if sep and top in RunConfig.model_fields else (None, text)


def _run_value(name: str, value: Any) -> Any:
    """A space value as RunConfig takes it (placement labels become lists)."""
    return resolve_placement(value) if name == "rtn_layers" else value


# ---- parameters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """One sampled RunConfig field (see the module docstring for the schema)."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    step: int = 1
    log: bool = False
    values: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def active(self, assignment: Mapping[str, Any]) -> bool:
        """Whether every ``when`` field has one of its allowed values in ``assignment``."""
        return all(name in assignment and assignment[name] in allowed for name, allowed in self.when.items())

    def suggest(self, trial: Any) -> Any:
        """Ask an ``optuna.Trial`` (or Ray's wrapper around one) for this parameter's value."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.type == "loguniform")

    def corners(self) -> tuple[Any, ...]:
        """The values validation tries: every categorical value, or both bounds."""
        return self.values if self.type == "categorical" else tuple(dict.fromkeys((self.low, self.high)))

    def grid_values(self) -> tuple[Any, ...] | None:
        """Every value a grid visits, or None for continuous parameters."""
        if self.type == "categorical":
            return self.values
        if self.type == "int":
            return tuple(range(self.low, self.high + 1, 1 if self.log else self.step))
        return None


def _parse_parameter(name: str, spec: Any, origin: str) -> Parameter:
    key = f"parameters.{name}"

    def fail(where: str, message: str) -> SpaceError:
        return SpaceError(f"{origin}: {key}{'.' + where if where else ''}: {message}")

    if name not in RunConfig.model_fields:
        raise fail("", f"unknown RunConfig field{_closest(name, _FIELDS)}")
    if not isinstance(spec, dict):
        raise fail("", "must be a mapping such as {type: categorical, values: [...]}")
    kind = spec.get("type")
    if kind is None:
        raise fail("type", f"missing (one of {', '.join(PARAMETER_TYPES)})")
    if kind not in PARAMETER_TYPES:
        raise fail("type", f"unknown type {kind!r} (one of {', '.join(PARAMETER_TYPES)}){_closest(str(kind), PARAMETER_TYPES)}")
    for extra in spec:
        if extra not in _SPEC_KEYS[kind]:
            raise fail(str(extra), f"unknown key for type {kind} (known: {', '.join(_SPEC_KEYS[kind])})")

    if kind == "categorical":
        if "values" not in spec:
            raise fail("values", "missing (a non-empty list)")
        raw = spec["values"]
        if not isinstance(raw, list) or not raw:
            raise fail("values", f"must be a non-empty list (got {raw!r})")
        values = []
        for index, value in enumerate(raw):
            value = _number(value)
            if name == "rtn_layers":
                try:
                    value = placement_label(value)
                except ValueError as error:
                    raise fail(f"values[{index}]", str(error)) from None
            elif not (value is None or isinstance(value, (bool, int, float, str))):
                raise fail(f"values[{index}]", f"must be a single value (got {value!r}); lists only for rtn_layers")
            if value in values:
                raise fail(f"values[{index}]", f"{_show(value)} is listed twice")
            values.append(value)
        return Parameter(name, kind, values=tuple(values), when=spec.get("when", {}))

    if name == "rtn_layers":
        raise fail("type", "rtn_layers takes placement labels; use type: categorical")
    bounds = {}
    for bound in ("low", "high"):
        if bound not in spec:
            raise fail(bound, f"missing ({kind} needs low and high)")
        value = _number(spec[bound])
        if not _is_number(value) or not math.isfinite(value):
            raise fail(bound, f"must be a finite number (got {spec[bound]!r})")
        if kind == "int" and not float(value).is_integer():
            raise fail(bound, f"must be an integer for type int (got {_show(value)})")
        bounds[bound] = int(value) if kind == "int" else float(value)
    low, high = bounds["low"], bounds["high"]
    if low > high:
        raise fail("low", f"must be <= high (got {_show(low)} > {_show(high)})")
    if kind == "loguniform" and low <= 0:
        raise fail("low", f"must be > 0 for loguniform (got {_show(low)})")
    if kind != "int":
        if _is_int_field(name):
            raise fail("type", f"{kind} samples floats but {name} is an integer field; use type: int")
        return Parameter(name, kind, low=low, high=high, when=spec.get("when", {}))

    step, log = spec.get("step", 1), spec.get("log", False)
    if not isinstance(log, bool):
        raise fail("log", f"must be true or false (got {log!r})")
    if not _is_number(step) or not float(step).is_integer() or step < 1:
        raise fail("step", f"must be a positive integer (got {step!r})")
    if log and step != 1:
        raise fail("step", "must be 1 when log is true (Optuna samples log-scaled ints with step 1)")
    if log and low < 1:
        raise fail("low", f"must be >= 1 when log is true (got {low})")
    return Parameter(name, kind, low=low, high=high, step=int(step), log=log, when=spec.get("when", {}))


def _parse_when(parameter: Parameter, fixed: Mapping[str, Any], by_name: Mapping[str, Parameter], origin: str) -> Parameter:
    key = f"parameters.{parameter.name}.when"
    when = parameter.when
    if not isinstance(when, dict) or not when:
        raise SpaceError(f"{origin}: {key}: must be a mapping such as {{method: metaxl}} (got {when!r})")
    parsed: dict[str, tuple[Any, ...]] = {}
    for name, allowed in when.items():
        where = f"{origin}: {key}.{name}"
        if name not in RunConfig.model_fields:
            raise SpaceError(f"{where}: unknown RunConfig field{_closest(str(name), _FIELDS)}")
        if name == parameter.name:
            raise SpaceError(f"{where}: a parameter cannot depend on itself")
        allowed = [_number(value) for value in (allowed if isinstance(allowed, list) else [allowed])]
        if not allowed:
            raise SpaceError(f"{where}: needs at least one value")
        if name == "rtn_layers":
            try:
                allowed = [placement_label(value) for value in allowed]
            except ValueError as error:
                raise SpaceError(f"{where}: {error}") from None
        if name in fixed:
            if fixed[name] not in allowed:
                raise SpaceError(f"{where}: never true: {name} is fixed to {_show(fixed[name])}")
        elif name in by_name:
            parent = by_name[name]
            domain = parent.grid_values()
            if domain is None:
                raise SpaceError(f"{where}: conditions need a categorical or int parameter ({name} is {parent.type})")
            for value in allowed:
                if value not in domain:
                    shown = ", ".join(map(_show, domain)) if len(domain) <= 20 else f"{parent.low}..{parent.high}"
                    raise SpaceError(f"{where}: {_show(value)} is not a value of {name} ({shown})")
        else:
            raise SpaceError(f"{where}: {name} is neither a parameter nor a fixed field of this space")
        parsed[name] = tuple(allowed)
    return Parameter(**{**parameter.__dict__, "when": parsed})


def _sampling_order(parameters: list[Parameter], origin: str) -> tuple[Parameter, ...]:
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
            raise SpaceError(f"{origin}: parameters.{cycle[0]}.when: dependency cycle {' -> '.join(cycle)}")
        placed.append(ready)
        waiting.remove(ready)
    return tuple(placed)


# ---- the space -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; build it with :func:`load_space` or :meth:`from_dict`."""

    parameters: tuple[Parameter, ...]
    """Sampled parameters in sampling order (dependencies first)."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """RunConfig fields shared by every trial (``rtn_layers`` as a placement label)."""
    metric: str = "dev_f1"
    mode: str = "max"
    origin: str = "<space>"
    """Where the space came from; the first part of every error message."""
    description: str = ""

    @classmethod
    def from_dict(cls, data: Any, *, origin: str = "<space>") -> "SearchSpace":
        """Parse the schema in the module docstring; raise :class:`SpaceError` on any problem."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SpaceError(f"{origin}: must be a mapping with {', '.join(_TOP_KEYS)} (got {type(data).__name__})")
        for key in data:
            if key not in _TOP_KEYS:
                raise SpaceError(f"{origin}: {key}: unknown key (known: {', '.join(_TOP_KEYS)}){_closest(str(key), _TOP_KEYS)}")

        metric = data.get("metric", "dev_f1")
        if not isinstance(metric, str) or not _METRIC.match(metric):
            raise SpaceError(f"{origin}: metric: must be a reported metric name such as dev_f1 (got {metric!r})")
        if metric not in REPORTED_METRICS:
            # A name no trial reports would rank every trial as missing the metric (0.00).
            raise SpaceError(f"{origin}: metric: {metric} is not a metric that trials report; "
                             f"use one of {', '.join(REPORTED_METRICS)}{_closest(metric, REPORTED_METRICS)}")
        direction = "max" if metric.lower().endswith("f1") else "min" if metric.lower().endswith("loss") else None
        mode = data.get("mode", direction)
        if mode is None:
            raise SpaceError(f"{origin}: mode: missing (max or min) for metric {metric}")
        if mode not in MODES:
            raise SpaceError(f"{origin}: mode: must be max or min (got {mode!r})")
        if direction is not None and mode != direction:
            raise SpaceError(f"{origin}: mode: {mode} would pick the worst trial by {metric}; use {direction}")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise SpaceError(f"{origin}: description: must be a string")

        raw_fixed = data.get("fixed") or {}
        if not isinstance(raw_fixed, dict):
            raise SpaceError(f"{origin}: fixed: must be a mapping of RunConfig fields (got {raw_fixed!r})")
        fixed: dict[str, Any] = {}
        for name, value in raw_fixed.items():
            if name not in RunConfig.model_fields:
                raise SpaceError(f"{origin}: fixed.{name}: unknown RunConfig field{_closest(str(name), _FIELDS)}")
            value = _number(value)
            if name == "rtn_layers":
                try:
                    value = placement_label(value)
                except ValueError as error:
                    raise SpaceError(f"{origin}: fixed.rtn_layers: {error}") from None
            fixed[name] = value

        raw_parameters = data.get("parameters") or {}
        if not isinstance(raw_parameters, dict):
            raise SpaceError(f"{origin}: parameters: must be a mapping of RunConfig fields to specs")
        parameters = [_parse_parameter(str(name), spec, origin) for name, spec in raw_parameters.items()]
        for parameter in parameters:
            if parameter.name in fixed:
                raise SpaceError(f"{origin}: parameters.{parameter.name}: also set in fixed; keep one of the two")
        by_name = {p.name: p for p in parameters}
        parameters = [_parse_when(p, fixed, by_name, origin) if p.when != {} else p for p in parameters]
        if not parameters:
            # Without one, every trial would train the same config: a search of nothing.
            raise SpaceError(
                f"{origin}: parameters: none given; a search needs at least one parameter to sample (for one "
                "fixed config use metaxl-tune train --config, for several seeds metaxl-tune ablate)"
            )
        return cls(_sampling_order(parameters, origin), fixed, metric, mode, origin, description)

    # ---- what a search calls ----

    @property
    def names(self) -> tuple[str, ...]:
        """The sampled parameters' names, in sampling order."""
        return tuple(p.name for p in self.parameters)

    def sample(self, trial: Any) -> dict[str, Any]:
        """Define-by-run sampling: the fixed values plus every active parameter, asked of ``trial``.

        Usable as ``OptunaSearch(space=space.sample, ...)``: Ray passes a wrapped
        ``optuna.Trial`` and merges the returned constants into the trial's config.
        Inactive conditional parameters are never suggested, so Optuna does not see them.
        """
        values = dict(self.fixed)
        for parameter in self.parameters:
            if parameter.active(values):
                values[parameter.name] = parameter.suggest(trial)
        return values

    def to_run_config(self, base: RunConfig, sampled: Mapping[str, Any]) -> RunConfig:
        """The trial's RunConfig: ``base`` with the fixed values and ``sampled`` applied.

        ``sampled`` is what :meth:`sample` returned (or an Optuna trial's ``params``);
        placement labels become ``rtn_layers`` lists here.
        """
        changes = {**self.fixed, **sampled}
        for name in changes:
            if name not in RunConfig.model_fields:
                raise SpaceError(f"{self.origin}: trial config: {name}: unknown RunConfig field{_closest(name, _FIELDS)}")
        try:
            return base.replace(**{name: _run_value(name, value) for name, value in changes.items()})
        except (ConfigError, ValueError) as error:
            message = str(error).removeprefix("config: ")
            raise SpaceError(f"{self.origin}: trial config: {message}") from None

    def grid(self) -> list[dict[str, Any]]:
        """Every point of a finite space (categorical and int parameters), respecting ``when``.

        Each point holds the fixed values and its active parameters, like :meth:`sample`.
        """
        for parameter in self.parameters:
            if parameter.grid_values() is None:
                raise SpaceError(
                    f"{self.origin}: parameters.{parameter.name}: a grid needs categorical or int "
                    f"parameters (got {parameter.type}); sample this space instead"
                )
        points = self._expand(Parameter.grid_values, limit=_MAX_GRID)
        if points is None:
            raise SpaceError(f"{self.origin}: parameters: the grid has more than {_MAX_GRID} points")
        return points

    def validate(self, base: RunConfig) -> None:
        """Check the space against ``base`` before any trial runs; raise :class:`SpaceError`.

        Builds a RunConfig for the fixed values, then for every categorical value and both
        bounds of every numeric parameter (with the values that make its ``when`` true),
        then, when the space has at most 4096 such corner points, for every combination.
        """
        try:
            base.replace(**{name: _run_value(name, value) for name, value in self.fixed.items()})
        except ConfigError as error:
            name, message = _config_problem(error)
            key = f"fixed.{name}" if name in self.fixed else "fixed"
            raise SpaceError(f"{self.origin}: {key}: rejected by the run config ({message})") from None

        for parameter in self.parameters:
            enabling = self._enabling(parameter)
            for index, value in enumerate(parameter.corners()):
                where = f"values[{index}]" if parameter.type == "categorical" else ("low", "high")[index]
                self._check(base, {**enabling, parameter.name: value}, f"parameters.{parameter.name}.{where}", value)

        corners = self._expand(Parameter.corners, limit=_MAX_CORNERS)
        for point in corners or ():
            self._check(base, point, "parameters", None)
        if corners is not None:
            for parameter in self.parameters:
                if not any(parameter.name in point for point in corners):
                    raise SpaceError(f"{self.origin}: parameters.{parameter.name}.when: can never be true")

    # ---- internals ----

    def _check(self, base: RunConfig, point: Mapping[str, Any], key: str, value: Any) -> None:
        try:
            base.replace(**{name: _run_value(name, v) for name, v in {**self.fixed, **point}.items()})
        except ConfigError as error:
            name, message = _config_problem(error)
            problem = f"{name}: {message}" if name else message
            if value is not None:
                raise SpaceError(f"{self.origin}: {key}: {_show(value)} is rejected by the run config ({problem})") from None
            sampled = ", ".join(f"{k}={_show(v)}" for k, v in point.items() if k not in self.fixed)
            raise SpaceError(f"{self.origin}: {key}: the combination {sampled} is rejected by the run config ({problem})") from None

    def _enabling(self, parameter: Parameter) -> dict[str, Any]:
        """Values of the parameters ``parameter`` depends on that make its ``when`` true."""
        by_name = {p.name: p for p in self.parameters}
        assignment: dict[str, Any] = {}
        pending = [parameter]
        while pending:
            current = pending.pop()
            for name, allowed in current.when.items():
                if name in self.fixed:
                    continue
                if name in assignment:
                    if assignment[name] not in allowed:
                        raise SpaceError(f"{self.origin}: parameters.{parameter.name}.when: can never be true "
                                         f"({name} must be both {_show(assignment[name])} and one of {allowed})")
                    continue
                assignment[name] = allowed[0]
                pending.append(by_name[name])
        return assignment

    def _expand(self, values_of: Callable[[Parameter], Any], *, limit: int) -> list[dict[str, Any]] | None:
        points = [dict(self.fixed)]
        for parameter in self.parameters:
            values = values_of(parameter)
            points = [
                {**point, parameter.name: value} if parameter.active(point) else point
                for point in points
                for value in (values if parameter.active(point) else (None,))
            ]
            if len(points) > limit:
                return None
        return points


# ---- loading ---------------------------------------------------------------------------------


def shipped_spaces() -> list[str]:
    """Names of the spaces shipped in ``metaxl_tune.search_spaces`` (``ner``, ``sa``, ...)."""
    return sorted(item.name[: -len(".yaml")] for item in resources.files(_PACKAGE).iterdir() if item.name.endswith(".yaml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A shipped space by bare name (``ner``, ``sa``, ``paper-grid``, ``demo``) or a YAML file.

    Anything containing ``/`` or ending in ``.yaml``/``.yml`` (or a :class:`~pathlib.Path`)
    is a path; everything else is a shipped name.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith((".yaml", ".yml")):
        path = Path(text)
        if not path.is_file():
            raise SpaceError(f"{text}: no such search-space file")
        origin, source = text, read_text_file(path, "--space needs a YAML search space", SpaceError)
    else:
        shipped = shipped_spaces()
        if text not in shipped:
            raise SpaceError(
                f"{text}: unknown search space{_closest(text, shipped)}; shipped: {', '.join(shipped)} "
                f"(or pass a path to a .yaml file)"
            )
        origin = f"{text}.yaml"
        source = resources.files(_PACKAGE).joinpath(origin).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "parse error"
        raise SpaceError(f"{origin}:{where}: not valid YAML ({problem})") from None
    return SearchSpace.from_dict(data, origin=origin)
