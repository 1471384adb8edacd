"""A model the hub cannot serve: one line, without huggingface_hub's retry chatter before it."""

from __future__ import annotations

import huggingface_hub.constants
from typer.testing import CliRunner

from metaxl_tune.cli.app import app


def test_an_unreachable_hub_gives_one_line_without_retry_lines(monkeypatch, capfd, tmp_path):
    # A hub that refuses connections at once, and back-off waits skipped: the retries still run.
    endpoint = "http://127.0.0.1:9"
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda seconds: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, ["train", "--model", "someone/no-such-model", "--data", "synthetic",
                                      "-o", str(tmp_path / "run")])

    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: cannot load model 'someone/no-such-model' from the Hugging Face hub or disk; pass --model with a "
        "local directory holding a saved model, or --model tiny for offline runs"]
    captured = capfd.readouterr()
    assert "Retrying" not in captured.err + captured.out and "thrown while requesting" not in captured.err + captured.out
