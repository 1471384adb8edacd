"""Multi-node searches on a real Ray cluster of several nodes on this machine
(`ray.cluster_utils.Cluster`; every node declares GPUs, trials run on the CPU): one trial per
GPU across nodes, a lost worker node, and storage that not every node can see."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.results.mlflow_filters import tags_equal
from processes import CLI, cli_env, kill_session, run_cli, tune_results, wait_for
from search_runs import MACHINERY_SIZES

DEMO = ["search", "--task", "ner", "--target", "tk", "--preset", "demo", "--scheduler", "fifo"]


@pytest.fixture(scope="module")
def cluster_head():
    """A head that runs no trials (the drivers' node), shared by the module's tests: each adds
    the worker nodes it needs (``cluster``). A head's start (GCS, raylet, dashboard) costs
    seconds of CPU."""
    from ray.cluster_utils import Cluster

    # Detect a killed node in ~3 s rather than the default ~15 s.
    head = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "num_gpus": 0,
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3},
    })
    yield head
    head.shutdown()


@pytest.fixture
def cluster(cluster_head):
    """The shared head, with the worker nodes the test adds; they are removed after it, and the
    next test starts once the head counts only itself alive (a node the test killed included)."""
    yield cluster_head
    for node in list(cluster_head.worker_nodes):
        cluster_head.remove_node(node)
    cluster_head.wait_for_nodes(timeout=60)


def trial_runs(workdir: Path, search: str) -> list:
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metaxl-tune")
    query = tags_equal({"metaxl.search": search, "metaxl.role": "trial"})
    return client.search_runs([experiment.experiment_id], filter_string=query)


def spans(rows_by_trial: dict[str, list[dict]]) -> list[tuple[float, float, str, str]]:
    """(start, end, node, GPU) of every trial, from its own wall-clock marks."""
    out = []
    for rows in rows_by_trial.values():
        last = rows[-1]
        out.append((last["trial_started_at"], last["trial_started_at"] + last["wall_seconds"], last["node_id"], last["gpu_ids"]))
    return out


def test_trials_get_one_gpu_each_and_spread_over_two_nodes(cluster, tmp_path, shared_cache):
    nodes = [cluster.add_node(num_cpus=2, num_gpus=2) for _ in range(2)]
    # Five trials on four GPUs: at least one runs on a GPU that a finished trial gave back.
    result = run_cli([*DEMO, *MACHINERY_SIZES, "--num-samples", "5", "--name", "spread", "--address", cluster.address],
                     cwd=tmp_path, cache_dir=shared_cache)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = tune_results(tmp_path / "metaxl-searches" / "spread")
    assert len(rows) == 5 and all(trial[-1]["epoch"] == trial[-1]["epochs_total"] for trial in rows.values())
    # Each trial saw exactly one GPU, the one Ray assigned it.
    for trial in rows.values():
        assert len(trial[-1]["gpu_ids"].split(",")) == 1
        assert trial[-1]["cuda_visible_devices"] == trial[-1]["gpu_ids"]
    intervals = spans(rows)
    assert {node for _, _, node, _ in intervals} == {node.node_id for node in nodes}
    for start, _, node, gpu in intervals:
        running = [other for other in intervals if other[0] <= start < other[1]]
        assert len(running) <= 4
        assert sum(1 for other in running if (other[2], other[3]) == (node, gpu)) == 1
    # Placement is visible per trial in MLflow.
    tagged = {(run.data.tags["metaxl.node_id"], run.data.tags["metaxl.gpu_ids"]) for run in trial_runs(tmp_path, "spread")}
    assert tagged == {(node, gpu) for _, _, node, gpu in intervals}


def test_half_a_gpu_per_trial_packs_two_trials_on_one_gpu(cluster, tmp_path, shared_cache):
    node = cluster.add_node(num_cpus=2, num_gpus=1)
    result = run_cli([*DEMO, "--num-samples", "2", "--name", "packed", "--address", cluster.address,
                      "--gpus-per-trial", "0.5"], cwd=tmp_path, cache_dir=shared_cache)
    assert result.returncode == 0, result.stdout + result.stderr
    (_, first_end, *first_place), (second_start, _, *second_place) = sorted(
        spans(tune_results(tmp_path / "metaxl-searches" / "packed")))
    assert first_place == second_place == [node.node_id, "0"]
    assert second_start < first_end


def test_a_trial_on_a_killed_node_resumes_from_its_last_epoch_on_a_surviving_node(cluster, tmp_path, shared_cache):
    nodes = {node.node_id: node for node in (cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2))}
    driver = subprocess.Popen(
        # A resume checkpoint every epoch (the default 10m would keep only the final epoch of a
        # seconds-long demo trial): the restart must continue from the last epoch reached.
        [*CLI, *DEMO, "--num-samples", "2", "--epochs", "5", "--checkpoint-every", "1", "--name", "survive",
         "--address", cluster.address],
        cwd=tmp_path, env=cli_env(shared_cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    experiment_dir = tmp_path / "metaxl-searches" / "survive"
    try:
        def a_trial_mid_way():
            for trial_id, trial in tune_results(experiment_dir).items():
                if trial and 2 <= trial[-1]["epoch"] < 4:
                    return trial_id, trial[-1]["node_id"], trial[-1]["epoch"]
            return None

        victim, node_id, epoch_reached = wait_for(a_trial_mid_way, timeout=300, what="a trial past its second epoch", interval=0.1)
        cluster.remove_node(nodes.pop(node_id), allow_graceful=False)
        output, _ = driver.communicate(timeout=600)
    finally:
        kill_session(driver.pid)
        driver.wait()
    assert driver.returncode == 0, output
    rows = tune_results(experiment_dir)
    assert len(rows) == 2 and all(trial[-1]["epoch"] == 5 for trial in rows.values())
    resumed = [row for row in rows[victim] if row["resumed_from_epoch"] > 0]
    # Epochs after the restart continue from the last checkpoint, not from epoch 1 ...
    assert resumed and resumed[0]["resumed_from_epoch"] >= epoch_reached
    assert [row["epoch"] for row in resumed] == list(range(resumed[0]["resumed_from_epoch"] + 1, 6))
    # ... on the surviving node.
    assert {row["node_id"] for row in resumed} == set(nodes)
    # One MLflow run per trial; the victim's run continued: every epoch once, retry tagged.
    runs = {run.data.tags["metaxl.trial_id"]: run for run in trial_runs(tmp_path, "survive")}
    assert len(runs) == 2 and {run.info.status for run in runs.values()} == {"FINISHED"}
    history = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(runs[victim].info.run_id, "dev_f1")
    assert sorted(metric.step for metric in history) == [1, 2, 3, 4, 5]
    assert runs[victim].data.tags["metaxl.retries"] == "1"
    assert runs[victim].data.tags["metaxl.node_id"] in nodes


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare for a private mount")
def test_storage_that_a_node_cannot_see_fails_before_any_trial(cluster, tmp_path, shared_cache):
    cluster.add_node(num_cpus=1, num_gpus=1)
    storage = tmp_path / "storage"
    storage.mkdir()
    # A node whose /…/storage is its own empty tmpfs: the same path, not the same folder.
    ray = str(Path(sys.executable).with_name("ray"))
    blind = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f"mount -t tmpfs none {storage} && exec {ray} start --address={cluster.address} --num-cpus=1 --num-gpus=1 --block"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        import ray as ray_api

        ray_api.init(address=cluster.address, log_to_driver=False)
        try:
            wait_for(lambda: sum(node["Alive"] for node in ray_api.nodes()) == 3, timeout=120, what="the third node")
        finally:
            ray_api.shutdown()
        result = run_cli([*DEMO, "--num-samples", "2", "--name", "blind", "--address", cluster.address,
                          "--storage", str(storage)], cwd=tmp_path, cache_dir=shared_cache)
    finally:
        kill_session(blind.pid)
        blind.wait()
    assert result.returncode == 2
    message = result.stderr.strip()
    assert message.startswith(f"error: --storage {storage} is not shared: node ") and "NFS" in message
    assert len(message.splitlines()) == 1
    assert not list(storage.glob("blind/trial_*"))


def test_a_cluster_that_requires_a_token_is_refused_with_a_one_line_error(tmp_path, shared_cache):
    from processes import free_port

    port = free_port()
    home = tmp_path / "head-home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "a" * 32}
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={port}", "--num-cpus=1",
         "--include-dashboard=false", "--block"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        import socket

        def answers():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(answers, timeout=120, what="the Ray head")
        driver_home = tmp_path / "driver-home"
        driver_home.mkdir()
        driver_env = {**cli_env(shared_cache), "HOME": str(driver_home)}
        for variable in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            driver_env.pop(variable, None)
        # A driver that knows nothing of tokens, and one in token mode that has none to send, side
        # by side (each waits out Ray's refusal), each in a folder of its own.
        drivers = []
        for index, extra in enumerate(({}, {"RAY_AUTH_MODE": "token"})):
            (tmp_path / f"driver-{index}").mkdir()
            drivers.append(subprocess.Popen(
                [*CLI, *DEMO, "--num-samples", "1", "--name", "refused", "--address", f"127.0.0.1:{port}"],
                cwd=tmp_path / f"driver-{index}", env={**driver_env, **extra}, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            ))
        results = []
        for driver in drivers:
            out, err = driver.communicate(timeout=300)
            results.append(subprocess.CompletedProcess(driver.args, driver.returncode, out, err))
    finally:
        kill_session(head.pid)
        head.wait()
    for result in results:
        assert result.returncode == 2, result.stdout + result.stderr
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1 and "RAY_AUTH_TOKEN" in message
