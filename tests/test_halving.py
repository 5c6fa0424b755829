"""``halving``: the worse half retires at geometric rungs; a retired member costs nothing and writes no more
rows; the member-epochs follow the formula; bit-identical over processes and across a resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from plan_runs import EPOCHS, PlanRuns, check_same, plan_runs, rows

from tempsched.config import layer
from tempsched.plugins import PluginManager
from tempsched.session import execute
from tempsched_plugins.halving import rungs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> PlanRuns:
    return plan_runs("toy-halving", tmp_path_factory.mktemp("halving"))


def test_halving_rows_are_the_same_over_two_processes_and_after_a_resume(runs: PlanRuns) -> None:
    written = rows(runs.straight)
    # Rungs after 1, 2 and 3 of 6 epochs: 8 -> 4 -> 2 -> 1 members.
    assert [sum(r["epoch"] == e for r in written) for e in range(EPOCHS)] == [8, 4, 2, 1, 1, 1]
    retired = [r for r in written if r.get("retired")]
    assert [r["epoch"] for r in retired] == [0] * 4 + [1] * 2 + [2]
    for r in retired:  # the worse half of its epoch, and never a row after its retirement row
        epoch = [q for q in written if q["epoch"] == r["epoch"]]
        assert r["loss"] >= max(q["loss"] for q in epoch if not q.get("retired"))
        assert not any(q["member"] == r["member"] and q["epoch"] > r["epoch"] for q in written)
    assert all(r.get("copied_from") is None for r in written)  # nobody copies under halving
    check_same(runs)


def test_member_epochs_follow_the_geometric_rungs(manager: PluginManager, tmp_path: Path) -> None:
    assert rungs(8, 8) == [1, 2, 4] and rungs(8, 6) == [1, 2, 3] and rungs(5, 8) == [1, 2, 4] and rungs(1, 8) == []
    config = layer(manager.registry, {"plugin": "toy-halving", "epochs": 8, "task_options": {"batch_size": 32}})
    summary = execute(config, manager, tmp_path / "run")
    epochs = 8
    assert summary.member_epochs == 8 * epochs / 8 + 4 * epochs / 8 + 2 * epochs / 4 + epochs / 2 == 2.5 * epochs
    assert len(rows(tmp_path / "run")) == summary.member_epochs
