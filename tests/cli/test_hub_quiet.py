"""A model the hub cannot serve: one line, without huggingface_hub's retry chatter or its
half-minute of retries before it."""

from __future__ import annotations

import http.server
import threading

import huggingface_hub.constants
from typer.testing import CliRunner

from metaxl_tune.cli.app import app
from metaxl_tune.model.hub_quiet import load_options


def test_an_unreachable_hub_gives_one_line_at_once_without_retries(monkeypatch, capfd, tmp_path):
    # A hub that refuses connections at once; the back-off waits are recorded, not slept.
    endpoint = "http://127.0.0.1:9"
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    back_offs: list[float] = []
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", back_offs.append)
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, ["train", "--model", "someone/no-such-model", "--data", "synthetic",
                                      "-o", str(tmp_path / "run")])

    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: cannot load model 'someone/no-such-model' from the Hugging Face hub or disk; pass --model with a "
        "local directory holding a saved model, or --model tiny for offline runs"]
    assert back_offs == []
    captured = capfd.readouterr()
    assert "Retrying" not in captured.err + captured.out and "thrown while requesting" not in captured.err + captured.out


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802 - the handler's protocol
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_hub_that_answers_is_asked_and_a_local_directory_never_is(monkeypatch, tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # An error status is an answer: the hub explains it better than a guess of ours.
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert load_options("someone/some-model") == {}
        assert load_options(str(tmp_path)) == {"local_files_only": True}
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    assert load_options("someone/some-model") == {"local_files_only": True}
