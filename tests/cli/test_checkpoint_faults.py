"""`metaxl-tune train` when checkpoints meet a plateau, a lost file or a full disk."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from metaxl_tune.train.checkpoint import (
    BEST_FILE,
    STATE_FILE,
    load_best,
    load_checkpoint,
    read_best_metadata,
    save_best,
    serialize_best,
)
from metaxl_tune.cli.app import app
from tests.helpers import write_panx

runner = CliRunner()


@pytest.fixture(autouse=True)
def cache(monkeypatch, shared_cache):
    monkeypatch.setenv("METAXL_TUNE_CACHE", str(shared_cache))


def plateau_args(data) -> list[str]:
    """One step per epoch, a checkpoint every epoch, and learning rates so small that dev F1
    never moves: every epoch after the first is a plateau."""
    return ["train", "--model", "tiny", "--data", str(data), "--task", "ner", "--target", "tk", "--source", "en",
            "--method", "metaxl", "--target-size", "4", "--source-size", "4", "--batch-size", "4",
            "--max-length", "16", "--epochs", "4", "--checkpoint-every", "1", "--lr", "1e-12", "--meta-lr", "1e-12",
            "--no-progress"]


def partials(folder):
    return sorted(path for path in folder.rglob("*") if path.name.endswith(".partial"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_panx(folder, "tk", 10)
    write_panx(folder, "en", 14)
    return folder


@pytest.fixture(scope="module")
def plateau(tmp_path_factory, shared_cache, data):
    folder = tmp_path_factory.mktemp("plateau") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("METAXL_TUNE_CACHE", str(shared_cache))
        result = runner.invoke(app, [*plateau_args(data), "--output", str(folder)])
    return folder, result


def test_a_dev_plateau_with_a_checkpoint_every_epoch_finishes(plateau):
    folder, result = plateau
    assert result.exit_code == 0, result.output
    results = json.loads((folder / "results.json").read_text())
    assert [entry["best_epoch"] for entry in results["history"]] == [1, 1, 1, 1]  # it was a plateau
    assert partials(folder) == []
    assert load_checkpoint(folder / "checkpoint")["epoch"] == 4
    assert load_best(folder / "checkpoint" / BEST_FILE)[2]["epoch"] == 1


def test_resume_without_the_checkpoints_best_weights_keeps_best_byte_for_byte(plateau, data, tmp_path):
    source, _ = plateau
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    (folder / "checkpoint" / BEST_FILE).unlink()
    before = (folder / "best" / BEST_FILE).read_bytes()
    result = runner.invoke(app, [*plateau_args(data), "--output", str(folder), "--resume"])
    assert result.exit_code == 0, result.output
    assert (folder / "best" / BEST_FILE).read_bytes() == before
    assert sorted(path.name for path in (folder / "best").iterdir()) == [BEST_FILE]


def test_resume_sets_aside_best_weights_of_another_epoch_instead_of_deleting_them(plateau, data, tmp_path):
    # best/ from an epoch the checkpoint's history does not know (lost with an interruption):
    # not the history's best, but perhaps the only copy of those weights.
    source, _ = plateau
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    (folder / "checkpoint" / BEST_FILE).unlink()
    theta, phi, _ = load_best(folder / "best" / BEST_FILE)
    (folder / "best" / BEST_FILE).unlink()  # a new file, not the checkpoint's hard link
    save_best(folder / "best" / BEST_FILE, serialize_best(theta, phi, {"epoch": 5}))
    before = (folder / "best" / BEST_FILE).read_bytes()
    result = runner.invoke(app, [*plateau_args(data), "--output", str(folder), "--resume"])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in (folder / "best").iterdir()) == ["best.set-aside-1.safetensors"]
    assert (folder / "best" / "best.set-aside-1.safetensors").read_bytes() == before


def test_a_resume_removes_the_partial_files_a_crash_left_and_nothing_else(plateau, data, tmp_path):
    source, _ = plateau
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    strays = [folder / "checkpoint" / "state.pt.4242.17.partial", folder / "best" / "best.safetensors.4242.partial"]
    kept = [folder / "checkpoint" / "notes.partial", folder / "results.json.1.partial"]
    for path in strays + kept:
        path.write_bytes(b"half a file")
    result = runner.invoke(app, [*plateau_args(data), "--output", str(folder), "--resume"])
    assert result.exit_code == 0, result.output
    assert partials(folder) == sorted(kept)


# ---- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of its own (needs root or CAP_SYS_ADMIN), unmounted at the end."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_stops_at_the_failing_epoch_and_resume_finishes(plateau, data, small_disk):
    finished, _ = plateau
    best_size = (finished / "best" / BEST_FILE).stat().st_size
    state_size = (finished / "checkpoint" / STATE_FILE).stat().st_size
    # Room for epoch 1 (config, best weights, one state file) and 256 KiB more, but not for a
    # second state file next to the first: the write of epoch 2's checkpoint fails.
    room = best_size + state_size + 256 * 1024
    assert 256 * 1024 < state_size
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - room))
    folder = small_disk / "run"

    result = runner.invoke(app, [*plateau_args(data), "--output", str(folder)])

    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    state = folder / "checkpoint" / STATE_FILE
    assert re.fullmatch(
        rf"error: epoch 2: cannot write checkpoint file {re.escape(str(state))}: no space left on device "
        r"\(\d+(\.\d)? (bytes|KiB|MiB) free there, \d+\.\d MiB needed\); the last good copy is kept; the run stopped; "
        rf"free some space, then continue it with --resume \(output {re.escape(str(folder))}\)",
        lines[-1],
    ), lines[-1]
    assert sum(line.startswith("error") for line in lines) == 1 and "Traceback" not in result.output
    assert "epoch   2/4" in result.output and "epoch   3/4" not in result.output
    # The last good checkpoint (epoch 1) is whole: both files verify against their checksums.
    assert load_checkpoint(folder / "checkpoint")["epoch"] == 1
    assert load_best(folder / "checkpoint" / BEST_FILE)[2]["epoch"] == 1
    assert read_best_metadata(folder / "best" / BEST_FILE)["epoch"] == 1
    assert partials(small_disk) == [] and not (folder / "results.json").exists()

    ballast.unlink()
    resumed = runner.invoke(app, [*plateau_args(data), "--output", str(folder), "--resume"])

    assert resumed.exit_code == 0, resumed.output
    assert "epoch   2/4" in resumed.output and "epoch   1/4" not in resumed.output
    assert len(json.loads((folder / "results.json").read_text())["history"]) == 4
    assert partials(small_disk) == []
