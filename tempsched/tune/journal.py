"""The study journal file: Optuna's ``JournalFileBackend``, made safe against torn and damaged lines.

A process killed while appending leaves the journal's last line torn (no newline). Optuna's reader
skips such a line, but its writer appends right after it, which glues the torn bytes and the next
record into one bad line in the middle of the file; from then on every read fails. So before each
append, holding Optuna's own lock, ``SafeJournalBackend`` looks at the end of the file: a torn
record is cut off (and a warning says so); anything else that is not a whole record is refused, so
an append never turns a recoverable file into a broken one. Reads turn damage into a one-line
``UserError`` that names the bad line and how to keep the records before it.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from tempsched.errors import UserError

log = logging.getLogger(__name__)

# Every record Optuna writes starts so (json.dumps of {"op_code": ..., ...}); a torn last line that
# does not is no record cut short but something else, and is not cut.
RECORD_START = b'{"op_code"'
CHUNK = 1 << 16


def _is_record(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("op_code"), int)


def record_problem(line: bytes) -> str | None:
    """Why a whole line of the journal is not a record, or None when it is one."""
    try:
        value = json.loads(line)
    except ValueError:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
        return "not valid JSON"
    return None if _is_record(value) else "JSON, but no Optuna journal record"


def damage_error(path: Path, line: int, problem: str) -> UserError:
    """The one-line error for a journal whose line ``line`` (counted from 1) is not a record."""
    if line == 1:
        return UserError(f"{path} is not an Optuna study journal (line 1 is {problem}): move it away, or give "
                         f"another --out or --storage")
    keep, quoted = line - 1, shlex.quote(str(path))
    return UserError(f"study journal {path} is damaged at line {line} ({problem}); to keep the {keep} lines before "
                     f"it, cut the file there: head -n {keep} {quoted} > {quoted}.cut && mv {quoted}.cut {quoted}")


def first_damage(path: Path) -> tuple[int, str] | None:
    """The first whole line of the journal that is not a record (its number and why), if any.

    A torn last line is not counted: it is what a killed writer leaves, and the next append cuts it.
    """
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            problem = record_problem(line) if line.endswith(b"\n") else None
            if problem:
                return number, problem
    return None


def _line_start(f: BinaryIO, end: int) -> int:
    """Where the line that ends at offset ``end`` begins: just after the newline before it, or 0."""
    pos = end
    while pos > 0:
        step = min(CHUNK, pos)
        f.seek(pos - step)
        found = f.read(step).rfind(b"\n")
        if found >= 0:
            return pos - step + found + 1
        pos -= step
    return 0


def _line_number(f: BinaryIO, offset: int) -> int:
    """The number (from 1) of the line that starts at ``offset``."""
    f.seek(0)
    newlines, left = 0, offset
    while left > 0:
        chunk = f.read(min(CHUNK, left))
        newlines += chunk.count(b"\n")
        left -= len(chunk)
    return newlines + 1


def _last_line(f: BinaryIO) -> tuple[int, bytes]:
    """Where the file's last line starts, and its bytes (ending in a newline unless it is torn)."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return 0, b""
    f.seek(size - 1)
    start = _line_start(f, size - 1 if f.read(1) == b"\n" else size)
    f.seek(start)
    return start, f.read()


def _check_end(f: BinaryIO, path: Path) -> int | None:
    """Raise a UserError unless the file ends in a whole record or a torn one; return where a torn
    last record starts (None when the file ends cleanly)."""
    start, line = _last_line(f)
    if line.endswith(b"\n"):
        problem = record_problem(line)
    elif line.startswith(RECORD_START) or RECORD_START.startswith(line):
        return start if line else None
    else:
        problem = "an unfinished line that is no journal record"
    if problem:  # name the first bad line: cutting the file there is what leaves whole records only
        raise damage_error(path, *(first_damage(path) or (_line_number(f, start), problem)))
    return None


def cut_torn_record(path: Path) -> None:
    """Before an append: cut a torn last record, and refuse a file that does not end in a whole record."""
    with path.open("r+b") as f:
        torn = _check_end(f, path)
        if torn is None:
            return
        size = f.seek(0, os.SEEK_END)
        f.truncate(torn)
        f.flush()
        os.fsync(f.fileno())
    log.warning("warning: study journal %s ended in a record cut short (%d bytes, left by a process killed while "
                "writing it); removed it, the records before it are kept", path, size - torn)


class _CheckedLock(JournalFileSymlinkLock):
    """Optuna's default journal lock, which once taken also checks the end of the file.

    Optuna takes this lock only to append, so the check runs exactly when no other process can be
    writing and right before this one writes, and Optuna's own append code stays in charge.
    """

    def __init__(self, path: Path, before_append: Callable[[], None]) -> None:
        super().__init__(str(path))
        self._before_append = before_append

    def acquire(self) -> bool:
        super().acquire()
        try:
            self._before_append()
        except BaseException:
            self.release()
            raise
        return True


class SafeJournalBackend(JournalFileBackend):
    """A journal file that cuts a torn last record before appending, and reports damage as a UserError
    (rather than a JSONDecodeError) without ever appending to a damaged file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.damage: UserError | None = None
        super().__init__(str(path), lock_obj=_CheckedLock(path, self._before_append))
        with path.open("rb") as f:  # Optuna's reader would skip a bad last line without a word
            _check_end(f, path)

    def _before_append(self) -> None:
        if self.damage is not None:
            raise self.damage
        cut_torn_record(self.path)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        try:
            for record in super().read_logs(log_number_from):
                if not _is_record(record):
                    raise ValueError("JSON, but no Optuna journal record")
                yield record
        except ValueError as exc:  # Optuna raises JSONDecodeError (a ValueError) for a bad line before the last
            found = first_damage(self.path)
            self.damage = (damage_error(self.path, *found) if found
                           else UserError(f"cannot read the study journal {self.path}: {exc}"))
            raise self.damage from None
