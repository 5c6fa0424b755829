"""The study directory and whose it is: one directory belongs to one study.

``STUDY_DIR/study-name`` records the name of the study the directory was made for, on its first
run. Later runs (and ``tune report``) take the study name from it rather than from the directory's
name, so a renamed or copied directory still continues its own study, and its ``trials/<n>/`` and
``best.toml`` cannot be mixed with another study's. A different ``--study-name`` for a directory
that records one is refused, and so is a directory whose ``trials/`` holds run directories the
study does not have (left by another study, e.g. a directory made before the record existed).
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import BaseStorage

from tempsched import rundir as rd
from tempsched.errors import UserError

NAME_FILE = "study-name"
TRIALS = "trials"
BEST_TOML = "best.toml"


def trial_dir(study_dir: Path, number: int) -> Path:
    """Where trial ``number`` trains."""
    return study_dir / TRIALS / str(number)


def recorded_name(study_dir: Path) -> str | None:
    """The study name the directory records, if it records one."""
    path = study_dir / NAME_FILE
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").strip() or None


def default_study_name(study_dir: Path) -> str:
    """The study a directory belongs to: the recorded name, else the directory's own name."""
    return recorded_name(study_dir) or study_dir.resolve().name


def check_owner(study_dir: Path, study_name: str, storage: BaseStorage, storage_label: str) -> None:
    """Refuse to run ``study_name`` in a directory that belongs to another study.

    Runs before the study is created, so a refused run leaves the storage as it was.
    """
    recorded = recorded_name(study_dir)
    if recorded is not None and recorded != study_name:
        raise UserError(f"{study_dir} belongs to study '{recorded}' (see {study_dir / NAME_FILE}): leave out "
                        f"--study-name to continue it, or use another --out for study '{study_name}'")
    try:
        trials = len(storage.get_all_trials(storage.get_study_id_from_name(study_name), deepcopy=False))
    except KeyError:  # a new study
        trials = 0
    runs = (study_dir / TRIALS).iterdir() if (study_dir / TRIALS).is_dir() else []
    foreign = sorted(int(p.name) for p in runs if p.name.isdigit() and int(p.name) >= trials)
    if foreign:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage)) or "none"
        raise UserError(f"{trial_dir(study_dir, foreign[0])} is no trial of study '{study_name}' (it has {trials} "
                        f"trial(s) in {storage_label}; studies there: {names}): it belongs to another study, so "
                        f"give that study's --study-name, or use another --out")


def record_owner(study_dir: Path, study_name: str) -> None:
    """Record ``study_name`` as the directory's study, once the study exists (``check_owner`` passed)."""
    if recorded_name(study_dir) is None:
        rd.write_text(study_dir / NAME_FILE, study_name + "\n")
