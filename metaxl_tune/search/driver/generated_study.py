"""Ablations over a study file written for them (`best --rerun`, `best --compare`): what an
interrupt keeps, and no study file left behind for nothing.

The study file (``<storage>/<name>.study.yaml``) is part of the ablation's saved state once the
ablation has saved its options: ``ablate --resume`` reads it. Until then it belongs to nothing,
and an interrupt or a failure removes it, so Ctrl-C does not leave one behind each time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from metaxl_tune.search.driver.ablate import AblationOptions, run_ablation
from metaxl_tune.search.faults.interrupt import resume_hint
from metaxl_tune.search.driver.options import OPTIONS_FILE


class AblationInterrupted(Exception):
    """A generated ablation stopped by a signal; ``line`` says what was kept and how to go on."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


def interrupted_line(what: str, name: str, storage: Path, saved: bool, outcome: dict | None = None) -> str:
    if not saved:
        return f"interrupted before {what} {name} started; nothing was kept"
    done = (f"{outcome['completed']} of {outcome['runs']} runs completed" if outcome is not None
            else "its finished runs are kept")
    return (f"interrupted; {what} {name} is saved ({done}); resume with: {resume_hint('ablate', name, str(storage))}, "
            f"then see it with: metaxl-tune report --name {name}")


def run_generated_ablation(options: AblationOptions, study_file: Path, *, what: str,
                           log: Callable[[str], None] = print) -> dict:
    """``run_ablation(options)``; on an interrupt, AblationInterrupted (the study file removed
    when the ablation saved nothing); on any other failure before the save, the file removed too."""
    storage = Path(options.storage).resolve()

    def saved() -> bool:
        return (storage / options.name / OPTIONS_FILE).is_file()

    try:
        outcome = run_ablation(options, log=log)
    except KeyboardInterrupt:
        kept = saved()
        if not kept:
            study_file.unlink(missing_ok=True)
        raise AblationInterrupted(interrupted_line(what, options.name, storage, kept)) from None
    except BaseException:
        if not saved():
            study_file.unlink(missing_ok=True)
        raise
    if outcome["interrupted"]:
        raise AblationInterrupted(interrupted_line(what, options.name, storage, saved(), outcome))
    return outcome
