"""Rows the engine owns and members that diverge: a feedback rule's state cannot replace a row's loss, a
non-finite loss never wins selection nor reaches a feedback rule, a diverged member goes on from the chosen
member (in one process or two, and across a resume), and a population that diverged whole stops with one line.

The toy task here diverges for real: a member that trains above ``diverge_above`` has its weights set to NaN
after its first step, so its later steps fill Adam's moments with NaN too, as a blown-up model would.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, MutableMapping, Sequence

import pytest
import torch
from test_cli import cli
from test_distributed import _same_run

import toy
from tempsched import EpochContext, FeedbackRule, Param, Preset, Schedule, hookimpl
from tempsched import distributed, session
from tempsched.config import RunConfig, layer
from tempsched.plugins import PluginManager
from tempsched.rundir import decode_row, encode_row
from tempsched_plugins.paper_default import MinLoss


class DivergingToy(toy.ToyTask):
    """The toy regression, whose model blows up (NaN weights) when it trains above ``diverge_above``."""

    name = "diverging-toy"
    params = {**toy.ToyTask.params, "diverge_above": Param(2.5, "tau above which a member's weights become NaN")}

    def __init__(self, env: Any, batch_size: int, diverge_above: float) -> None:
        super().__init__(env, batch_size)
        self.diverge_above = diverge_above

    def train_step(self, model, optimizer, batch, tau, generator) -> float:
        loss = super().train_step(model, optimizer, batch, tau, generator)
        if tau > self.diverge_above:
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(math.nan)
        return loss


class Climb(Schedule):
    """tau + 1 per epoch: from 1.0, a member trains at 3.0 in its third epoch and diverges there."""

    name = "climb"

    def on_epoch(self, tau: float, ctx: EpochContext) -> float:
        return tau + 1.0


class KeepsLoss(FeedbackRule):
    """No feedback; keeps the mean of the member's losses as ``state["loss"]``, the name of the row's own
    selection loss, and refuses a non-finite loss (the engine must never pass one)."""

    name = "keeps-loss"

    def delta(self, state: MutableMapping[str, Any], loss: float, best_loss: float) -> float:
        if not (math.isfinite(loss) and math.isfinite(best_loss)):
            raise AssertionError(f"called with loss {loss} and best loss {best_loss}")
        seen = state.get("seen", 0)
        state["loss"] = (state.get("loss", 0.0) * seen + loss) / (seen + 1)
        state["seen"] = seen + 1
        return 0.0


class Recording(MinLoss):
    """min-loss, recording the losses it is given (class-level: the engine builds the instance)."""

    name = "recording-min-loss"
    given: list[list[float]] = []

    def choose(self, losses: Sequence[float]) -> int:
        Recording.given.append(list(losses))
        return super().choose(losses)


def _preset(name: str, schedules: list[str]) -> Preset:
    return Preset(name=name, description="a toy population whose climbing members diverge", task="diverging-toy",
                  members=len(schedules), assign=lambda n: schedules[:n], feedback="keeps-loss",
                  selection="recording-min-loss", tau_initial=1.0, tau_min=0.5, tau_max=4.0)


@hookimpl
def tempsched_register_tasks(register: Any) -> None:
    register(DivergingToy)


@hookimpl
def tempsched_register_schedules(register: Any) -> None:
    register(Climb)


@hookimpl
def tempsched_register_feedback_rules(register: Any) -> None:
    register(KeepsLoss)


@hookimpl
def tempsched_register_selection_policies(register: Any) -> None:
    register(Recording)


@hookimpl
def tempsched_register_presets(register: Any) -> None:
    # Member 1 climbs and diverges; it comes first, where min-loss used to pick a NaN (every comparison
    # with NaN is false). With two processes it is rank 0's, and the best member is rank 1's.
    register(_preset("diverging", ["climb", "fixed", "linear-down"]))
    register(_preset("all-diverging", ["climb", "climb"]))


def diverging_manager() -> PluginManager:
    """The shipped plugins and this module's (a module-level function: processes of a --procs run call it)."""
    manager = PluginManager()
    manager.register(sys.modules[__name__], name="diverging")
    return manager


def _config(manager: PluginManager, preset: str = "diverging", epochs: int = 5,
            diverge_above: float = 2.5) -> RunConfig:
    return layer(manager.registry, {"plugin": preset, "epochs": epochs, "seed": 1, "performance": {"threads": 1},
                                    "task_options": {"batch_size": 16, "diverge_above": diverge_above}})


def _rows(run: Path) -> list[dict[str, Any]]:
    return [decode_row(line.encode()) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _finite_state(run: Path) -> bool:
    """Every weight and Adam tensor in the run's state.pt and best.pt is finite."""
    state = torch.load(run / "state.pt", weights_only=True)
    tensors = list(torch.load(run / "best.pt", weights_only=True)["model"].values())
    for held in state["population"]["weights"]:  # each distinct member state once
        tensors += list(held["model"].values())
        tensors += [t for entries in held["optimizer"]["state"].values() for t in entries.values() if torch.is_tensor(t)]
    return bool(tensors) and all(bool(torch.isfinite(t).all()) for t in tensors)


@dataclass(frozen=True)
class Straight:
    """Five epochs in one process (member 1 diverges in epochs 3 and 5)."""

    run: Path
    stderr: str
    given: list[list[float]]  # the losses the selection policy was given, epoch by epoch


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Straight:
    run = tmp_path_factory.mktemp("divergence") / "straight"
    Recording.given.clear()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        manager = diverging_manager()
        session.execute(_config(manager), manager, run)
    return Straight(run, stderr.getvalue(), list(Recording.given))


def test_a_feedback_rule_keeping_state_loss_does_not_replace_the_rows_loss(tmp_path: Path) -> None:
    manager, run = diverging_manager(), tmp_path / "run"
    Recording.given.clear()
    best_losses: list[float] = []  # what tempsched tune reports and optimises
    session.execute(_config(manager, epochs=3, diverge_above=100.0), manager, run,
                     on_epoch=lambda record: best_losses.append(record.best_row["loss"]))
    rows = _rows(run)
    assert [[r["loss"] for r in rows if r["epoch"] == e] for e in range(3)] == Recording.given  # selection's losses
    assert best_losses == [min(losses) for losses in Recording.given]
    for member in (1, 2, 3):  # the rule's own "loss" (a running mean) is kept in its own field
        mine = [r["loss"] for r in rows if r["member"] == member]
        assert [r["feedback"]["loss"] for r in rows if r["member"] == member] == pytest.approx(
            [sum(mine[:k + 1]) / (k + 1) for k in range(3)])
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["loss"] == min(best_losses) == json.loads((run / "summary.json").read_text())["best_loss"]


def test_a_nan_never_wins_and_the_diverged_member_goes_on_from_the_chosen_one(straight: Straight) -> None:
    run, stderr = straight.run, straight.stderr
    rows = _rows(run)
    assert all(math.isfinite(x) for losses in straight.given for x in losses)  # the policy saw finite losses
    resets = [r for r in rows if "reset" in r]
    assert [(r["epoch"], r["member"]) for r in resets] == [(2, 1), (4, 1)]
    for r in resets:
        best = next(b for b in rows if b["epoch"] == r["epoch"] and b["best"])
        assert r["reset"] == "non-finite loss" and not r["best"] and math.isnan(r["loss"])
        assert best["member"] != 1 and math.isfinite(best["loss"])
        # The chosen member's temperature, then its own schedule's step (climb: + 1), and a fresh feedback state.
        assert r["feedback"] == {} and r["delta_tau"] == 0.0
        assert r["tau_strategy"] == best["tau_end"] + 1.0 and r["tau_next"] == r["tau_strategy"]
        after = next((q for q in rows if q["epoch"] == r["epoch"] + 1 and q["member"] == 1), None)
        assert after is None or (after["tau"] == r["tau_next"] and math.isfinite(after["loss"]))
    assert _finite_state(run)  # weights and Adam moments of every member: the chosen member's
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: member 1 (climb) diverged in epoch {e} (non-finite loss); it goes on from "
                        f"member {b}'s weights, optimizer state and tau"
                        for e, b in ((3, _best_member(rows, 2)), (5, _best_member(rows, 4)))]


def _best_member(rows: list[dict[str, Any]], epoch: int) -> int:
    return next(r["member"] for r in rows if r["epoch"] == epoch and r["best"])


def test_a_resume_after_a_reset_is_bit_exact(straight: Straight, tmp_path: Path) -> None:
    manager = diverging_manager()
    run = tmp_path / "resumed"
    session.execute(_config(manager, epochs=3), manager, run)  # ends with epoch 3's reset
    assert [r["epoch"] for r in _rows(run) if "reset" in r] == [2]
    session.execute(_config(manager), manager, run, resume=True)
    _same_run(straight.run, run)


def _rank_main(argv: list[str]) -> None:
    """One process of a two-process run of the diverging preset, as ``tempsched run --procs 2`` starts it."""
    manager = diverging_manager()
    config = _config(manager)
    with distributed.joined(float(argv[1])) as group:
        assert group is not None
        if group.leads:
            session.execute(config, manager, Path(argv[0]), group=group)
        else:
            session.follow(config, manager, group, resume=False)


def test_two_processes_reset_the_diverged_member_as_one_does(straight: Straight, tmp_path: Path) -> None:
    run = tmp_path / "two"
    assert distributed.launch(_rank_main, [str(run), "60"], procs=2, timeout=60.0) == 0
    _same_run(straight.run, run)  # member 1 (rank 0) took the state rank 1 sent


def test_every_member_diverged_is_one_line_and_keeps_the_last_good_checkpoint(monkeypatch, tmp_path: Path,
                                                                            capsys) -> None:
    monkeypatch.setattr("tempsched.cli.run.PluginManager", diverging_manager)
    run = tmp_path / "run"
    code, _, stderr = cli("run", "--plugin", "all-diverging", "--epochs", "4", "--batch-size", "16", "--seed", "1",
                          "--threads", "1", "--out", str(run), capsys=capsys)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, stderr
    assert lines[0] == (f"error: every member's loss was non-finite in epoch 3 (all diverged); {run / 'state.pt'} "
                        "keeps epoch 2, the last good checkpoint. A resume would diverge again: start a new run "
                        "with a lower learning rate or narrower tau bounds (tau.min, tau.max)")
    assert torch.load(run / "state.pt", weights_only=True)["population"]["epoch"] == 2
    assert sorted({r["epoch"] for r in _rows(run)}) == [0, 1] and _finite_state(run)


def test_nonfinite_feedback_state_is_written_as_null_and_read_back() -> None:
    row = {"epoch": 0, "loss": 1.5, "feedback": {"avg": math.inf, "seen": 2}, "train_loss": math.nan}
    line = encode_row(row)
    assert json.loads(line)["feedback"] == {"avg": None, "seen": 2}
    back = decode_row(line.encode())
    assert back["feedback"]["avg"] == math.inf and math.isnan(back["train_loss"]) and back["loss"] == 1.5


def test_nonfinite_values_inside_lists_are_written_as_null_and_read_back() -> None:
    """A feedback rule may keep a list (a window of recent losses); its non-finite items are named by index."""
    row = {"epoch": 0, "loss": 1.5, "feedback": {"window": [1.0, -math.inf, {"x": math.nan}], "seen": (2, 3)}}
    line = encode_row(row)
    assert json.loads(line)["feedback"] == {"window": [1.0, None, {"x": None}], "seen": [2, 3]}
    assert json.loads(line)["nonfinite"] == {"feedback": {"window": {"1": "-inf", "2": {"x": "nan"}}}}
    back = decode_row(line.encode())
    assert back["feedback"]["window"][:2] == [1.0, -math.inf] and math.isnan(back["feedback"]["window"][2]["x"])
    with pytest.raises(ValueError, match="names item '5'"):
        decode_row(line.replace('"1": "-inf"', '"5": "-inf"').encode())
