"""Where the classes and functions that an old search's pickled state names live now.

Why: Ray Tune pickles the searcher (with the search space it samples), the callbacks (with
their tracker and trial-config builder) and the trials into a search's folder (``tuner.pkl``,
``searcher-state-*.pkl``, ``experiment_state-*.json``), and a pickle names the module of each
class and function it holds by reference. After 711d83e the modules moved into layered
packages (issue #24: ``metaxl_tune.search.callbacks`` became
``metaxl_tune.search.records.callbacks``, and so on), so the state of a search started before
the move names modules that no longer exist. ``search --resume`` and ``ablate --resume``
restore such state inside :func:`old_module_paths`.

One table, as Ray keeps one for its own moves, instead of a shim file per old module:
MOVED_MODULES maps each old module to the module it became; MOVED_NAMES lists the classes and
functions that went elsewhere (the options and preflight checks split from the runner, the
config package's parts). The old paths resolve only while state is restored, so no code can
come to depend on them.

How: while the context is open, an import finder at the end of ``sys.meta_path`` (asked only
for names no other finder knows) answers an old module with a stand-in whose attributes
resolve through the table; the old modules whose name is a package now (``metaxl_tune.config``,
``metaxl_tune.results``, ``metaxl_tune.search.space``) resolve the old names they lack through
a module ``__getattr__`` set for the context only. Leaving the context removes both.

A module under metaxl_tune that is neither real nor in the table fails with a
ModuleNotFoundError naming it and this file. ``Tuner.restore`` loads ``tuner.pkl`` first, which
holds the searcher, the scheduler and the callbacks, so that is where an unknown module is met,
and the commands turn it into one line (:func:`unknown_modules_refused`); Tune itself would
log a failure in the files it loads as ``fit`` starts, and start the experiment over.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

PACKAGE = "metaxl_tune"

# Relative to metaxl_tune: each module as 711d83e (the last release before the move) named it,
# and the module it became.
_MODULES = {
    "names": "common.names", "origins": "common.origins", "paths": "common.paths",
    "languages": "common.languages", "interruptible": "common.interruptible", "terminal": "common.terminal",
    "bind_check": "common.bind_check",
    "config": "config.run_config",
    "trainer": "train.trainer", "bilevel": "train.bilevel", "precision": "train.precision",
    "checkpoint": "train.checkpoint", "checkpoint_policy": "train.checkpoint_policy",
    "source_sampler": "train.source_sampler", "memory": "train.memory", "metrics": "train.metrics",
    "run_folder": "train.run_folder", "data.prepare": "train.prepare",
    "tracking": "results.tracking", "mlflow_filters": "results.mlflow_filters", "results": "results.ranking",
    "report": "results.report", "analysis": "results.analysis",
    "search.space": "search.space.schema", "search.placement": "search.space.placement",
    "search.study": "search.space.study", "search.trial_configs": "search.space.trial_configs",
    "search.strategy": "search.space.strategy", "search.pruning": "search.space.pruning",
    "search.interrupt": "search.faults.interrupt", "search.ending": "search.faults.ending",
    "search.fault_lines": "search.faults.fault_lines", "search.quiet_output": "search.faults.quiet_output",
    "search.persistence": "search.faults.persistence",
    "search.cluster": "search.execution.cluster", "search.resource_fit": "search.execution.resource_fit",
    "search.trainable": "search.execution.trainable",
    "search.callbacks": "search.records.callbacks", "search.tracking_queue": "search.records.tracking_queue",
    "search.restarts": "search.records.restarts",
    "compare": "search.driver.compare", "search.warm_start": "search.driver.warm_start",
    "search.driver_lock": "search.driver.lock", "search.runner": "search.driver.runner",
    "search.ablate": "search.driver.ablate", "search.generated_study": "search.driver.generated_study",
    "search.sync": "search.driver.sync", "search.hooks": "search.driver.hooks",
}
# Old module -> {module now: the names that went there rather than where the old module went}.
_NAMES = {
    "checkpoint_policy": {"config.checkpoint_every": ("CheckpointEvery",)},
    "analysis": {"results.analysis_record": ("analyze_mlflow_run",)},
    "config": {
        "config.files": ("check_fields", "load_config", "read_text_file"),
        "config.method_options": ("ignored_by_method", "ignored_by_task", "refuse_ignored_options",
                                  "refuse_task_ignored_options"),
    },
    "search.runner": {
        "search.driver.options": ("SearchError", "SearchOptions", "apply_preset", "check_storage_retry",
                                  "load_search_study", "optuna_storage", "read_options_file", "sync_hint"),
        "search.driver.preflight": ("PreparedSearch", "check_strategy", "prepare", "resolve_space",
                                    "warm_data_cache"),
    },
}

MOVED_MODULES: dict[str, str] = {f"{PACKAGE}.{old}": f"{PACKAGE}.{new}" for old, new in _MODULES.items()}
"""Old module -> the module it became."""
MOVED_NAMES: dict[tuple[str, str], str] = {
    (f"{PACKAGE}.{old}", name): f"{PACKAGE}.{new}"
    for old, homes in _NAMES.items() for new, names in homes.items() for name in names
}
"""(old module, name) -> the module that defines the name now, where that is not MOVED_MODULES[old]."""


class MovedModuleError(ModuleNotFoundError):
    """An old pickle names a metaxl_tune module this version neither has nor knows the new place of."""


def new_module(module: str, name: str) -> str:
    """The module where what an old pickle calls ``module.name`` is defined now."""
    home = MOVED_NAMES.get((module, name.split(".")[0])) or MOVED_MODULES.get(module)
    if home is None:
        raise MovedModuleError(
            f"{module}: the saved search state names a module that metaxl-tune no longer has, and its table of "
            f"moved modules ({__name__}) does not say where it went; resume the search with the metaxl-tune "
            "version that started it, or add the module to that table", name=module)
    return home


def resolve(module: str, name: str) -> Any:
    """The object an old pickle names as ``name`` (a qualified name, e.g. ``SearchSpace.sample``)
    in ``module``; AttributeError when the module it moved to no longer has it."""
    found: Any = importlib.import_module(new_module(module, name))
    for part in name.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise AttributeError(f"{module}.{name}: not in {new_module(module, name)}, where {module} moved; "
                                 f"add where it went to the table in {__name__}") from None
    return found


class _StandIn(types.ModuleType):
    """An old module while state is restored: every name resolves through the table."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system's probes (__path__, __file__, ...)
            raise AttributeError(name)
        return resolve(self.__name__, name)


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on sys.meta_path: reached only for names that no real module has."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(PACKAGE + "."):
            return None
        new_module(fullname, "")  # a metaxl_tune module that is neither real nor moved: say so
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _StandIn(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: a stand-in's names are looked up on use."""


@contextmanager
def unknown_modules_refused(experiment_dir: Path) -> Iterator[None]:
    """A module the table does not know, met while restoring, as one line naming the search."""
    from metaxl_tune.search.driver.options import SearchError

    try:
        yield
    except MovedModuleError as error:
        raise SearchError(f"{experiment_dir}: cannot restore the saved state: {error}") from None


def _module_getattr(module: str):
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        return resolve(module, name)

    return __getattr__


_lock = threading.Lock()
_depth = 0
_finder = _OldPaths()
_patched: dict[types.ModuleType, Any] = {}
_MISSING = object()


@contextmanager
def old_module_paths() -> Iterator[None]:
    """Old module paths resolve through the table while open (restoring a search's state)."""
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:
            _install()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _uninstall()


def _install() -> None:
    old_names = set(MOVED_MODULES) | {module for module, _ in MOVED_NAMES}
    for name in sorted(old_names):
        # The old modules that are real now (a package took the name): they resolve what they lack.
        if importlib.util.find_spec(name) is not None:
            module = importlib.import_module(name)
            _patched[module] = module.__dict__.get("__getattr__", _MISSING)
            module.__getattr__ = _module_getattr(name)  # type: ignore[method-assign]
    sys.meta_path.append(_finder)


def _uninstall() -> None:
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    for name, module in list(sys.modules.items()):
        if isinstance(module, _StandIn):
            del sys.modules[name]
            parent, _, child = name.rpartition(".")
            if parent in sys.modules and vars(sys.modules[parent]).get(child) is module:
                delattr(sys.modules[parent], child)
    for module, previous in _patched.items():
        if previous is _MISSING:
            del module.__getattr__
        else:
            module.__getattr__ = previous
    _patched.clear()
