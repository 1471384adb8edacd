"""A tracking server whose artifact store is full: the records stay true, the files come later.

One small demo search (two trials of one epoch, run side by side) against a real `mlflow server`
whose artifact store is a tmpfs with room for the trials' config files but not for their
weights. Every outcome in MLflow is Optuna's, the full store is said on one whole line, and
`sync` uploads the files once there is room, changing no field of any run, the second time
neither.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.search.driver.options import optuna_storage
from mlflow_records import search_record
from processes import MlflowServer, fill, mounted_tmpfs, run_cli
from search_runs import MACHINERY_SIZES, ONE_WORKER

NAME = "full"
ROOM = 48 * 1024
"""Free bytes left on the artifact store: two config.yaml files (a 4 KiB page each) fit, the
weights (1.5 MiB a trial) do not; without the ballast, everything does."""
OPTUNA_TO_MLFLOW = {optuna.trial.TrialState.COMPLETE: ("FINISHED", "completed"),
                    optuna.trial.TrialState.PRUNED: ("KILLED", "pruned"),
                    optuna.trial.TrialState.FAIL: ("FAILED", "failed")}
FOREIGN = ("Traceback", "\x1b[", "\N{RUNNER}", "\N{TEST TUBE}")
PROGRESS = re.compile(r"\[search\] (\d+) running, (\d+) finished, (\d+) pruned, (\d+) failed of (\d+)")


def stored(client: MlflowClient, run_id: str, folder: str | None = None) -> dict[str, int]:
    return {Path(item.path).name: item.file_size for item in client.list_artifacts(run_id, folder) if not item.is_dir}


def artifacts(uri: str, record: dict) -> dict[str, dict[str, int]]:
    """Run key -> the files it holds: config.yaml and best/ for trials, the per-config table and
    plots/ for the parent."""
    client = MlflowClient(uri)
    found = {}
    for key, run in record.items():
        run_id = run["info"]["run_id"]
        folders = (None, "plots") if key == "parent" else (None, "best")
        found[key] = {f"{folder or '.'}/{name}": size for folder in folders for name, size in stored(client, run_id, folder).items()}
    return found


@pytest.fixture(scope="module")
def full_store(tmp_path_factory, shared_cache, ray_head):
    workdir = tmp_path_factory.mktemp("full-store")
    # `mlflow server` keeps its artifacts in ./mlartifacts of its working directory (MlflowServer: workdir).
    with mounted_tmpfs(workdir / "mlartifacts", "8m") as store:
        ballast = fill(store, ROOM)
        server = MlflowServer(workdir)
        try:
            search = run_cli(["search", "--task", "ner", "--target", "tk", "--preset", "demo", "--name", NAME,
                              "--num-samples", "2", *ONE_WORKER, "--epochs", "1", *MACHINERY_SIZES, "--scheduler", "fifo",
                              "--repeats", "1",
                              "--tracking-uri", server.uri], cwd=workdir, cache_dir=shared_cache, ray=ray_head)
            before = search_record(server.uri, NAME)
            files_before = artifacts(server.uri, before)
            # Room again, then sync twice; each call's record is read back whole.
            ballast.unlink()
            syncs, records = [], [before]
            for _ in range(2):
                syncs.append(run_cli(["sync", "--name", NAME], cwd=workdir, cache_dir=shared_cache))
                records.append(search_record(server.uri, NAME))
            yield SimpleNamespace(workdir=workdir, uri=server.uri, search=search, files_before=files_before,
                                  syncs=syncs, records=records, files_after=artifacts(server.uri, records[-1]))
        finally:
            server.stop()


def test_every_outcome_in_mlflow_is_optunas_though_the_weights_were_not_stored(full_store):
    search = full_store.search
    assert search.returncode == 0, search.stdout + search.stderr
    experiment_dir = full_store.workdir / "metaxl-searches" / NAME
    study = optuna.load_study(study_name=NAME, storage=optuna_storage(experiment_dir))
    record = full_store.records[0]
    assert record["parent"]["info"]["status"] == "FINISHED"
    runs = {float(run["params"]["meta_lr"]): run for key, run in record.items() if key != "parent"}
    assert len(study.trials) == len(runs) == 2
    for trial in study.trials:
        run = runs[trial.params["meta_lr"]]
        assert (run["info"]["status"], run["tags"]["metaxl.outcome"]) == OPTUNA_TO_MLFLOW[trial.state]
        assert run["metrics"]["best_dev_f1"][-1][2] == pytest.approx(trial.value)
    # The store really was full: no weights reached it, and each trial keeps its own in its checkpoint.
    assert all("best/best.safetensors" not in files for key, files in full_store.files_before.items() if key != "parent")
    for key in runs.values():
        trial_dir = experiment_dir / f"trial_{key['tags']['metaxl.trial_id']}"
        assert [path.name for path in trial_dir.glob("checkpoint_*/best.safetensors")] == ["best.safetensors"]


def test_the_full_store_is_said_once_on_one_whole_line(full_store):
    output = full_store.search.stdout + full_store.search.stderr
    said = [line for line in output.splitlines() if "artifact store" in line]
    assert len(said) == 1, output
    storage = full_store.workdir / "metaxl-searches"
    assert re.fullmatch(
        rf"\[tracking\] warning: MLflow at {re.escape(full_store.uri)} did not store the best weights of trial "
        r"\w+ \(1\.\d MiB\): the server could not write it \((HTTP 500|it closed the connection mid-upload)\): "
        r"no space left on the artifact store, or the store is not writable; outcomes and metrics are recorded "
        rf"all the same, and the files it did not take stay in {re.escape(str(storage / NAME))}: make room, then "
        rf"run `metaxl-tune sync --name {NAME} --storage {re.escape(str(storage))}` to upload them",
        said[0]), said[0]
    assert not [mark for mark in FOREIGN if mark in output], output
    assert "rejected an update" not in output


def test_sync_uploads_what_the_store_did_not_take_once_there_is_room(full_store):
    first = full_store.syncs[0]
    assert first.returncode == 0, first.stdout + first.stderr
    experiment_dir = full_store.workdir / "metaxl-searches" / NAME
    for key, files in full_store.files_after.items():
        if key == "parent":
            assert sorted(files) == sorted(["./configs.csv", "./configs.json",
                                            *(f"plots/{path.name}" for path in (experiment_dir / "plots").glob("*.png"))])
            continue
        (weights,) = (experiment_dir / f"trial_{key}").glob("checkpoint_*/best.safetensors")
        assert files["best/best.safetensors"] == weights.stat().st_size
        assert "./config.yaml" in files
    uploaded = sum(len(after) - len(full_store.files_before[key]) for key, after in full_store.files_after.items())
    assert f"0 epoch results and 0 final statuses written to {full_store.uri}; {uploaded} files uploaded" in first.stdout


def test_sync_changes_no_field_of_any_run_after_the_search_nor_the_second_time(full_store):
    before, after_first, after_second = full_store.records
    assert after_first == before
    assert after_second == before
    second = full_store.syncs[1]
    assert second.returncode == 0 and "0 files uploaded" in second.stdout, second.stdout + second.stderr
    for result in full_store.syncs:
        output = result.stdout + result.stderr
        assert not [mark for mark in FOREIGN if mark in output], output


def test_the_progress_lines_count_each_trial_once(full_store):
    counts = [tuple(map(int, match.groups())) for match in PROGRESS.finditer(full_store.search.stdout)]
    assert counts, full_store.search.stdout
    # Two trials at once: the first to end is counted as ended, no longer as running.
    assert all(running + finished + pruned + failed <= total for running, finished, pruned, failed, total in counts)
    assert counts[-1] == (0, 2, 0, 0, 2)
