"""The search's plots: Optuna's optimization history, parameter importances and parallel
coordinates, drawn as PNGs beside the search's state and uploaded to its parent run (by the
driver when a search is over, by ``sync`` for one whose driver could not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from metaxl_tune.search.records.artifacts import ArtifactUploads, files_size

PLOTS_ARTIFACT_DIR = "plots"
"""Where a search's plots go in its parent run's artifacts."""


def upload_plots(tracker: Any, parent_id: str, study: Any, directory: Path,
                 uploads: ArtifactUploads, missing: Callable[[Path], bool] = lambda path: True) -> int:
    """Draw the search's plots into ``directory`` and upload those ``missing`` from its parent run;
    how many were uploaded (0 also when the store did not take them: they stay in ``directory``)."""
    written = [path for path in draw_plots(study, directory) if missing(path)]
    if written and uploads.upload("the search's plots", files_size(written),
                                  lambda: tracker.log_files(parent_id, written, PLOTS_ARTIFACT_DIR)):
        return len(written)
    return 0


def draw_plots(study: Any, directory: Path) -> list[Path]:
    """Optuna's optimization history, parameter importances and parallel coordinates as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    directory.mkdir(parents=True, exist_ok=True)
    plots = {
        "optimization_history": optuna_plots.plot_optimization_history,
        "param_importances": optuna_plots.plot_param_importances,
        "parallel_coordinate": optuna_plots.plot_parallel_coordinate,
    }
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for name, plot in plots.items():
            try:
                axes = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # e.g. importances need two finished trials with varying parameters
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            path = directory / f"{name}.png"
            figure.savefig(path, dpi=110, bbox_inches="tight")
            plt.close(figure)
            written.append(path)
    return written
