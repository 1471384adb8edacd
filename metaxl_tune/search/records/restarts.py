"""A restarted trial in MLflow: every epoch logged once, every second spent counted.

A trial restarts after a lost worker (one of Tune's retries) or a stopped driver (``--resume``),
from its last resume checkpoint, or from epoch 1 when it had none yet. The epochs between that
checkpoint and the last one reported are trained again.

- **Redone epochs are stepped past, not overwritten.** MLflow cannot replace a metric's value at
  a step (a second value is stored beside the first, and ``dev_f1`` would read ``[1, 1, 2, ...]``),
  so a redone epoch logs nothing and the run keeps the first value of every epoch; logging goes
  on from the first epoch the run does not hold yet. Training is seeded, so a redone epoch
  repeats the first attempt's scores.
- **Cost counts the lost work.** The trainable's ``wall_seconds`` is the time behind the
  checkpoint it resumed from plus its own; the work an earlier attempt did past that checkpoint
  is lost to it. Here ``wall_seconds`` and ``device_seconds`` become the time of every attempt,
  each up to its last report (the moments between an attempt's last report and its death are
  known to no one and are left out).

What was spent so far is written with every result, redone epochs included, as the run's tags
``metaxl.spent_wall_seconds`` and ``metaxl.spent_device_seconds``: a driver started again with
``--resume`` continues the count from MLflow, not from memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SPENT_WALL_TAG = "metaxl.spent_wall_seconds"
SPENT_DEVICE_TAG = "metaxl.spent_device_seconds"
ATTEMPT_KEY = "trial_started_at"
"""Result key naming the attempt (its start time); a new value is a restart."""
ATTEMPT_SECONDS = "attempt_seconds"
"""Result key: the attempt's own seconds so far (trainable.py)."""
SPENT_KEYS = ("epoch", "wall_seconds", "device_seconds", ATTEMPT_KEY, ATTEMPT_SECONDS)
"""The keys of a result that ``log_result`` reads."""


@dataclass
class TrialLedger:
    """One trial's epochs in MLflow and the seconds it has spent, over all its attempts."""

    logged_through: int = 0
    """The last epoch MLflow holds for the trial."""
    spent_before: float = 0.0
    """Wall seconds of the earlier attempts, each up to its last report."""
    device_spent_before: float = 0.0
    attempt: Any = None
    attempt_wall: float = 0.0
    """The current attempt's own seconds at its last report."""
    attempt_device: float = 0.0

    @classmethod
    def from_run(cls, client, run_id: str) -> "TrialLedger":
        """What the trial's run holds: its last epoch, and what was spent up to the last result
        the run heard of (the tags; a run from before them: its latest wall and device seconds)."""
        run = client.get_run(run_id)
        steps = [metric.step for metric in client.get_metric_history(run_id, "wall_seconds")]
        metrics, tags = run.data.metrics, run.data.tags
        return cls(
            logged_through=max(steps, default=0),
            spent_before=float(tags.get(SPENT_WALL_TAG, metrics.get("wall_seconds", 0.0))),
            device_spent_before=float(tags.get(SPENT_DEVICE_TAG, metrics.get("device_seconds", 0.0))),
        )

    @property
    def spent(self) -> tuple[float, float]:
        """(wall, device) seconds spent so far, over all attempts."""
        return self.spent_before + self.attempt_wall, self.device_spent_before + self.attempt_device

    def account(self, result: dict[str, Any]) -> dict[str, float]:
        """Count one result's time; the wall and device seconds to log for it (all attempts')."""
        if ATTEMPT_SECONDS not in result or not result.get("wall_seconds"):
            return {}  # a result from before attempt_seconds existed: its own values stand
        if result.get(ATTEMPT_KEY) != self.attempt:
            self.spent_before, self.device_spent_before = self.spent
            self.attempt, self.attempt_wall, self.attempt_device = result.get(ATTEMPT_KEY), 0.0, 0.0
        held = float(result.get("device_seconds", 0.0)) / float(result["wall_seconds"])
        self.attempt_wall = float(result[ATTEMPT_SECONDS])
        self.attempt_device = self.attempt_wall * held
        wall, device = self.spent
        return {"wall_seconds": wall, "device_seconds": device}

    def holds(self, epoch: int) -> bool:
        """Whether MLflow holds ``epoch`` already: True for a redone epoch."""
        return epoch <= self.logged_through

    def tags(self) -> dict[str, str]:
        wall, device = self.spent
        # Full precision: the tags must read back as the metrics logged with them (a finished
        # trial's tag and its last device_seconds are one number; tracking sums the tags).
        return {SPENT_WALL_TAG: repr(float(wall)), SPENT_DEVICE_TAG: repr(float(device))}


def log_result(tracker, run_id: str, ledger: TrialLedger, result: dict[str, Any], metrics: dict[str, float],
               tags: dict[str, str]) -> bool:
    """Log one epoch's result on the trial's run: its metrics at the epoch's step the first time
    the epoch is reached, only the time spent when it is redone. True if the metrics were logged."""
    # Repeatable: the tracking queue calls it again after a failed write (account() of the same
    # result changes nothing twice, and the epoch counts as logged only once it is).
    spent = ledger.account(result)
    tags = {**tags, **(ledger.tags() if spent else {})}
    epoch = int(result["epoch"])
    if ledger.holds(epoch):
        if tags:
            tracker.set_tags(run_id, tags)
        return False
    tracker.log_metrics(run_id, {**metrics, **spent}, step=epoch, tags=tags)
    ledger.logged_through = epoch
    return True
