"""Representation analysis (paper section 4.5): does the RTN move source representations
towards the target's?

For a trained run, the final-layer encoder states of a target sample and of a source sample
(with and without the RTN) are compared by their Hausdorff distance under the cosine distance

    d(x, y) = 1 - cos(x, y)                                         (paper Eq. 5)
    h(A, B) = max_{a in A} min_{b in B} d(a, b)                     (directed)
    H(A, B) = max(h(A, B), h(B, A))                                 (paper Eq. 6)

and drawn as a 2-component PCA scatter. Representations are token-level for NER (the first
sub-token of each word, where the labels are not -100) and sentence-level for SA (``<s>``).

Knows nothing about Ray: ``analyze`` works on a config and the run's best-dev weights
(``best.safetensors``, the epoch whose dev F1 the run reports); ``analyze_mlflow_run``
(analysis_record.py) fetches both from a search trial's MLflow run and logs the results back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from metaxl_tune.train.bilevel import IGNORE_INDEX
from metaxl_tune.train.checkpoint import BEST_FILE, STATE_FILE, load_best, load_checkpoint
from metaxl_tune.config import RunConfig
from metaxl_tune.model.tail import EncoderSplit

BATCH_SIZE = 64
# Entries of one similarity block in ``directed_hausdorff`` (16M float64 = 128 MB).
_BLOCK_ELEMENTS = 1 << 24
PLOT_FILE = "pca.png"
JSON_FILE = "analysis.json"
ARTIFACT_DIR = "analysis"


# ---- distances ------------------------------------------------------------------------------


def _points(x: Any, name: str) -> torch.Tensor:
    points = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"{name}: needs a non-empty (n, d) set of points, got shape {tuple(points.shape)}")
    return points.detach().to(torch.float64)


def directed_hausdorff(a: Any, b: Any) -> float:
    """h(A, B) = max over a in A of the cosine distance to its nearest b in B (0 when A lies in B)."""
    a, b = _points(a, "a"), _points(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"point sets differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1).to(a.device)
    rows = max(1, _BLOCK_ELEMENTS // b.shape[0])
    worst = -1.0  # largest nearest-neighbour distance seen so far
    for start in range(0, a.shape[0], rows):
        nearest = 1.0 - (a[start : start + rows] @ b.T).amax(dim=1)
        worst = max(worst, float(nearest.max()))
    return max(0.0, worst)  # rounding can leave 1 - cos(x, x) a hair below zero


def hausdorff(a: Any, b: Any) -> float:
    """Symmetric Hausdorff distance with cosine inner distance: max(h(A, B), h(B, A))."""
    return max(directed_hausdorff(a, b), directed_hausdorff(b, a))


# ---- representations ------------------------------------------------------------------------


def _model_parts(run_or_parts: Any) -> tuple[torch.nn.Module, Any, str | None]:
    if isinstance(run_or_parts, (tuple, list)):
        model, rtn = run_or_parts
        return model, rtn, None
    config = getattr(run_or_parts, "config", None)
    return run_or_parts.model, run_or_parts.rtn, getattr(config, "task", None)


def collect_representations(
    run_or_parts: Any,
    batcher,
    *,
    with_rtn: bool,
    task: str | None = None,
    limit: int | None = None,
    placement: int | None = None,
) -> torch.Tensor:
    """Final-layer encoder states of ``batcher``'s examples, in order, as a CPU (n, d) tensor.

    ``run_or_parts`` is a ``Run`` or a ``(model, rtn_bank)`` pair. NER gives one vector per
    word (positions whose label is not -100), SA one per sentence (the first token, ``<s>``).
    ``with_rtn`` runs the forwards inside ``rtn.applied()``, as source batches are in training
    with one placement or with ``rtn_combine`` stack. ``placement`` instead runs the forward of
    one placement of a mixture (``rtn_combine`` mixture, model/tail.py): the encoder up to that
    placement, its RTN alone, then the layers above it. At most ``limit`` vectors are returned:
    the first ones, so the result is deterministic.
    """
    model, rtn, run_task = _model_parts(run_or_parts)
    task = task or run_task
    if task not in ("ner", "sa"):
        raise ValueError(f"task: must be ner or sa (got {task!r})")
    if with_rtn and rtn is None:
        raise ValueError("with_rtn=True needs a run with an RTN (method metaxl or jt-rtn)")
    if limit is not None and limit < 1:
        raise ValueError(f"limit: must be a positive number of vectors (got {limit})")
    if placement is not None and (rtn is None or placement not in rtn.layers):
        raise ValueError(f"placement: {placement} is not one of the RTN placements")
    device = next(model.parameters()).device
    split = EncoderSplit(model) if placement is not None else None
    was_training = model.training
    model.eval()
    collected, count = [], 0
    try:
        with torch.inference_mode():
            for start in range(0, len(batcher), BATCH_SIZE):
                if limit is not None and count >= limit:
                    break
                batch = batcher.batch(range(start, min(start + BATCH_SIZE, len(batcher))), device)
                inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
                if split is not None:
                    states = split.states(batch, [placement])
                    hidden = split.tail_states(rtn.rtn(placement)(states[placement]), placement, batch)
                elif with_rtn:
                    with rtn.applied():
                        hidden = model.base_model(**inputs).last_hidden_state
                else:
                    hidden = model.base_model(**inputs).last_hidden_state
                vectors = hidden[batch["labels"] != IGNORE_INDEX] if task == "ner" else hidden[:, 0]
                if limit is not None:
                    vectors = vectors[: limit - count]
                collected.append(vectors.float().cpu())
                count += vectors.shape[0]
    finally:
        model.train(was_training)
    if not collected:
        return torch.empty(0, model.config.hidden_size)
    return torch.cat(collected)


# ---- one run ------------------------------------------------------------------------------


@dataclass
class AnalysisResult:
    hausdorff_source_target: float
    """H(source, target) without the RTN."""
    hausdorff_rtn_source_target: float
    """H(source + RTN, target): smaller means the RTN brought the source closer to the target."""
    directed_source_to_target: float
    directed_target_to_source: float
    directed_rtn_source_to_target: float
    directed_target_to_rtn_source: float
    n_target: int
    n_source: int
    task: str
    target: str
    source_language: str
    method: str
    plot: Path
    mixture_weights: dict[str, float] = field(default_factory=dict)
    """The checkpoint's learned RTN mixture weights (rtn_combine mixture), e.g. {"rtn_mix_12": 1.0}."""
    rtn_placement: int | None = None
    """With a mixture of several placements, the placement whose forward the "with RTN" figures
    use: the one of the highest learned weight. None: every RTN applied, as trained."""
    rtn_by_placement: dict[str, list[float]] = field(default_factory=dict)
    """Per placement of a mixture: [Hausdorff, directed source->target, directed target->source]
    of the source states through that placement's RTN and the layers above it."""

    def metrics(self) -> dict[str, float]:
        """The distances under their MLflow metric names."""
        return {
            "hausdorff_source_target": self.hausdorff_source_target,
            "hausdorff_rtn_source_target": self.hausdorff_rtn_source_target,
            "hausdorff_directed_source_to_target": self.directed_source_to_target,
            "hausdorff_directed_target_to_source": self.directed_target_to_source,
            "hausdorff_directed_rtn_source_to_target": self.directed_rtn_source_to_target,
            "hausdorff_directed_target_to_rtn_source": self.directed_target_to_rtn_source,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "plot": str(self.plot)}


def require_rtn(config: RunConfig, name: str) -> None:
    """Only a run with an RTN has source representations with and without it to compare."""
    if not config.uses_rtn:
        raise ValueError(
            f"analyze needs a run trained with an RTN (method metaxl or jt-rtn); run {name} used {config.method}"
        )


def weights_file(path: Path) -> Path:
    """The weights to analyse: a ``best.safetensors`` file, or a folder holding one (a run
    folder's ``best/``, a checkpoint folder), else a folder's resume ``state.pt``."""
    path = Path(path)
    if path.is_file():
        return path
    for candidate in (path / BEST_FILE, path / "best" / BEST_FILE, path / STATE_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no best-dev weights ({BEST_FILE}) or checkpoint ({STATE_FILE}) in {path}")


def load_weights(path: Path) -> tuple[dict, dict, int | None]:
    """(theta, phi, epoch) from ``weights_file(path)``, checksums verified."""
    path = weights_file(path)
    if path.name == STATE_FILE:
        state = load_checkpoint(path.parent)
        return state["theta"], state["phi"], state.get("epoch")
    theta, phi, metadata = load_best(path)
    return theta, phi, metadata.get("epoch")


def analyze(
    config: RunConfig,
    weights: Path,
    *,
    cache_dir: Path | None = None,
    output_dir: Path,
    limit: int = 2000,
    device: str | None = None,
    run_name: str | None = None,
    log: Callable[[str], None] | None = None,
) -> AnalysisResult:
    """Rebuild the run of ``config``, load theta and phi from ``weights`` (see ``weights_file``),
    compare the target sample's representations with the source sample's without and with the
    RTN, and draw ``output_dir/pca.png``. ``device`` overrides the config's device (e.g. a trial
    trained on cuda, analysed on a laptop)."""
    from metaxl_tune.train.trainer import Run

    require_rtn(config, run_name or str(weights))
    if limit < 1:
        raise ValueError(f"--limit: must be a positive number of vectors (got {limit})")
    theta, phi, _ = load_weights(weights)  # checked before the (expensive) run is built
    if device is not None and device != config.device:
        config = config.replace(device=device)

    output_dir = Path(output_dir)
    run = Run(config, output_dir, cache_dir=cache_dir, progress=False, save_model=False, log=log)
    run.model.load_state_dict(theta)
    run.rtn.load_state_dict(phi)

    collect = lambda batcher, with_rtn: collect_representations(  # noqa: E731
        run, batcher, with_rtn=with_rtn, task=config.task, limit=limit
    )
    target = collect(run.data.target_train, False)
    source = collect(run.data.source_train, False)
    by_placement, headline = {}, None
    if config.rtn_combine == "mixture" and len(run.rtn.layers) > 1:
        # Trained as a mixture, the source goes through one placement's RTN at a time
        # (bilevel.mixture_loss): each placement's states, and the most weighted one as headline.
        weights = run.rtn.mixture_weights(0).tolist()
        headline = run.rtn.layers[max(range(len(weights)), key=weights.__getitem__)]
        by_placement = {
            layer: collect_representations(run, run.data.source_train, with_rtn=True, task=config.task,
                                           limit=limit, placement=layer)
            for layer in run.rtn.layers
        }
        rtn_source = by_placement[headline]
    else:
        rtn_source = collect(run.data.source_train, True)

    result = AnalysisResult(
        hausdorff_source_target=hausdorff(source, target),
        hausdorff_rtn_source_target=hausdorff(rtn_source, target),
        directed_source_to_target=directed_hausdorff(source, target),
        directed_target_to_source=directed_hausdorff(target, source),
        directed_rtn_source_to_target=directed_hausdorff(rtn_source, target),
        directed_target_to_rtn_source=directed_hausdorff(target, rtn_source),
        n_target=len(target),
        n_source=len(source),
        task=config.task,
        target=config.target,
        source_language=run.data.source_language,
        method=config.method,
        plot=output_dir / PLOT_FILE,
        mixture_weights=run.rtn.mixture_report() if config.rtn_combine == "mixture" else {},
        rtn_placement=headline,
        rtn_by_placement={
            str(layer): [hausdorff(states, target), directed_hausdorff(states, target), directed_hausdorff(target, states)]
            for layer, states in by_placement.items()
        },
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    plot_pca(target, source, rtn_source, result)
    (output_dir / JSON_FILE).write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return result


def plot_pca(target: torch.Tensor, source: torch.Tensor, rtn_source: torch.Tensor, result: AnalysisResult) -> Path:
    """Scatter of the three sets on the first two principal components of their union."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA

    points = torch.cat([target, source, rtn_source]).numpy()
    projected = PCA(n_components=2).fit_transform(points)
    bounds = np.cumsum([0, len(target), len(source), len(rtn_source)])
    figure = Figure(figsize=(7, 6))
    FigureCanvasAgg(figure)  # no pyplot: no global state, safe off the main thread
    axes = figure.add_subplot()
    sets = [
        (f"target ({result.target})", "tab:red"),
        (f"source ({result.source_language})", "tab:blue"),
        (f"source ({result.source_language}) + RTN", "tab:green"),
    ]
    for (label, colour), start, stop in zip(sets, bounds[:-1], bounds[1:]):
        axes.scatter(projected[start:stop, 0], projected[start:stop, 1], s=6, alpha=0.5, c=colour, label=label)
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    axes.legend(markerscale=3)
    unit = "tokens" if result.task == "ner" else "sentences"
    axes.set_title(
        f"{result.task} {result.source_language}->{result.target} ({result.method}, {len(target)}/{len(source)} {unit})\n"
        f"Hausdorff(source, target) = {result.hausdorff_source_target:.4g}   "
        f"Hausdorff(source+RTN, target) = {result.hausdorff_rtn_source_target:.4g}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(result.plot, dpi=120)
    return result.plot
