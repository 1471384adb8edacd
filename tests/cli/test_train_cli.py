"""`metaxl-tune train` through Typer's runner: end to end, flags, --config, errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from metaxl_tune.cli.app import app
from metaxl_tune.config import RunConfig

runner = CliRunner()
FAST = ["--source-size", "64", "--max-length", "48"]


@pytest.fixture(autouse=True)
def cache(monkeypatch, shared_cache):
    monkeypatch.setenv("METAXL_TUNE_CACHE", str(shared_cache))


@pytest.mark.parametrize("task", ["ner", "sa"])
def test_train_end_to_end_on_synthetic_data(tmp_path, task):
    target = "tk" if task == "ner" else "te"
    result = runner.invoke(app, ["train", "--model", "tiny", "--data", "synthetic", "--task", task, "--target", target,
                                 "--method", "metaxl", "--epochs", "2", *FAST, "--output", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "epoch   1/2  dev F1" in result.output and "epoch   2/2  dev F1" in result.output
    assert "best epoch" in result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["history"]) == 2 and results["config"]["task"] == task


def test_flags_override_the_config_file(tmp_path):
    config = tmp_path / "run.yaml"
    RunConfig(model="tiny", data="synthetic", epochs=7, seed=3).dump(config)
    result = runner.invoke(app, ["train", "--config", str(config), "--seed", "9", "--rtn-layers", "0,last",
                                 "--max-grad-norm", "none", "--print-config"])
    assert result.exit_code == 0, result.output
    printed = RunConfig.model_validate(__import__("yaml").safe_load(result.output))
    assert (printed.epochs, printed.seed, printed.rtn_layers, printed.max_grad_norm) == (7, 9, [0, "last"], None)


def test_every_config_field_has_a_flag():
    help_text = runner.invoke(app, ["train", "--help"], terminal_width=200).output
    for field in RunConfig.model_fields:
        assert "--" + field.replace("_", "-") in help_text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "maml"], "error: --method: Input should be 'target-only', 'jt', 'jt-rtn' or 'metaxl'"),
        (["--rtn-layers", "9"], "error: rtn_layers: layer 9 is past the depth of model tiny (4 layers); use 0..4"),
        (["--source", "related", "--target", "fa"], "error: --source: 'related' is defined for"),
        (["--data", "/nonexistent/data"], "error: "),
        (["--model", "no-such-model-xyz"], "error: cannot load model 'no-such-model-xyz'"),
    ],
)
def test_bad_input_is_one_line_with_exit_status_2(tmp_path, args, message):
    base = ["train", "--model", "tiny", "--data", "synthetic", "--output", str(tmp_path / "run"), "--no-progress"]
    result = runner.invoke(app, [*base, *args])
    assert result.exit_code == 2
    last_line = result.output.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and message in last_line, result.output


def test_resume_without_checkpoint_says_how_to_start(tmp_path):
    result = runner.invoke(app, ["train", "--model", "tiny", "--data", "synthetic", "--output", str(tmp_path), "--resume"])
    assert result.exit_code == 2 and "run without --resume to start fresh" in result.output


def _cpu_has(precision: str) -> bool:
    from metaxl_tune.precision import PrecisionError, check_precision

    try:
        check_precision(precision, __import__("torch").device("cpu"))
    except PrecisionError:
        return False
    return True


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_train_end_to_end_in_mixed_precision_on_cpu(tmp_path, precision):
    if not _cpu_has(precision):
        pytest.skip(f"this torch has no {precision} autocast on CPU")
    result = runner.invoke(app, ["train", "--model", "tiny", "--data", "synthetic", "--target", "tk", "--method", "metaxl",
                                 "--epochs", "1", *FAST, "--precision", precision, "--output", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "epoch   1/1  dev F1" in result.output and "MiB)" in result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["precision"] == precision and results["config"]["attention"] == "sdpa"
    assert results["history"][0]["peak_memory_mib"] > 0
