"""A whole run: build the parts a preset names, drive the population, write the run directory.

This is the one place that joins the plugin registry, the task, the engine and the run directory;
the CLI and ``tempsched tune`` both call ``execute``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from tempsched import rundir as rd
from tempsched.config import RunConfig, layer, load_toml, resolve, task_options
from tempsched.distributed import Group, Spread
from tempsched.engine import Diverged, Member, Population, TauBounds
from tempsched.errors import PartError, UserError, describe_exception, flat_message
from tempsched.hardware import describe, platform_tag, tag_from_description
from tempsched.plugins import PluginManager
from tempsched.steppers import choose_stepper
from tempsched.records import BatchProgress, EpochRecord, RunInfo, RunSummary
from tempsched.task import Task, TaskEnv
from tempsched.trajectories import LINEAGE, POLICY, plot_trajectories, policy_from_rows, write_policy

EpochCallback = Callable[[EpochRecord], None]


def resolve_config(config: RunConfig, manager: PluginManager) -> RunConfig:
    """The complete configuration for ``config.plugin`` (preset and part defaults filled, values checked)."""
    return resolve(config, manager.registry)


def load_run_config(run_dir: Path, manager: PluginManager, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The resolved configuration saved in a run directory (for ``--resume``), with ``overrides`` (dotted
    keys that may change on resume, such as ``epochs``) applied."""
    path = Path(run_dir) / rd.CONFIG
    if not Path(run_dir).is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    if not path.is_file():
        raise UserError(f"{run_dir} has no {rd.CONFIG}: not a tempsched run directory")
    return layer(manager.registry, load_toml(path), overrides)


@dataclass
class Built:
    """A population ready to train, with the task it trains (and in a run of several processes, the group)."""

    task: Task
    population: Population
    group: Group | None = None


def _seed(config: RunConfig, member: int, stream: int) -> int:
    return (config.seed * 1_000_003 + member * 7919 + stream) % (2**63)


def build_part(manager: PluginManager, kind: str, name: str, values: dict[str, Any]) -> Any:
    """Instantiate part ``name`` from its checked parameter values; a failure names the plugin."""
    cls = manager.registry.get(kind, name)
    try:
        return cls(**values)
    except UserError:
        raise
    except Exception as exc:
        owner = manager.registry.owner_of(cls)
        raise UserError(f"plugin '{owner}' failed building {kind.rstrip('s').replace('_', ' ')} '{name}': "
                        f"{describe_exception(exc)}") from None


def build_task(config: RunConfig, manager: PluginManager) -> Task:
    """The run's task, built from its own options and the run's device, seed and speed settings."""
    perf = config.performance
    env = TaskEnv(device=config.device, seed=config.seed, backend=perf.backend, precision=perf.precision,
                  channels_last=perf.channels_last)
    cls = manager.registry.get("tasks", config.task)
    try:
        return cls(env, **task_options(config, cls))
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"plugin '{manager.registry.owner_of(cls)}' failed building task '{config.task}': "
                        f"{describe_exception(exc)}") from None


def build(config: RunConfig, manager: PluginManager, group: Group | None = None) -> Built:
    """Instantiate the task, every member (model, optimizer, generator, schedule) and the rules.

    With ``group`` (a run spread over processes) this process builds the models, optimizers and noise
    generators of its own slice of the members only; each is seeded by its member number, so it is
    the same whichever process builds it.
    """
    assert config.tau.initial is not None and config.tau.min is not None and config.tau.max is not None
    assert config.schedules is not None and config.feedback is not None and config.selection is not None
    if config.performance.threads:
        torch.set_num_threads(config.performance.threads)
    placement = None
    if group is not None:
        placement = Spread(group, len(config.schedules))
        group.use_device(config.device)
    own = placement.mine if placement is not None else range(len(config.schedules))
    task = build_task(config, manager)
    feedback = build_part(manager, "feedback_rules", config.feedback, config.part_params(config.feedback))
    selection = build_part(manager, "selection_policies", config.selection, config.part_params(config.selection))
    members = []
    for i, strategy in enumerate(config.schedules, start=1):
        schedule = build_part(manager, "schedules", strategy, config.part_params(strategy))
        start = config.tau.members[i - 1] if config.tau.members is not None else config.tau.initial
        tau = min(max(start, config.tau.min), config.tau.max)
        if i - 1 not in own:
            members.append(Member(i, strategy, schedule, None, None, None, tau))  # another process trains it
            continue
        seat = i + (config.member_offset or 0)  # the member number its weights and noise are seeded by
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(config, seat, 0))
            model = task.build_model()
        if i - 1 == own[0]:
            check_memory(model, len(own))
        optimizer = task.build_optimizer(model)
        generator = torch.Generator(device=task.device).manual_seed(_seed(config, seat, 1))
        members.append(Member(i, strategy, schedule, model, optimizer, generator, tau))
    population = Population(task, members, feedback, selection,
                            TauBounds(config.tau.initial, config.tau.min, config.tau.max), config.epochs,
                            config.select_on, choose_stepper(config.performance.backend, task),
                            placement=placement, plan_seed=_seed(config, 0, 2))
    return Built(task, population, group)


def check_memory(model: torch.nn.Module, members: int) -> None:
    """Refuse a population whose weights, gradients and Adam moments alone would not fit in memory.

    Four copies of the parameters per member is a floor (activations come on top), so a refusal is
    never wrong; it stops ``--members 1000000`` before it allocates until the machine gives out.
    """
    per_member = 4 * sum(p.numel() * p.element_size() for p in model.parameters())
    need = per_member * members
    available = _available_memory()
    if available is not None and need > available:
        raise UserError(f"{members} members need at least {need / 2**30:.1f} GiB for weights, gradients and Adam "
                        f"state ({per_member / 2**20:.1f} MiB each), but {available / 2**30:.1f} GiB is available")


def _available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux's MemAvailable), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _improves(loss: float, best_loss: float, best_epoch: int) -> bool:
    """Whether an epoch's best loss makes a new best model; a NaN loss never beats a number.

    The first epoch always does, so best.pt exists for ``finish`` (and resume) even when its loss is NaN.
    """
    return best_epoch < 0 or math.isnan(best_loss) or loss < best_loss


def _load_state(run: rd.RunDir, built: Built, config: RunConfig) -> tuple[float, int, float, float]:
    """Restore the population from state.pt once the run's files are shown to belong together.

    state.pt and best.pt must carry ``config``'s fingerprint, state.pt must be whole with every
    temperature inside the bounds, and metrics.jsonl must hold every epoch the state includes.
    Every check comes before anything is written, so a refused resume leaves the folder as it was.
    Returns the best loss, its epoch, and the training and wall seconds so far.
    """
    path, config_path, saved_config = run.file(rd.STATE), run.file(rd.CONFIG), config.to_dict()
    state = rd.load_torch(path, rd.STATE_FORMAT)
    rd.check_fingerprint(path, state, saved_config, config_path)
    best = rd.load_torch(run.file(rd.BEST), rd.BEST_FORMAT)
    rd.check_fingerprint(run.file(rd.BEST), best, saved_config, config_path)
    try:
        totals = (float(state["best_loss"]), int(state["best_epoch"]), float(state["train_seconds"]),
                  float(state["wall_seconds"]))
        epoch = state["population"]["epoch"]
        strategies = [m["strategy"] for m in state["population"]["members"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is damaged or incomplete ({type(exc).__name__}: {exc}): start a new run") from None
    if type(epoch) is not int or epoch < 1:
        raise UserError(f"{path} is corrupt: it says {epoch!r} epochs are done; start a new run")
    if epoch > config.epochs:
        raise UserError(f"the run in {run.path} has already trained {epoch} epochs, more than the {config.epochs} "
                        f"asked for: resume with --epochs {epoch} or more")
    if strategies != config.schedules:
        raise UserError(f"{path} does not match {config_path} (other members or strategies)")
    pop = built.population
    try:
        pop.load_state_dict(state["population"])
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
        built.group.publish(state["population"])  # the other processes may not even see this folder
    return totals


def _save_config(run: rd.RunDir, config: RunConfig, *, new: bool) -> None:
    """Write config.toml: a new run's first file, created exclusively; on resume, rewritten when it
    changed (``--epochs``), so that a later plain ``--resume`` (the hint after Ctrl+C) goes as far."""
    path, text = run.file(rd.CONFIG), config.to_toml()
    if new:
        rd.write_text(path, text, exclusive=True)
    elif not path.is_file() or path.read_text(encoding="utf-8") != text:
        rd.write_text(path, text)


def execute(config: RunConfig, manager: PluginManager, run_dir: Path, *, resume: bool = False,
            on_epoch: EpochCallback | None = None, group: Group | None = None) -> RunSummary:
    """Train ``config`` (resolved) into ``run_dir``; with ``resume``, continue from its ``state.pt``.

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
        return _train(run, built, config, manager, data_text, started, resume, on_epoch)


def _train(run: rd.RunDir, built: Built, config: RunConfig, manager: PluginManager, data_text: str, started: float,
           resume: bool, on_epoch: EpochCallback | None) -> RunSummary:
    """``execute``'s run, in the run directory this process holds."""
    pop = built.population
    progress = None
    if manager.has_listeners("tempsched_batch_end"):
        progress = _Progress(manager, config.epochs, built.task.batch_count(), built.task.train_examples)
        pop.on_batch = progress.on_batch
    saved_config = config.to_dict()
    identity = {"fingerprint": rd.fingerprint(saved_config), "config": saved_config}
    best_loss, best_epoch, train_seconds, wall_before = float("inf"), -1, 0.0, 0.0
    if resume:
        best_loss, best_epoch, train_seconds, wall_before = _load_state(run, built, config)
    _save_config(run, config, new=not resume)
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
            rd.save_torch(run.file(rd.BEST), {
                "format": rd.BEST_FORMAT, "epoch": record.epoch, "member": epoch_best["member"],
                "strategy": epoch_best["strategy"], "tau": epoch_best["tau_end"], "loss": best_loss,
                "model": pop.model_state(record.best), **identity,  # the winner's weights; its tau is its own
            })
        rd.save_torch(run.file(rd.STATE), {
            "format": rd.STATE_FORMAT, "population": pop.state_dict(), "best_loss": best_loss,
            "best_epoch": best_epoch, "train_seconds": train_seconds,
            "wall_seconds": wall_before + time.perf_counter() - started, **identity,
        })
        write_policy(run.path, run.read_metrics())  # after state.pt: a failed first epoch leaves no stray files
        record = dataclasses.replace(record, save_seconds=time.perf_counter() - t_save)
        manager.notify("tempsched_epoch_end", record=record)
        if on_epoch is not None:
            on_epoch(record)

    if pop.epoch > start_epoch:
        _keep_best_on_final_lineage(run, pop, identity)
    summary = finish(run, built, config, train_seconds, wall_before + time.perf_counter() - started, data_text)
    manager.notify("tempsched_run_end", summary=summary)
    return summary


def _keep_best_on_final_lineage(run: rd.RunDir, pop: Population, identity: dict[str, Any]) -> None:
    """Make best.pt a state the final best member descends from, so best.pt, the summary's test figures,
    policy.json and ``replay`` tell of one lineage.

    Under Algorithm 1's plan every member goes on from each epoch's best, so the run's lowest loss is
    always an ancestor and best.pt stays as it is. Under a plan such as ``pbt``, the member that set the
    lowest loss may since have been overwritten by a copy or retired; a model from that dead line is not
    what the population found, so the final best member's own weights replace it.
    """
    rows = run.read_metrics()
    lineage = policy_from_rows(rows)
    best = rd.load_torch(run.file(rd.BEST), rd.BEST_FORMAT)
    if lineage[int(best["epoch"])]["member"] == int(best["member"]):
        return
    final = lineage[-1]
    (row,) = [r for r in rows if r["epoch"] == final["epoch"] and r["member"] == final["member"]]
    rd.save_torch(run.file(rd.BEST), {
        "format": rd.BEST_FORMAT, "epoch": final["epoch"], "member": final["member"], "strategy": row["strategy"],
        "tau": row["tau_end"], "loss": row["loss"], "model": pop.model_state(final["member"] - 1), **identity,
    })


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
    best = rd.load_torch(run.file(rd.BEST), rd.BEST_FORMAT)
    model = built.population.members[0].model
    tau = _load_best_weights(model, best, run.file(rd.BEST))
    metrics = built.task.test_metrics(model, tau)
    rows = run.read_metrics()
    files = {"config": rd.CONFIG, "metrics": rd.METRICS, "best model": rd.BEST, "state": rd.STATE,
             "policy": POLICY, "lineage": LINEAGE, "trajectories": plot_trajectories(run.path, rows),
             **built.task.save_artifacts(model, tau, run.path), "summary": rd.SUMMARY}
    images = built.task.train_examples * config.epochs
    summary = RunSummary(
        run_dir=run.path, best_epoch=int(best["epoch"]), best_member=int(best["member"]),
        best_strategy=str(best["strategy"]), best_tau=tau, best_loss=float(best["loss"]), test_metrics=metrics,
        files=files, wall_seconds=wall, images_per_second_per_member=images / train_seconds if train_seconds else 0.0,
        data=data_text, hardware=describe(str(built.task.device)), platform=platform_tag(str(built.task.device)),
        member_epochs=len(rows))  # one row per member and epoch it trained
    run.write_json(rd.SUMMARY, {k: (str(v) if isinstance(v, Path) else v) for k, v in summary.__dict__.items()})
    return summary


def _cached_stem(config: RunConfig) -> str:
    """The part of a cached run's name that the configuration decides: preset, epochs and fingerprint."""
    return f"{config.plugin}-e{config.epochs}-{rd.fingerprint(config.to_dict())[:12]}"


def cached_run_dir(config: RunConfig, root: Path) -> Path:
    """Where ``ensure_run`` trains the run of ``config`` on this machine: named by its preset, epochs and
    fingerprint, then the device kind and torch version (``hardware.platform_tag``). The fingerprint leaves
    the device out (a resume may move a run), but the figures depend on it, so a cache that gathers runs
    from several machines keeps one folder per machine kind instead of one name for two trainings."""
    return Path(root) / f"{_cached_stem(config)}-{platform_tag(config.device)}"


def finished_run(config: RunConfig, root: Path) -> Path | None:
    """A finished run of ``config`` in ``root``: this machine's kind's if there is one, else the first by
    name that other hardware trained (a lent GPU, another torch), else None."""
    own = cached_run_dir(config, root)
    if (own / rd.SUMMARY).is_file():
        return own
    runs = sorted(p.parent for p in Path(root).glob(f"{_cached_stem(config)}-*/{rd.SUMMARY}"))
    return runs[0] if runs else None


def ensure_run(config: RunConfig, manager: PluginManager, root: Path) -> Path:
    """A finished run of ``config`` under ``root``: reused when it finished, resumed when it was cut off,
    trained otherwise. Evaluations and the reproduction script call this, so their work survives a
    session that ends mid-way and is never done twice."""
    # A run of the same configuration that a lent GPU (or another torch) finished is reused rather than
    # trained again; its name says what trained it, so every figure built on it can say so too.
    finished = finished_run(config, root)
    if finished is not None:
        return finished
    run_dir = cached_run_dir(config, root)
    # Two processes sharing a cache (two reproduction cells that need the same baseline, side by side)
    # train a run once: the second waits for the first, then reuses its run. The lock lies beside the run
    # directory, whose own lock the training takes.
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with rd.exclusive_lock(run_dir.parent / f"{run_dir.name}.lock", wait=lambda pid: print(
            f"waiting for process {pid}, which trains {run_dir.name}", file=sys.stderr, flush=True)):
        # Decided under the lock: another process may have finished (or half-trained) it meanwhile.
        if (run_dir / rd.SUMMARY).is_file():
            return run_dir
        resume = (run_dir / rd.STATE).is_file()
        if not resume and run_dir.is_dir():
            rd.RunDir(run_dir).discard_unstarted()
        execute(config, manager, run_dir, resume=resume)
    return run_dir


def unrenamed_runs(root: Path) -> list[Path]:
    """The finished runs in ``root`` named before names carried the hardware: ``<preset>-e<epochs>-<fingerprint>``."""
    return sorted(p.parent for p in Path(root).glob(f"*/{rd.SUMMARY}")
                  if re.fullmatch(r".+-e\d+-[0-9a-f]{12}", p.parent.name))


def rename_cached_runs(root: Path) -> dict[str, str]:
    """Give each finished run in ``root`` named before names carried the hardware (``<preset>-e<epochs>-
    <fingerprint>``) its ``cached_run_dir`` name, the hardware read from its summary.json rather than
    trained again; its summary and the evaluation reports under ``root/reports`` are rewritten to the new
    names, so they are reused too. Returns the renames (old name: new name); a second call finds nothing.

    A cut-off run of the old kind has no summary to say what trained it: it stays and is not resumed."""
    plan: dict[Path, Path] = {}
    for old in unrenamed_runs(root):
        summary = json.loads((old / rd.SUMMARY).read_text(encoding="utf-8"))
        device = load_toml(old / rd.CONFIG).get("device", "cpu")
        tag = summary.get("platform") or tag_from_description(summary.get("hardware") or "", device)
        plan[old] = old.with_name(f"{old.name}-{tag}")
    clash = next((new for new in plan.values() if new.exists()), None)
    if clash is not None:  # checked before anything moves, so a refusal leaves the cache as it was
        raise UserError(f"cannot rename a cached run to {clash}: that folder exists already")
    for old, new in plan.items():
        old.rename(new)
    renamed = {old.name: new.name for old, new in plan.items()}
    for path in [new / rd.SUMMARY for new in plan.values()] + sorted(Path(root).glob("reports/*/*/*")):
        if path.name in (rd.SUMMARY, "config.toml", "results.json"):
            text = original = path.read_text(encoding="utf-8")
            for old_name, new_name in renamed.items():
                text = re.sub(rf"(?<![\w-]){re.escape(old_name)}(?=[\"/])", new_name, text)
            if text != original:
                rd.write_text(path, text)
    return renamed


@dataclass
class LoadedRun:
    """A finished run's configuration, its task (data loaded) and its best model, ready to evaluate."""

    run_dir: Path
    config: RunConfig
    task: Task
    model: torch.nn.Module
    tau: float
    best: dict[str, Any]


def load_best(run_dir: Path, manager: PluginManager, task: Task | None = None,
              device: str | None = None) -> LoadedRun:
    """Load the best model of a finished run (weights only), with its task; ``task`` reuses one already built.

    ``device`` evaluates it there rather than where it trained: a run trained on a GPU is evaluated on a
    machine without one, and the device enters neither the run's fingerprint nor its figures' meaning."""
    config = load_run_config(run_dir, manager, {"device": device} if device else None)
    path = Path(run_dir) / rd.BEST
    best = rd.load_torch(path, rd.BEST_FORMAT)
    task = task or build_task(config, manager)
    model = task.build_model()
    return LoadedRun(Path(run_dir), config, task, model, _load_best_weights(model, best, path), best)


# What every best.pt holds (``_train`` writes it), checked before a reader relies on it.
BEST_KEYS = ("epoch", "member", "strategy", "tau", "loss", "model")


def _load_best_weights(model: torch.nn.Module, best: dict[str, Any], path: Path) -> float:
    """Put the weights of ``best`` (best.pt, read from ``path``) into ``model`` and return its tau; a file
    without a best.pt's fields or with another model's weights is one line."""
    missing = [key for key in BEST_KEYS if key not in best]
    if missing:
        raise UserError(f"{path} is damaged or incomplete (no {', '.join(missing)}): {rd.RUN_REMEDY}")
    rd.load_weights(model, best["model"], path)
    return float(best["tau"])
