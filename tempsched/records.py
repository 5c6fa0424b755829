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


@dataclass(frozen=True)
class EpochReport:
    """Given to ``tempsched_epoch_end``: the epoch's metric rows (one per member) and timings."""

    epoch: int  # 0-based
    epochs: int
    best: int  # 0-based index of the chosen member
    rows: list[dict[str, Any]]
    train_seconds: float  # members' training passes
    eval_seconds: float  # members' selection-loss passes
    engine_seconds: float  # batch preparation, selection, feedback, schedule steps, weight and optimizer copies
    save_seconds: float  # metrics, checkpoint and best-model writes


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
