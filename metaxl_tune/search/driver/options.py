"""A search's options: what it was started with, saved beside Tune's state so that --resume needs only the name.

Also the presets, the Optuna journal of a search, and reading back an earlier search's options
and study (warm start, ablations, sync). SearchError is the one-line refusal of every driver.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna

from metaxl_tune.common.folders import OPTIONS_FILE
from metaxl_tune.common.names import check_name
from metaxl_tune.common.paths import default_storage
from metaxl_tune.common.secrets import mask_uri
from metaxl_tune.search.space.racing import DEFAULT_MAX_REPEATS, REPEATS_AUTO, check_repeats

DEFAULT_STORAGE_RETRY_S = 180.0
"""--storage-retry-s default; the same as persistence.DEFAULT_RETRY_S (that module loads Ray)."""
OPTUNA_JOURNAL = "optuna.journal"

DEFAULT_SPACE = "ner"
PRESETS: dict[str, dict[str, Any]] = {
    # Tiny random-init model on synthetic data: runs offline in minutes on 2 CPU cores.
    "demo": {"space": "demo", "base": {"model": "tiny", "data": "synthetic"}},
}


class SearchError(ValueError):
    """The search cannot start as asked; the message says what to change."""


@dataclass
class SearchOptions:
    """Everything a search was started with (saved as JSON so --resume can rebuild it)."""

    name: str
    space: str | None = None
    """The --space given; None when not given: apply_preset makes it the preset's space, or
    DEFAULT_SPACE without a preset (saved resolved)."""
    base: dict[str, Any] = field(default_factory=dict)
    """RunConfig fields given on the command line; they override the space's fixed values."""
    preset: str | None = None
    num_samples: int = 10
    max_concurrent: int | None = None
    time_budget_s: float | None = None
    scheduler: Literal["asha", "fifo"] = "asha"
    sampler: str = "tpe"
    """Optuna sampler: tpe, random, gp, cmaes, qmc or grid (metaxl_tune/search/space/strategy.py)."""
    warm_start: list[str] = field(default_factory=list)
    """Earlier searches (same storage) whose finished and pruned trials seed the study (warm_start.py)."""
    warm_start_top: int = 0
    """The K best configs of the warm-start searches, run as the first trials."""
    grace_period: int = 1
    gpus_per_trial: float | None = None
    """None: 1 where the cluster has GPUs, else CPU trials."""
    cpus_per_trial: float = 1.0
    address: str | None = None
    storage: str = field(default_factory=default_storage)
    """Tune storage; default metaxl-runs/metaxl-searches (see metaxl_tune.common.paths)."""
    tracking_uri: str | None = None
    seed: int = 0
    """--search-seed: the sampler's seed, and the source of every trial's training seed
    (racing.paired_seed(seed, repeat)), so that the whole search is reproducible from it."""
    repeats: str | int = REPEATS_AUTO
    """--repeats: auto (racing, search/space/racing.py) or N runs of every config (1: one seed each)."""
    max_repeats: int = DEFAULT_MAX_REPEATS
    """--max-repeats: the most seeds racing gives one config."""
    cache_dir: str | None = None
    keep_checkpoints: int = 1
    max_failures: int = 2
    storage_retry_s: float = DEFAULT_STORAGE_RETRY_S
    """How long a trial waits for unwritable storage before its checkpoint write counts as a failure."""
    wait_for_resources_s: float = 0.0
    """When no node can hold one trial: seconds to wait for one (an autoscaling cluster adding
    nodes) before refusing; 0 refuses at once (resource_fit.py)."""

    @property
    def experiment_dir(self) -> Path:
        return Path(self.storage) / self.name

    def save(self) -> None:
        self.experiment_dir.mkdir(parents=True, exist_ok=True)
        saved = dataclasses.asdict(self)
        # Credentials are never saved: a resume is given them again (tracking_uri.usable_saved_uri).
        saved.update({key: mask_uri(saved[key]) for key in ("tracking_uri", "address") if saved[key]})
        (self.experiment_dir / OPTIONS_FILE).write_text(json.dumps(saved, indent=2))

    @classmethod
    def load(cls, storage: str, name: str) -> "SearchOptions":
        path = Path(storage) / check_name(name) / OPTIONS_FILE
        if not path.is_file():
            raise SearchError(f"no search named {name} in {storage} (no {path}); check --name and --storage")
        raw = read_options_file(path)
        if cls is SearchOptions and "repeats" not in raw:
            # Saved before seeds were part of a trial: it ran one seed per config, and resumes so.
            raw = {**raw, "repeats": 1}
        try:
            return cls(**raw)
        except TypeError:
            unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(cls)})
            raise SearchError(
                f"{path}: not the saved options of a {'search' if cls is SearchOptions else 'study'}"
                f"{' (unknown keys: ' + ', '.join(unknown) + ')' if unknown else ''}; check --name and --storage"
            ) from None


SEED_LIMIT = 2**32 - 1
"""--search-seed: Optuna's samplers and NumPy take a 32-bit seed."""
MIN_TRIAL_SHARE = 0.01
"""The smallest CPU or GPU share one trial may ask for (Ray counts in steps of 1e-4; below a
hundredth a node would be asked to hold thousands of trials at once)."""


def check_driver_options(options: SearchOptions) -> None:
    """The options that need no space, config or cluster: one line on the first problem, before
    anything of the search is made."""
    if not 0 <= options.seed <= SEED_LIMIT:
        raise SearchError(f"--search-seed must be in [0, {SEED_LIMIT:,}] (got {options.seed})")
    if type(options) is SearchOptions:  # an ablation runs its cells' seeds, not a race
        try:
            options.repeats = check_repeats(options.repeats, options.max_repeats)
        except ValueError as error:
            raise SearchError(str(error)) from None
    for value, flag, zero_allowed in ((options.cpus_per_trial, "--cpus-per-trial", False),
                                      (options.gpus_per_trial, "--gpus-per-trial", True)):
        if value is None or (zero_allowed and value == 0):
            continue
        if not math.isfinite(value) or value < MIN_TRIAL_SHARE:
            zero = "0 or " if zero_allowed else ""
            raise SearchError(f"{flag} must be {zero}at least {MIN_TRIAL_SHARE} (got {value:g})")


def read_options_file(path: Path) -> dict[str, Any]:
    """A saved search's or ablation's options, or one line naming the damaged file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:
        raise SearchError(f"{path}: cannot read the saved options ({str(error).splitlines()[0]}); "
                          "restore the file or start a new search under another --name") from None
    if not isinstance(raw, dict):
        raise SearchError(f"{path}: the saved options are not a JSON object; restore the file or start a new search")
    return raw


def apply_preset(options: SearchOptions) -> SearchOptions:
    """The options with the preset's values filled in where the command line gave none: a flag
    the user typed (``--space``, ``--model``, ``--data``) wins over the preset, even when it
    repeats the default."""
    if options.preset is None:
        return options if options.space is not None else dataclasses.replace(options, space=DEFAULT_SPACE)
    if options.preset not in PRESETS:
        raise SearchError(f"--preset {options.preset}: unknown preset; known: {', '.join(PRESETS)}")
    preset = PRESETS[options.preset]
    space = options.space if options.space is not None else preset["space"]
    return dataclasses.replace(options, space=space, base={**preset["base"], **options.base})


def check_storage_retry(options: SearchOptions) -> None:
    if not math.isfinite(options.storage_retry_s):
        raise SearchError(f"--storage-retry-s must be a finite number of seconds (got {options.storage_retry_s})")
    if not options.storage_retry_s >= 0:
        raise SearchError(f"--storage-retry-s must be >= 0 seconds (got {options.storage_retry_s})")


def optuna_storage(experiment_dir: Path) -> optuna.storages.BaseStorage:
    """The study's storage: an append-only journal file next to Tune's state. Only the driver
    writes it, and a journal costs a fraction of sqlite per ask/tell (bench/scale.py)."""
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(experiment_dir / OPTUNA_JOURNAL)))


def load_search_study(options: SearchOptions) -> optuna.Study:
    return optuna.load_study(study_name=options.name, storage=optuna_storage(options.experiment_dir))


def sync_hint(options: SearchOptions) -> str:
    return f"metaxl-tune sync --name {options.name} --storage {options.storage}"
