"""``tensorboard``: log a population to TensorBoard, for users who watch their runs there.

Inert unless the environment variable ``TEMPSCHED_TENSORBOARD`` is set to something other than ``""``
or ``0``: a shipped plugin must not slow down or clutter every run. When it is on, each run writes event
files under ``RUN_DIR/tensorboard/``: per member (``member 1`` ...) its temperature, selection loss and
mean training loss per epoch, the epoch's best loss, temperature and member, and at the end the test
figures. ``tensorboard --logdir RUN_DIR`` shows them. The writer is TensorBoard's own
(``torch.utils.tensorboard``), installed with ``pip install 'tempsched[tensorboard]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tempsched import EpochRecord, RunInfo, RunSummary, UserError, hookimpl

ENV = "TEMPSCHED_TENSORBOARD"
FOLDER = "tensorboard"


def enabled() -> bool:
    """Whether the user asked for TensorBoard logs."""
    return os.environ.get(ENV, "").strip() not in ("", "0")


class _Writer:
    """The open event file of the run in progress (runs in one process follow one another)."""

    def __init__(self) -> None:
        self.writer: Any = None

    def open(self, run_dir: Path) -> None:
        self.close()  # a run that failed never reached run_end
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(f"{ENV} is set but TensorBoard is not installed: pip install 'tempsched[tensorboard]' "
                            f"(or unset {ENV})") from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / FOLDER))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


_current = _Writer()


@hookimpl
def tempsched_run_start(info: RunInfo) -> None:
    if enabled():
        _current.open(info.run_dir)


@hookimpl
def tempsched_epoch_end(record: EpochRecord) -> None:
    writer = _current.writer
    if writer is None:
        return
    for row in record.rows:
        for key in ("tau", "loss", "train_loss"):
            writer.add_scalar(f"{key}/member {row['member']}", row[key], record.epoch)
    best = record.best_row
    writer.add_scalar("best/loss", best["loss"], record.epoch)
    writer.add_scalar("best/tau", best["tau"], record.epoch)
    writer.add_scalar("best/member", best["member"], record.epoch)
    writer.flush()  # watched while the run trains


@hookimpl
def tempsched_run_end(summary: RunSummary) -> None:
    writer = _current.writer
    if writer is None:
        return
    for key, value in summary.test_metrics.items():
        writer.add_scalar(f"test/{key}", value, summary.best_epoch)
    _current.close()
