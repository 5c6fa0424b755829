"""The CLI's live view: a lifecycle-hook plugin that draws the population with rich."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from tempsched.hookspecs import hookimpl
from tempsched.records import EpochReport, RunInfo, RunSummary


def epoch_table(report: EpochReport) -> Table:
    """One row per member: strategy, temperature, losses, patience and the feedback it got."""
    table = Table(title=f"epoch {report.epoch + 1}/{report.epochs}", title_justify="left")
    for col in ("member", "strategy", "tau", "train loss", "loss", "patience", "delta tau", "tau next"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for row in report.rows:
        style = "bold green" if row["best"] else None
        table.add_row(f"{row['member']}{' *' if row['best'] else ''}", row["strategy"], f"{row['tau']:.4g}",
                      f"{row['train_loss']:.2f}", f"{row['loss']:.2f}", str(row.get("patience", "-")),
                      f"{row['delta_tau']:+.4g}", f"{row['tau_next']:.4g}", style=style)
    seconds = report.train_seconds + report.eval_seconds + report.engine_seconds + report.save_seconds
    table.caption = f"* best member; epoch took {seconds:.1f} s"
    return table


class RichReporter:
    """Shows the run as it goes: a live table on a terminal, one line per epoch elsewhere."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None

    @hookimpl
    def tempsched_run_start(self, info: RunInfo) -> None:
        verb = "resuming at epoch" if info.start_epoch else "starting"
        self.console.print(f"[bold]tempsched[/] {info.preset}: {info.members} member(s), {info.epochs} epochs, "
                           f"{verb} {info.start_epoch + 1 if info.start_epoch else ''}".rstrip())
        self.console.print(f"data: {info.data}", highlight=False)
        self.console.print(f"run directory: {info.run_dir}", highlight=False)
        if self.console.is_terminal:
            self.live = Live(console=self.console, auto_refresh=False)
            self.live.start()

    @hookimpl
    def tempsched_epoch_end(self, report: EpochReport) -> None:
        if self.live is not None:
            self.live.update(epoch_table(report), refresh=True)
            return
        best = report.rows[report.best]
        self.console.print(
            f"epoch {report.epoch + 1}/{report.epochs}: best member {best['member']} ({best['strategy']}) "
            f"tau {best['tau']:.4g} loss {best['loss']:.3f}; taus next "
            + " ".join(f"{r['tau_next']:.3g}" for r in report.rows), highlight=False)

    @hookimpl
    def tempsched_run_end(self, summary: RunSummary) -> None:
        self.close()
        table = Table(title="best member", show_header=False, title_justify="left")
        table.add_row("member", f"{summary.best_member} ({summary.best_strategy}), epoch {summary.best_epoch + 1}")
        table.add_row("tau", f"{summary.best_tau:.4g}")
        table.add_row("selection loss", f"{summary.best_loss:.4f}")
        for key, value in summary.test_metrics.items():
            table.add_row(key.replace("_", " "), f"{value:.6g}")
        table.add_row("throughput", f"{summary.images_per_second_per_member:.0f} images/s per member")
        table.add_row("wall time", f"{summary.wall_seconds:.1f} s")
        table.add_row("data", summary.data)
        table.add_row("files", f"{summary.run_dir}/  " + ", ".join(summary.files.values()))
        self.console.print(table)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
