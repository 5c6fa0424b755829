"""``tempsched eval NAME [RUN_DIR...]``: run an evaluation a plugin registered and write its report folder.

``eval`` also takes every option of ``tempsched run`` (but --out and --resume): they make the base
configuration of evaluations that train their own runs (``n-sweep``, ``unseen``). The evaluation's own
options are set with ``--set NAME=VALUE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tempsched.cli import options as opt
from tempsched.cli.run import spec_from_context
from tempsched.cli.shortcuts import ShortcutCommand
from tempsched.evaluation import evaluate as run_named
from tempsched.plugins import PluginManager

console = Console()


class EvalCommand(ShortcutCommand):
    """``eval``: besides the shortcut options, its help lists the evaluations the plugins registered."""

    def adopt(self, manager: PluginManager) -> None:
        super().adopt(manager)
        lines = [f"{name}: {cls.title or cls.__doc__ or ''}".strip() for name, cls in
                 sorted(manager.registry.evaluations.items())]
        self.epilog = "Evaluations (--set NAME=VALUE sets their options; 'tempsched plugins' lists them):\n\n" + \
            "\n\n".join(lines)


def evaluate(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Evaluation to run ('tempsched plugins' lists them)."),
    runs: Optional[List[Path]] = typer.Argument(None, help="Run directories to evaluate."),
    out: Optional[Path] = typer.Option(None, help="Report folder (default reports/NAME-<time>).",
                                       rich_help_panel="Evaluation"),
    cache: Path = typer.Option(Path("runs/eval"), help="Where runs the evaluation trains (and other reusable work, such "
                               "as a classifier or attack results) are kept; a finished run of the same configuration "
                               "is reused, an unfinished one resumed.",
                               rich_help_panel="Evaluation"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="An option of the evaluation: NAME=VALUE "
                                             "(repeatable; 'tempsched plugins' lists them).",
                                             rich_help_panel="Evaluation"),
) -> None:
    """Run an evaluation (a paper experiment) and write report.md, results.json and its figures."""
    manager = PluginManager()
    settings = {key.partition(".")[2]: value for key, value in opt.assignments(set_ or [], "--set", "eval").items()}
    spec = spec_from_context(ctx)
    threads = spec.resolve(manager.registry).performance.threads
    if threads:
        import torch

        torch.set_num_threads(threads)  # evaluations of reused runs train nothing
    with _progress() as progress:
        report = run_named(name, list(runs or []), out or opt.fresh_path("reports", name), manager=manager,
                           spec=spec, options=settings, cache=cache, progress=progress)
    console.print(f"report: {report.out / 'report.md'}", highlight=False)


class _progress:
    """Rich progress bars on a terminal (one per loop an evaluation reports), nothing elsewhere."""

    def __enter__(self) -> Callable[[str, int], Callable[[int], None]]:
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), console=console, disable=not console.is_terminal)
        self.bars.start()

        def start(description: str, total: int) -> Callable[[int], None]:
            task = self.bars.add_task(description, total=total)
            return lambda advance=1: self.bars.advance(task, advance)

        return start

    def __exit__(self, *exc: Any) -> None:
        self.bars.stop()
