"""The tabular benchmark's curves (bench/data/search_quality_curves.png): regret vs cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search_quality_racing import SEARCH_VIEW, SEEDED_STRATEGIES


def plot(summary: dict[str, dict[str, Any]], seeded: dict[str, dict[str, Any]], path: Path,
         targets: list[str]) -> None:
    """Regret vs cost, two panels on one scale: the old one-seed-per-trial strategies (incumbent =
    best trial, to the grid's cost) and, beside them, the seed-aware ones as ``search`` runs them
    (incumbent = the race's, to twice the cost); all against the truth of every seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (old, new) = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    panels = [(old, [(name.replace("_", "+").replace("warm+", "warm "), row["regret_at_cost"])
                     for name, row in summary.items()], "one seed per trial, incumbent = best trial"),
              (new, [(seeded_label(label, row), row["regret_at_cost"])
                     for label, row in seeded.items() if row["view"] == SEARCH_VIEW and "@" not in label],
               "seed-aware search, incumbent = the race's")]
    for axes, curves, title in panels:
        for label, regret_at_cost in curves:
            points = [float(p) for p in regret_at_cost]
            q1, median, q3 = zip(*regret_at_cost.values())
            line, = axes.plot(points, median, label=label)
            axes.fill_between(points, q1, q3, color=line.get_color(), alpha=0.1)
        axes.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        axes.set_xlabel("cost spent (fraction of training every grid config once)")
        axes.set_title(title, fontsize=10)
        if curves:
            axes.legend(fontsize=8)
    new.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    old.set_ylabel("regret (test F1 points)")
    figure.suptitle(f"Regret vs cost: median and quartiles over replays ({' and '.join(targets)})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


SEEDED_LABELS = {"single_seed": "TPE+ASHA, repeats 1", "repeat3": "TPE+ASHA, repeats 3",
                 "racing": "TPE+ASHA, racing", "random_racing": "random+FIFO, racing"}


def seeded_label(label: str, row: dict[str, Any]) -> str:
    """The plot's name of a seed-aware strategy, with the cap the table's seeds put on it."""
    name = SEEDED_LABELS.get(label, label)
    asked = SEEDED_STRATEGIES[row["strategy"]][2]
    if row["repeats"] == "auto":
        return f"{name} (max {row['max_repeats']} seeds)"
    return name if row["repeats"] == asked else f"{name} (run as {row['repeats']}: the table's seeds)"
