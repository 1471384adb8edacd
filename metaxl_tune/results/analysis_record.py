"""The representation analysis of a search trial's MLflow run: its config and best-dev weights
fetched from the run's artifacts, analysed (analysis.py), and the distances and the PCA plot
logged back to the run (``metaxl-tune analyze``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from metaxl_tune.config import load_config
from metaxl_tune.results.analysis import ARTIFACT_DIR, JSON_FILE, AnalysisResult, require_rtn, analyze
from metaxl_tune.train.checkpoint import BEST_FILE, STATE_FILE, CheckpointError


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return MlflowClient(tracking_uri=tracking_uri)


def analyze_mlflow_run(tracking_uri: str, run_id: str, *, output_dir: Path, **options: Any) -> AnalysisResult:
    """Analyze the MLflow run ``run_id`` (its ``config.yaml`` and ``best/best.safetensors``) and
    log the distances as metrics and ``analysis/pca.png`` + ``analysis/analysis.json`` to it.
    ``options`` are ``analyze``'s (cache_dir, limit, device, log), with its defaults."""
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    from metaxl_tune.common.secrets import mask_uri
    from metaxl_tune.results.tracking import BEST_ARTIFACT_DIR, check_tracking_uri

    check_tracking_uri(tracking_uri)
    if tracking_uri.startswith("sqlite:///"):
        # MlflowClient would silently create an empty store here, then not find the run.
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        if not database.is_file():
            raise ValueError(f"no MLflow store at {database}; pass the search's --tracking-uri (or set MLFLOW_TRACKING_URI)")
    client = _client(tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise ValueError(f"no MLflow run {run_id} in {mask_uri(tracking_uri)}; check --run and --tracking-uri") from None

    with tempfile.TemporaryDirectory(prefix="metaxl-analyze-") as scratch:
        scratch = Path(scratch)
        try:
            config_path = client.download_artifacts(run_id, "config.yaml", str(scratch))
        except (MlflowException, OSError):
            raise ValueError(
                f"MLflow run {run_id} has no config.yaml artifact; analyze reads search trial runs"
            ) from None
        config = load_config(config_path)
        require_rtn(config, run_id)
        weights, artifact = None, None
        for artifact in (f"{BEST_ARTIFACT_DIR}/{BEST_FILE}", f"checkpoint/{STATE_FILE}"):  # older runs: checkpoint/
            try:
                weights = Path(client.download_artifacts(run_id, artifact, str(scratch)))
                break
            except (MlflowException, OSError):
                continue
        if weights is None or not weights.is_file():
            raise ValueError(
                f"MLflow run {run_id} has no {BEST_ARTIFACT_DIR}/{BEST_FILE} artifact "
                "(a failed or unfinished trial, or one run with --no-model-artifacts?)"
            )
        try:
            result = analyze(config, weights, output_dir=output_dir, run_name=run_id, **options)
        except CheckpointError as error:
            raise CheckpointError(
                f"{artifact} of MLflow run {run_id}", error.problem,
                "upload it again (metaxl-tune sync, while the search's storage holds the trial) "
                "or train the run's config.yaml again",
            ) from None

    stamp = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(key, value, stamp, 0) for key, value in result.metrics().items()])
    client.log_artifact(run_id, str(result.plot), ARTIFACT_DIR)
    client.log_artifact(run_id, str(Path(output_dir) / JSON_FILE), ARTIFACT_DIR)
    return result
