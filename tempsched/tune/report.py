"""``tempsched tune report``: open a study that exists, and write Optuna's plots of it."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna

from tempsched import rundir as rd
from tempsched.errors import UserError
from tempsched.tune.storage import JOURNAL, open_storage, storage_label

REPORT_PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values")


def open_existing(study_dir: Path, study_name: str, storage: str | None = None) -> optuna.Study:
    """Load a study for reporting, refusing one that does not exist (rather than creating it)."""
    if storage is None and not (study_dir / JOURNAL).is_file():
        raise UserError(f"{study_dir} holds no study ({JOURNAL} not found); give --storage if it lives elsewhere")
    opened = open_storage(storage, study_dir)
    try:
        return optuna.load_study(study_name=study_name, storage=opened)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(opened)) or "none"
        raise UserError(f"no study '{study_name}' in {storage_label(storage, study_dir)} (studies there: {names})"
                        ) from None


def write_report(study: optuna.Study, out_dir: Path) -> tuple[list[Path], dict[str, str]]:
    """Write Optuna's plots as HTML files into ``out_dir``; returns the files and, per plot skipped, why."""
    from optuna import visualization

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    skipped: dict[str, str] = {}
    for name in REPORT_PLOTS:
        try:
            with warnings.catch_warnings():  # e.g. "importances will be equal" with few trials: the plot shows it
                warnings.simplefilter("ignore", UserWarning)
                figure = getattr(visualization, f"plot_{name}")(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials for this plot
            skipped[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            continue
        path = out_dir / f"{name}.html"
        # "directory": the plots load plotly.min.js from beside them, so they open offline.
        rd.write_text(path, figure.to_html(include_plotlyjs="directory"))
        written.append(path)
    if written:
        from plotly.offline import get_plotlyjs

        rd.write_text(out_dir / "plotly.min.js", get_plotlyjs())
    return written, skipped
