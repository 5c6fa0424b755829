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

from tempsched import training
from tempsched.cli import options as opt
from tempsched.cli.run import config_from_context
from tempsched.errors import UserError
from tempsched.evaluation import EvalContext, Report, run_evaluation
from tempsched.plugins import PluginManager

console = Console()


def evaluation_options(manager: PluginManager, name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Every option of evaluation ``name``: its declared defaults with ``settings`` over them, each checked."""
    cls = manager.registry.get("evaluations", name)
    values = {key: param.default for key, param in cls.params.items()}
    for key, value in settings.items():
        if key not in cls.params:
            raise UserError(f"evaluation '{name}' has no option '{key}' (its options: {', '.join(cls.params) or 'none'})")
        values[key] = value
    return {key: cls.params[key].check(value, f"evaluation option '{key}'") for key, value in values.items()}


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
    chosen = evaluation_options(manager, name, settings)
    report = Report(out or opt.fresh_path("reports", name), manager.registry.get("evaluations", name).title or name)
    report.check()  # a file, a run or a stranger's folder is refused now, not after the evaluation's work
    evaluation = training.build_part(manager, "evaluations", name, chosen)
    base = config_from_context(manager, ctx)
    if base.performance.threads:
        import torch

        torch.set_num_threads(base.performance.threads)  # evaluations of reused runs train nothing
    run_dirs = list(runs or [])
    for run_dir in run_dirs:
        training.load_run_config(run_dir, manager)  # not a run directory: one line, before any work
    if len(run_dirs) < evaluation.needs_runs:
        raise UserError(f"evaluation '{name}' needs {evaluation.needs_runs} run director"
                        f"{'y' if evaluation.needs_runs == 1 else 'ies'}, got {len(run_dirs)}")
    with _progress() as progress:
        context = EvalContext(runs=run_dirs, base=base, report=report, progress=progress, manager=manager,
                              cache=cache, train=lambda config: training.ensure_run(config, manager, cache))
        run_evaluation(evaluation, context, {"evaluation": name, "options": chosen,
                                             "runs": [str(r) for r in run_dirs], "base": base.to_dict()})
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
