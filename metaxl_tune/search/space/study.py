"""Ablation studies: YAML files whose `settings` are the rows of a paper-style table.

A study expands into a grid of run configs: settings x targets x seeds. Precedence, lowest
first: the preset, the study's ``fixed``, command-line flags, the setting, then the target
and seed of the cell. Shipped studies live in ``search_spaces/studies/``; any path works too.

    description: methods (paper Table 2)
    fixed: {epochs: 20}                      # optional: every row
    settings:                                # rows: label -> RunConfig fields
      jt: {method: jt}
      metaxl: {method: metaxl}
    settings_by_task: {ner: {...}, sa: {...}}   # instead of settings, when rows differ by task
    include: [methods, placement]            # instead of settings: the union of other studies
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from metaxl_tune.common.yaml_files import parse_yaml
from metaxl_tune.config import ConfigError, RunConfig, read_text_file
from metaxl_tune.search.space.placement import resolve_placement

_KEYS = {"description", "fixed", "settings", "settings_by_task", "include"}

# Seconds per training step used by --dry-run estimates, measured by bench/step.py: a JT step
# of the tiny model on a CPU core, of an XLM-R base model on one GPU; other methods scale by
# their step-time ratio to JT.
SECONDS_PER_JT_STEP = {"tiny": 0.08, "default": 0.25}
# metaxl: the default step (theta recomputed above the RTNs, the reference's step_metaxl).
STEP_COST = {"target-only": 0.65, "jt": 1.0, "jt-rtn": 1.0, "metaxl": 1.7, "metaxl-algorithm1": 1.5}


class StudyError(ConfigError):
    """A study file is invalid; the message is ``file: key: what is wrong``."""


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    fixed: dict[str, Any]
    settings: dict[str, dict[str, Any]]
    """Row label -> RunConfig fields, in table order."""


@dataclass(frozen=True)
class Cell:
    setting: str
    target: str
    seed: int
    values: dict[str, Any]
    """Every field the cell sets on top of the base config."""


def shipped_studies() -> list[str]:
    folder = resources.files("metaxl_tune.search_spaces") / "studies"
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def _read(name_or_path: str) -> tuple[str, dict]:
    if "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        if not path.is_file():
            raise StudyError(f"{name_or_path}: no such study file")
        text, origin = read_text_file(path, "--study needs a YAML study", StudyError), str(path)
    else:
        if name_or_path not in shipped_studies():
            raise StudyError(f"{name_or_path}: unknown study; shipped: {', '.join(shipped_studies())}, or a YAML path")
        resource = resources.files("metaxl_tune.search_spaces") / "studies" / f"{name_or_path}.yaml"
        text, origin = resource.read_text(encoding="utf-8"), name_or_path
    data = parse_yaml(text, origin, StudyError) or {}
    if not isinstance(data, dict):
        raise StudyError(f"{origin}: must be a mapping with settings")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise StudyError(f"{origin}: {unknown[0]}: unknown key; known: {', '.join(sorted(_KEYS))}")
    return origin, data


def _normalise(values: Any, origin: str, where: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise StudyError(f"{origin}: {where}: must be a mapping of RunConfig fields")
    unknown = sorted(set(values) - set(RunConfig.model_fields))
    if unknown:
        raise StudyError(f"{origin}: {where}.{unknown[0]}: not a RunConfig field")
    if "rtn_layers" in values:
        values = {**values, "rtn_layers": resolve_placement(values["rtn_layers"])}
    return values


def load_study(name_or_path: str, task: str) -> Study:
    origin, data = _read(name_or_path)
    fixed = _normalise(data.get("fixed") or {}, origin, "fixed")
    if "include" in data:
        settings: dict[str, dict[str, Any]] = {}
        for included in data["include"]:
            part = load_study(str(included), task)
            for label, values in part.settings.items():
                merged = {**part.fixed, **values}
                if merged not in settings.values():  # the same run in two studies runs once
                    settings[f"{part.name}/{label}"] = merged
    else:
        raw = data.get("settings")
        if "settings_by_task" in data:
            raw = (data["settings_by_task"] or {}).get(task)
            if raw is None:
                raise StudyError(f"{origin}: settings_by_task: has no rows for task {task}")
        if not raw:
            raise StudyError(f"{origin}: settings: needs at least one row (label: {{field: value}})")
        settings = {str(label): _normalise(values, origin, f"settings.{label}") for label, values in raw.items()}
    name = Path(origin).stem if "/" in origin or origin.endswith((".yaml", ".yml")) else origin
    return Study(name=name, description=str(data.get("description", "")), fixed=fixed, settings=settings)


def grid(study: Study, base: RunConfig, *, targets: list[str], seeds: int, flags: dict[str, Any]) -> list[Cell]:
    """Every (setting, target, seed) cell, each validated as a RunConfig before anything runs."""
    if seeds < 1:
        raise StudyError("--seeds must be >= 1")
    if not targets:
        raise StudyError("--targets needs at least one language code, e.g. qu,tk")
    repeated = next((target for index, target in enumerate(targets) if target in targets[:index]), None)
    if repeated is not None:
        # Each repeat would run every row again and report the copies as extra seeds.
        raise StudyError(f"--targets names {repeated} twice ({','.join(targets)}); list each target once")
    same = _identical_settings(study)
    if same:
        raise StudyError(
            f"{study.name}: settings {same[0]} and {same[1]} set the same values; each would run the same "
            "runs, reported as two settings; remove one"
        )
    varied = sorted({key for values in study.settings.values() for key in values} & set(flags))
    if varied:
        raise StudyError(f"{study.name}: settings vary {', '.join(varied)}; drop the flag for it")
    fixed = {key: value for key, value in study.fixed.items() if key not in flags}
    cells = []
    for label, setting in study.settings.items():
        for target in targets:
            for seed in range(1, seeds + 1):
                values = {**fixed, **setting, "target": target, "seed": seed}
                try:
                    base.replace(**values)
                except ConfigError as error:
                    message = str(error).removeprefix("config: ")
                    raise StudyError(f"{study.name}: settings.{label} for target {target}: {message}") from None
                cells.append(Cell(label, target, seed, values))
    return cells


def _identical_settings(study: Study) -> tuple[str, str] | None:
    seen: dict[str, str] = {}
    for label, values in study.settings.items():
        key = repr(sorted((name, repr(value)) for name, value in values.items()))
        if key in seen:
            return seen[key], label
        seen[key] = label
    return None


def estimated_seconds(config: RunConfig) -> float:
    """Training time of one run, for --dry-run: steps x seconds per step of its method."""
    # An epoch passes once over every source language's sample (source_sampler).
    driver = config.target_size if config.method == "target-only" else config.source_size * len(config.source_languages)
    per_epoch = math.ceil(driver / config.batch_size)
    method = "metaxl-algorithm1" if config.method == "metaxl" and config.theta_update == "algorithm1" else config.method
    per_step = SECONDS_PER_JT_STEP.get(config.model, SECONDS_PER_JT_STEP["default"])
    # Back-off fine-tuning steps are single-level, like a JT w/ RTN step.
    cost = config.epochs * STEP_COST[method] + config.finetune_epochs * STEP_COST["jt-rtn"]
    return per_epoch * per_step * cost
