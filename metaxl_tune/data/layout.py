"""Finding a language's folder and its split files inside a local data directory."""

from __future__ import annotations

from pathlib import Path

from metaxl_tune.data.errors import DataError

SPLITS: tuple[str, ...] = ("train", "dev", "test")
# Hub datasets call the dev split "validation"; both names are accepted for files on disk.
SPLIT_NAMES: dict[str, tuple[str, ...]] = {"train": ("train",), "dev": ("dev", "validation"), "test": ("test",)}


def language_dir(data_dir: Path, language: str) -> Path:
    """``<data_dir>/<language>``, or a DataError naming the languages that are there."""
    if not data_dir.is_dir():
        raise DataError(
            f"{data_dir}: no such data directory; pass --data DIR with one folder per language, "
            "--data hub or --data synthetic"
        )
    folder = data_dir / language
    if not folder.is_dir():
        present = ", ".join(sorted(p.name for p in data_dir.iterdir() if p.is_dir())) or "none"
        raise DataError(
            f"{data_dir}: no folder for language '{language}' (languages present: {present}); "
            f"add {folder} or choose one of the languages present"
        )
    return folder


def find_split_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path | None]:
    """Each split's file (None where absent), trying every split name with every suffix."""
    files: dict[str, Path | None] = {}
    for split in SPLITS:
        found = [folder / f"{name}{suffix}" for name in SPLIT_NAMES[split] for suffix in suffixes]
        found = [path for path in found if path.is_file()]
        if len(found) > 1:
            # Silently preferring one would train on data the user may believe is ignored.
            raise DataError(f"{folder}: both {found[0].name} and {found[1].name} hold the {split} split; keep one")
        files[split] = found[0] if found else None
    return files


def require_split_files(
    folder: Path, files: dict[str, Path | None], suffixes: tuple[str, ...], layout: str
) -> dict[str, Path]:
    """``files`` with every split present, or a DataError naming the first missing one."""
    for split in SPLITS:
        if files[split] is None:
            tried = ", ".join(f"{name}{suffix}" for name in SPLIT_NAMES[split] for suffix in suffixes)
            raise DataError(
                f"{folder / SPLIT_NAMES[split][0]}{suffixes[0]}: missing {split} split "
                f"(looked for {tried}); add it in the {layout} layout"
            )
    return {split: path for split, path in files.items() if path is not None}
