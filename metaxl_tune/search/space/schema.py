"""The search space a search runs: sampling, trial configs, grids and validation against a base config.

A space names the fields of :class:`~metaxl_tune.config.RunConfig` that a search varies, how
to sample each, and the fields every trial shares. The file's schema, and the checks of what
it says, are the pydantic models of :mod:`metaxl_tune.search.space.space_file`;
:class:`SearchSpace` is what they become. It is validated against the run's base config
*before* Ray starts, so a value the run config rejects fails in a second, not after an hour
of trials. This module imports neither Ray nor MLflow.

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

Ray Tune pickles :class:`SearchSpace` and its :class:`Parameter` objects into the searcher's
state: both stay frozen dataclasses with the same fields, importable from this module and
from ``metaxl_tune.search.space``, so a search folder from before still resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

from metaxl_tune.common.yaml_files import parse_yaml
from metaxl_tune.config import ConfigError, RunConfig, read_text_file
from metaxl_tune.search.space.errors import SpaceError, closest, show
from metaxl_tune.search.space.parameter import Parameter
from metaxl_tune.search.space.placement import resolve_placement
from metaxl_tune.search.space.space_file import REPORTED_METRICS, read_space_file

__all__ = ["REPORTED_METRICS", "Parameter", "SearchSpace", "SpaceError", "load_space", "shipped_spaces"]

_FIELDS = tuple(RunConfig.model_fields)
# Finite spaces up to this many corner points are checked combination by combination.
_MAX_CORNERS = 4096
_MAX_GRID = 100_000
_PACKAGE = "metaxl_tune.search_spaces"


def _config_problem(error: ConfigError) -> tuple[str | None, str]:
    """Split RunConfig's ``config: field: message`` into (top-level field, message)."""
    text = str(error).removeprefix("config: ")
    head, sep, rest = text.partition(": ")
    top = head.split(".")[0]
    return (top, rest) if sep and top in RunConfig.model_fields else (None, text)


def _run_value(name: str, value: Any) -> Any:
    """A space value as RunConfig takes it (placement labels become lists)."""
    return resolve_placement(value) if name == "rtn_layers" else value


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
        """Parse the schema of :mod:`~metaxl_tune.search.space.space_file`; raise :class:`SpaceError` on any problem."""
        file = read_space_file(data, origin)
        return cls(file.sampling_order(), dict(file.fixed), file.metric, file.mode, origin, file.description)

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
                raise SpaceError(f"{self.origin}: trial config: {name}: unknown RunConfig field{closest(name, _FIELDS)}")
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

        for key, value, point in self.corner_points():
            self._check(base, point, key, value)

        corners = self._expand(Parameter.corners, limit=_MAX_CORNERS)
        for point in corners or ():
            self._check(base, point, "parameters", None)
        if corners is not None:
            for parameter in self.parameters:
                if not any(parameter.name in point for point in corners):
                    raise SpaceError(f"{self.origin}: parameters.{parameter.name}.when: can never be true")

    def corner_points(self) -> list[tuple[str, Any, dict[str, Any]]]:
        """Every categorical value and both bounds of every numeric parameter, each with the
        values that make its ``when`` true: ``(key in the file, value, sampled point)``."""
        points = []
        for parameter in self.parameters:
            enabling = self._enabling(parameter)
            for index, value in enumerate(parameter.corners()):
                where = f"values[{index}]" if parameter.type == "categorical" else ("low", "high")[index]
                points.append((f"parameters.{parameter.name}.{where}", value, {**enabling, parameter.name: value}))
        return points

    # ---- internals ----

    def _check(self, base: RunConfig, point: Mapping[str, Any], key: str, value: Any) -> None:
        try:
            base.replace(**{name: _run_value(name, v) for name, v in {**self.fixed, **point}.items()})
        except ConfigError as error:
            name, message = _config_problem(error)
            problem = f"{name}: {message}" if name else message
            if value is not None:
                raise SpaceError(f"{self.origin}: {key}: {show(value)} is rejected by the run config ({problem})") from None
            sampled = ", ".join(f"{k}={show(v)}" for k, v in point.items() if k not in self.fixed)
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
                                         f"({name} must be both {show(assignment[name])} and one of {allowed})")
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
                f"{text}: unknown search space{closest(text, shipped)}; shipped: {', '.join(shipped)} "
                f"(or pass a path to a .yaml file)"
            )
        origin = f"{text}.yaml"
        source = resources.files(_PACKAGE).joinpath(origin).read_text(encoding="utf-8")
    data = parse_yaml(source, origin, SpaceError)
    return SearchSpace.from_dict(data, origin=origin)
