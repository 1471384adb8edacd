"""`metaxl-tune analyze` through Typer's runner, on a trial-like run in a sqlite MLflow store."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cli_apps import one_command_app
from metaxl_tune.train.checkpoint import save_best, serialize_best
from metaxl_tune.cli.analyze import analyze
from metaxl_tune.config import RunConfig
from metaxl_tune.train.trainer import Run
from test_checkpoint import DAMAGE

runner = CliRunner()
app = one_command_app(analyze, help=analyze.__doc__)


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


def trial_run(client, experiment, run_config: RunConfig, weights=None) -> str:
    """A run shaped like a search trial's: config.yaml and (when given) best/best.safetensors."""
    run_id = client.create_run(experiment, run_name="search/trial_0").info.run_id
    client.log_text(run_id, run_config.to_yaml(), "config.yaml")
    if weights is not None:
        client.log_artifact(run_id, str(weights), "best")
    return run_id


@pytest.fixture(scope="module")
def weights(tmp_path_factory, shared_cache):
    """An untrained run's weights: the plumbing is under test here, not training."""
    directory = tmp_path_factory.mktemp("weights")
    built = Run(config(), directory / "run", cache_dir=shared_cache, progress=False, save_model=False)
    path = directory / "best.safetensors"
    save_best(path, serialize_best(built.model.state_dict(), built.rtn.state_dict(), {"epoch": 1}))
    return path


def test_analyze_logs_metrics_and_plot_to_the_run(tmp_path, store, shared_cache, weights):
    uri, client, experiment = store
    run_id = trial_run(client, experiment, config(), weights)

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


def test_a_mixture_run_shows_each_placement(tmp_path, store, shared_cache):
    uri, client, experiment = store
    mixture = config(rtn_layers=[0, "last"], rtn_combine="mixture")
    built = Run(mixture, tmp_path / "run", cache_dir=shared_cache, progress=False, save_model=False)
    with torch.no_grad():
        built.rtn.mix_logits.copy_(torch.tensor([[0.0, 1.0]]))  # placement 4 weighs most
    path = tmp_path / "best.safetensors"
    save_best(path, serialize_best(built.model.state_dict(), built.rtn.state_dict(), {"epoch": 1}))
    run_id = trial_run(client, experiment, mixture, path)
    result = runner.invoke(app, ["analyze", "--run", run_id, "--tracking-uri", uri, "--limit", "50",
                                 "--output", str(tmp_path / "analysis"), "--cache-dir", str(shared_cache)],
                           terminal_width=80)
    assert result.exit_code == 0, result.output
    assert "with RTN at 4 (top)" in result.output and "with RTN at 0" in result.output, result.output
    assert "RTN mixture weights (placement: softmax weight): 0: 0.269  4: 0.731" in result.output


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
        f"error: MLflow run {run_id} has no best/best.safetensors artifact "
        "(a failed or unfinished trial, or one run with --no-model-artifacts?)"
    )


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_weights_are_one_line(store, tmp_path, weights, damage):
    uri, client, experiment = store
    damaged = tmp_path / "best.safetensors"
    damaged.write_bytes(weights.read_bytes())
    DAMAGE[damage](damaged)
    run_id = trial_run(client, experiment, config(), damaged)
    result = runner.invoke(app, ["analyze", "--run", run_id, "--tracking-uri", uri])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: checkpoint best/best.safetensors of MLflow run {run_id} is unusable (")
    assert lines[0].endswith("upload it again (metaxl-tune sync, while the search's storage holds the trial) "
                             "or train the run's config.yaml again")


def test_missing_sqlite_store_is_not_created(tmp_path):
    database = tmp_path / "nowhere" / "mlflow.db"
    result = runner.invoke(app, ["analyze", "--run", "abc", "--tracking-uri", f"sqlite:///{database}"])
    assert result.exit_code == 2 and result.output.startswith(f"error: no MLflow store at {database}")
    assert not database.exists()
