"""Checkpoints: resume state and best-dev weights, each verified by a checksum when loaded.

Two kinds of file:

- ``state.pt`` (resume state): theta, phi, both optimizers and schedulers, the RNG states, the
  config and the history of epoch results, everything needed to continue a run bit-identically
  on CPU. It is a magic line, the ``torch.save`` payload and a trailer with the payload's
  SHA-256, written to a temporary name and renamed, so the checksum is always written
  atomically with the data. It loads with ``weights_only=True``: a checkpoint from a
  shared store can never execute code.
- ``best.safetensors`` (best-dev weights): theta and phi only (``theta.*`` and ``phi.*``
  tensors), written only when dev F1 improves; its metadata records the epoch, dev/test F1 and a
  SHA-256 over the tensors' bytes (safetensors itself checks the layout, not the values).

A damaged file of either kind raises ``CheckpointError``: one line naming the file and what to
do, never an unpickling suggestion.

Writes can leave the training thread: ``serialize_state`` copies the tensors into bytes on the
caller's thread (so training may go on mutating them), and ``CheckpointWriter`` writes those
bytes in a background thread, in order.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

STATE_FILE = "state.pt"
BEST_FILE = "best.safetensors"
_MAGIC = b"metaxl-tune checkpoint v1\n"
_TRAILER_PREFIX = b"\nsha256 "
_TRAILER_SIZE = len(_TRAILER_PREFIX) + 64 + 1  # prefix, hex digest, newline
DEFAULT_ADVICE = "resume from an earlier kept checkpoint if there is one, or start the run again"


class CheckpointError(ValueError):
    """A checkpoint file is missing its checksum, truncated, damaged or not a checkpoint."""

    def __init__(self, path: Path, problem: str, advice: str = DEFAULT_ADVICE):
        self.path, self.problem = Path(path), problem
        super().__init__(f"checkpoint {path} is unusable ({problem}); {advice}")

    def advise(self, advice: str) -> "CheckpointError":
        """The same error with context-specific advice (e.g. the exact command to run)."""
        return CheckpointError(self.path, self.problem, advice)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- resume state ---------------------------------------------------------------------------


def training_state(epoch: int, config: Any, model: torch.nn.Module, rtn: torch.nn.Module | None, learner: Any,
                   history: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """What a resume checkpoint holds (the trainer's state and ``bench/checkpoint_io.py`` agree);
    ``extra`` carries optional parts such as the back-off fine-tuner's and the source sampler's state."""
    return {
        **extra,
        "epoch": epoch,
        "config": config.to_dict(),
        "theta": model.state_dict(),
        "phi": rtn.state_dict() if rtn is not None else {},
        "learner": learner.state_dict(),
        "rng": rng_state(),
        "history": history,
    }


class _HashingSink:
    """A write-only stream that hashes and counts what passes through to ``sink``."""

    def __init__(self, sink: Any):
        self.sink, self.digest, self.written = sink, hashlib.sha256(), 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        self.written += len(view)
        return self.sink.write(view) if self.sink is not None else len(view)

    def flush(self) -> None:
        if self.sink is not None and hasattr(self.sink, "flush"):
            self.sink.flush()


def write_state(state: dict[str, Any], sink: Any) -> int:
    """Stream ``state`` as a checkpoint file to ``sink`` (None: count only); returns its size.

    Layout: magic line, ``torch.save`` payload, then a fixed-size trailer with the payload's
    SHA-256. The checksum trails so the file streams without a second copy in memory, and a
    truncated file loses its trailer."""
    if sink is not None:
        sink.write(_MAGIC)
    payload = _HashingSink(sink)
    torch.save(state, payload)
    trailer = _TRAILER_PREFIX + payload.digest.hexdigest().encode() + b"\n"
    if sink is not None:
        sink.write(trailer)
    return len(_MAGIC) + payload.written + len(trailer)


def serialize_state(state: dict[str, Any]) -> bytes:
    """The file's bytes (tensors are copied now, so training may go on mutating them)."""
    buffer = io.BytesIO()
    write_state(state, buffer)
    return buffer.getvalue()


def _write_atomically(path: Path, data: bytes | memoryview) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def save_checkpoint(directory: Path, state: dict[str, Any] | bytes) -> Path:
    """Write ``state`` (a dict, or bytes from ``serialize_state``) as ``directory/state.pt``."""
    data = state if isinstance(state, (bytes, bytearray)) else serialize_state(state)
    _write_atomically(Path(directory) / STATE_FILE, data)
    return Path(directory)


def has_checkpoint(directory: Path) -> bool:
    return (Path(directory) / STATE_FILE).is_file()


def read_verified(path: Path) -> memoryview:
    """The payload of a state file whose checksum matches; CheckpointError otherwise."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise CheckpointError(path, f"cannot be read: {error.strerror or error}") from None
    if not data.startswith(_MAGIC):
        raise CheckpointError(path, "no checksum header: not a metaxl-tune checkpoint, or its start is damaged")
    trailer = data[-_TRAILER_SIZE:]
    if len(data) < len(_MAGIC) + _TRAILER_SIZE or not trailer.startswith(_TRAILER_PREFIX) or not trailer.endswith(b"\n"):
        raise CheckpointError(path, "truncated: its checksum trailer is missing")
    expected = trailer[len(_TRAILER_PREFIX) : -1].decode("ascii", "replace")
    payload = memoryview(data)[len(_MAGIC) : len(data) - _TRAILER_SIZE]
    if hashlib.sha256(payload).hexdigest() != expected:
        raise CheckpointError(path, "checksum mismatch: damaged bytes")
    return payload


def load_checkpoint(directory: Path) -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; run without --resume to start from epoch 1")
    payload = read_verified(path)
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - the checksum matched, so this is a foreign payload
        raise CheckpointError(path, f"payload does not load ({type(error).__name__})") from None


# ---- best-dev weights -----------------------------------------------------------------------


def _tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def serialize_best(theta: Mapping[str, torch.Tensor], phi: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> bytes:
    """A safetensors file of theta (``theta.*``) and phi (``phi.*``), checksum in its metadata."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for prefix, part in (("theta", theta), ("phi", phi)):
        for key, value in part.items():
            tensor = value.detach().cpu().contiguous()
            if tensor.data_ptr() in seen and tensor.numel():  # safetensors refuses shared storage
                tensor = tensor.clone()
            seen.add(tensor.data_ptr())
            tensors[f"{prefix}.{key}"] = tensor
    meta = {key: json.dumps(value) for key, value in metadata.items()}
    meta["sha256"] = _tensor_digest(tensors)
    return save(tensors, metadata=meta)


def save_best(path: Path, data: bytes) -> None:
    _write_atomically(Path(path), data)


def read_best_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a best-weights file (epoch, dev_f1, ...) without reading its tensors."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        meta = header.get("__metadata__", {})
        return {key: (value if key == "sha256" else json.loads(value)) for key, value in meta.items()}
    except (OSError, struct.error, ValueError, TypeError, AttributeError, MemoryError, OverflowError):
        raise CheckpointError(path, "its safetensors header is damaged") from None


def load_best(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """(theta, phi, metadata) of a best-weights file whose checksum matches."""
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no best-dev weights at {path}")
    metadata = read_best_metadata(path)
    try:
        tensors = load(path.read_bytes())
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(path, f"truncated or damaged ({type(error).__name__})") from None
    if "sha256" not in metadata or _tensor_digest(tensors) != metadata["sha256"]:
        raise CheckpointError(path, "checksum mismatch: damaged bytes")
    theta = {key.removeprefix("theta."): value for key, value in tensors.items() if key.startswith("theta.")}
    phi = {key.removeprefix("phi."): value for key, value in tensors.items() if key.startswith("phi.")}
    return theta, phi, metadata


def link_or_copy(source: Path, destination: Path) -> None:
    """Put ``source``'s current bytes at ``destination`` (a hard link when the filesystem allows:
    best files are replaced, never rewritten in place, so the link keeps this version)."""
    if destination.exists() and os.path.samefile(source, destination):
        # Already this version (best not improved since the last checkpoint). Going on would
        # rename one link of the file onto another, which POSIX rename() skips, leaving the
        # partial name behind to break the next call.
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + f".{os.getpid()}.partial")
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    os.replace(partial, destination)


# ---- writing off the training thread ------------------------------------------------------------


class CheckpointWriter:
    """One background thread that runs write jobs in submission order.

    The caller serialises on its own thread first (``serialize_state``/``serialize_best``), so
    a job only moves bytes to disk. ``wait`` blocks until every job so far is done and re-raises
    the first error (a full disk must not pass silently).
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._jobs: list[Callable[[], None]] = []
        self._condition = threading.Condition()
        self._error: BaseException | None = None
        self._busy = False

    def submit(self, job: Callable[[], None]) -> None:
        with self._condition:
            self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="checkpoint-writer", daemon=True)
                self._thread.start()
            self._condition.notify_all()

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._jobs:
                    self._condition.wait()
                job = self._jobs.pop(0)
                self._busy = True
            try:
                job()
            except BaseException as error:  # noqa: BLE001 - handed to the training thread in wait()
                with self._condition:
                    self._error = self._error or error
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def wait(self) -> None:
        with self._condition:
            while self._jobs or self._busy:
                self._condition.wait()
            error, self._error = self._error, None
        if error is not None:
            raise error
