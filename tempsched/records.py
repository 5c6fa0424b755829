"""Plain records the engine hands to lifecycle hooks: what a run is, what an epoch did, how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunInfo:
    """Given to ``tempsched_run_start``."""

    run_dir: Path
    preset: str
    members: int
    epochs: int
    start_epoch: int  # > 0 when the run resumes
    data: str  # which data the run uses, in words
    strategies: list[str]
    config: dict[str, Any]
    batches_per_epoch: int


@dataclass(frozen=True)
class BatchProgress:
    """Given to ``tempsched_batch_end``: how far the current epoch is."""

    epoch: int  # 0-based
    epochs: int
    batch: int  # batches done in this epoch, counting this one
    batches: int  # batches in one epoch
    examples_per_epoch: int  # examples each member sees in one epoch


# The engine's keys in a metrics row (docs/writing-plugins.md, "Metrics rows", says what each holds);
# "reset" only in the row of a member that diverged, "nonfinite" only in metrics.jsonl lines with a NaN;
# "copied_from", "explored" and "retired" only in the rows of an epoch whose plan was not Algorithm 1's.
ROW_KEYS = ("epoch", "member", "strategy", "tau", "tau_end", "train_loss", "loss", "best", "feedback",
            "delta_tau", "tau_strategy", "tau_next", "steps", "reset", "copied_from", "explored", "retired",
            "nonfinite")


def feedback_of(row: dict[str, Any]) -> dict[str, Any]:
    """A member's feedback state in a metrics row: its ``feedback`` field, or, in a row written before that
    field existed (the state's keys beside the engine's, such as ``patience``), every key not the engine's."""
    if "feedback" in row:
        return row["feedback"]
    return {key: value for key, value in row.items() if key not in ROW_KEYS}


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: a row per member (the rows of ``metrics.jsonl``), the best member and the timings.

    The engine makes it; the run adds ``save_seconds`` once the files are written and hands the same
    record to ``tempsched_epoch_end``.
    """

    epoch: int  # 0-based
    epochs: int  # planned total
    best: int  # 0-based index of the chosen member
    rows: list[dict[str, Any]]  # one per member that trained in the epoch (retired members write none)
    train_seconds: float  # members' training passes
    eval_seconds: float  # members' selection-loss passes
    engine_seconds: float  # batch preparation, selection, feedback, schedule steps, weight and optimizer copies
    save_seconds: float = 0.0  # metrics, checkpoint and best-model writes

    @property
    def best_row(self) -> dict[str, Any]:
        return next(row for row in self.rows if row["best"])


@dataclass(frozen=True)
class RunSummary:
    """Given to ``tempsched_run_end`` and written to ``summary.json``."""

    run_dir: Path
    best_epoch: int
    best_member: int  # 1-based
    best_strategy: str
    best_tau: float
    best_loss: float
    test_metrics: dict[str, float]
    files: dict[str, str]
    wall_seconds: float
    images_per_second_per_member: float
    data: str
    extra: dict[str, Any] = field(default_factory=dict)
    hardware: str = ""  # what trained it, as detected (GPU name, or CPU model and threads): figures name it
    platform: str = ""  # hardware.platform_tag: device kind and torch version, the suffix of a cached run's name
    member_epochs: int = 0  # epochs trained, summed over the members (a retired member stops counting)
