"""``tempsched tune``: an Optuna study whose every trial is one whole population run.

The population tunes tau *within* a run; Optuna tunes the outer knobs *across* runs (feedback lr,
patience, tau bounds: whatever the plugins' search space holds). A trial trains into
``STUDY_DIR/trials/<number>/`` with ``session.execute``, reports the population's best loss after
every epoch (so the pruner can stop it) and returns the best member's selection loss; the best
member's test metrics (``test_mse`` among them) become user attributes. A trial that raises is
recorded FAIL with one line on stderr and the study goes on, unless ``FAILURES_IN_A_ROW`` trials of
one worker fail in a row (then the cause is not the sampled values, and the worker stops).

No CLI code lives here (see ``tempsched.cli.tune``); everything is plain functions on settings.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tempsched import rundir as rd
from tempsched.build import build_task
from tempsched.session import execute
from tempsched.config import RunConfig
from tempsched.errors import UserError, describe_exception
from tempsched.plugins import PluginManager
from tempsched.records import EpochRecord
from tempsched.space import SearchSpace
from tempsched.spec import RunSpec
from tempsched.tune import directory, workers
from tempsched.tune.storage import (fail_stale_trials, heartbeat, open_storage, quiet_experimental, storage_label,
                                    worker_id)

SAMPLERS = ("tpe", "random", "cmaes", "gp")
PRUNERS = ("median", "hyperband", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SETTINGS_ATTR = "tempsched"
FAILURES_IN_A_ROW = 3
Callback = Callable[[optuna.Study, FrozenTrial], None]


@dataclass
class TuneSettings:
    """One study: the run every trial starts from (``spec``; ``base`` is its resolution), what it samples,
    and how the study runs.

    ``manager_factory`` builds the plugin manager in each worker process; it must be importable by
    name (a module-level function) because workers are started with the ``spawn`` method.
    """

    spec: RunSpec
    space: SearchSpace
    trials: int
    study_dir: Path
    study_name: str
    storage: str | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    workers: int = 1
    manager_factory: Callable[[], PluginManager] = PluginManager
    base: RunConfig = field(init=False)

    def __post_init__(self) -> None:
        self.base = self.spec.resolve(self.manager_factory().registry)

    def storage_label(self) -> str:
        """Where the study lives, safe to print (no password)."""
        return storage_label(self.storage, self.study_dir)


@dataclass
class StudyResult:
    """What ``run_study`` did: counts of trials by state and the best trial, if any completed."""

    counts: dict[str, int]
    best: FrozenTrial | None
    best_toml: Path | None
    interrupted: bool = False
    new_trials: int = 0
    failed_stale: list[int] = field(default_factory=list)


def check_settings(settings: TuneSettings) -> None:
    """Refuse bad study options before anything is created (each a one-line UserError)."""
    if settings.trials <= 0:
        raise UserError(f"--trials must be a positive integer, got {settings.trials}")
    if settings.workers <= 0:
        raise UserError(f"--workers must be a positive integer, got {settings.workers}")
    if settings.sampler not in SAMPLERS:
        raise UserError(f"unknown sampler '{settings.sampler}' (known: {', '.join(SAMPLERS)})")
    if settings.pruner not in PRUNERS:
        raise UserError(f"unknown pruner '{settings.pruner}' (known: {', '.join(PRUNERS)})")
    settings.space.validate()


def check_space_corners(settings: TuneSettings, manager: PluginManager) -> None:
    """Resolve the run configurations at every range's low and high ends, so that a range the run
    rejects (a negative tau, say) fails now and not in trial 17."""
    dims = settings.space.dims.values()
    for pick in (0, 1):
        trial_spec(settings.spec, settings.space, {d.name: d.bounds()[pick] for d in dims}).resolve(manager.registry)


def trial_spec(base: RunSpec, space: SearchSpace, values: dict[str, Any]) -> RunSpec:
    """What a trial runs: ``base`` with the sampled values at their dotted keys (resolve it for the
    complete configuration, checked against the parts' declarations)."""
    return base.with_overrides(space.targets(values))


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` seeded with ``seed``."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    with quiet_experimental():
        return optuna.samplers.GPSampler(seed=seed)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """The pruner ``name``; median waits for 5 finished trials and never judges the first epoch."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def _settings_record(settings: TuneSettings) -> dict[str, Any]:
    record = {"base": settings.base.to_dict(), "space": settings.space.to_dict()}
    return json.loads(json.dumps(record))


def load_study(settings: TuneSettings, storage: BaseStorage, sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create the study, or load it and check it was made with the same run settings and space."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # tempsched prints its own line per trial
    study = optuna.create_study(storage=storage, study_name=settings.study_name, direction="minimize",
                                load_if_exists=True, sampler=sampler, pruner=pruner)
    record = _settings_record(settings)
    saved = study.user_attrs.get(SETTINGS_ATTR)
    if saved is None:
        study.set_user_attr(SETTINGS_ATTR, record)
    elif saved != record:
        differ = sorted(k for k in set(saved["base"]) | set(record["base"])
                        if saved["base"].get(k) != record["base"].get(k))
        if saved["space"] != record["space"]:
            differ.append("search space")
        raise UserError(f"study '{settings.study_name}' in {settings.storage_label()} was made with other "
                        f"settings ({', '.join(differ)} differ): repeat its options, or use another --out/--study-name")
    return study


def failure_reason(exc: Exception) -> str:
    """One line for why a trial failed: a UserError's message, else the exception's type and first line."""
    if isinstance(exc, UserError):
        return (str(exc).strip().splitlines() or ["UserError"])[0]
    return describe_exception(exc)


class Objective:
    """One worker's trials: sample, run the population into ``trials/<number>``, report every epoch,
    return the loss; stop the worker once ``quota`` of its trials finished.

    A trial that raises is reported in one line and left to Optuna to record FAIL; it does not count
    towards the quota. After ``FAILURES_IN_A_ROW`` failures in a row the cause is hardly the sampled
    values: the worker stops and ``gave_up`` says why.
    """

    def __init__(self, settings: TuneSettings, manager: PluginManager, storage: BaseStorage, quota: int) -> None:
        self.settings = settings
        self.manager = manager
        self.storage = storage
        self.quota = quota
        self.finished = 0
        self.failures_in_a_row = 0
        self.gave_up: str | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            loss = self.run(trial)
        except optuna.TrialPruned:
            self._finished(trial)
            raise
        except Exception as exc:
            reason = failure_reason(exc)
            print(f"trial {trial.number} failed: {reason}", file=sys.stderr, flush=True)
            self.failures_in_a_row += 1
            if self.failures_in_a_row >= FAILURES_IN_A_ROW:
                self.gave_up = f"{FAILURES_IN_A_ROW} trials in a row failed (the last, trial {trial.number}: {reason})"
                trial.study.stop()
            raise
        self._finished(trial)
        return loss

    def _finished(self, trial: optuna.Trial) -> None:
        self.failures_in_a_row = 0
        self.finished += 1
        if self.finished >= self.quota:
            trial.study.stop()

    def run(self, trial: optuna.Trial) -> float:
        """The trial itself: its run's best selection loss."""
        fail_stale_trials(trial.study, self.storage)
        values = self.settings.space.suggest(trial)
        spec = trial_spec(self.settings.spec, self.settings.space, values)
        config = spec.resolve(self.manager.registry)
        run_dir = directory.trial_dir(self.settings.study_dir, trial.number)
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("run_dir", str(run_dir))
        best = [float("inf")]

        def on_epoch(record: EpochRecord) -> None:
            best[0] = min(best[0], float(record.best_row["loss"]))
            trial.report(best[0], record.epoch)
            if trial.should_prune():
                trial.set_user_attr("pruned_after_epoch", record.epoch + 1)
                raise optuna.TrialPruned(f"pruned after epoch {record.epoch + 1}")

        with heartbeat(trial, self.storage):
            summary = execute(config, self.manager, run_dir, on_epoch=on_epoch, spec=spec)
        for key, value in summary.test_metrics.items():
            trial.set_user_attr(key, float(value))
        trial.set_user_attr("best_tau", summary.best_tau)
        trial.set_user_attr("best_strategy", summary.best_strategy)
        trial.set_user_attr("wall_seconds", summary.wall_seconds)
        return float(summary.best_loss)


def _sampler_seed(seed: int, existing: int, worker: int) -> int:
    """Different per worker and per resume (else a resumed study would replay its first samples)."""
    return zlib.crc32(f"{seed}:{existing}:{worker}".encode())


def run_worker(settings: TuneSettings, quota: int, index: int, existing: int,
               callbacks: list[Callback] | None = None) -> None:
    """Run trials of the study in this process (worker ``index`` of ``settings.workers``) until ``quota`` of
    them finished (failed ones do not count; see ``Objective``).

    Stops early once the study has ``settings.trials`` finished trials (other machines may share it).
    """
    if settings.workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.workers))
    manager = settings.manager_factory()
    storage = open_storage(settings.storage, settings.study_dir)
    study = load_study(settings, storage, make_sampler(settings.sampler, _sampler_seed(settings.base.seed, existing,
                                                                                       index)),
                       make_pruner(settings.pruner, settings.base.epochs))
    stop = optuna.study.MaxTrialsCallback(settings.trials, states=FINISHED)
    objective = Objective(settings, manager, storage, quota)
    study.optimize(objective, callbacks=[stop, *(callbacks or [])], catch=(Exception,))
    if objective.gave_up:
        raise UserError(f"{objective.gave_up}; finished trials are kept, fix the cause and re-run to resume")


def _child(settings: TuneSettings, quota: int, index: int, existing: int) -> None:
    """Entry point of a spawned worker: a UserError becomes one line and exit status 2, Ctrl+C a quiet exit."""
    try:
        run_worker(settings, quota, index, existing)
    except UserError as exc:
        print(f"error: worker {index}: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials of the study by state name (complete, pruned, fail, running, waiting)."""
    out = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def best_trials(study: optuna.Study, k: int = 5) -> list[FrozenTrial]:
    """The ``k`` completed trials with the lowest loss."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return sorted(done, key=lambda t: (t.value, t.number))[:k]


def best_config(study: optuna.Study, settings: TuneSettings, manager: PluginManager) -> RunConfig | None:
    """The complete run configuration of the best completed trial (None before any completes)."""
    top = best_trials(study, 1)
    if not top:
        return None
    values = settings.space.suggest(optuna.trial.FixedTrial(top[0].params))
    return trial_spec(settings.spec, settings.space, values).resolve(manager.registry)


def write_best_toml(study: optuna.Study, settings: TuneSettings, manager: PluginManager) -> Path | None:
    """Write ``best.toml`` (a complete run configuration for ``tempsched run --config``); None if no trial completed."""
    config = best_config(study, settings, manager)
    if config is None:
        return None
    path = settings.study_dir / directory.BEST_TOML
    rd.write_text(path, config.to_toml())
    return path


def run_study(settings: TuneSettings, callbacks: list[Callback] | None = None) -> StudyResult:
    """Run (or resume) the study until it holds ``settings.trials`` finished trials.

    This process is worker 0 and gets ``callbacks``; ``settings.workers - 1`` more are spawned, and
    end when this process does. Ctrl+C stops every worker after marking its trial FAIL; finished
    trials stay in the storage and the same call resumes the study.
    """
    check_settings(settings)
    manager = settings.manager_factory()
    check_space_corners(settings, manager)
    # The task loads its data once here, so that data the run cannot use (too few images to split, a missing
    # file) is one line before the study directory exists, not the same failure in every trial.
    build_task(settings.base, manager)
    storage = open_storage(settings.storage, settings.study_dir)
    directory.check_owner(settings.study_dir, settings.study_name, storage, settings.storage_label())
    study = load_study(settings, storage)
    directory.record_owner(settings.study_dir, settings.study_name)
    stale = fail_stale_trials(study, storage)
    existing = len(study.get_trials(deepcopy=False))
    before = counts(study)
    remaining = settings.trials - before["complete"] - before["pruned"] - before["running"]
    n_workers = max(0, min(settings.workers, remaining))
    quotas = [remaining // n_workers + (1 if i < remaining % n_workers else 0) for i in range(n_workers)]
    children: list[BaseProcess] = []
    interrupted = False
    try:
        for i in range(1, n_workers):
            children.append(workers.start(_child, (settings, quotas[i], i, existing), f"tempsched-tune-{i}"))
        if quotas:
            run_worker(settings, quotas[0], 0, existing, callbacks)
        for child in children:
            child.join()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # After Ctrl+C the workers got the same signal: give them time to mark their trials FAIL. After an
        # error here, stop them now; a trial they leave RUNNING is failed by the next start.
        for child in children:
            if child.is_alive():
                child.join(timeout=30 if interrupted else 0)
                child.terminate()
                child.join()
    failed_children = [c.name for c in children if c.exitcode not in (0, 130, -2, None)]
    study = load_study(settings, storage)
    stale += fail_stale_trials(study, storage)
    result = StudyResult(counts=counts(study), best=(best_trials(study, 1) or [None])[0],
                         best_toml=write_best_toml(study, settings, manager), interrupted=interrupted,
                         new_trials=len(study.get_trials(deepcopy=False)) - existing, failed_stale=stale)
    if failed_children and not interrupted:
        raise UserError(f"worker process(es) {', '.join(failed_children)} failed (see their error above); "
                        f"finished trials are kept, re-run the same command to resume")
    return result
