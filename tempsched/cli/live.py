"""The CLI's live view: a lifecycle-hook plugin that draws the population with rich.

On a terminal it shows a progress bar within the epoch (member steps, images/s per member, ETA of the
epoch and of the run) above the last epoch's table; elsewhere (a log file, CI) one plain line per epoch.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from tempsched import BatchProgress, EpochRecord, RunInfo, RunSummary, hookimpl
from tempsched.records import feedback_of


def feedback_text(row: dict[str, Any]) -> str:
    """What the feedback rule keeps for the member (``patience=2``, whatever the rule), or why it was reset."""
    if row.get("reset"):
        return f"reset: {row['reset']}"
    return " ".join(f"{key}={value}" for key, value in feedback_of(row).items()) or "-"


def loss_label(config: dict[str, Any]) -> str:
    """The selection loss named by what it measures (``loss (val-hard)``), where the run's configuration says."""
    return f"loss ({config['select_on']})" if config.get("select_on") else "loss"


def epoch_table(record: EpochRecord, loss: str = "loss") -> Table:
    """One row per member: strategy, temperature, losses, the feedback rule's state and the feedback it got."""
    table = Table(title=f"epoch {record.epoch + 1}/{record.epochs}", title_justify="left")
    for col in ("member", "strategy", "tau", "train loss", loss, "feedback", "delta tau", "tau next"):
        table.add_column(col, justify="left" if col in ("strategy", "feedback") else "right")
    for row in record.rows:
        style = "bold green" if row["best"] else None
        table.add_row(f"{row['member']}{' *' if row['best'] else ''}", row["strategy"], f"{row['tau']:.4g}",
                      f"{row['train_loss']:.2f}", f"{row['loss']:.2f}", feedback_text(row),
                      f"{row['delta_tau']:+.4g}", f"{row['tau_next']:.4g}", style=style)
    seconds = record.train_seconds + record.eval_seconds + record.engine_seconds + record.save_seconds
    table.caption = f"* best member; epoch took {seconds:.1f} s"
    return table


class RichReporter:
    """Shows the run as it goes: progress and a live table on a terminal, one line per epoch elsewhere."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[speed]}"), TimeRemainingColumn(), console=console)
        self.epoch_task: TaskID | None = None
        self.run_task: TaskID | None = None
        self.table: Table | None = None
        self.epoch_started = 0.0
        self.loss = "loss"

    @hookimpl
    def tempsched_run_start(self, info: RunInfo) -> None:
        verb = "resuming at epoch" if info.start_epoch else "starting"
        self.loss = loss_label(info.config)
        self.console.print(f"[bold]tempsched[/] {info.preset}: {info.members} member(s), {info.epochs} epochs, "
                           f"{verb} {info.start_epoch + 1 if info.start_epoch else ''}".rstrip())
        self.console.print(f"data: {info.data}", highlight=False)
        self.console.print(f"run directory: {info.run_dir}", highlight=False)
        if self.console.is_terminal:
            left = (info.epochs - info.start_epoch) * info.batches_per_epoch
            self.run_task = self.progress.add_task("run", total=left, speed="")
            self.epoch_task = self.progress.add_task(f"epoch {info.start_epoch + 1}", total=info.batches_per_epoch,
                                                     speed="")
            self.live = Live(self._view(), console=self.console, refresh_per_second=4)
            self.live.start()
            self.epoch_started = time.perf_counter()

    def _view(self) -> Group:
        return Group(self.progress, self.table) if self.table is not None else Group(self.progress)

    @hookimpl
    def tempsched_batch_end(self, progress: BatchProgress) -> None:
        if self.live is None or self.epoch_task is None or self.run_task is None:
            return
        if progress.batch == 1:
            self.epoch_started = time.perf_counter()
            self.progress.reset(self.epoch_task, total=progress.batches,
                                description=f"epoch {progress.epoch + 1}/{progress.epochs}")
        elapsed = max(time.perf_counter() - self.epoch_started, 1e-9)
        speed = progress.examples_per_epoch * progress.batch / progress.batches / elapsed
        self.progress.update(self.epoch_task, completed=progress.batch, speed=f"{speed:.0f} img/s per member")
        self.progress.advance(self.run_task)

    @hookimpl
    def tempsched_epoch_end(self, record: EpochRecord) -> None:
        if self.live is not None:
            self.table = epoch_table(record, self.loss)
            self.live.update(self._view(), refresh=True)
            return
        best = record.best_row
        self.console.print(
            f"epoch {record.epoch + 1}/{record.epochs}: best member {best['member']} ({best['strategy']}) "
            f"tau {best['tau']:.4g} {self.loss} {best['loss']:.3f}; taus next "
            + " ".join(f"{r['tau_next']:.3g}" for r in record.rows), highlight=False)

    @hookimpl
    def tempsched_run_end(self, summary: RunSummary) -> None:
        self.close()
        table = Table(title="best member", show_header=False, title_justify="left")
        table.add_row("member", f"{summary.best_member} ({summary.best_strategy}), epoch {summary.best_epoch + 1}")
        table.add_row("tau", f"{summary.best_tau:.4g}")
        table.add_row(f"selection {self.loss}", f"{summary.best_loss:.4f}")
        for key, value in summary.test_metrics.items():
            table.add_row(key.replace("_", " "), f"{value:.6g}")
        table.add_row("throughput", f"{summary.images_per_second_per_member:.0f} images/s per member")
        table.add_row("member-epochs", str(summary.member_epochs))  # less than members x epochs once members retire
        table.add_row("wall time", f"{summary.wall_seconds:.1f} s")
        table.add_row("trained on", summary.hardware)  # names torch's version: figures differ between versions
        table.add_row("data", summary.data)
        table.add_row("files", f"{summary.run_dir}/  " + ", ".join(summary.files.values()))
        self.console.print(table)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
