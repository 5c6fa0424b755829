"""``pbt``: exploit and explore in one population, bit-identical over processes and across a resume; it finds
the toy task's best temperature from a start far from it; members that diverged rank last."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from plan_runs import EPOCHS, PlanRuns, check_same, plan_runs, rows

from tempsched import Copy, Keep, MemberView, PopulationView
from tempsched.config import layer
from tempsched.plugins import PluginManager
from tempsched.session import execute
from tempsched.spec import saved_config
from tempsched.trajectories import read_policy, replay_spec
from tempsched_plugins.pbt import PopulationBasedTraining


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> PlanRuns:
    return plan_runs("toy-pbt", tmp_path_factory.mktemp("pbt"))


def test_pbt_rows_are_the_same_over_two_processes_and_after_a_resume(runs: PlanRuns) -> None:
    written = rows(runs.straight)
    copies = [r for r in written if r["copied_from"] is not None]
    assert copies and all(r["explored"] is not None for r in copies)  # every exploit explores
    assert len(written) == 8 * EPOCHS and not any(r.get("retired") for r in written)
    # The two processes own members 1-4 and 5-8: some copies crossed from one process to the other.
    assert any((r["member"] <= 4) != (r["copied_from"] <= 4) for r in copies)
    # state.pt holds each distinct member state once: a copier shares its source's entry.
    state = torch.load(runs.straight / "state.pt", weights_only=True)["population"]
    copiers = [r for r in copies if r["epoch"] == EPOCHS - 1]
    assert copiers and len(state["weights"]) == 8 - len(copiers)
    check_same(runs)


def test_each_exploit_takes_the_top_quarter_and_explores_within_the_bounds(runs: PlanRuns) -> None:
    written = rows(runs.straight)
    for epoch in range(EPOCHS):
        mine = sorted((r for r in written if r["epoch"] == epoch), key=lambda r: (r["loss"], r["member"]))
        top, bottom = {r["member"] for r in mine[:2]}, {r["member"] for r in mine[-2:]}  # ceil(0.25 * 8) = 2
        assert {r["member"] for r in mine if r["copied_from"] is not None} == bottom
        for r in mine:
            if r["copied_from"] is not None:
                source = next(q for q in mine if q["member"] == r["copied_from"])
                assert r["copied_from"] in top and 0.5 <= r["explored"] <= 4.0
                assert r["tau_next"] == r["explored"]
                resampled = not any(math.isclose(r["explored"], min(4.0, max(0.5, source["tau_next"] * f)))
                                    for f in (1.2, 0.8))
                assert resampled or r["explored"] != source["tau_next"]


def test_pbt_finds_the_best_tau_from_a_far_start(manager: PluginManager, tmp_path: Path) -> None:
    """The toy's selection loss adds (tau - 2)^2; every member starts at 0.55, 1.45 away from it."""
    config = layer(manager.registry, {"plugin": "toy-pbt", "epochs": 15, "tau": {"members": [0.55] * 8},
                                      "task_options": {"batch_size": 32}})
    summary = execute(config, manager, tmp_path / "run")
    assert all(r["tau"] == 0.55 for r in rows(tmp_path / "run") if r["epoch"] == 0)
    assert abs(summary.best_tau - 2.0) < 0.15  # measured: within 0.08 for seeds 0-5


def _view(losses: list[float]) -> PopulationView:
    members = tuple(MemberView(k + 1, "fixed", loss, loss, 1.0, 1.0, 4, True) for k, loss in enumerate(losses))
    finite = [k for k, loss in enumerate(losses) if math.isfinite(loss)]
    return PopulationView(0, 5, min(finite, key=lambda k: losses[k]), 0.5, 4.0, members)


def test_members_whose_loss_is_not_finite_rank_last_and_are_the_ones_that_copy() -> None:
    view = _view([math.nan, 1.0, 3.0, 1.0, math.inf, 2.0, 0.5, 4.0])
    assert view.ranked() == [6, 1, 3, 5, 2, 7, 0, 4]  # by loss, ties by index, the non-finite last by index
    plan = PopulationBasedTraining(interval=1, quantile=0.25, resample_probability=0.25).plan(view, random.Random(0))
    assert [k for k, a in enumerate(plan) if isinstance(a, Copy)] == [0, 4]
    assert all(a.source in (6, 1) for a in plan if isinstance(a, Copy))
    interval = PopulationBasedTraining(interval=2, quantile=0.25, resample_probability=0.25)
    assert all(isinstance(a, Keep) for a in interval.plan(view, random.Random(0)))  # epoch 1 of every 2: no exploit


def test_the_policy_and_replay_follow_the_final_best_members_lineage(runs: PlanRuns, manager: PluginManager,
                                                                      tmp_path: Path) -> None:
    written = rows(runs.straight)
    at = {(r["epoch"], r["member"]): r for r in written}
    member, lineage = next(r["member"] for r in written if r["epoch"] == EPOCHS - 1 and r["best"]), []
    for epoch in range(EPOCHS - 1, -1, -1):  # back through the copies: whose state each ancestor went on from
        if epoch < EPOCHS - 1:
            member = at[(epoch, member)]["copied_from"] or member
        lineage.insert(0, member)
    policy = read_policy(runs.straight)
    assert [p["member"] for p in policy] == lineage
    assert [p["tau"] for p in policy] == [at[(e, m)]["tau"] for e, m in enumerate(lineage)]
    assert json.loads((runs.straight / "lineage.json").read_text())["best_lineage"] == lineage
    execute(replay_spec(runs.straight, saved_config(runs.straight, manager.registry)).resolve(manager.registry), manager,
            tmp_path / "replayed")
    assert [r["tau"] for r in rows(tmp_path / "replayed")] == [p["tau"] for p in policy]
