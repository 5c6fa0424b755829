"""Every run draws trajectories.png; the TensorBoard logger is inert unless enabled, logs the metrics rows
when enabled, and is one line when enabled without TensorBoard installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import toy
from tempsched.config import layer
from tempsched.errors import UserError
from tempsched.session import execute
from tempsched_plugins.tensorboard import ENV
from test_cli import TINY, _one_line_error, cli


def _toy_run(run_dir: Path) -> list[dict]:
    manager = toy.toy_manager()
    execute(layer(manager.registry, {"plugin": "toy-paper", "epochs": 3, "seed": 1}), manager, run_dir)
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_every_run_draws_its_trajectories(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    _toy_run(tmp_path / "run")
    assert (tmp_path / "run" / "trajectories.png").read_bytes()[:4] == b"\x89PNG"
    files = json.loads((tmp_path / "run" / "summary.json").read_text())["files"]
    assert files["trajectories"] == "trajectories.png" and files["policy"] == "policy.json"
    assert not (tmp_path / "run" / "tensorboard").exists()  # the logger is off unless asked for


def test_tensorboard_logs_each_member(tmp_path: Path, monkeypatch) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    monkeypatch.setenv(ENV, "1")
    rows = _toy_run(tmp_path / "run")
    folder = tmp_path / "run" / "tensorboard"
    assert list(folder.glob("events.out.tfevents.*"))
    events = event_accumulator.EventAccumulator(str(folder))
    events.Reload()
    for member in (1, 5):
        logged = [(e.step, e.value) for e in events.Scalars(f"tau/member {member}")]
        assert logged == [(r["epoch"], pytest.approx(r["tau"])) for r in rows if r["member"] == member]
    assert [e.value for e in events.Scalars("best/member")] == [r["member"] for r in rows if r["best"]]
    assert {"loss/member 3", "train_loss/member 3", "best/loss", "test/weight"} <= set(events.Tags()["scalars"])


def test_tensorboard_enabled_but_missing_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(UserError, match=r"pip install 'tempsched\[tensorboard\]'"):
        _toy_run(tmp_path / "toy")
    code, _, stderr = cli("run", "--epochs", "1", *TINY, "--out", str(tmp_path / "run"), capsys=capsys)
    _one_line_error(code, stderr, "TensorBoard is not installed")
