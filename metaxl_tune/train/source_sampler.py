"""Which source stream each training step draws its batch from, when there are several languages.

- ``mixed`` (the default, the reference's): ``mtrain.py: merge_data`` concatenates every source
  language's sample into one set and a single shuffled DataLoader passes over it once an epoch, so
  batches mix languages. The trainer builds that merged stream; here it is one stream whose
  ceil(summed sizes / batch size) batches are each used once an epoch.

The other strategies keep one stream per language and give each step one language; they are our
extensions (the reference loops over per-language loaders only for ``metawt_multi``, a method
metaxl-tune does not have). An epoch has as many steps as the languages have batches together:

- ``sequential``: every batch of the first language, then every batch of the next one; target
  batches cycle throughout. Each language's batches are used exactly once an epoch.
- ``round-robin``: one step per language in turn, skipping languages whose batches are used up,
  so again each batch exactly once an epoch.
- ``uniform``: each step draws a language uniformly with a generator seeded by (seed, epoch).
- ``bandit``: EXP3 (Auer et al. 2002), in the spirit of MetaXLR's language sampler: the chosen
  language is rewarded by how much the step lowered the meta loss (the target loss after the
  look-ahead; methods without a meta step use the training loss), relative to the previous
  step's: reward = clip(0.5 + (previous - current) / (2 * previous), 0, 1). Its weights carry
  across epochs and are part of the epoch checkpoint, so a resumed run draws the same languages.

Pure Python: no torch state is touched, so the batch order (torch generators) is unchanged.
"""

from __future__ import annotations

import math
import random
from typing import Any, Iterator, Sequence

STRATEGIES: tuple[str, ...] = ("mixed", "sequential", "round-robin", "uniform", "bandit")
MIXED = "mixed"
"""The strategy whose one stream is every source language merged (mtrain.py: merge_data)."""
EXP3_GAMMA = 0.1
"""EXP3's exploration rate: every language keeps at least gamma / K of the probability."""


def loss_decrease_reward(previous: float, current: float) -> float:
    """Relative decrease of the loss mapped to [0, 1]: 0.5 = unchanged, 1 = fell to zero."""
    if not (math.isfinite(previous) and math.isfinite(current)):
        return 0.0
    return min(1.0, max(0.0, 0.5 + (previous - current) / (2 * max(previous, 1e-12))))


class SourceSchedule:
    """The stream of every step of an epoch, and (for ``bandit``) the sampler's state.

    ``batches`` holds each stream's batch count: one per source language, or for ``mixed`` the
    one merged stream's.
    """

    def __init__(self, strategy: str, batches: Sequence[int], *, seed: int, gamma: float = EXP3_GAMMA):
        if strategy not in STRATEGIES:
            raise ValueError(f"source_strategy: must be one of {', '.join(STRATEGIES)} (got {strategy!r})")
        if not batches or min(batches) < 1:
            raise ValueError(f"every source language needs at least one batch (got {list(batches)})")
        if strategy == MIXED and len(batches) != 1:
            raise ValueError(f"source_strategy mixed schedules one merged stream (got {len(batches)} streams)")
        self.strategy = strategy
        self.batches = list(batches)
        self.seed = seed
        self.gamma = gamma
        self.log_weights = [0.0] * len(self.batches)
        self.previous_loss: float | None = None

    @property
    def steps_per_epoch(self) -> int:
        return sum(self.batches)

    def languages(self, epoch: int) -> Iterator[int]:
        """Stream index per step. Lazy: a bandit's next draw sees every ``observe`` before it."""
        count = len(self.batches)
        if self.strategy in (MIXED, "sequential"):
            for language, batches in enumerate(self.batches):
                yield from [language] * batches
            return
        if self.strategy == "round-robin":
            left = list(self.batches)
            while any(left):
                for language in range(count):
                    if left[language]:
                        left[language] -= 1
                        yield language
            return
        # A string seed is hashed deterministically (not by PYTHONHASHSEED).
        rng = random.Random(f"{self.seed}:{epoch}:{self.strategy}")
        for _ in range(self.steps_per_epoch):
            if self.strategy == "uniform":
                yield rng.randrange(count)
                continue
            draw, cumulative = rng.random(), 0.0
            probabilities = self.probabilities()
            for language, probability in enumerate(probabilities):
                cumulative += probability
                if draw < cumulative:
                    break
            yield language

    def probabilities(self) -> list[float]:
        """The sampling distribution: EXP3's mixture of the weights and the uniform one."""
        count = len(self.batches)
        if self.strategy != "bandit":
            return [1.0 / count] * count
        top = max(self.log_weights)
        weights = [math.exp(value - top) for value in self.log_weights]
        total = sum(weights)
        return [(1 - self.gamma) * weight / total + self.gamma / count for weight in weights]

    def observe(self, language: int, loss: float) -> None:
        """The loss of a step on ``language``; only ``bandit`` learns from it."""
        if self.strategy != "bandit":
            return
        if self.previous_loss is not None:
            self.update(language, loss_decrease_reward(self.previous_loss, loss))
        self.previous_loss = loss if math.isfinite(loss) else self.previous_loss

    def update(self, language: int, reward: float) -> None:
        """EXP3: the importance-weighted reward r / p raises the chosen language's log-weight."""
        probability = self.probabilities()[language]
        self.log_weights[language] += self.gamma * (reward / probability) / len(self.batches)

    # ---- checkpointing -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "log_weights": list(self.log_weights), "previous_loss": self.previous_loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["strategy"] != self.strategy or len(state["log_weights"]) != len(self.batches):
            raise ValueError(
                f"checkpoint holds a {state['strategy']} sampler over {len(state['log_weights'])} source languages; "
                f"this run has {self.strategy} over {len(self.batches)}"
            )
        self.log_weights = [float(value) for value in state["log_weights"]]
        self.previous_loss = state["previous_loss"]
