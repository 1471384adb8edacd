"""Racing (intensification): which config a seed-aware search runs again, and which config it trusts.

One training is one seed, and at demo scale two seeds of one config differ by 3-9 F1 while the
configs differ by 1-7 (issue #25). A search that trusts one seed crowns the luckiest seed. This
module is the policy alone: no Ray, no Optuna, no torch, so that ``search`` (through
``search/space/racing_search.py``) and the tabular replay (``bench/search_quality.py``) run the
very same object.

Paired seeds (common random numbers): every config's ``k``-th run trains with the same seed,
``paired_seed(search_seed, k)``, so two configs compared on their common repeats differ by their
values, not by which seeds each happened to get.

``repeats="auto"`` (the default) races, as SMAC's intensifier does:

- The first config to complete a run is the incumbent (the *opponent* of the races).
- A new config that completes its first run is a challenger: it is compared with the opponent on
  their common repeats (the same seeds, in the same order). Worse or equal: dropped at once.
  Better: it gets the next repeat, and the opponent gets that repeat too if it has not run it, so
  the comparison stays paired. Each time it survives it gets a new seed, up to ``max_repeats``;
  a challenger that survives all ``max_repeats`` has the best mean on the most seeds and takes
  the opponent's place.
- The opponent also gets one new seed (up to ``max_repeats``) after each challenger it beats, so
  that it is not a one-seed config while others have more (SMAC: "the incumbent runs once more
  whenever the queue is empty").
- A repeat that ends without a value (pruned by ASHA, failed) counts in no mean; a challenger
  whose latest repeat ends so is dropped (ASHA stopped it below its rung's best).
- Repeats of one race run at once when Tune asks for several trials: the challenger's next seed
  and the opponent's paired seed. A challenger's seeds run one after another, so a losing one
  is dropped before it spends more.

``repeats=N`` runs every config N times (Ray's ``Repeater``, with a mean kept per config rather
than per trial); the N repeats of a config are offered at once, so free slots run them in
parallel. ``repeats=1`` is a one-seed search.

The incumbent (``Race.incumbent``) is the config with the best mean among the configs with the
most completed seeds, never the best single run; ``best`` ranks configs by the same rule.

The driver calls ``next_repeat`` whenever Tune asks for a trial: a :class:`Repeat` is run as a new
trial with the config's params and ``paired_seed(search_seed, repeat)``; ``None`` means "ask the
sampler for a new config", which is then registered with ``started(config_id, params,
race.next_index(config_id))``. Each run's end is ``finished``. ``state_dict`` is JSON, for resume.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

REPEATS_AUTO = "auto"
CONFIG_ID_KEY = "config_id"
"""A trial config's key (and Optuna user attribute) for its config's identity (config/identity.py)."""
REPEAT_KEY = "repeat"
"""A trial config's key (and Optuna user attribute) for which of its config's runs it is (0-based)."""
SEED_KEY = "seed"
"""A trial config's key (the RunConfig field) and Optuna user attribute: the training seed."""
RACE_KEYS = (CONFIG_ID_KEY, REPEAT_KEY)
"""The trial config keys that are not RunConfig fields."""
DEFAULT_MAX_REPEATS = 3
"""--max-repeats default. Provisional, from SMAC's HPO facade (``max_config_calls=3``) and the
table's noise: with 3 paired seeds the standard error of a mean is 1/sqrt(3) of one seed's
spread; the tabular replay (bench/search_quality.py) measures 3 against 4."""

# The states of a config in a race.
NEW = "new"  # started, its race not decided yet
RACING = "racing"  # survived its latest paired comparison: gets its next seed
SETTLED = "settled"  # the first incumbent, or a challenger that survived max_repeats: an opponent
DROPPED = "dropped"  # lost a paired comparison (or its latest repeat has no value)
_STATES = (NEW, RACING, SETTLED, DROPPED)
STATE_VERSION = 1


def paired_seed(search_seed: int, repeat: int) -> int:
    """The training seed of every config's ``repeat``-th run (0-based) in the search seeded
    ``search_seed``: the same for all configs, 32-bit, reproducible across processes and versions
    (a SHA-256 of both numbers, never Python's salted ``hash``)."""
    if repeat < 0:
        raise ValueError(f"repeat must be >= 0 (got {repeat})")
    digest = hashlib.sha256(f"metaxl-tune paired seed {int(search_seed)} {int(repeat)}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def check_repeats(repeats: str | int, max_repeats: int) -> str | int:
    """``repeats`` as the race takes it ("auto" or an int >= 1), or ValueError naming the flag."""
    if isinstance(max_repeats, bool) or not isinstance(max_repeats, int) or max_repeats < 1:
        raise ValueError(f"--max-repeats must be an integer >= 1 (got {max_repeats!r})")
    given = repeats
    if isinstance(repeats, str):
        text = repeats.strip().lower()
        if text == REPEATS_AUTO:
            return REPEATS_AUTO
        repeats = int(text) if text.isdigit() else None
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"--repeats must be auto or an integer >= 1 (got {given!r})")
    return repeats


def summarize(runs: Iterable[tuple[str, float | None]]) -> dict[str, tuple[float, int]]:
    """config_id -> (mean, completed seeds) of ended runs ``(config_id, value or None)``, in the
    order configs first appear; a run without a value (pruned, failed) counts in no mean."""
    values: dict[str, list[float]] = {}
    for identity, value in runs:
        values.setdefault(identity, [])
        if value is not None and math.isfinite(value):
            values[identity].append(float(value))
    return {identity: (sum(done) / len(done), len(done)) for identity, done in values.items() if done}


def seed_cap(repeats: str | int, max_repeats: int) -> int:
    """The most seeds a config is meant to get: ``max_repeats`` when racing, N with ``--repeats N``.
    A config the sampler proposes again gets its next seed even past it (new evidence for its
    mean), but counts no more than this many toward "the most seeds": otherwise the config the
    sampler keeps proposing would be the incumbent by its count alone."""
    return max_repeats if repeats == REPEATS_AUTO else int(repeats)


def incumbent_of(summary: dict[str, tuple[float, int]], mode: str = "max", cap: int | None = None) -> str | None:
    """The config with the best mean among those with the most completed seeds (counted up to
    ``cap``, see ``seed_cap``; the earlier one on a tie), from ``summarize``'s table; None when it
    is empty. The rule of ``Race.incumbent``, for whoever ranks a search's configs from its records."""
    if not summary:
        return None

    def counted(count: int) -> int:
        return count if cap is None else min(count, cap)

    most = max(counted(count) for _, count in summary.values())
    best_id, best_mean = None, None
    for identity, (mean, count) in summary.items():
        if counted(count) == most and (best_mean is None or (mean > best_mean if mode == "max" else mean < best_mean)):
            best_id, best_mean = identity, mean
    return best_id


@dataclass(frozen=True)
class Repeat:
    """One run the race asks for: the config's ``repeat``-th seed."""

    config_id: str
    params: dict
    repeat: int


@dataclass
class _Config:
    params: dict
    order: int
    """When the config was first started: ties go to the earlier config."""
    values: dict[int, float | None] = field(default_factory=dict)
    """repeat -> its value; None when the run was pruned or failed."""
    running: set[int] = field(default_factory=set)
    state: str = NEW
    decided: tuple[int, str | None] | None = None
    """(ended runs, opponent) when its race was last decided: a racing config gets its next seed
    only once its latest run has been compared, and is compared again when the opponent changes."""

    def started_count(self) -> int:
        return len(self.values) + len(self.running)

    def next_index(self) -> int:
        taken = set(self.values) | self.running
        return next(index for index in range(len(taken) + 1) if index not in taken)

    def completed(self) -> dict[int, float]:
        return {repeat: value for repeat, value in self.values.items() if value is not None}

    def mean(self) -> float | None:
        done = self.completed()
        return sum(done.values()) / len(done) if done else None


class Race:
    """The racing policy of one search (see the module docstring)."""

    def __init__(self, repeats: str | int = REPEATS_AUTO, max_repeats: int = DEFAULT_MAX_REPEATS, mode: str = "max"):
        self.repeats = check_repeats(repeats, max_repeats)
        self.max_repeats = max_repeats
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be max or min (got {mode!r})")
        self.mode = mode
        self._configs: dict[str, _Config] = {}
        self._drops = 0
        """Challengers dropped so far: the opponent is owed one seed for each (up to max_repeats)."""

    # -- what the driver tells the race ---------------------------------------------------------

    def next_index(self, config_id: str) -> int:
        """The repeat a new run of ``config_id`` is (0 for a config never started): a config the
        sampler proposes again gets a new seed, never one it already ran."""
        config = self._configs.get(config_id)
        return 0 if config is None else config.next_index()

    def started(self, config_id: str, params: dict, repeat: int) -> None:
        config = self._configs.get(config_id)
        if config is None:
            config = self._configs[config_id] = _Config(params=dict(params), order=len(self._configs))
        if repeat in config.values or repeat in config.running:
            raise ValueError(f"config {config_id} repeat {repeat} was started already")
        config.running.add(repeat)
        if config.state == DROPPED:
            # The sampler proposed a dropped config again: a new seed is new evidence, and the
            # config is raced again on it (compared on the common repeats once it ends).
            config.state = NEW

    def finished(self, config_id: str, repeat: int, value: float | None) -> None:
        """The run ended: ``value`` its score, None when it was pruned or failed (no mean counts it)."""
        config = self._configs.get(config_id)
        if config is None or repeat not in config.running:
            raise ValueError(f"config {config_id} repeat {repeat} is not running")
        config.running.discard(repeat)
        if value is not None and not math.isfinite(float(value)):
            value = None
        config.values[repeat] = None if value is None else float(value)
        self._decide()

    # -- what the race asks for ------------------------------------------------------------------

    def next_repeat(self) -> Repeat | None:
        """A config to run again now, or None: ask the sampler for a new config. Pure: the same
        answer until ``started`` or ``finished`` changes the race."""
        if self.repeats == REPEATS_AUTO:
            return self._next_racing_repeat()
        for config_id, config in self._ordered():
            if config.started_count() < self.repeats:
                return Repeat(config_id, dict(config.params), config.next_index())
        return None

    def _next_racing_repeat(self) -> Repeat | None:
        opponent_id = self._opponent()
        opponent = self._configs.get(opponent_id) if opponent_id else None
        for config_id, config in self._ordered():
            if config.state != RACING or config.running or config.decided != (len(config.values), opponent_id):
                continue
            wanted = config.next_index()
            if opponent is not None and opponent_id != config_id and wanted not in opponent.values \
                    and wanted not in opponent.running and wanted < self.max_repeats:
                # The opponent's run on the same seed first, so that both run at once.
                return Repeat(opponent_id, dict(opponent.params), wanted)
            return Repeat(config_id, dict(config.params), wanted)
        if opponent is not None and opponent.started_count() < min(self.max_repeats, 1 + self._drops):
            # The opponent's top-up: one more seed per challenger it has beaten.
            return Repeat(opponent_id, dict(opponent.params), opponent.next_index())
        return None

    # -- decisions -------------------------------------------------------------------------------

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def _ordered(self) -> list[tuple[str, _Config]]:
        return sorted(self._configs.items(), key=lambda item: item[1].order)

    def _opponent(self) -> str | None:
        """The incumbent races are run against: the best mean among settled configs with the
        most completed seeds (racing challengers are not opponents of themselves)."""
        return self._best_of([(cid, c) for cid, c in self._ordered() if c.state == SETTLED])

    def _best_of(self, configs: list[tuple[str, _Config]]) -> str | None:
        return incumbent_of({cid: (c.mean(), len(c.completed())) for cid, c in configs if c.completed()}, self.mode,
                            cap=seed_cap(self.repeats, self.max_repeats))

    def _decide(self) -> None:
        """Decide every race whose runs have ended, until nothing changes (a newly settled
        config is the next challengers' opponent)."""
        if self.repeats != REPEATS_AUTO:
            for config in self._configs.values():
                if config.state == NEW and not config.running:
                    config.state = SETTLED if config.completed() else DROPPED
            return
        changed = True
        while changed:
            changed = False
            for config_id, config in self._ordered():
                if config.state in (NEW, RACING) and not config.running and config.values:
                    if self._decide_one(config_id, config):
                        changed = True

    def _decide_one(self, config_id: str, config: _Config) -> bool:
        latest = max(config.values)
        opponent_id = self._opponent()
        if config.decided == (len(config.values), opponent_id):
            return False
        if config.values[latest] is None:
            config.state = DROPPED
            self._drops += opponent_id is not None
            return True
        if opponent_id is None:
            config.state = SETTLED  # the first config with a value
            return True
        opponent = self._configs[opponent_id]
        mine = config.completed()
        theirs = opponent.completed()
        if any(repeat in opponent.running for repeat in config.values):
            return False  # the paired run is still going: decide once both ended
        config.decided = (len(config.values), opponent_id)
        common = sorted(set(mine) & set(theirs))
        if common:
            my_mean = sum(mine[r] for r in common) / len(common)
            their_mean = sum(theirs[r] for r in common) / len(common)
        else:
            # The opponent's runs on these seeds have no value (pruned): compare what each has.
            my_mean, their_mean = config.mean(), opponent.mean()
        if not self._better(my_mean, their_mean):
            config.state = DROPPED
            self._drops += 1
            return True
        if len(config.values) >= self.max_repeats:
            config.state = SETTLED
            return True
        config.state = RACING
        return True

    # -- what the race knows ---------------------------------------------------------------------

    def incumbent(self) -> str | None:
        """The config with the best mean among those with the most completed seeds (up to
        ``seed_cap``), leaving out the configs the race dropped while any other has a seed; None
        before any run completed. Never the best single run. A dropped config lost a paired
        comparison: were it counted, a challenger that lost on its second seed could still top a
        table of two-seed configs, and a dropped config the sampler keeps proposing would gather
        seeds until it was "the config with the most" (bench/search_quality.py measured both)."""
        kept = [(cid, c) for cid, c in self._ordered() if c.state != DROPPED and c.completed()]
        return self._best_of(kept or self._ordered())

    def summary(self) -> dict[str, tuple[float, int]]:
        """config_id -> (mean, completed seeds), for every config with a completed run."""
        return {cid: (c.mean(), len(c.completed())) for cid, c in self._ordered() if c.completed()}

    def state(self, config_id: str) -> str:
        """new, racing, settled or dropped."""
        return self._configs[config_id].state

    def params(self, config_id: str) -> dict:
        return dict(self._configs[config_id].params)

    def values(self, config_id: str) -> dict[int, float | None]:
        """repeat -> value (None: pruned or failed) of the config's ended runs."""
        return dict(self._configs[config_id].values)

    def running(self) -> list[tuple[str, int]]:
        return [(cid, repeat) for cid, c in self._ordered() for repeat in sorted(c.running)]

    # -- resume ------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything the race knows, as JSON-able values (for Tune's searcher checkpoint)."""
        return {
            "version": STATE_VERSION,
            "repeats": self.repeats,
            "max_repeats": self.max_repeats,
            "mode": self.mode,
            "drops": self._drops,
            "configs": [
                {"id": cid, "params": c.params, "state": c.state, "running": sorted(c.running),
                 "decided": None if c.decided is None else list(c.decided),
                 "values": [[repeat, value] for repeat, value in sorted(c.values.items())]}
                for cid, c in self._ordered()
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"race state version {state.get('version')!r}; this metaxl-tune reads {STATE_VERSION}")
        self.repeats = check_repeats(state["repeats"], int(state["max_repeats"]))
        self.max_repeats = int(state["max_repeats"])
        self.mode = state["mode"]
        self._drops = int(state["drops"])
        self._configs = {}
        for order, item in enumerate(state["configs"]):
            if item["state"] not in _STATES:
                raise ValueError(f"race state: config {item['id']}: unknown state {item['state']!r}")
            self._configs[item["id"]] = _Config(
                params=dict(item["params"]), order=order, state=item["state"], running=set(item["running"]),
                decided=None if item["decided"] is None else (int(item["decided"][0]), item["decided"][1]),
                values={int(repeat): (None if value is None else float(value)) for repeat, value in item["values"]},
            )

    def forget_running(self, config_id: str, repeat: int) -> None:
        """A run the race counted as started never ran (its trial is gone on resume): it is
        asked for again by ``next_repeat``."""
        config = self._configs.get(config_id)
        if config is not None:
            config.running.discard(repeat)
