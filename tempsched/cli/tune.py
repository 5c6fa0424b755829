"""``tempsched tune`` and ``tempsched tune report``: the command line of ``tempsched.tune``.

``tune`` takes every option of ``tempsched run`` except ``--out`` and ``--resume`` (a study has its own
``--out`` and resumes by running the same command again). It does not redeclare them:
``options.adopt_run_options`` gives the tune command run's own parsed options, and the study reads their
values from the context (``options.run_values``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import optuna
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from tempsched import tune
from tempsched.cli.run import spec_from_context
from tempsched.cli.shortcuts import ShortcutGroup
from tempsched.config import load_toml
from tempsched.errors import UserError
from tempsched.plugins import PluginManager
from tempsched.space import SearchSpace, parse_overrides


console = Console()
err_console = Console(stderr=True)

tune_app = typer.Typer(
    cls=ShortcutGroup,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Tune a preset's outer knobs (its parts' declared ranges, tau bounds) with an Optuna study; every trial "
         "is a whole population run. Also takes every option of 'tempsched run' but --out and --resume. "
         "'tempsched tune report STUDY_DIR' writes the study's plots.",
)


def best_table(study: optuna.Study, k: int = 5) -> Table:
    """The ``k`` best completed trials with their parameters, and the study's counts by state."""
    top = tune.best_trials(study, k)
    names = sorted({n for t in top for n in t.params})
    table = Table(title=f"study {study.study_name}: best trials", title_justify="left")
    for col in ("trial", "loss", "test mse", *names):
        table.add_column(col, justify="right")
    for t in top:
        mse = t.user_attrs.get("test_mse")
        table.add_row(str(t.number), f"{t.value:.4f}", "-" if mse is None else f"{mse:.5f}",
                      *[_fmt(t.params.get(n)) for n in names])
    c = tune.counts(study)
    table.caption = (f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed, {c['running']} running; "
                     f"loss = best member's selection loss")
    return table


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """Study callback of worker 0: a live table on a terminal, one line per trial elsewhere."""

    def __init__(self) -> None:
        self.live: Live | None = None

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if console.is_terminal:
            if self.live is None:
                self.live = Live(console=console, auto_refresh=False, transient=True)  # the final table follows
                self.live.start()
            self.live.update(best_table(study), refresh=True)
            return
        what = f"loss {trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
        if "pruned_after_epoch" in trial.user_attrs:
            what += f" after epoch {trial.user_attrs['pruned_after_epoch']}"
        params = " ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
        c = tune.counts(study)
        console.print(f"trial {trial.number}: {what} ({params}); study: {c['complete']} complete, "
                          f"{c['pruned']} pruned", highlight=False)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


@tune_app.callback(invoke_without_command=True)
def study(
    ctx: typer.Context,
    trials: int = typer.Option(20, help="Finished (complete or pruned) trials the study should hold; "
                               "re-running the command resumes towards this count.", rich_help_panel="Study"),
    out: Optional[Path] = typer.Option(None, help="Study directory: the journal, trials/<n>/ run directories and "
                                       "best.toml (default studies/<preset> in the current directory).",
                                       rich_help_panel="Study"),
    study_name: Optional[str] = typer.Option(None, help="Study name in the storage (default: the one the study "
                                             "directory records, else the directory's name).",
                                             rich_help_panel="Study"),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (postgresql://..., sqlite:///...) or a "
                                          "journal file path (default STUDY_DIR/study.journal).",
                                          rich_help_panel="Study"),
    sampler: str = typer.Option("tpe", help="tpe (multivariate), random, cmaes or gp; seeded from --seed.",
                                rich_help_panel="Study"),
    pruner: str = typer.Option("median", help="median (after 5 trials, from epoch 2), hyperband or none.",
                               rich_help_panel="Study"),
    workers: int = typer.Option(1, help="Worker processes on this machine; more machines may share --storage.",
                                rich_help_panel="Study"),
    fix: Optional[List[str]] = typer.Option(None, help="Fix a parameter, e.g. --fix patience=5 (repeatable).",
                                            rich_help_panel="Search space"),
    range_: Optional[List[str]] = typer.Option(None, "--range", help="Set a parameter's range, e.g. "
                                               "--range feedback_lr=1e-5:1 (repeatable).",
                                               rich_help_panel="Search space"),
    space: Optional[Path] = typer.Option(None, help="TOML file with a table per parameter holding low and high, "
                                         "or fix.", rich_help_panel="Search space"),
) -> None:
    """Run or resume a study; each trial is a full population run into STUDY_DIR/trials/<n>/."""
    if ctx.invoked_subcommand is not None:
        return
    manager = PluginManager()
    spec = spec_from_context(ctx)
    base = spec.resolve(manager.registry)
    preset = manager.registry.get("presets", base.plugin)
    search = manager.search_space(preset, SearchSpace.for_run(base, manager.registry))
    table = load_toml(space) if space is not None else {}
    search.apply_overrides(*parse_overrides(fix or [], range_ or [], table))
    study_dir = out or Path("studies") / base.plugin
    settings = tune.TuneSettings(
        spec=spec, space=search, trials=trials, study_dir=study_dir,
        study_name=study_name or tune.default_study_name(study_dir), storage=storage,
        sampler=sampler, pruner=pruner, workers=workers)
    tune.check_settings(settings)
    console.print(f"[bold]tempsched tune[/] {base.plugin}: study '{settings.study_name}' in "
                  f"{settings.storage_label()}, {settings.trials} trials, {settings.workers} worker(s), "
                  f"{settings.sampler} sampler, {settings.pruner} pruner", highlight=False)
    console.print("searching: " + ", ".join(
        f"{d.name}={d.fixed}" if d.fixed is not None else f"{d.name} in [{d.low}, {d.high}]{' log' if d.log else ''}"
        for d in search.dims.values()), highlight=False)
    progress = Progress()
    try:
        result = tune.run_study(settings, callbacks=[progress])
    finally:
        progress.close()
    if result.failed_stale:
        console.print(f"marked FAIL: trial(s) {', '.join(map(str, result.failed_stale))} whose worker had died",
                      highlight=False)
    shown = tune.open_existing(settings.study_dir, settings.study_name, settings.storage)
    console.print(best_table(shown))
    if result.best_toml is not None:
        console.print(f"best configuration: {result.best_toml}  (tempsched run --config {result.best_toml})",
                      highlight=False)
    storage_arg = f" --storage '{settings.storage_label()}'" if settings.storage else ""
    console.print(f"plots: tempsched tune report {study_dir}{storage_arg}", highlight=False)
    if result.interrupted:
        err_console.print("interrupted: finished trials are kept; run the same command again to resume")
        raise typer.Exit(130)


@tune_app.command()
def report(
    study_dir: Path = typer.Argument(..., help="The study directory (tune's --out)."),
    storage: Optional[str] = typer.Option(None, help="The study's storage, if tune was given --storage."),
    study_name: Optional[str] = typer.Option(None, help="The study's name (default: the one STUDY_DIR records)."),
    out: Optional[Path] = typer.Option(None, help="Folder for the plots (default STUDY_DIR/report)."),
) -> None:
    """Write the study's plots (optimization history, parameter importances, parallel coordinate,
    intermediate values) as HTML files, and show its best trials."""
    name = study_name or tune.default_study_name(study_dir)
    study_obj = tune.open_existing(study_dir, name, storage)
    written, skipped = tune.write_report(study_obj, out or study_dir / "report")
    console.print(best_table(study_obj))
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    for name, why in skipped.items():
        console.print(f"skipped {name}: {why}", highlight=False)
    if not written:
        raise UserError(f"study '{name}' has no finished trial to plot yet")

