"""Resource fit before trials start (metaxl_tune/search/execution/resource_fit.py), on one real CPU-only Ray
head per module (2 CPUs, no GPU): a trial no node can hold is refused in one line, naming the
flag, the request and the largest node, instead of Tune waiting for ever."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from metaxl_tune.cli.app import app
from metaxl_tune.search.execution.cluster import ClusterError
from metaxl_tune.search.execution.resource_fit import TrialRequest, check_trial_fits, unfit_message

runner = CliRunner()


@pytest.fixture(scope="module")
def head():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
    yield cluster.address
    cluster.shutdown()


@pytest.fixture
def driver(head):
    """This process connected to the head as a driver (what run_search does after connect)."""
    import ray

    ray.init(address=head, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("request_, flag", [(TrialRequest(1, 1), "--gpus-per-trial"),
                                            (TrialRequest(100, 0), "--cpus-per-trial")])
def test_a_trial_no_node_can_hold_is_refused_at_once(driver, request_, flag):
    started = time.monotonic()
    with pytest.raises(ClusterError) as refused:
        check_trial_fits(request_, log=pytest.fail)
    assert time.monotonic() - started < 10
    message = str(refused.value)
    assert message.startswith(f"{flag}: one trial needs {request_.text()} on one node")
    assert "but its one node has 2 CPUs and 0 GPUs; lower " in message and "--wait-for-resources" in message


def test_a_trial_that_fits_passes(driver):
    check_trial_fits(TrialRequest(2, 0), log=pytest.fail)


def test_waiting_for_resources_says_what_it_waits_for_then_refuses(driver):
    said = []
    started = time.monotonic()
    with pytest.raises(ClusterError, match=r"\(waited [34] s\)"):
        check_trial_fits(TrialRequest(1, 1), wait_s=3, log=said.append, poll_s=0.5)
    assert 3 <= time.monotonic() - started < 30
    assert said and said[0].startswith("waiting up to 3 s more for a node with 1 CPU and 1 GPU")
    assert said[0].endswith("(--wait-for-resources; largest node now: 2 CPUs and 0 GPUs)")


def test_a_request_that_no_single_node_meets_names_both_flags():
    # Enough CPUs on one node and a GPU on another: a trial needs both on the same node.
    nodes = [{"CPU": 4.0}, {"CPU": 1.0, "GPU": 1.0}]
    message = unfit_message(TrialRequest(2, 1), nodes)
    assert message.startswith("--cpus-per-trial with --gpus-per-trial: one trial needs 2 CPUs and 1 GPU")
    assert "the largest of its 2 nodes has 1 CPUs and 1 GPUs" in message


@pytest.mark.parametrize("command", [
    ["search", "--preset", "demo", "--gpus-per-trial", "1"],
    ["ablate", "--preset", "demo", "--targets", "tk", "--cpus-per-trial", "100"],
])
def test_search_and_ablate_refuse_in_one_line(head, command, tmp_path, monkeypatch, shared_cache):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METAXL_TUNE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("METAXL_TUNE_CACHE", str(shared_cache))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = runner.invoke(app, [*command, "--name", "unfit", "--address", head])
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    flag = command[-2]
    assert errors[0].startswith(f"error: {flag}: one trial needs ") and "2 CPUs and 0 GPUs" in errors[0]
    # Refused before the search's state or any data work: nothing to resume, nothing tokenized.
    assert not (tmp_path / "runs" / "metaxl-searches" / "unfit").exists()
