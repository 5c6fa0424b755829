"""The run directory: atomic writes, one process at a time, metrics.jsonl, checkpoints and resume checks.

Layout: ``config.toml`` (the resolved configuration), ``spec.json`` (what it was resolved from), ``metrics.jsonl`` (a row per member per epoch),
``state.pt`` (the latest population state, for ``--resume``), ``best.pt`` (the best member so far),
``summary.json`` and the task's pictures, plus ``.lock`` while a process trains the run. Every file
is written to a temporary name in the same folder and renamed over the old one, so a killed run
never leaves a half-written file (metrics.jsonl, which is appended to, may end in a cut-off line).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import pickle
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from tempsched.errors import UserError, describe_exception, flat_message

STATE_FORMAT = "tempsched-state-1"
BEST_FORMAT = "tempsched-best-1"
CONFIG, METRICS, STATE, BEST, SUMMARY = "config.toml", "metrics.jsonl", "state.pt", "best.pt", "summary.json"
SPEC = "spec.json"  # JSON, not TOML: an override may be None ("let the preset choose", e.g. schedules)
LOCK = ".lock"
RUN_FILES = (CONFIG, SPEC, METRICS, STATE, BEST, SUMMARY)

# Configuration keys (dotted paths into ``RunConfig.to_dict()``; a table's name covers all of it) that
# a resume may change: how long and how fast the run trains, not what it trains. Everything else goes
# into the fingerprint that state.pt and best.pt carry.
RESUMABLE_KEYS = ("epochs", "device", "performance")


@contextlib.contextmanager
def atomic_path(target: Path, *, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it becomes ``target`` in one step.

    ``exclusive``: ``target`` must not exist yet; it is made with a hard link, which fails instead of
    replacing a file another process created in the meantime.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a run's files should read like any other
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise UserError(f"{target} already exists: another process created it") from None
        else:
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(target: Path, text: str, *, exclusive: bool = False) -> None:
    with atomic_path(target, exclusive=exclusive) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_torch(target: Path, obj: Any) -> None:
    with atomic_path(target) as tmp:
        torch.save(obj, tmp)


RUN_REMEDY = "put back an intact copy, or start a new run"


def load_torch(path: Path, expected_format: str, remedy: str = RUN_REMEDY) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only``) and check it is one of ours; ``remedy`` says what to do
    with one that is not (the default suits a run's own files; a cache's can be made again)."""
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot read checkpoint {path}: corrupt or not a tempsched file "
                        f"({_unreadable(path, exc)}): {remedy}") from None
    if not isinstance(obj, dict) or obj.get("format") != expected_format:
        raise UserError(f"{path} is not a tempsched checkpoint of the expected kind ({expected_format}): {remedy}")
    return obj


def _unreadable(path: Path, exc: Exception) -> str:
    """Why torch could not load ``path``, in words: its own message is often a stray detail of the
    unpickler ("pop from empty list", "Invalid argument") or twenty lines on ``weights_only``."""
    try:
        if path.stat().st_size == 0:
            return "the file is empty"
        if not zipfile.is_zipfile(path):
            return "not a torch archive: cut off, overwritten, or another kind of file"
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        return f"the archive cannot be read: {describe_exception(err)}"
    if damaged is not None:
        return f"its part {damaged} fails its checksum: damaged on disk or in a copy"
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
        return "it holds Python objects other than tensors and plain values; refused without running them"
    return f"its contents do not load: {describe_exception(exc)}"


def load_weights(model: torch.nn.Module, weights: Any, path: Path, remedy: str = RUN_REMEDY) -> None:
    """Load the weights that checkpoint ``path`` holds into ``model``; a mismatch is one line with ``remedy``.

    torch names each missing, unexpected or resized tensor on a line of its own after a first line that
    says only that something failed; here they stay, on one line, shortened."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{path} does not fit the model of its configuration ({flat_message(exc)}): "
                        f"{remedy}") from None


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"tau": {"min": 1}}`` -> ``{"tau.min": 1}``, whatever the configuration's shape."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def _fingerprinted(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened configuration without ``RESUMABLE_KEYS``."""
    return {key: value for key, value in _flatten(config).items()
            if not any(key == k or key.startswith(f"{k}.") for k in RESUMABLE_KEYS)}


def fingerprint(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of what decides a run's numbers (``config`` is ``RunConfig.to_dict()``)."""
    canonical = json.dumps(_fingerprinted(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_fingerprint(path: Path, checkpoint: Mapping[str, Any], config: Mapping[str, Any], config_path: Path) -> None:
    """Refuse a checkpoint that was not trained with ``config`` (the one ``config_path`` holds).

    A checkpoint from before fingerprints is refused too: it cannot be checked, and resuming a state
    with other bounds, seed or learning rate silently mixes two runs in one metrics.jsonl.
    """
    saved = checkpoint.get("fingerprint")
    if saved is None:
        raise UserError(f"{path} predates configuration fingerprints (older tempsched), so it cannot be checked "
                        f"against {config_path}: resume it with the version that wrote it, or start a new run")
    if saved == fingerprint(config):
        return
    before = checkpoint.get("config")
    before_flat = _fingerprinted(before) if isinstance(before, Mapping) else {}
    now_flat = _fingerprinted(config)
    changed = sorted(k for k in before_flat.keys() | now_flat.keys() if before_flat.get(k) != now_flat.get(k))
    what = f"they differ in {', '.join(changed)}" if before_flat and changed else "another configuration"
    raise UserError(f"{path} does not belong to {config_path} ({what}): put back the run's own {config_path.name} "
                    f"and {path.name}, or start a new run")


# JSON has no NaN or Infinity: json.dumps would write a bare NaN, which strict readers (jq, JavaScript,
# most JSON libraries) refuse for the whole file. A row's non-finite value is written as null and named,
# with what it was, in the row's "nonfinite" field, so every line stays JSON and reads back the same.
# A value inside a nested object or list (the feedback rule's state, under "feedback") is named at the same
# place, a list's items by their index: {"feedback": {"avg": null, "last": [1.0, null]},
# "nonfinite": {"feedback": {"avg": "nan", "last": {"1": "inf"}}}}.
NONFINITE = "nonfinite"


def _without_nonfinite(row: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``row`` with every non-finite float (nested objects and lists included) as None, and where they were,
    as text."""
    clean, bad = _cleaned(row)
    return clean, bad or {}


def _cleaned(value: Any) -> tuple[Any, Any]:
    """``value`` with its non-finite floats as None, and what they were (None where there was none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None, str(value)
    if isinstance(value, Mapping):
        pairs = [(key, *_cleaned(item)) for key, item in value.items()]
        return {k: c for k, c, _ in pairs}, {k: b for k, _, b in pairs if b is not None} or None
    if isinstance(value, (list, tuple)):
        pairs = [(str(i), *_cleaned(item)) for i, item in enumerate(value)]
        return [c for _, c, _ in pairs], {k: b for k, _, b in pairs if b is not None} or None
    return value, None


def _restore_nonfinite(node: dict[str, Any] | list[Any], bad: dict[str, Any]) -> None:
    for key, text in bad.items():
        if isinstance(node, list):
            if not (key.isdigit() and int(key) < len(node)):
                raise ValueError(f"'{NONFINITE}' names item {key!r} of a list of {len(node)}")
            slot: Any = int(key)
            inside = node[slot]
        else:
            slot, inside = key, node.get(key)
        if isinstance(text, dict) and isinstance(inside, (dict, list)):
            _restore_nonfinite(inside, text)
        elif text in ("nan", "inf", "-inf"):
            node[slot] = float(text)
        else:
            raise ValueError(f"'{NONFINITE}' gives {key} as {text!r}, not nan, inf or -inf")


def encode_row(row: Mapping[str, Any]) -> str:
    """One metrics.jsonl line."""
    clean, bad = _without_nonfinite(row)
    if bad:
        row = {**clean, NONFINITE: bad}
    return json.dumps(row, allow_nan=False) + "\n"


def decode_row(line: bytes) -> dict[str, Any]:
    """The row ``encode_row`` wrote; ValueError when ``line`` is not one."""
    row = json.loads(line)
    if not isinstance(row, dict) or type(row.get("epoch")) is not int or row["epoch"] < 0:
        raise ValueError("not a metrics row with an 'epoch' number")
    bad = row.pop(NONFINITE, {})
    if not isinstance(bad, dict):
        raise ValueError(f"'{NONFINITE}' must be an object")
    _restore_nonfinite(row, bad)
    return row


def _acquire(path: Path, *, block: bool) -> int | str:
    """Lock ``path`` (made if missing) with an exclusive ``flock`` and write this process's pid in it: the open
    descriptor that holds it, or, when not blocking and another process holds it, that holder's pid as text.

    The kernel drops an flock when its process dies, so a process killed with kill -9 never leaves a stale
    lock behind, only a stale file that the next process takes over.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise UserError(f"cannot lock {path.parent}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            return holder
        if _names(path, fd):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # its holder removed it between our open and our lock: lock the file there now


@contextlib.contextmanager
def _held(path: Path, fd: int) -> Iterator[None]:
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held, so nobody can hold the name being removed
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(path: Path, *, wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock ``path`` (the file is removed after). Held by another process: refused with a one-line
    error naming its pid, or, given ``wait``, ``wait(pid)`` is called and the lock taken once it is let go."""
    got = _acquire(path, block=False)
    if isinstance(got, str):
        if wait is None:
            raise UserError(f"{path.parent} is in use by another tempsched process (pid {got}): "
                            "wait for it to finish, or stop it")
        wait(got)
        got = _acquire(path, block=True)
    assert isinstance(got, int)
    with _held(path, got):
        yield


@contextlib.contextmanager
def lock_if_free(path: Path) -> Iterator[bool]:
    """Hold the lock ``path`` if no other process does (yields True), else hold nothing (False): processes
    sharing a cache split its items this way, each taking those nobody is working on."""
    got = _acquire(path, block=False)
    if isinstance(got, str):
        yield False
        return
    with _held(path, got):
        yield True


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _remove_folders(made: list[Path]) -> None:
    """Remove folders this process made, deepest first, stopping at one that is not empty (not only ours)."""
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            return


class RunDir:
    """One run's folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @contextlib.contextmanager
    def hold(self, *, new: bool) -> Iterator[None]:
        """Own this folder for a whole run (``new``: create it for a new run; else resume the run in it).

        One process per run directory: two runs appending to one metrics.jsonl, or a resume that
        truncates it under a run still training, would mix their rows. A second process is refused
        with the first one's pid and changes nothing. A new run that fails before its first
        checkpoint removes what it created (its files, the folders it made), so the path is free
        again; files that were in the folder before stay.

        A run killed before its first checkpoint (kill -9, a power cut: nothing runs to clean up) leaves
        its ``.lock`` file beside its first files and no state.pt. That cannot be resumed and holds
        nothing of value, so a new run takes the folder over; a resume is refused saying so, and leaves
        the lock file for that new run to see.
        """
        made = self._make_folders() if new else []
        if not self.path.is_dir():
            raise UserError(f"cannot create run directory {self.path}: a file has that name" if new
                            else f"run directory not found: {self.path}")
        # Only a process that died holding the folder leaves the lock file: one that ends any other way
        # removes it. Looked at before locking, which would make the file.
        killed = self.file(LOCK).exists()
        try:
            with exclusive_lock(self.file(LOCK)):
                unstarted = not self.file(STATE).exists()
                if new and killed and unstarted:
                    self._discard_run_files()
                # Any of a run's files means someone's run; refusing it also makes every run file
                # found after a failure below this process's own.
                if new and any(self.file(name).exists() for name in RUN_FILES):
                    raise UserError(f"{self.path} already holds a run: use --resume {self.path} "
                                    "or choose another --out")
                if new or not unstarted:
                    try:
                        yield
                    except BaseException:
                        if new and not self.file(STATE).exists():
                            self._discard_run_files()
                        raise
                    return
        except BaseException:
            _remove_folders(made)
            raise
        if killed:
            self.file(LOCK).touch()  # released (and so removed) by now: put back the sign of the killed run
        raise UserError(self._nothing_to_resume(killed))

    def _nothing_to_resume(self, killed: bool) -> str:
        """Why a folder without state.pt cannot be resumed, and what to do instead."""
        if killed:
            return (f"{self.path} has no checkpoint (the run stopped before its first epoch ended): "
                    "run the same command without --resume to start it afresh")
        return (f"{self.path} has no checkpoint ({STATE}), so there is nothing to resume: "
                "start a new run with another --out")

    def _discard_run_files(self) -> None:
        for name in RUN_FILES:
            self.file(name).unlink(missing_ok=True)

    def discard_unstarted(self) -> None:
        """Remove the files of a run that died before its first checkpoint (kill -9, power cut).

        Such a run cannot be resumed (there is no state) and blocks a new run in its folder; nothing of
        value is lost. Done under the lock, so a run still starting in the folder is never touched.
        """
        with exclusive_lock(self.file(LOCK)):
            if not self.file(STATE).exists():
                self._discard_run_files()

    def _make_folders(self) -> list[Path]:
        """Create the run's folder and missing parents; return those this process made, outermost first."""
        made: list[Path] = []
        for folder in reversed([p for p in (self.path, *self.path.parents) if not p.exists()]):
            try:
                folder.mkdir()
            except FileExistsError:
                continue  # another process made it meanwhile: not ours to remove
            except OSError as exc:
                _remove_folders(made)
                raise UserError(f"cannot create run directory {self.path}: {exc.strerror}") from None
            made.append(folder)
        return made

    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        with self.file(METRICS).open("a", encoding="utf-8") as fh:
            fh.write("".join(encode_row(row) for row in rows))
            fh.flush()
            os.fsync(fh.fileno())

    def _metric_lines(self) -> tuple[bytes, list[tuple[bytes, dict[str, Any]]]]:
        """metrics.jsonl's bytes, and each complete line with its row; a damaged line is refused, by number.

        Only a last line without its newline is left out: the run was killed while appending it, so
        its epoch's state was never saved. A damaged line anywhere else is not a kill's trace, and
        dropping it (or the rows after it) would lose finished epochs.
        """
        path = self.file(METRICS)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return b"", []
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None
        *lines, _torn = data.split(b"\n")
        out = []
        for number, line in enumerate(lines, start=1):
            try:
                out.append((line + b"\n", decode_row(line)))
            except ValueError as exc:
                reason = (str(exc).splitlines() or [type(exc).__name__])[0][:80]
                raise UserError(f"{path} line {number} is damaged ({reason}): repair that line, "
                                "or start a new run") from None
        return data, out

    def read_metrics(self) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl, non-finite values restored."""
        return [row for _, row in self._metric_lines()[1]]

    def rewind_metrics(self, epochs_done: int, members: int | Sequence[int]) -> None:
        """Check metrics.jsonl holds the rows of the ``epochs_done`` epochs state.pt includes, and drop
        later rows (written before a kill that came ahead of the state's save). ``members``: the rows of
        each epoch (one count per epoch where members retired), or of every epoch.

        Nothing is written unless every check passes.
        """
        data, lines = self._metric_lines()
        counts = Counter(row["epoch"] for _, row in lines)
        path = self.file(METRICS)
        expected = [members] * epochs_done if isinstance(members, int) else list(members)
        for epoch in range(epochs_done):
            if counts[epoch] != expected[epoch]:
                raise UserError(f"{path} holds {counts[epoch]} rows of epoch {epoch + 1}, which {STATE} includes, "
                                f"instead of {expected[epoch]}: the two files are not from the same run")
        last = max(counts, default=-1)
        if last > epochs_done:
            raise UserError(f"{path} holds rows up to epoch {last + 1} but {STATE} stops after epoch {epochs_done}: "
                            f"{STATE} is older than {METRICS}; put back the run's latest {STATE}")
        kept = b"".join(line for line, row in lines if row["epoch"] < epochs_done)
        if kept != data:
            with atomic_path(path) as tmp:
                tmp.write_bytes(kept)

    def write_json(self, name: str, obj: Any) -> None:
        write_text(self.file(name), json.dumps(obj, indent=2, default=str) + "\n")
