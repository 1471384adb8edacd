"""Checkpoint files: checksummed resume state, best-dev weights, and the background writer."""

from __future__ import annotations

import os
import random
import threading

import pytest
import torch

from metaxl_tune.train.checkpoint import (
    STATE_FILE,
    CheckpointError,
    load_best,
    load_checkpoint,
    read_best_metadata,
    save_best,
    save_checkpoint,
    serialize_best,
)
from metaxl_tune.train.checkpoint_writer import CheckpointWriter


def state() -> dict:
    generator = torch.Generator().manual_seed(0)
    return {"epoch": 3, "theta": {"w": torch.randn(64, 64, generator=generator)}, "history": [{"epoch": 1}]}


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the tensor bytes
    path.write_bytes(bytes(data))


def randomise(path):
    path.write_bytes(random.Random(0).randbytes(path.stat().st_size))


DAMAGE = {"truncated": truncate, "flipped bytes": flip, "random bytes": randomise}


def test_state_round_trips_and_the_write_is_atomic(tmp_path):
    save_checkpoint(tmp_path, state())
    loaded = load_checkpoint(tmp_path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["theta"]["w"], state()["theta"]["w"])
    assert os.listdir(tmp_path) == [STATE_FILE]  # no partial file left behind


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_state_is_one_line_naming_the_file_without_unpickling_advice(tmp_path, damage):
    save_checkpoint(tmp_path, state())
    DAMAGE[damage](tmp_path / STATE_FILE)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path)
    message = str(error.value)
    assert message.startswith(f"checkpoint {tmp_path / STATE_FILE} is unusable (")
    assert "\n" not in message and "weights_only" not in message and "start the run again" in message


def test_best_weights_round_trip_with_their_epoch(tmp_path):
    theta, phi = {"w": torch.randn(8, 8)}, {"down.weight": torch.randn(4, 8)}
    save_best(tmp_path / "best.safetensors", serialize_best(theta, phi, {"epoch": 2, "dev_f1": 41.5}))
    loaded_theta, loaded_phi, metadata = load_best(tmp_path / "best.safetensors")
    assert torch.equal(loaded_theta["w"], theta["w"]) and torch.equal(loaded_phi["down.weight"], phi["down.weight"])
    assert metadata["epoch"] == 2 and metadata["dev_f1"] == 41.5
    assert read_best_metadata(tmp_path / "best.safetensors")["epoch"] == 2


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_best_weights_are_one_line(tmp_path, damage):
    path = tmp_path / "best.safetensors"
    save_best(path, serialize_best({"w": torch.randn(64, 64)}, {}, {"epoch": 1}))
    DAMAGE[damage](path)
    with pytest.raises(CheckpointError, match=rf"^checkpoint {path} is unusable \(") as error:
        load_best(path)
    assert "\n" not in str(error.value)


def test_writer_keeps_order_and_reports_errors_on_wait():
    writer, done, started = CheckpointWriter(), [], threading.Event()
    writer.submit(lambda: (started.wait(5), done.append(1)))
    writer.submit(lambda: done.append(2))
    started.set()
    writer.wait()
    assert done == [1, 2]
    writer.submit(lambda: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        writer.wait()
    writer.wait()  # the error is reported once


# ---- same-file links, failed writes, stray partial files ----------------------------------------

import errno  # noqa: E402
import pickle  # noqa: E402
import re  # noqa: E402

from metaxl_tune.train.checkpoint import (  # noqa: E402
    BEST_FILE,
    CheckpointWriteError,
    link_or_copy,
    remove_stray_partials,
)


def best_file(path, epoch=1):
    save_best(path, serialize_best({"w": torch.full((4, 4), float(epoch))}, {}, {"epoch": epoch}))
    return path


def test_link_or_copy_onto_the_same_file_leaves_it_alone_and_no_partial(tmp_path):
    source = best_file(tmp_path / "best" / BEST_FILE)
    destination = tmp_path / "checkpoint" / BEST_FILE
    for _ in range(3):  # a plateau: the same best weights linked at every checkpoint
        link_or_copy(source, destination)
    assert os.path.samefile(source, destination)
    assert os.listdir(tmp_path / "checkpoint") == [BEST_FILE] and os.listdir(tmp_path / "best") == [BEST_FILE]
    assert load_best(destination)[2]["epoch"] == 1


def test_a_checkpoint_on_a_plateau_keeps_its_best_weights_and_no_partial(tmp_path):
    best = best_file(tmp_path / "best" / BEST_FILE)
    save_checkpoint(tmp_path / "checkpoint", state(), best=best)
    save_checkpoint(tmp_path / "checkpoint", state(), best=best)
    assert sorted(os.listdir(tmp_path / "checkpoint")) == [BEST_FILE, STATE_FILE]
    assert os.path.samefile(best, tmp_path / "checkpoint" / BEST_FILE)


def no_space(monkeypatch):
    def fsync(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("metaxl_tune.train.checkpoint.os.fsync", fsync)


def test_a_failed_write_names_the_file_and_free_space_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoint"
    save_checkpoint(folder, state(), best=best_file(tmp_path / "best" / BEST_FILE, epoch=1))
    newer = best_file(tmp_path / "newer.safetensors", epoch=2)
    no_space(monkeypatch)
    with pytest.raises(CheckpointWriteError) as error:
        save_checkpoint(folder, {**state(), "epoch": 4}, best=newer)
    message = str(error.value)
    assert message.startswith(f"cannot write checkpoint file {folder / STATE_FILE}: no space left on device (")
    assert re.search(r" \(\d+\.\d [KMG]iB free there, \d+\.\d KiB needed\); the last good copy is kept$", message)
    assert "\n" not in message
    assert error.value.errno is None and error.value.cause.errno == errno.ENOSPC
    # Neither half of the pair was replaced: the old state still goes with the old best weights.
    assert sorted(os.listdir(folder)) == [BEST_FILE, STATE_FILE]
    assert load_checkpoint(folder)["epoch"] == 3 and load_best(folder / BEST_FILE)[2]["epoch"] == 1


def test_a_failed_best_write_keeps_the_previous_best_weights(tmp_path, monkeypatch):
    path = best_file(tmp_path / BEST_FILE, epoch=1)
    no_space(monkeypatch)
    with pytest.raises(CheckpointWriteError, match=rf"^cannot write checkpoint file {path}: no space left on device"):
        best_file(path, epoch=2)
    assert os.listdir(tmp_path) == [BEST_FILE] and load_best(path)[2]["epoch"] == 1


def test_a_write_error_keeps_its_message_through_pickling_and_advice():
    error = CheckpointWriteError("/runs/a/checkpoint/state.pt", OSError(errno.EDQUOT, "Disk quota exceeded"),
                                 needed=3 * 2**20, free=2048)
    advised = pickle.loads(pickle.dumps(error.at_epoch(3).advise("free some space")))
    assert str(advised) == ("epoch 3: cannot write checkpoint file /runs/a/checkpoint/state.pt: disk quota exceeded "
                            "(2.0 KiB free there, 3.0 MiB needed); the last good copy is kept; free some space")


def test_stray_partials_of_our_own_names_are_removed_and_nothing_else(tmp_path):
    checkpoint, best = tmp_path / "checkpoint", tmp_path / "best"
    ours = [checkpoint / "state.pt.123.456.partial", checkpoint / "best.safetensors.77.partial",
            best / "best.safetensors.123.456.partial"]
    others = [checkpoint / STATE_FILE, checkpoint / "notes.partial", checkpoint / "model.pt.1.2.partial",
              best / BEST_FILE, tmp_path / "state.pt.1.2.partial"]
    for path in ours + others:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert sorted(remove_stray_partials(checkpoint, best, tmp_path / "missing")) == sorted(ours)
    assert all(path.exists() for path in others) and not any(path.exists() for path in ours)


def test_writer_drops_the_jobs_behind_a_failed_one():
    writer, done, release = CheckpointWriter(), [], threading.Event()

    def fail():
        release.wait(5)
        raise OSError(errno.ENOSPC, "No space left on device")

    writer.submit(fail)
    writer.submit(lambda: done.append("checkpoint after the failed best weights"))
    release.set()
    with pytest.raises(OSError, match="No space"):
        writer.wait()
    assert done == []
    writer.submit(lambda: done.append("later"))
    writer.wait()
    assert done == ["later"]


def test_writer_check_reports_a_failure_without_waiting_for_running_writes():
    writer, release = CheckpointWriter(), threading.Event()

    def fail():
        release.wait(5)
        raise OSError("disk full")

    writer.submit(fail)
    writer.check()  # the write still runs: nothing to report yet (a blocking check would raise here)
    release.set()
    with pytest.raises(OSError, match="disk full"):
        for _ in range(1000):
            writer.check()
            threading.Event().wait(0.01)
    writer.wait()  # reported once
