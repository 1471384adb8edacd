"""What a folder on disk already holds, so that no command writes into another command's results.

A search or an ablation folder (``STORAGE/NAME``) holds the driver's saved options
(``OPTIONS_FILE``) beside Tune's and Optuna's state; the storage folder holds such folders.
`train --output` and `best -o` refuse to write there: a run written among Tune's state, or a
config written over a finished run's, no longer matches what the folder's weights were trained on.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

OPTIONS_FILE = "metaxl-search.json"
"""A search's or an ablation's saved options (search/driver/options.py writes it)."""
DRIVER_STATE = (OPTIONS_FILE, "optuna.journal", "tuner.pkl")
"""Files that only a search or an ablation driver writes into its folder."""


def driver_folder_of(path: Path) -> tuple[Path, str] | None:
    """The search or ablation folder that ``path`` is, lies in, or holds (a storage folder),
    with how it was found; None for a path that touches none."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if not folder.is_dir():
            continue
        found = [name for name in DRIVER_STATE if (folder / name).exists()]
        if found or any(folder.glob("experiment_state-*.json")):
            return folder, f"the folder of a search or an ablation ({', '.join(found) or 'Tune state'})"
    if path.is_dir():
        try:
            inside = next(child for child in path.iterdir() if (child / OPTIONS_FILE).is_file())
        except (StopIteration, OSError):
            return None
        return path, f"a storage folder of searches (e.g. {inside.name})"
    return None


def writable(folder: Path) -> bool:
    """Can a file be created in ``folder``? Probed for real: permission bits say nothing for
    root, nor for read-only mounts, immutable folders and /proc."""
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".metaxl-tune-write-test-")
    except OSError:
        return False
    os.close(handle)
    os.unlink(probe)
    return True
