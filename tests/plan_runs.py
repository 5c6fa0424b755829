"""Runs of the toy task under a plan (``toy-pbt``, ``toy-halving``): straight in one process, cut off after
epoch 3 and resumed over two processes, and over two processes from the start, for the bit-identity tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import python_path
from test_distributed import _same_run
from toy import toy_manager

from tempsched.config import layer
from tempsched.session import execute

TESTS = Path(__file__).parent
EPOCHS, CUT = 6, 3
ARGS = ["--epochs", str(EPOCHS), "--batch-size", "16", "--threads", "1"]


def rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _toy_env(folder: Path) -> dict[str, str]:
    """The environment under which a ``tempsched`` subprocess loads tests/toy.py as the plugin ``toy``, through
    an entry point declared in ``folder`` (as an installed package would)."""
    dist = folder / "tempsched_test_toy-0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tempsched-test-toy\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[tempsched]\ntoy = toy\n")
    return {**os.environ, "PYTHONPATH": python_path(folder, TESTS), "TEMPSCHED_PLUGINS": "toy"}


def tempsched(folder: Path, *args: str) -> None:
    """``tempsched ARGS`` in a subprocess that loads the toy plugin; it must succeed."""
    done = subprocess.run([sys.executable, "-m", "tempsched", *args], env=_toy_env(folder), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr


class _Cut(Exception):
    """Stops a run after epoch ``CUT``, as a kill between two epochs would."""


@dataclass(frozen=True)
class PlanRuns:
    straight: Path  # EPOCHS epochs in this process
    resumed: Path  # CUT epochs in this process, the rest resumed with --procs 2
    two: Path  # EPOCHS epochs with --procs 2


def plan_runs(preset: str, root: Path) -> PlanRuns:
    manager = toy_manager()
    config = layer(manager.registry, {"plugin": preset, "epochs": EPOCHS, "task_options": {"batch_size": 16},
                                      "performance": {"threads": 1}})
    runs = PlanRuns(root / "straight", root / "resumed", root / "two")
    execute(config, manager, runs.straight)

    def cut(record: Any) -> None:
        if record.epoch + 1 == CUT:
            raise _Cut

    try:
        execute(config, manager, runs.resumed, on_epoch=cut)
    except _Cut:
        pass
    assert {r["epoch"] for r in rows(runs.resumed)} == set(range(CUT))
    tempsched(root, "run", "--resume", str(runs.resumed), "--procs", "2", "--threads", "1")
    tempsched(root, "run", "--plugin", preset, *ARGS, "--procs", "2", "--out", str(runs.two))
    return runs


def check_same(runs: PlanRuns) -> None:
    """Byte-equal rows, equal best.pt weights and population state, whatever the processes and the cut."""
    _same_run(runs.straight, runs.two)
    _same_run(runs.straight, runs.resumed)
