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

Every file is written under a temporary ``<name>.<pid>.<thread>.partial`` name and renamed over
the last good copy, so a failed write (disk full, quota, I/O error) leaves the last good copy as
it was: the partial file is removed and ``CheckpointWriteError`` names the file and the free
space. A ``.partial`` left by a crash is removed by ``remove_stray_partials`` on the next start.

Writes can leave the training thread: ``serialize_state`` copies the tensors into bytes on the
caller's thread (so training may go on mutating them), and ``CheckpointWriter``
(checkpoint_writer.py, still importable from here) writes those bytes in a background thread,
in order.

Over ~400 lines as one job, the checkpoint's on-disk contract: the two kinds of file share the
atomic write (partial name, rename over the last good copy), the checksums and the two errors
(``CheckpointError``, ``CheckpointWriteError``, which Ray pickles with a trial's failure and so
stay here); split apart, the rules that keep the last good copy would sit in two places.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # torch loads where tensors are made or read: `best`, `report` and a
    import torch  # train that stops at a bad input read run folders without it (seconds per command)

from metaxl_tune.train.checkpoint_writer import CheckpointWriter  # noqa: F401 - re-exported, its old home

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


_MEASURE = object()


class CheckpointWriteError(OSError):
    """A checkpoint file could not be written (disk full, quota, I/O error); the copy it would
    have replaced is unchanged. Its message is one line naming the file and the free space."""

    def __init__(self, path: Path, cause: OSError, *, epoch: int | None = None, advice: str = "",
                 needed: int | None = None, free: Any = _MEASURE):
        self.path, self.cause, self.epoch, self.advice, self.needed = Path(path), cause, epoch, advice, needed
        # Measured once, when the write failed (the partial file is removed by then).
        self.free: int | None = free_space(self.path) if free is _MEASURE else free
        reason = (cause.strerror or str(cause)).lower()
        space = f"{format_size(self.free)} free there" if self.free is not None else "free space unknown"
        if needed is not None:
            space += f", {format_size(needed)} needed"
        where = f"epoch {epoch}: " if epoch is not None else ""
        # Built as OSError(message): no errno, so the CLI prints the message as it is.
        super().__init__(
            f"{where}cannot write checkpoint file {self.path}: {reason} ({space}); the last good copy is kept"
            + (f"; {advice}" if advice else "")
        )

    def _with(self, **changes: Any) -> "CheckpointWriteError":
        fields = {"epoch": self.epoch, "advice": self.advice, "needed": self.needed, "free": self.free, **changes}
        return CheckpointWriteError(self.path, self.cause, **fields)

    def at_epoch(self, epoch: int) -> "CheckpointWriteError":
        return self._with(epoch=epoch)

    def advise(self, advice: str) -> "CheckpointWriteError":
        """The same error with context-specific advice (e.g. the exact command to run)."""
        return self._with(advice=advice)

    def __reduce__(self) -> tuple:
        # Pickled whole (Ray sends a trial's error between processes): args hold only the message.
        return (_rebuild_write_error, (self.path, self.cause, self.epoch, self.advice, self.needed, self.free))


def _rebuild_write_error(path: Path, cause: OSError, epoch: int | None, advice: str, needed: int | None,
                         free: int | None) -> CheckpointWriteError:
    return CheckpointWriteError(path, cause, epoch=epoch, advice=advice, needed=needed, free=free)


def free_space(path: Path) -> int | None:
    """Bytes free on the file system of ``path`` (its nearest existing folder), if known."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def format_size(size: float) -> str:
    if size < 1024:
        return f"{int(size)} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024:
            break
    return f"{size:.1f} {unit}"


def rng_state() -> dict[str, Any]:
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    import torch

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
    import torch

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


# Temporary names: the final name, the writer's process and thread, ".partial". Only names of this
# shape, of our own files, are removed as strays (a crash between write and rename leaves one).
_PARTIAL = re.compile(rf"^({re.escape(STATE_FILE)}|{re.escape(BEST_FILE)})\.\d+(\.\d+)?\.partial$")


def _partial_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")


def _discard(partial: Path) -> None:
    try:
        partial.unlink(missing_ok=True)
    except OSError:
        pass


def _write_partial(path: Path, data: bytes | memoryview) -> Path:
    """``data`` on disk under ``path``'s temporary name; on failure nothing is left behind."""
    partial = _partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        _discard(partial)
        raise CheckpointWriteError(path, error, needed=memoryview(data).nbytes) from None
    return partial


def _link_partial(source: Path, destination: Path) -> Path:
    """``source``'s bytes under ``destination``'s temporary name: a hard link where the file
    system allows (best files are replaced, never rewritten in place, so the link keeps this
    version), else a copy."""
    partial = _partial_path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        _discard(partial)  # a leftover of this same process and thread would make link() fail
        try:
            os.link(source, partial)
        except OSError:
            shutil.copyfile(source, partial)
    except OSError as error:
        _discard(partial)
        raise CheckpointWriteError(destination, error) from None
    return partial


def _commit(partial: Path, path: Path) -> None:
    """Rename ``partial`` over ``path``. When both are links to one file rename() does nothing
    and succeeds (POSIX), so the partial name is removed here: the bytes are in place already."""
    try:
        os.replace(partial, path)
    except OSError as error:
        _discard(partial)
        raise CheckpointWriteError(path, error) from None
    if os.path.lexists(partial):
        _discard(partial)


def _write_atomically(path: Path, data: bytes | memoryview) -> None:
    _commit(_write_partial(path, data), path)


def save_checkpoint(directory: Path, state: dict[str, Any] | bytes, best: Path | None = None) -> Path:
    """Write ``state`` (a dict, or bytes from ``serialize_state``) as ``directory/state.pt`` and,
    given ``best``, that best-weights file as ``directory/best.safetensors``.

    Both files are on disk under temporary names before either is renamed, so a failed write
    (a full disk) leaves the previous checkpoint whole: its state and its best weights."""
    directory = Path(directory)
    data = state if isinstance(state, (bytes, bytearray)) else serialize_state(state)
    best_partial = None
    if best is not None and not _same_file(best, directory / BEST_FILE):
        best_partial = _link_partial(Path(best), directory / BEST_FILE)
    try:
        state_partial = _write_partial(directory / STATE_FILE, data)
    except BaseException:
        if best_partial is not None:
            _discard(best_partial)
        raise
    if best_partial is not None:
        _commit(best_partial, directory / BEST_FILE)
    _commit(state_partial, directory / STATE_FILE)
    return directory


def remove_stray_partials(*directories: Path) -> list[Path]:
    """Remove the temporary files a crash left in these checkpoint folders (only names written
    by this module, e.g. ``state.pt.123.456.partial``); returns what was removed."""
    removed = []
    for directory in directories:
        if not Path(directory).is_dir():
            continue
        for path in sorted(Path(directory).iterdir()):
            if _PARTIAL.match(path.name) and (path.is_file() or path.is_symlink()):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


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
    import torch

    payload = read_verified(path)
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - the checksum matched, so this is a foreign payload
        raise CheckpointError(path, f"payload does not load ({type(error).__name__})") from None


def verify_checkpoint(directory: Path) -> None:
    """Check a resume checkpoint's files (state checksum, best-dev weights) before any data or
    model is loaded for it, so that a damaged one costs seconds, not a data load."""
    read_verified(Path(directory) / STATE_FILE)
    best = Path(directory) / BEST_FILE
    if best.is_file():
        load_best(best)


# ---- best-dev weights -----------------------------------------------------------------------


def _tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    import torch

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
    """Put ``source``'s current bytes at ``destination`` (a hard link where the file system
    allows, else a copy), replacing it atomically; nothing to do when both already are one file
    (a plateau: the best weights did not change since the last checkpoint)."""
    source, destination = Path(source), Path(destination)
    if _same_file(source, destination):
        return
    _commit(_link_partial(source, destination), destination)
