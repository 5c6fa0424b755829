"""The ``tempsched`` command line (typer + rich).

Every user mistake surfaces as a ``UserError`` and is printed as one line, ``error: ...``, with exit
status 2; Ctrl+C stops a run after telling how to resume it.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from tempsched import training
from tempsched.config import from_dict, load_toml, merge
from tempsched.errors import UserError
from tempsched.plugins import DEFAULT_PLUGINS, KINDS, PluginManager
from tempsched.reporter import RichReporter

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train a population of Gumbel-Softmax VAEs that tune their softmax temperature while they learn.",
)
console = Console()
err_console = Console(stderr=True)


def cli_overrides(**given: Any) -> dict[str, Any]:
    """Turn the options a user gave (not None) into a nested config mapping."""
    where = {
        "plugin": ("plugin",), "members": ("members",), "epochs": ("epochs",), "seed": ("seed",),
        "select_on": ("select_on",), "device": ("device",), "learning_rate": ("learning_rate",),
        "dataset": ("data", "dataset"), "data_dir": ("data", "data_dir"), "batch_size": ("data", "batch_size"),
        "exclude_classes": ("data", "exclude_classes"), "train_size": ("data", "train_size"),
        "val_size": ("data", "val_size"), "test_size": ("data", "test_size"),
        "tau_initial": ("tau", "initial"), "tau_min": ("tau", "min"), "tau_max": ("tau", "max"),
        "patience": ("params", "patience"), "feedback_lr": ("params", "feedback_lr"),
        "backend": ("performance", "backend"), "precision": ("performance", "precision"),
        "channels_last": ("performance", "channels_last"), "threads": ("performance", "threads"),
    }
    out: dict[str, Any] = {}
    for key, value in given.items():
        if value is None:
            continue
        *parents, leaf = where[key]
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def parse_classes(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--exclude-classes takes comma-separated class numbers, got '{text}'") from None


def _default_out(plugin: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{plugin}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = Path(f"{base}-{k}")
    return path


@app.command()
def run(
    plugin: Optional[str] = typer.Option(None, help="Preset to run: 'paper-default' (the paper's population), "
                                         "'standard-annealing' (the baseline), or one a plugin adds."),
    dataset: Optional[str] = typer.Option(None, help="sample (embedded MNIST digits, works offline), mnist, "
                                          "fashion-mnist, cifar10 or celeba."),
    data_dir: Optional[str] = typer.Option(None, help="Folder holding the data set (torchvision layout)."),
    members: Optional[int] = typer.Option(None, help="Population size n (paper: 5 or 8)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs to train (default 10)."),
    batch_size: Optional[int] = typer.Option(None, help="Images per training step (default 128)."),
    seed: Optional[int] = typer.Option(None, help="Seed of initial weights, batch order and Gumbel noise."),
    out: Optional[Path] = typer.Option(None, help="Run directory to create (default runs/<preset>-<time>)."),
    config: Optional[Path] = typer.Option(None, help="TOML configuration (e.g. a run's config.toml); "
                                          "options given here override it."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this directory from its last "
                                          "finished epoch (only --epochs may change)."),
    tau_initial: Optional[float] = typer.Option(None, help="Starting temperature of every member."),
    tau_min: Optional[float] = typer.Option(None, help="Lower temperature bound."),
    tau_max: Optional[float] = typer.Option(None, help="Upper temperature bound."),
    patience: Optional[int] = typer.Option(None, help="Epochs a member may trail the best before feedback."),
    feedback_lr: Optional[float] = typer.Option(None, help="Feedback step: tau += lr * (loss - best loss)."),
    select_on: Optional[str] = typer.Option(None, help="'val' (held-out -ELBO, default) or 'train' "
                                            "(the paper's mean training loss)."),
    exclude_classes: Optional[str] = typer.Option(None, help="Train without these classes, e.g. '2,3'."),
    train_size: Optional[int] = typer.Option(None, help="Use only the first N training images."),
    val_size: Optional[int] = typer.Option(None, help="Validation images carved from the training set."),
    test_size: Optional[int] = typer.Option(None, help="Use only the first N test images."),
    learning_rate: Optional[float] = typer.Option(None, help="Adam learning rate (default 1e-3)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or auto (CUDA where there is one)."),
    backend: Optional[str] = typer.Option(None, help="Member steps: loop (one after another), vmap (vectorised) "
                                          "or auto (vmap on a GPU, loop on a CPU; default)."),
    precision: Optional[str] = typer.Option(None, help="fp32 (default) or bf16 (autocast; fast only on "
                                            "hardware with bf16 units)."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last",
                                                 help="NHWC memory layout for the convolutions."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (0: one per core, the default)."),
) -> None:
    """Train a population and save the best member (the main job)."""
    overrides = cli_overrides(
        plugin=plugin, dataset=dataset, data_dir=data_dir, members=members, epochs=epochs, batch_size=batch_size,
        seed=seed, tau_initial=tau_initial, tau_min=tau_min, tau_max=tau_max, patience=patience,
        feedback_lr=feedback_lr, select_on=select_on, exclude_classes=parse_classes(exclude_classes),
        train_size=train_size, val_size=val_size, test_size=test_size, learning_rate=learning_rate, device=device,
        backend=backend, precision=precision, channels_last=channels_last, threads=threads)
    manager = PluginManager()
    if resume is not None:
        if config is not None or out is not None or set(overrides) - {"epochs"}:
            raise UserError("--resume continues the saved configuration: only --epochs may be given with it")
        resolved = training.load_run_config(resume, manager)
        if epochs is not None:
            resolved.epochs = epochs
            resolved = training.resolve_config(resolved, manager)
        run_dir = resume
    else:
        base = load_toml(config) if config is not None else {}
        resolved = training.resolve_config(from_dict(merge(base, overrides)), manager)
        run_dir = out or _default_out(resolved.plugin)
    reporter = RichReporter(console)
    manager.register(reporter, name="tempsched.cli-reporter")
    try:
        training.execute(resolved, manager, run_dir, resume=resume is not None)
    except KeyboardInterrupt:
        err_console.print(f"interrupted: resume with  tempsched run --resume {run_dir}")
        raise typer.Exit(130) from None
    finally:
        reporter.close()


@app.command()
def plugins() -> None:
    """List every loaded plugin and what it registers."""
    manager = PluginManager()
    presets = manager.registry.presets
    for name, what in manager.describe():
        origin = "shipped" if name in DEFAULT_PLUGINS else "installed"
        console.print(f"[bold]{name}[/] ({origin})", highlight=False)
        for kind in KINDS[:-1]:  # presets are listed below with their descriptions
            if kind in what:
                console.print(f"  {kind.replace('_', ' ')}: {', '.join(sorted(what[kind]))}", highlight=False)
        for preset in sorted(what.get("presets", [])):
            console.print(f"  preset [italic]{preset}[/]: {presets[preset].description}", highlight=False)


# `tempsched tune` lives in its own module and takes run's options, so it joins once `run` is defined.
from tempsched.cli_tune import tune_app  # noqa: E402

app.add_typer(tune_app, name="tune")


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: run the app, turning user errors into one line and exit status 2."""
    try:
        app(args=argv, standalone_mode=True)
    except UserError as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
