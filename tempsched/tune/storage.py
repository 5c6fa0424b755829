"""Where a study lives, and keeping it free of trials whose worker died.

Storage: by default a journal file in the study directory (``tempsched.tune.journal``), which
several processes on one machine (or on machines sharing the folder) append to under a file lock;
any Optuna storage URL otherwise (PostgreSQL, MySQL, SQLite).

Optuna's heartbeat only exists for database storages, so for journal files this module keeps its
own: each running trial records its worker (host, boot, pid) and a heartbeat time; a trial whose
worker process is gone on this machine, or whose heartbeat is older than ``GRACE_SECONDS``, is
marked FAIL when any worker starts or starts a trial. Database storages get Optuna's own heartbeat
with the same interval and grace period, plus the same dead-process check.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Iterator

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage

from tempsched.errors import UserError
from tempsched.tune.journal import SafeJournalBackend

JOURNAL = "study.journal"
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
# SQLAlchemy 2 reads a bare postgresql:// as psycopg 3; tempsched installs (and CI tests) psycopg2.
POSTGRESQL, POSTGRESQL_DRIVER = "postgresql://", "postgresql+psycopg2://"


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Silence Optuna's 'experimental feature' warnings (heartbeats, GP sampler): they say nothing to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


@functools.cache
def machine() -> str:
    """This host and boot, so that a pid is only judged on the machine that owns it.

    Read on first use rather than at import, so importing tempsched touches no system files.
    """
    boot = Path("/proc/sys/kernel/random/boot_id")
    return f"{socket.gethostname()}/{boot.read_text().strip() if boot.exists() else 'unknown-boot'}"


def worker_id() -> str:
    """Who runs a trial: this machine, this pid, and a token that tells this process from an earlier one
    that had the same pid (keyed by pid, so a forked process gets its own)."""
    return _worker_id(os.getpid())


@functools.cache
def _worker_id(pid: int) -> str:
    return f"{machine()}:{pid}:{uuid.uuid4().hex[:8]}"


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


def database_url(url: str) -> str:
    """``url`` with a bare ``postgresql://`` given the driver tempsched installs (psycopg2)."""
    return POSTGRESQL_DRIVER + url[len(POSTGRESQL):] if url.startswith(POSTGRESQL) else url


def open_storage(url: str | None, study_dir: Path) -> BaseStorage:
    """A study's storage: the journal file in ``study_dir``, a journal file path, or a database URL."""
    if url is None or "://" not in url:
        path = Path(url) if url else study_dir / JOURNAL
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(SafeJournalBackend(path))
        except OSError as exc:
            raise UserError(f"cannot open the study journal {path}: {exc.strerror or exc}") from None
    try:
        with quiet_experimental():
            return RDBStorage(database_url(url), heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                              engine_kwargs={"pool_pre_ping": True})
    except ModuleNotFoundError as exc:
        raise UserError(f"storage {hide_password(url)} needs the Python package '{exc.name}' "
                        f"(for PostgreSQL: pip install psycopg2-binary)") from None
    except Exception as exc:  # sqlalchemy raises many kinds; the user needs the first line only
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot use storage {hide_password(url)}: {reason[:200]}") from None


def _process_gone(worker: str) -> bool:
    """True when ``worker`` ran on this machine and its process no longer exists."""
    where, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if where != machine() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return worker != worker_id()  # an earlier process that had this pid
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
    with quiet_experimental():
        optuna.storages.fail_stale_trials(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    now = time.time()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        last = t.user_attrs.get("heartbeat", t.datetime_start.timestamp() if t.datetime_start else now)
        silent = not isinstance(storage, RDBStorage) and now - float(last) > grace
        if not (_process_gone(worker) or silent):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL):
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
