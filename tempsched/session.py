"""The session that trains a run: epochs, the run directory's files, resume, the final test metrics.

``execute`` trains a resolved configuration into a run directory (process 0 of a run over processes);
``follow`` trains the other processes' slices. Everything is built (and so checked) before the run
directory is touched, and each epoch ends with its checkpoints written atomically.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tempsched import rundir as rd
from tempsched.build import Built, build
from tempsched.checkpoints import BestModel, PopulationState
from tempsched.config import RunConfig
from tempsched.distributed import Group
from tempsched.engine import Diverged, Population
from tempsched.errors import PartError, UserError, flat_message
from tempsched.hardware import describe, platform_tag
from tempsched.plugins import PluginManager
from tempsched.records import BatchProgress, EpochRecord, RunInfo, RunSummary
from tempsched.spec import RunSpec
from tempsched.trajectories import LINEAGE, POLICY, plot_trajectories, policy_from_rows, write_policy

EpochCallback = Callable[[EpochRecord], None]


def _improves(loss: float, best_loss: float, best_epoch: int) -> bool:
    """Whether an epoch's best loss makes a new best model; a NaN loss never beats a number.

    The first epoch always does, so best.pt exists for ``finish`` (and resume) even when its loss is NaN.
    """
    return best_epoch < 0 or math.isnan(best_loss) or loss < best_loss


def _load_state(run: rd.RunDir, built: Built, config: RunConfig) -> PopulationState:
    """Restore the population from state.pt once the run's files are shown to belong together.

    state.pt and best.pt must carry ``config``'s fingerprint, state.pt must be whole with every
    temperature inside the bounds, and metrics.jsonl must hold every epoch the state includes.
    Every check comes before anything is written, so a refused resume leaves the folder as it was.
    """
    path, config_path, saved_config = run.file(rd.STATE), run.file(rd.CONFIG), config.to_dict()
    state = PopulationState.load(path, saved_config, config_path)
    BestModel.load(run.file(rd.BEST), saved_config, config_path)
    if state.epoch > config.epochs:
        raise UserError(f"the run in {run.path} has already trained {state.epoch} epochs, more than the "
                        f"{config.epochs} asked for: resume with --epochs {state.epoch} or more")
    if state.strategies != config.schedules:
        raise UserError(f"{path} does not match {config_path} (other members or strategies)")
    pop = built.population
    try:
        pop.load_state_dict(state.population)
    except KeyError as exc:
        raise UserError(f"{path} is damaged or incomplete (no {exc}): start a new run") from None
    except (RuntimeError, ValueError, TypeError) as exc:
        raise UserError(f"{path} does not fit this configuration's models ({flat_message(exc)}): "
                        f"{rd.RUN_REMEDY}") from None
    assert config.tau.min is not None and config.tau.max is not None
    for m in pop.members:
        if not config.tau.min <= m.tau <= config.tau.max:
            raise UserError(f"{path} is corrupt: member {m.index}'s tau {m.tau:g} lies outside "
                            f"[{config.tau.min:g}, {config.tau.max:g}]; start a new run")
    run.rewind_metrics(pop.epoch, pop.rows_per_epoch())
    if built.group is not None:
        built.group.publish(state.population)  # the other processes may not even see this folder
    return state


def _save_config(run: rd.RunDir, config: RunConfig, spec: RunSpec | None, *, new: bool) -> None:
    """Write config.toml (and spec.json, what the configuration was resolved from): a new run's first
    file, created exclusively; on resume, each rewritten when it changed (``--epochs``), so that a later
    plain ``--resume`` (the hint after Ctrl+C) goes as far."""
    texts = {rd.CONFIG: config.to_toml(), **({rd.SPEC: spec.to_json()} if spec is not None else {})}
    for name, text in texts.items():
        path = run.file(name)
        if new:
            rd.write_text(path, text, exclusive=name == rd.CONFIG)
        elif not path.is_file() or path.read_text(encoding="utf-8") != text:
            rd.write_text(path, text)


def execute(config: RunConfig, manager: PluginManager, run_dir: Path, *, resume: bool = False,
            on_epoch: EpochCallback | None = None, group: Group | None = None,
            spec: RunSpec | None = None) -> RunSummary:
    """Train ``config`` (resolved) into ``run_dir``; with ``resume``, continue from its ``state.pt``.
    ``spec``: what ``config`` was resolved from, saved beside it (spec.json).

    With ``group``, this is process 0 of a run spread over processes (``follow`` runs in the others):
    it trains its slice of the members, and alone writes the run directory and calls the hooks.

    Everything is built (and so checked) before the run directory is touched; then this process
    holds the directory for the whole run (``RunDir.hold``): a second process is refused, and a new
    run that fails before its first checkpoint removes what it created. ``on_epoch`` is called after
    each epoch's files are saved (tune uses it to report and prune; it may raise to stop the run, and
    everything written so far stays valid).
    """
    started = time.perf_counter()
    run = rd.RunDir(run_dir)
    built = build(config, manager, group)
    data_text = built.task.describe_data()
    with run.hold(new=not resume):
        return _train(run, built, config, spec, manager, data_text, started, resume, on_epoch)


def _train(run: rd.RunDir, built: Built, config: RunConfig, spec: RunSpec | None, manager: PluginManager,
           data_text: str, started: float, resume: bool, on_epoch: EpochCallback | None) -> RunSummary:
    """``execute``'s run, in the run directory this process holds."""
    pop = built.population
    progress = None
    if manager.has_listeners("tempsched_batch_end"):
        progress = _Progress(manager, config.epochs, built.task.batch_count(), built.task.train_examples)
        pop.on_batch = progress.on_batch
    saved_config = config.to_dict()
    best_loss, best_epoch, train_seconds, wall_before = float("inf"), -1, 0.0, 0.0
    if resume:
        state = _load_state(run, built, config)
        best_loss, best_epoch, train_seconds, wall_before = (state.best_loss, state.best_epoch,
                                                             state.train_seconds, state.wall_seconds)
    _save_config(run, config, spec, new=not resume)
    manager.notify("tempsched_run_start", info=RunInfo(
        run_dir=run.path, preset=config.plugin, members=len(pop.members), epochs=config.epochs,
        start_epoch=pop.epoch, data=data_text, strategies=[m.strategy for m in pop.members],
        config=config.to_dict(), batches_per_epoch=built.task.batch_count()))

    start_epoch = pop.epoch
    while pop.epoch < config.epochs:
        if progress:
            progress.epoch = pop.epoch
        record = _checked_epoch(manager, pop, run)
        t_save = time.perf_counter()
        train_seconds += record.train_seconds
        run.append_metrics(record.rows)
        epoch_best = record.best_row
        if _improves(epoch_best["loss"], best_loss, best_epoch):
            best_loss, best_epoch = epoch_best["loss"], record.epoch
            BestModel(record.epoch, epoch_best["member"], epoch_best["strategy"], epoch_best["tau_end"], best_loss,
                      pop.model_state(record.best)).save(run.file(rd.BEST), saved_config)  # its tau is its own
        PopulationState(pop.state_dict(), best_loss, best_epoch, train_seconds,
                        wall_before + time.perf_counter() - started).save(run.file(rd.STATE), saved_config)
        write_policy(run.path, run.read_metrics())  # after state.pt: a failed first epoch leaves no stray files
        record = dataclasses.replace(record, save_seconds=time.perf_counter() - t_save)
        manager.notify("tempsched_epoch_end", record=record)
        if on_epoch is not None:
            on_epoch(record)

    if pop.epoch > start_epoch:
        _keep_best_on_final_lineage(run, pop, saved_config)
    summary = finish(run, built, config, train_seconds, wall_before + time.perf_counter() - started, data_text)
    manager.notify("tempsched_run_end", summary=summary)
    return summary


def _keep_best_on_final_lineage(run: rd.RunDir, pop: Population, config: dict[str, Any]) -> None:
    """Make best.pt a state the final best member descends from, so best.pt, the summary's test figures,
    policy.json and ``replay`` tell of one lineage.

    Under Algorithm 1's plan every member goes on from each epoch's best, so the run's lowest loss is
    always an ancestor and best.pt stays as it is. Under a plan such as ``pbt``, the member that set the
    lowest loss may since have been overwritten by a copy or retired; a model from that dead line is not
    what the population found, so the final best member's own weights replace it.
    """
    rows = run.read_metrics()
    lineage = policy_from_rows(rows)
    best = BestModel.load(run.file(rd.BEST))
    if lineage[best.epoch]["member"] == best.member:
        return
    final = lineage[-1]
    (row,) = [r for r in rows if r["epoch"] == final["epoch"] and r["member"] == final["member"]]
    BestModel(final["epoch"], final["member"], row["strategy"], row["tau_end"], row["loss"],
              pop.model_state(final["member"] - 1)).save(run.file(rd.BEST), config)


def follow(config: RunConfig, manager: PluginManager, group: Group, *, resume: bool) -> None:
    """A process other than 0 of a run spread over processes: it trains its slice of the members for the
    run's epochs and writes nothing (process 0 writes the run directory and calls the lifecycle hooks)."""
    pop = build(config, manager, group).population
    if resume:
        pop.load_state_dict(group.receive())
    while pop.epoch < config.epochs:
        _named_part_errors(manager, pop.run_epoch)


def _checked_epoch(manager: PluginManager, pop: Population, run: rd.RunDir) -> EpochRecord:
    """Process 0's epoch: each member that diverged gets one warning line; a population that diverged
    whole ends the run with one line before the epoch is saved, since its state holds nothing to go on from."""
    try:
        record = _named_part_errors(manager, pop.run_epoch)
    except Diverged as exc:
        kept = (f"{run.file(rd.STATE)} keeps epoch {pop.epoch}, the last good checkpoint" if pop.epoch
                else "nothing was saved")
        raise UserError(f"{exc}; {kept}. A resume would diverge again: start a new run with a lower learning "
                        "rate or narrower tau bounds (tau.min, tau.max)") from None
    best = record.best_row
    for row in record.rows:
        if row.get("reset"):
            print(f"warning: member {row['member']} ({row['strategy']}) diverged in epoch {record.epoch + 1} "
                  f"({row['reset']}); it goes on from member {best['member']}'s weights, optimizer state and tau",
                  file=sys.stderr, flush=True)
    return record


def _named_part_errors(manager: PluginManager, call: Callable[[], EpochRecord]) -> EpochRecord:
    """Run an epoch; a part that fails or returns nonsense becomes one line naming its plugin."""
    try:
        return call()
    except PartError as exc:
        owner = manager.registry.owner_of(type(exc.part))
        raise UserError(f"plugin '{owner}' failed: {exc}") from None


@dataclass
class _Progress:
    """Turns the engine's per-batch callback into ``tempsched_batch_end`` records."""

    manager: PluginManager
    epochs: int
    batches: int
    examples_per_epoch: int
    epoch: int = 0

    def on_batch(self, done: int) -> None:
        self.manager.notify("tempsched_batch_end", progress=BatchProgress(
            epoch=self.epoch, epochs=self.epochs, batch=done, batches=self.batches,
            examples_per_epoch=self.examples_per_epoch))


def finish(run: rd.RunDir, built: Built, config: RunConfig, train_seconds: float, wall: float,
           data_text: str) -> RunSummary:
    """Reload the best member, measure it on the test set, save its pictures and the summary."""
    best = BestModel.load(run.file(rd.BEST))
    model = built.population.members[0].model
    tau = best.load_into(model, run.file(rd.BEST))
    metrics = built.task.test_metrics(model, tau)
    rows = run.read_metrics()
    spec = {"spec": rd.SPEC} if run.file(rd.SPEC).is_file() else {}  # runs started through a RunSpec
    files = {"config": rd.CONFIG, **spec, "metrics": rd.METRICS, "best model": rd.BEST, "state": rd.STATE,
             "policy": POLICY, "lineage": LINEAGE, "trajectories": plot_trajectories(run.path, rows),
             **built.task.save_artifacts(model, tau, run.path), "summary": rd.SUMMARY}
    images = built.task.train_examples * config.epochs
    summary = RunSummary(
        run_dir=run.path, best_epoch=best.epoch, best_member=best.member,
        best_strategy=best.strategy, best_tau=tau, best_loss=best.loss, test_metrics=metrics,
        files=files, wall_seconds=wall, images_per_second_per_member=images / train_seconds if train_seconds else 0.0,
        data=data_text, hardware=describe(str(built.task.device)), platform=platform_tag(str(built.task.device)),
        member_epochs=len(rows))  # one row per member and epoch it trained
    run.write_json(rd.SUMMARY, {k: (str(v) if isinstance(v, Path) else v) for k, v in summary.__dict__.items()})
    return summary
