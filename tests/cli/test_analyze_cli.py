"""`metaxl-tune analyze` through Typer's runner, on a trial-like run in a sqlite MLflow store."""

from __future__ import annotations

import json

import pytest
import typer
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from metaxl_tune.checkpoint import save_checkpoint
from metaxl_tune.cli.analyze import analyze
from metaxl_tune.config import RunConfig
from metaxl_tune.trainer import Run

runner = CliRunner()
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def root() -> None:
    """A stand-in for the metaxl-tune app, with analyze as its one command."""


app.command(help=analyze.__doc__)(analyze)


def config(**changes) -> RunConfig:
    values = dict(model="tiny", data="synthetic", task="ner", target="tk", source="related", method="metaxl",
                  epochs=1, rtn_bottleneck=8, rtn_layers=["last"], source_size=64, batch_size=16, max_length=48,
                  device="cpu")
    return RunConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (creating its schema takes seconds); each test adds its own run."""
    directory = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("metaxl-tune", artifact_location=(directory / "mlartifacts").as_uri())
    return uri, client, experiment


def trial_run(client, experiment, run_config: RunConfig, checkpoint=None) -> str:
    """A run shaped like a search trial's: config.yaml and (when given) checkpoint/state.pt."""
    run_id = client.create_run(experiment, run_name="search/trial_0").info.run_id
    client.log_text(run_id, run_config.to_yaml(), "config.yaml")
    if checkpoint is not None:
        client.log_artifacts(run_id, str(checkpoint), "checkpoint")
    return run_id


def test_analyze_logs_metrics_and_plot_to_the_run(tmp_path, store, shared_cache):
    uri, client, experiment = store
    # The plumbing is under test here, not training: an untrained run's weights will do.
    run_config = config()
    built = Run(run_config, tmp_path / "run", cache_dir=shared_cache, progress=False, save_model=False)
    save_checkpoint(tmp_path / "checkpoint", {"theta": built.model.state_dict(), "phi": built.rtn.state_dict()})
    run_id = trial_run(client, experiment, run_config, tmp_path / "checkpoint")

    output = tmp_path / "analysis"
    result = runner.invoke(app, ["analyze", "--run", run_id, "--tracking-uri", uri, "--limit", "100",
                                 "--output", str(output), "--cache-dir", str(shared_cache)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "without RTN" in result.output and "with RTN" in result.output
    assert f"PCA plot: {output / 'pca.png'}" in result.output
    metrics = client.get_run(run_id).data.metrics
    for key in ("hausdorff_source_target", "hausdorff_rtn_source_target",
                "hausdorff_directed_source_to_target", "hausdorff_directed_target_to_rtn_source"):
        assert 0 <= metrics[key] <= 2
    assert f"{metrics['hausdorff_source_target']:.4g}" in result.output
    logged = {item.path for item in client.list_artifacts(run_id, "analysis")}
    assert logged == {"analysis/pca.png", "analysis/analysis.json"}
    saved = json.loads((output / "analysis.json").read_text())
    assert saved["n_target"] == saved["n_source"] == 100


def test_unknown_run_id_is_one_line(store):
    uri, _, _ = store
    result = runner.invoke(app, ["analyze", "--run", "0" * 32, "--tracking-uri", uri])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: no MLflow run {'0' * 32} in {uri}; check --run and --tracking-uri"]


def test_run_without_rtn_is_refused(store):
    uri, client, experiment = store
    run_id = trial_run(client, experiment, config(method="jt"))
    result = runner.invoke(app, ["analyze", "--run", run_id, "--tracking-uri", uri])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: analyze needs a run trained with an RTN (method metaxl or jt-rtn); run {run_id} used jt"
    )


def test_run_without_checkpoint_is_refused(store):
    uri, client, experiment = store
    run_id = trial_run(client, experiment, config())
    result = runner.invoke(app, ["analyze", "--run", run_id, "--tracking-uri", uri])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: MLflow run {run_id} has no checkpoint/state.pt artifact (a failed or unfinished trial?)"
    )


def test_missing_sqlite_store_is_not_created(tmp_path):
    database = tmp_path / "nowhere" / "mlflow.db"
    result = runner.invoke(app, ["analyze", "--run", "abc", "--tracking-uri", f"sqlite:///{database}"])
    assert result.exit_code == 2 and result.output.startswith(f"error: no MLflow store at {database}")
    assert not database.exists()
