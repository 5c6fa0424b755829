"""``tempsched tune``: an Optuna study whose every trial is one whole population run.

The population tunes tau *within* a run; Optuna tunes the outer knobs *across* runs (feedback lr,
patience, tau bounds: whatever the plugins' search space holds). A trial trains into
``STUDY_DIR/trials/<number>/`` with ``training.execute``, reports the population's best loss after
every epoch (so the pruner can stop it) and returns the best member's selection loss; the best
member's test metrics (``test_mse`` among them) become user attributes.

Storage: by default a journal file in the study directory, which several processes on one machine
(or on machines sharing the folder) append to under a file lock; any Optuna storage URL otherwise
(PostgreSQL, MySQL, SQLite). Optuna's heartbeat only exists for database storages, so for journal
files this module keeps its own: each running trial records its worker (host, boot, pid) and a
heartbeat time; a trial whose worker process is gone on this machine, or whose heartbeat is older
than ``GRACE_SECONDS``, is marked FAIL when any worker starts or starts a trial. Database storages
get Optuna's own heartbeat with the same interval and grace period, plus the same dead-process check.

No CLI code lives here (see ``tempsched.cli_tune``); everything is plain functions on settings.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import socket
import threading
import time
import uuid
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from tempsched import rundir as rd
from tempsched import training
from tempsched.config import RunConfig, from_dict, merge
from tempsched.errors import UserError
from tempsched.plugins import PluginManager
from tempsched.records import EpochReport
from tempsched.space import SearchSpace

SAMPLERS = ("tpe", "random", "cmaes", "gp")
PRUNERS = ("median", "hyperband", "none")
JOURNAL = "study.journal"
BEST_TOML = "best.toml"
TRIALS = "trials"
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SETTINGS_ATTR = "tempsched"

# Who runs a trial: host and boot (so a pid is only judged on the machine that owns it), pid, and a
# token that tells this process from an earlier one that had the same pid.
_BOOT = Path("/proc/sys/kernel/random/boot_id")
MACHINE = f"{socket.gethostname()}/{_BOOT.read_text().strip() if _BOOT.exists() else 'unknown-boot'}"
WORKER_ID = f"{MACHINE}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class TuneSettings:
    """One study: the run every trial starts from, what it samples, and how the study runs.

    ``manager_factory`` builds the plugin manager in each worker process; it must be importable by
    name (a module-level function) because workers are started with the ``spawn`` method.
    """

    base: RunConfig
    space: SearchSpace
    trials: int
    study_dir: Path
    study_name: str
    storage: str | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    workers: int = 1
    manager_factory: Callable[[], PluginManager] = PluginManager

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


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    """Silence Optuna's 'experimental feature' warnings (heartbeats, GP sampler): they say nothing to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def hide_password(url: str) -> str:
    """``url`` with any password replaced by ***."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def storage_label(storage: str | None, study_dir: Path) -> str:
    """Where a study lives, safe to print (no password)."""
    return hide_password(storage) if storage else str(study_dir / JOURNAL)


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
        trial_config(settings.base, settings.space, {d.name: d.bounds()[pick] for d in dims}, manager)


def trial_config(base: RunConfig, space: SearchSpace, values: dict[str, Any], manager: PluginManager) -> RunConfig:
    """The complete run configuration of a trial: ``base`` with the sampled values at their targets."""
    merged = merge(base.to_dict(), space.config_overrides(values))
    return training.resolve_config(from_dict(merged), manager)


def open_storage(url: str | None, study_dir: Path) -> BaseStorage:
    """A study's storage: the journal file in ``study_dir``, a journal file path, or a database URL."""
    if url is None or "://" not in url:
        path = Path(url) if url else study_dir / JOURNAL
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise UserError(f"cannot open the study journal {path}: {exc.strerror or exc}") from None
    try:
        with _quiet_experimental():
                return RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                              engine_kwargs={"pool_pre_ping": True})
    except ModuleNotFoundError as exc:
        raise UserError(f"storage {hide_password(url)} needs the Python package '{exc.name}' "
                        f"(for PostgreSQL: pip install psycopg2-binary)") from None
    except Exception as exc:  # sqlalchemy raises many kinds; the user needs the first line only
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot use storage {hide_password(url)}: {reason[:200]}") from None


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` seeded with ``seed``."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    with _quiet_experimental():
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


def _process_gone(worker: str) -> bool:
    """True when ``worker`` ran on this machine and its process no longer exists."""
    machine, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if machine != MACHINE or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return worker != WORKER_ID  # an earlier process that had this pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fail_stale_trials(study: optuna.Study, storage: BaseStorage, grace: float = GRACE_SECONDS) -> list[int]:
    """Mark FAIL every RUNNING trial whose worker is dead here or, for journal files, silent for ``grace``.

    Returns the numbers of the trials it failed. Database storages also run Optuna's own heartbeat
    check; this adds the immediate check for processes of this machine.
    """
    with _quiet_experimental():
        optuna.storages.fail_stale_trials(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    now = time.time()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        last = t.user_attrs.get("heartbeat", t.datetime_start.timestamp() if t.datetime_start else now)
        silent = not isinstance(storage, RDBStorage) and now - float(last) > grace
        if not (_process_gone(worker) or silent):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(t.number)
    return failed


@contextlib.contextmanager
def heartbeat(trial: optuna.Trial, storage: BaseStorage, interval: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """For journal storages: record ``heartbeat`` on the trial every ``interval`` seconds while it runs."""
    if isinstance(storage, RDBStorage):  # Optuna beats for database storages itself
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception):  # a missed beat only makes the trial look older
                trial.set_user_attr("heartbeat", time.time())

    trial.set_user_attr("heartbeat", time.time())
    thread = threading.Thread(target=beat, name="tempsched-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class Objective:
    """One trial: sample, run the population into ``trials/<number>``, report every epoch, return the loss."""

    def __init__(self, settings: TuneSettings, manager: PluginManager, storage: BaseStorage) -> None:
        self.settings = settings
        self.manager = manager
        self.storage = storage

    def __call__(self, trial: optuna.Trial) -> float:
        fail_stale_trials(trial.study, self.storage)
        values = self.settings.space.suggest(trial)
        config = trial_config(self.settings.base, self.settings.space, values, self.manager)
        run_dir = self.settings.study_dir / TRIALS / str(trial.number)
        trial.set_user_attr("worker", WORKER_ID)
        trial.set_user_attr("run_dir", str(run_dir))
        best = [float("inf")]

        def on_epoch(report: EpochReport) -> None:
            best[0] = min(best[0], float(report.rows[report.best]["loss"]))
            trial.report(best[0], report.epoch)
            if trial.should_prune():
                trial.set_user_attr("pruned_after_epoch", report.epoch + 1)
                raise optuna.TrialPruned(f"pruned after epoch {report.epoch + 1}")

        with heartbeat(trial, self.storage):
            summary = training.execute(config, self.manager, run_dir, on_epoch=on_epoch)
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
               callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] | None = None) -> None:
    """Run up to ``quota`` trials of the study in this process (worker ``index`` of ``settings.workers``).

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
    study.optimize(Objective(settings, manager, storage), n_trials=quota, callbacks=[stop, *(callbacks or [])])


def _child(settings: TuneSettings, quota: int, index: int, existing: int) -> None:
    """Entry point of a spawned worker: a UserError becomes one line and exit status 2, Ctrl+C a quiet exit."""
    import sys

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
    return trial_config(settings.base, settings.space, values, manager)


def write_best_toml(study: optuna.Study, settings: TuneSettings, manager: PluginManager) -> Path | None:
    """Write ``best.toml`` (a complete run configuration for ``tempsched run --config``); None if no trial completed."""
    config = best_config(study, settings, manager)
    if config is None:
        return None
    path = settings.study_dir / BEST_TOML
    rd.write_text(path, config.to_toml())
    return path


def run_study(settings: TuneSettings, callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] | None = None
              ) -> StudyResult:
    """Run (or resume) the study until it holds ``settings.trials`` finished trials.

    This process is worker 0 and gets ``callbacks``; ``settings.workers - 1`` more are spawned. Ctrl+C
    stops every worker after marking its trial FAIL; finished trials stay in the storage and the
    same call resumes the study.
    """
    check_settings(settings)
    manager = settings.manager_factory()
    check_space_corners(settings, manager)
    storage = open_storage(settings.storage, settings.study_dir)
    study = load_study(settings, storage)
    stale = fail_stale_trials(study, storage)
    existing = len(study.get_trials(deepcopy=False))
    before = counts(study)
    remaining = settings.trials - before["complete"] - before["pruned"] - before["running"]
    workers = max(0, min(settings.workers, remaining))
    quotas = [remaining // workers + (1 if i < remaining % workers else 0) for i in range(workers)] if workers else []
    ctx = multiprocessing.get_context("spawn")  # fork after torch's threads start is unsafe
    children = [ctx.Process(target=_child, args=(settings, quotas[i], i, existing), name=f"tempsched-tune-{i}")
                for i in range(1, workers)]
    interrupted = False
    try:
        for child in children:
            child.start()
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


def open_existing(study_dir: Path, study_name: str, storage: str | None = None) -> optuna.Study:
    """Load a study for reporting, refusing one that does not exist (rather than creating it)."""
    if storage is None and not (study_dir / JOURNAL).is_file():
        raise UserError(f"{study_dir} holds no study ({JOURNAL} not found); give --storage if it lives elsewhere")
    opened = open_storage(storage, study_dir)
    try:
        return optuna.load_study(study_name=study_name, storage=opened)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(opened)) or "none"
        raise UserError(f"no study '{study_name}' in {storage_label(storage, study_dir)} (studies there: {names})"
                        ) from None


REPORT_PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values")


def write_report(study: optuna.Study, out_dir: Path) -> tuple[list[Path], dict[str, str]]:
    """Write Optuna's plots as HTML files into ``out_dir``; returns the files and, per plot skipped, why."""
    from optuna import visualization

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    skipped: dict[str, str] = {}
    for name in REPORT_PLOTS:
        try:
            with warnings.catch_warnings():  # e.g. "importances will be equal" with few trials: the plot shows it
                warnings.simplefilter("ignore", UserWarning)
                figure = getattr(visualization, f"plot_{name}")(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials for this plot
            skipped[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            continue
        path = out_dir / f"{name}.html"
        # "directory": the plots load plotly.min.js from beside them, so they open offline.
        rd.write_text(path, figure.to_html(include_plotlyjs="directory"))
        written.append(path)
    if written:
        from plotly.offline import get_plotlyjs

        rd.write_text(out_dir / "plotly.min.js", get_plotlyjs())
    return written, skipped
