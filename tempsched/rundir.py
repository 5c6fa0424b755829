"""The run directory: atomic writes, metrics.jsonl, checkpoints and what resume needs.

Layout: ``config.toml`` (the resolved configuration), ``metrics.jsonl`` (a row per member per epoch),
``state.pt`` (the latest population state, for ``--resume``), ``best.pt`` (the best member so far),
``summary.json`` and the task's pictures. Every file is written to a temporary name in the same
folder and renamed over the old one, so a killed run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from tempsched.errors import UserError

STATE_FORMAT = "tempsched-state-1"
BEST_FORMAT = "tempsched-best-1"
CONFIG, METRICS, STATE, BEST, SUMMARY = "config.toml", "metrics.jsonl", "state.pt", "best.pt", "summary.json"


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one rename."""
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
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_torch(target: Path, obj: Any) -> None:
    with atomic_path(target) as tmp:
        torch.save(obj, tmp)


def load_torch(path: Path, expected_format: str) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only``) and check it is one of ours."""
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read checkpoint {path}: corrupt or not a tempsched file ({reason[:120]})") from None
    if not isinstance(obj, dict) or obj.get("format") != expected_format:
        raise UserError(f"{path} is not a tempsched checkpoint of the expected kind ({expected_format})")
    return obj


class RunDir:
    """One run's folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def create(self) -> None:
        """Make the folder for a new run; refuse one that already holds a run (nothing is overwritten)."""
        if self.file(CONFIG).exists() or self.file(STATE).exists() or self.file(METRICS).exists():
            raise UserError(f"{self.path} already holds a run: use --resume {self.path} or choose another --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create run directory {self.path}: {exc.strerror}") from None

    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        with self.file(METRICS).open("a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.file(METRICS)
        if not path.exists():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a kill: everything after it is from an unfinished epoch
        return rows

    def truncate_metrics(self, epochs_done: int) -> None:
        """Drop rows of epochs the saved state does not include (written just before a kill)."""
        rows = [r for r in self.read_metrics() if r.get("epoch", 0) < epochs_done]
        write_text(self.file(METRICS), "".join(json.dumps(r) + "\n" for r in rows))

    def write_json(self, name: str, obj: Any) -> None:
        write_text(self.file(name), json.dumps(obj, indent=2, default=str) + "\n")
