"""``tempsched tune`` and ``tempsched tune report``: the command line of ``tempsched.tune``.

``tune`` takes every option of ``tempsched run`` (read from ``run``'s own signature, so the two
commands cannot drift apart) except ``--out`` and ``--resume``: a study has its own ``--out`` and
resumes by running the same command again.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any, Callable, List, Optional

import optuna
import typer
from rich.live import Live
from rich.table import Table

from tempsched import cli, training, tune
from tempsched.config import from_dict, load_toml, merge
from tempsched.errors import UserError
from tempsched.plugins import PluginManager
from tempsched.space import parse_overrides

RUN_OPTIONS_NOT_TAKEN = ("out", "resume")

tune_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Tune a preset's outer knobs (feedback lr, patience, tau bounds) with an Optuna study; every trial "
         "is a whole population run. 'tempsched tune report STUDY_DIR' writes the study's plots.",
)


def _tune_options(
    trials: int = typer.Option(20, help="Finished (complete or pruned) trials the study should hold; "
                               "re-running the command resumes towards this count."),
    out: Optional[Path] = typer.Option(None, help="Study directory: the journal, trials/<n>/ run directories and "
                                       "best.toml (default studies/<preset> in the current directory)."),
    study_name: Optional[str] = typer.Option(None, help="Study name in the storage (default: the study "
                                             "directory's name)."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (postgresql://..., sqlite:///...) or a "
                                          "journal file path (default STUDY_DIR/study.journal)."),
    sampler: str = typer.Option("tpe", help="tpe (multivariate), random, cmaes or gp; seeded from --seed."),
    pruner: str = typer.Option("median", help="median (after 5 trials, from epoch 2), hyperband or none."),
    workers: int = typer.Option(1, help="Worker processes on this machine; more machines may share --storage."),
    fix: Optional[List[str]] = typer.Option(None, help="Fix a parameter, e.g. --fix patience=5 (repeatable)."),
    range_: Optional[List[str]] = typer.Option(None, "--range", help="Set a parameter's range, e.g. "
                                               "--range feedback_lr=1e-5:1 (repeatable)."),
    space: Optional[Path] = typer.Option(None, help="TOML file with a table per parameter holding low and high, or fix."),
) -> None:
    """Holds the options only ``tune`` has; ``with_run_options`` joins them to run's."""


def with_run_options(func: Callable[..., None]) -> Callable[..., None]:
    """Give ``func(ctx, **options)`` the signature: context, ``_tune_options``' options, run's options."""
    run_hints = typing.get_type_hints(cli.run)
    own_hints = typing.get_type_hints(_tune_options)
    ctx = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    params = [ctx]
    params += [p.replace(annotation=own_hints[n]) for n, p in inspect.signature(_tune_options).parameters.items()]
    params += [p.replace(annotation=run_hints[n]) for n, p in inspect.signature(cli.run).parameters.items()
               if n not in RUN_OPTIONS_NOT_TAKEN]
    func.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    func.__annotations__ = {}
    return func


def run_option_names() -> list[str]:
    """The options ``tune`` takes over from ``run``."""
    return [n for n in inspect.signature(cli.run).parameters if n not in RUN_OPTIONS_NOT_TAKEN]


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
        if cli.console.is_terminal:
            if self.live is None:
                self.live = Live(console=cli.console, auto_refresh=False, transient=True)  # the final table follows
                self.live.start()
            self.live.update(best_table(study), refresh=True)
            return
        what = f"loss {trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
        if "pruned_after_epoch" in trial.user_attrs:
            what += f" after epoch {trial.user_attrs['pruned_after_epoch']}"
        params = " ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
        c = tune.counts(study)
        cli.console.print(f"trial {trial.number}: {what} ({params}); study: {c['complete']} complete, "
                          f"{c['pruned']} pruned", highlight=False)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


@tune_app.callback(invoke_without_command=True)
@with_run_options
def study(ctx: typer.Context, **options: Any) -> None:
    """Run or resume a study; each trial is a full population run into STUDY_DIR/trials/<n>/."""
    if ctx.invoked_subcommand is not None:
        return
    run_opts = {n: options[n] for n in run_option_names()}
    config_file = run_opts.pop("config")
    run_opts["exclude_classes"] = cli.parse_classes(run_opts["exclude_classes"])
    manager = PluginManager()
    base = training.resolve_config(from_dict(merge(load_toml(config_file) if config_file else {},
                                                 cli.cli_overrides(**run_opts))), manager)
    preset = manager.registry.get("presets", base.plugin)
    space = manager.search_space(preset)
    table = load_toml(options["space"]) if options["space"] is not None else {}
    space.apply_overrides(*parse_overrides(options["fix"] or [], options["range_"] or [], table))
    study_dir = options["out"] or Path("studies") / base.plugin
    settings = tune.TuneSettings(
        base=base, space=space, trials=options["trials"], study_dir=study_dir,
        study_name=options["study_name"] or study_dir.resolve().name, storage=options["storage"],
        sampler=options["sampler"], pruner=options["pruner"], workers=options["workers"])
    tune.check_settings(settings)
    cli.console.print(f"[bold]tempsched tune[/] {base.plugin}: study '{settings.study_name}' in "
                      f"{settings.storage_label()}, {settings.trials} trials, {settings.workers} worker(s), "
                      f"{settings.sampler} sampler, {settings.pruner} pruner", highlight=False)
    cli.console.print("searching: " + ", ".join(
        f"{d.name}={d.fixed}" if d.fixed is not None else f"{d.name} in [{d.low}, {d.high}]{' log' if d.log else ''}"
        for d in space.dims.values()), highlight=False)
    progress = Progress()
    try:
        result = tune.run_study(settings, callbacks=[progress])
    finally:
        progress.close()
    if result.failed_stale:
        cli.console.print(f"marked FAIL: trial(s) {', '.join(map(str, result.failed_stale))} whose worker had died",
                          highlight=False)
    shown = tune.open_existing(settings.study_dir, settings.study_name, settings.storage)
    cli.console.print(best_table(shown))
    if result.best_toml is not None:
        cli.console.print(f"best configuration: {result.best_toml}  (tempsched run --config {result.best_toml})",
                          highlight=False)
    cli.console.print(f"plots: tempsched tune report {study_dir}" + _storage_args(settings), highlight=False)
    if result.interrupted:
        cli.err_console.print("interrupted: finished trials are kept; run the same command again to resume")
        raise typer.Exit(130)


def _storage_args(settings: tune.TuneSettings) -> str:
    extra = f" --storage '{settings.storage_label()}'" if settings.storage else ""
    if settings.study_name != settings.study_dir.resolve().name:
        extra += f" --study-name {settings.study_name}"
    return extra


@tune_app.command()
def report(
    study_dir: Path = typer.Argument(..., help="The study directory (tune's --out)."),
    storage: Optional[str] = typer.Option(None, help="The study's storage, if tune was given --storage."),
    study_name: Optional[str] = typer.Option(None, help="The study's name, if tune was given --study-name."),
    out: Optional[Path] = typer.Option(None, help="Folder for the plots (default STUDY_DIR/report)."),
) -> None:
    """Write the study's plots (optimization history, parameter importances, parallel coordinate,
    intermediate values) as HTML files, and show its best trials."""
    name = study_name or study_dir.resolve().name
    study_obj = tune.open_existing(study_dir, name, storage)
    written, skipped = tune.write_report(study_obj, out or study_dir / "report")
    cli.console.print(best_table(study_obj))
    for path in written:
        cli.console.print(f"wrote {path}", highlight=False)
    for name, why in skipped.items():
        cli.console.print(f"skipped {name}: {why}", highlight=False)
    if not written:
        raise UserError(f"study '{name}' has no finished trial to plot yet")
