"""Checkpoint files: checksummed resume state, best-dev weights, and the background writer."""

from __future__ import annotations

import os
import random
import threading

import pytest
import torch

from metaxl_tune.checkpoint import (
    STATE_FILE,
    CheckpointError,
    CheckpointWriter,
    link_or_copy,
    load_best,
    load_checkpoint,
    read_best_metadata,
    save_best,
    save_checkpoint,
    serialize_best,
)


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


def test_linking_the_same_best_file_again_and_again_leaves_one_copy(tmp_path):
    # A best file unchanged over several checkpoints: rename() between two links of one file
    # does nothing, so a partial name must not be left behind to break the next checkpoint.
    source = tmp_path / "best" / "best.safetensors"
    source.parent.mkdir()
    source.write_bytes(b"weights")
    destination = tmp_path / "checkpoint" / "best.safetensors"
    for _ in range(3):
        link_or_copy(source, destination)
    assert destination.read_bytes() == b"weights"
    assert sorted(path.name for path in destination.parent.iterdir()) == ["best.safetensors"]
