"""The plan API: a policy of a few lines retires members, plan mistakes are one line naming the plugin,
per-member initial temperatures, Algorithm 1's rows unchanged, old state.pt files resume."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from test_distributed import _equal

from tempsched import Copy, Keep, Preset, Retire, SelectionPolicy, UserError, hookimpl
from tempsched.config import layer
from tempsched.plugins import PluginManager
from tempsched.session import execute

RETIRE_WORST = '''
from tempsched import Keep, Preset, Retire, SelectionPolicy, hookimpl


class RetireWorst(SelectionPolicy):
    """Every epoch the member with the worst selection loss retires, until one is left."""

    name = "retire-worst"

    def plan(self, view, rng):
        ranked = view.ranked()
        return [Retire() if k == ranked[-1] and len(ranked) > 1 else Keep() for k in range(len(view.members))]


@hookimpl
def tempsched_register_selection_policies(register):
    register(RetireWorst)


@hookimpl
def tempsched_register_presets(register):
    register(Preset(name="toy-retire", description="retire the worst", task="toy", members=4,
                    assign=lambda n: ["fixed"] * n, feedback="none", selection="retire-worst",
                    tau_initial=1.0, tau_min=0.5, tau_max=4.0, tau_members=lambda n, lo, hi: [1.0, 1.5, 2.0, 3.5]))
'''


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _plugin(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)
    return module


def test_a_policy_of_a_few_lines_retires_the_worst_member_every_epoch(manager: PluginManager, tmp_path: Path) -> None:
    lines = RETIRE_WORST.strip().splitlines()
    assert len(lines) < 25 and all(ln.startswith("from tempsched import") for ln in lines if "import" in ln)
    manager.register(_plugin("retire_worst", RETIRE_WORST), name="retire-worst")
    config = layer(manager.registry, {"plugin": "toy-retire", "epochs": 4, "task_options": {"batch_size": 32}})
    summary = execute(config, manager, tmp_path / "run")
    rows = _rows(tmp_path / "run")
    assert [sum(r["epoch"] == e for r in rows) for e in range(4)] == [4, 3, 2, 1]
    assert summary.member_epochs == 10
    for epoch in range(3):
        mine = [r for r in rows if r["epoch"] == epoch]
        (gone,) = [r for r in mine if r.get("retired")]
        assert gone["loss"] == max(r["loss"] for r in mine)
        assert not any(r["member"] == gone["member"] for r in rows if r["epoch"] > epoch)
    # Nobody copies: best.pt, the summary and the policy follow the member left, on its own lineage.
    (last,) = [r for r in rows if r["epoch"] == 3]
    assert summary.best_member == last["member"] and summary.best_tau == last["tau_end"]
    policy = json.loads((tmp_path / "run" / "policy.json").read_text())["epochs"]
    assert [p["member"] for p in policy] == [last["member"]] * 4


class _BadPlan(SelectionPolicy):
    name = "bad-plan"
    make: Any = None

    def plan(self, view, rng):  # type: ignore[no-untyped-def]
        return type(self).make(view)


@pytest.mark.parametrize("make,needle", [
    (lambda v: [Keep()] * (len(v.members) - 1), "returned 2 actions for 3 members"),
    (lambda v: ["keep"] * len(v.members), "not Keep, Copy or Retire"),
    (lambda v: [Retire() if k == v.best else Keep() for k in range(3)], "does not keep member"),
    (lambda v: [Keep() if k == v.best else Copy(k) for k in range(3)], "not another member's index"),
    (lambda v: [Keep() if k == v.best else Copy(v.best, float("nan")) for k in range(3)], "not a finite number"),
    (lambda v: [Keep() if k == v.best else Copy(next(j for j in range(3) if j not in (k, v.best))) for k in range(3)],
     "does not keep its own state"),
])
def test_a_plan_the_engine_cannot_carry_out_is_one_line_naming_the_plugin(manager: PluginManager, tmp_path: Path,
                                                                          make: Any, needle: str) -> None:
    policy = type("P", (_BadPlan,), {"make": staticmethod(make)})
    plugin = types.SimpleNamespace(tempsched_register_selection_policies=hookimpl(lambda register: register(policy)))
    manager.register(plugin, name="bad-plugin")
    config = layer(manager.registry, {"plugin": "toy-paper", "members": 3, "epochs": 1, "selection": "bad-plan"})
    with pytest.raises(UserError, match="plugin 'bad-plugin' failed") as caught:
        execute(config, manager, tmp_path / "run")
    assert needle in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("taus,needle", [
    ([1.0, 2.0], "tau.members lists 2 temperatures for 5 members"),
    ([1.0, 2.0, 3.0, 4.5, 1.0], "member 4 tau 4.5, outside [tau.min, tau.max] = [0.5, 4.0]"),
    ([1.0, 2.0, float("nan"), 1.0, 1.0], "member 3 tau nan"),
])
def test_per_member_initial_taus_are_checked(manager: PluginManager, taus: list[float], needle: str) -> None:
    with pytest.raises(UserError, match="tau.members") as caught:
        layer(manager.registry, {"plugin": "toy-paper", "tau": {"members": taus}})
    assert needle in str(caught.value)


def test_members_start_at_their_own_tau(manager: PluginManager, tmp_path: Path) -> None:
    taus = [0.5, 1.0, 2.0, 3.0, 4.0]
    config = layer(manager.registry, {"plugin": "toy-paper", "epochs": 1, "tau": {"members": taus}})
    assert config.tau.members == taus and "members" in config.to_dict()["tau"]
    execute(config, manager, tmp_path / "run")
    assert [r["tau"] for r in _rows(tmp_path / "run")] == taus
    assert "members" not in layer(manager.registry, {"plugin": "toy-paper"}).to_dict()["tau"]  # fingerprints kept


def test_algorithm_1_rows_carry_no_plan_keys_and_a_policy_with_only_choose_still_works(
        manager: PluginManager, tmp_path: Path) -> None:
    class Worst(SelectionPolicy):  # a policy written before plans: names the best, the engine does the rest
        name = "worst"

        def choose(self, losses):  # type: ignore[no-untyped-def]
            return max(range(len(losses)), key=lambda k: losses[k])

    plugin = types.SimpleNamespace(tempsched_register_selection_policies=hookimpl(lambda register: register(Worst)))
    manager.register(plugin, name="worst")
    config = layer(manager.registry, {"plugin": "toy-paper", "epochs": 2, "selection": "worst"})
    execute(config, manager, tmp_path / "run")
    rows = _rows(tmp_path / "run")
    assert not any({"copied_from", "explored", "retired"} & set(r) for r in rows)
    for epoch in range(2):
        mine = [r for r in rows if r["epoch"] == epoch]
        assert next(r for r in mine if r["best"])["loss"] == max(r["loss"] for r in mine)
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)["population"]
    assert len(state["weights"]) == 1  # every member holds the chosen state: stored once


def _old_layout(path: Path) -> None:
    """Rewrite a state.pt as runs wrote it before plans: one shared state, no history, generator or alive flags."""
    state = torch.load(path, weights_only=True)
    pop = state["population"]
    (held,) = pop.pop("weights")
    pop["shared"] = {"model": held["model"], "optimizer": held["optimizer"]}
    del pop["rng"], pop["history"]
    for member in pop["members"]:
        del member["alive"], member["weights"]
    torch.save(state, path)


def test_a_state_pt_from_before_plans_resumes_bit_exactly(manager: PluginManager, tmp_path: Path) -> None:
    def config(epochs: int):  # type: ignore[no-untyped-def]
        return layer(manager.registry, {"plugin": "toy-paper", "epochs": epochs, "task_options": {"batch_size": 16}})

    execute(config(3), manager, tmp_path / "straight")
    execute(config(2), manager, tmp_path / "old")
    _old_layout(tmp_path / "old" / "state.pt")
    execute(config(3), manager, tmp_path / "old", resume=True)
    a, b = (tmp_path / "straight", tmp_path / "old")
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
    states = [torch.load(run / "state.pt", weights_only=True)["population"] for run in (a, b)]
    # The old file held no views: the resumed history starts at the resume (Algorithm 1's plan never reads it).
    assert len(states[0].pop("history")) == 3 and len(states[1].pop("history")) == 1
    assert _equal(states[0], states[1])
    assert _equal(*(torch.load(run / "best.pt", weights_only=True)["model"] for run in (a, b)))


class _FirstThenSecond(SelectionPolicy):
    """Names member 1 the best in epoch 0 and member 2 afterwards; nobody copies in epoch 0, and member 1
    takes member 2's state after epoch 1, so the line that set the run's lowest loss dies out."""

    name = "first-then-second"

    def __init__(self) -> None:
        self.calls = 0

    def choose(self, losses):  # type: ignore[no-untyped-def]
        self.calls += 1
        return 0 if self.calls == 1 else 1

    def plan(self, view, rng):  # type: ignore[no-untyped-def]
        return [Keep(), Keep()] if view.epoch == 0 else [Copy(1), Keep()]


def test_best_pt_follows_the_final_best_members_lineage(manager: PluginManager, tmp_path: Path) -> None:
    plugin = types.SimpleNamespace(
        tempsched_register_selection_policies=hookimpl(lambda register: register(_FirstThenSecond)),
        tempsched_register_presets=hookimpl(lambda register: register(Preset(
            name="toy-dead-line", description="the lowest loss on a line that dies", task="toy", members=2,
            assign=lambda n: ["fixed"] * n, feedback="none", selection="first-then-second", tau_initial=1.0,
            tau_min=0.5, tau_max=10.0, tau_members=lambda n, lo, hi: [2.0, 10.0]))))
    manager.register(plugin, name="dead-line")
    config = layer(manager.registry, {"plugin": "toy-dead-line", "epochs": 2})
    summary = execute(config, manager, tmp_path / "run")
    rows = _rows(tmp_path / "run")
    # The toy's loss grows with (tau - 2)^2: member 1's epoch-0 loss is the run's lowest, but member 1's line
    # ended when it copied member 2, whose line the policy follows; best.pt and the summary follow it too.
    assert min(rows, key=lambda r: r["loss"])["member"] == 1
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    (last,) = [r for r in rows if r["epoch"] == 1 and r["member"] == 2]
    assert (best["epoch"], best["member"], best["loss"]) == (1, 2, last["loss"])
    assert (summary.best_member, summary.best_epoch, summary.best_tau) == (2, 1, last["tau_end"])
    policy = json.loads((tmp_path / "run" / "policy.json").read_text())["epochs"]
    assert [p["member"] for p in policy] == [2, 2]
