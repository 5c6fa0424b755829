"""``tempsched run``: train a population, or resume one, into a run directory."""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Iterator, List, NoReturn, Optional

import typer
from rich.console import Console

from tempsched import distributed, rundir, session, spec
from tempsched.cli import options as opt
from tempsched.cli import shortcuts
from tempsched.cli.exits import one_line_errors
from tempsched.cli.live import RichReporter
from tempsched.config import RunConfig
from tempsched.errors import UserError
from tempsched.plugins import PluginManager
from tempsched.spec import RunSpec

DATA, POPULATION, TEMPERATURE, SPEED, OUTPUT = opt.DATA, opt.POPULATION, "Temperature", "Speed", "Output"

console = Console()
err_console = Console(stderr=True)


def spec_from_options(config_file: Optional[Path], given: dict[str, Any], params: List[str], options: List[str],
                      declared: Optional[dict[str, Any]] = None) -> RunSpec:
    """The spec the command line asks for: the ``--config`` TOML (if any) with the options as dotted overrides
    (``declared``: the plugins' shortcut options given, by dotted key)."""
    return RunSpec.from_file(config_file, opt.overrides(given, params, options, declared))


def spec_from_context(ctx: Any) -> RunSpec:
    """The spec from the run options another command adopted (``tune``, ``eval``)."""
    values = opt.run_values(ctx)
    config_file = values.pop("config", None)
    return spec_from_options(config_file, values, values.pop("param", None) or [], values.pop("option", None) or [],
                             shortcuts.values(ctx))


def run(
    ctx: typer.Context,
    preset: Optional[str] = typer.Option(None, "--preset", "--plugin", help="Preset to run: 'paper-default' (the "
                                         "paper's population), 'standard-annealing' (the baseline), or one a "
                                         "plugin adds ('tempsched plugins' lists them). --plugin is its old name.",
                                         rich_help_panel=POPULATION),
    members: Optional[int] = typer.Option(None, help="Population size n (paper: 5 or 8).", rich_help_panel=POPULATION),
    epochs: Optional[int] = typer.Option(None, help="Epochs to train (default 10).", rich_help_panel=POPULATION),
    seed: Optional[int] = typer.Option(None, help="Seed of initial weights, batch order and Gumbel noise.",
                                       rich_help_panel=POPULATION),
    select_on: Optional[str] = typer.Option(None, help="'val' (held-out -ELBO of the training code), 'val-hard' "
                                            "(of one-hot samples: the discrete model) or 'train' (the paper's mean "
                                            "training loss); default: the preset's, else val-hard for a "
                                            "straight-through estimator and val for relaxed.",
                                            rich_help_panel=POPULATION),
    param: Optional[List[str]] = typer.Option(None, help="Set a part's parameter: NAME=VALUE (every part of the "
                                              "preset that takes NAME) or PART.NAME=VALUE; repeatable. "
                                              "'tempsched plugins' lists them; the shortcut options below are "
                                              "the ones plugins declare.", rich_help_panel=POPULATION),
    tau_initial: Optional[float] = typer.Option(None, help="Starting temperature of every member.",
                                                rich_help_panel=TEMPERATURE),
    tau_min: Optional[float] = typer.Option(None, help="Lower temperature bound.", rich_help_panel=TEMPERATURE),
    tau_max: Optional[float] = typer.Option(None, help="Upper temperature bound.", rich_help_panel=TEMPERATURE),
    option: Optional[List[str]] = typer.Option(None, help="Set a task option: NAME=VALUE, e.g. z1=[8,4]; "
                                               "repeatable. 'tempsched plugins' lists them; the shortcut options "
                                               "below are the ones the task declares.", rich_help_panel=DATA),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or auto (CUDA where there is one).",
                                         rich_help_panel=SPEED),
    backend: Optional[str] = typer.Option(None, help="Member steps: loop (one after another), vmap (vectorised) "
                                          "or auto (vmap on a GPU, loop on a CPU; default).", rich_help_panel=SPEED),
    precision: Optional[str] = typer.Option(None, help="fp32 (default) or bf16 (autocast; fast only on "
                                            "hardware with bf16 units).", rich_help_panel=SPEED),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last",
                                                 help="NHWC memory layout for the convolutions.",
                                                 rich_help_panel=SPEED),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch, per process (0: one per core, the "
                                          "default; with several processes, the cores shared out).",
                                          rich_help_panel=SPEED),
    procs: Optional[int] = typer.Option(None, min=1, help="Processes on this machine to spread the members over "
                                        "(each trains a slice; on a CPU, one per core with --threads 1). "
                                        "Several machines: torchrun, see docs/performance.md.",
                                        rich_help_panel=SPEED),
    peer_timeout: float = typer.Option(distributed.DEFAULT_TIMEOUT, min=1.0,
                                       help="Seconds a process of a run spread over several may show no sign "
                                       "of life before the run stops with an error.", rich_help_panel=SPEED),
    config: Optional[Path] = typer.Option(None, help="TOML configuration (e.g. a run's config.toml); "
                                          "options given here override it.", rich_help_panel=OUTPUT),
    out: Optional[Path] = typer.Option(None, help="Run directory to create (default runs/<preset>-<time>).",
                                       rich_help_panel=OUTPUT),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this directory from its last finished "
                                          "epoch (only --epochs, --threads, --device, --backend, --procs may "
                                          "change).", rich_help_panel=OUTPUT),
) -> None:
    """Train a population and save the best member (the main job)."""
    given = {k: v for k, v in locals().items() if k in opt.SHORTCUTS and v is not None}
    declared = shortcuts.values(ctx)  # the plugins' shortcut options given (--patience, --dataset, ...)
    manager = PluginManager()
    # group: None unless torchrun started this process (``--procs`` starts ``train_rank`` instead)
    with _sigterm_as_interrupt(), distributed.joined(peer_timeout) as group:
        if group is not None and not group.leads:
            resolved, resuming = group.receive()  # process 0's: a --config or run directory may be only there
            session.follow(resolved, manager, group, resume=resuming)
            return
        if resume is not None:
            changed = set(given) - set(opt.RESUMABLE)
            if config is not None or out is not None or changed or declared or param or option:
                raise UserError(f"--resume continues the saved configuration: only "
                                f"{', '.join('--' + n for n in opt.RESUMABLE)} may be given with it")
            asked, resolved = spec.resume(resume, manager.registry, opt.overrides(given))
            run_dir = resume
        else:
            asked = spec_from_options(config, given, param or [], option or [], declared)
            resolved = asked.resolve(manager.registry)
            run_dir = out or opt.fresh_path("runs", resolved.plugin)
        if procs is not None and procs > 1:
            _launch(RankJob(asked, resolved, run_dir, resume is not None, peer_timeout), procs)
        if group is not None:
            group.publish((resolved, resume is not None))
        _train(manager, asked, resolved, run_dir, resume is not None, group)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Stop on SIGTERM as on Ctrl+C: the last checkpoint kept, one line saying how to resume, exit 130.

    ``timeout``, batch schedulers and ``kill`` send SIGTERM, which by default ends Python on the spot:
    no line, a lock file left behind, and the processes a ``--procs`` launcher started orphaned.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _saved(run_dir: Path) -> str:
    """What a stopped run left, and how to continue it."""
    if (Path(run_dir) / rundir.STATE).is_file():
        return f"resume with  tempsched run --resume {run_dir}"
    return "it stopped before the first epoch finished: nothing was saved"


def _train(manager: PluginManager, asked: RunSpec, resolved: RunConfig, run_dir: Path, resuming: bool,
           group: distributed.Group | None) -> None:
    """Train in this process (all members, or process 0's slice), with the live view."""
    reporter = RichReporter(console)
    manager.register(reporter, name="tempsched.cli-live")
    try:
        session.execute(resolved, manager, run_dir, resume=resuming, group=group, spec=asked)
    except KeyboardInterrupt:
        err_console.print(f"interrupted: {_saved(run_dir)}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except distributed.PeerLost as exc:
        raise UserError(f"{exc}; {_saved(run_dir)}") from None
    finally:
        reporter.close()


@dataclass(frozen=True)
class RankJob:
    """What each process of a ``--procs`` run is started with: the spec and the configuration this process
    resolved, so that no process parses options or reads a ``--config`` again (pickled: the processes are
    spawned)."""

    spec: RunSpec
    config: RunConfig
    run_dir: Path
    resuming: bool
    peer_timeout: float


def train_rank(job: RankJob) -> None:
    """Entry point of each process ``--procs`` starts: join the run, then train process 0's slice with the
    live view and the run directory, or another slice. Errors end it as the command line's would."""
    with one_line_errors():
        manager = PluginManager()
        with _sigterm_as_interrupt(), distributed.joined(job.peer_timeout) as group:
            assert group is not None, "train_rank runs in a process that distributed.launch started"
            if group.leads:
                _train(manager, job.spec, job.config, job.run_dir, job.resuming, group)
            else:
                session.follow(job.config, manager, group, resume=job.resuming)


def _launch(job: RankJob, procs: int) -> NoReturn:
    """``--procs K``: start K processes on this machine that train ``job`` as one run, and wait for them.

    Everything a process would refuse is refused here first, so a mistake is one line before any starts.
    """
    assert job.config.members is not None
    distributed.check_launch(procs, job.config.members, job.config.device)
    try:
        code = distributed.launch(train_rank, job, procs, job.peer_timeout)
    except distributed.PeerLost as exc:
        raise UserError(f"{exc}; {_saved(job.run_dir)}") from None
    raise typer.Exit(code)
