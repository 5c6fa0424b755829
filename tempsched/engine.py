"""The population and one epoch of the paper's Algorithm 1, generic over the task and the parts.

Per epoch: every member trains on the same batches at its own temperature; each member's selection
loss is computed; the selection policy names the best; the feedback rule turns each loss gap into a
temperature change; each member's schedule takes its epoch step; the results are clamped; then every
member takes the best member's weights and optimizer state while keeping its own temperature,
schedule and feedback state.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from tempsched.steppers import LoopStepper, Stepper
from tempsched.parts import EpochContext, FeedbackRule, Schedule, SelectionPolicy, StepContext
from tempsched.task import Task


@dataclass
class Member:
    """One member: a model, its optimizer, its noise generator and its temperature state."""

    index: int  # 1-based, as in the paper
    strategy: str
    schedule: Schedule
    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    tau: float
    feedback_state: dict[str, Any] = field(default_factory=dict)
    steps: int = 0


@dataclass(frozen=True)
class EpochResult:
    """What one epoch did: a row per member and where the time went."""

    epoch: int
    best: int  # 0-based
    rows: list[dict[str, Any]]
    train_seconds: float
    eval_seconds: float
    engine_seconds: float


def clamp(tau: float, tau_min: float, tau_max: float) -> float:
    """Keep a temperature inside [tau_min, tau_max] (Algorithm 2 line 14, Algorithm 3 line 12)."""
    return max(tau_min, min(tau, tau_max))


def copy_member_state(src: Member, dst: Member) -> None:
    """Give ``dst`` the weights and optimizer state of ``src``, in place and without aliasing.

    Adam's moments travel with the weights: a member that took the best weights but kept its own
    moments would take its next steps with statistics of weights it no longer has.
    """
    with torch.no_grad():
        for p_dst, p_src in zip(dst.model.parameters(), src.model.parameters(), strict=True):
            p_dst.copy_(p_src)
        for b_dst, b_src in zip(dst.model.buffers(), src.model.buffers(), strict=True):
            b_dst.copy_(b_src)
    for g_dst, g_src in zip(dst.optimizer.param_groups, src.optimizer.param_groups, strict=True):
        for key, value in g_src.items():
            if key != "params":
                g_dst[key] = copy.deepcopy(value)
        for p_dst, p_src in zip(g_dst["params"], g_src["params"], strict=True):
            src_state = src.optimizer.state.get(p_src)
            if not src_state:
                dst.optimizer.state.pop(p_dst, None)
                continue
            dst_state = dst.optimizer.state[p_dst]
            for key, value in src_state.items():
                if torch.is_tensor(value):
                    held = dst_state.get(key)
                    if torch.is_tensor(held) and held.shape == value.shape and held.dtype == value.dtype:
                        held.copy_(value)
                    else:
                        dst_state[key] = value.clone()
                else:
                    dst_state[key] = copy.deepcopy(value)


class Population:
    """n members trained side by side; ``run_epoch`` is one pass of Algorithm 1."""

    def __init__(self, task: Task, members: Sequence[Member], feedback: FeedbackRule, selection: SelectionPolicy,
                 tau_min: float, tau_max: float, select_on: str = "val", stepper: Stepper | None = None) -> None:
        self.task = task
        self.stepper = stepper or LoopStepper(task)
        self.members = list(members)
        self.feedback = feedback
        self.selection = selection
        self.tau_min = tau_min
        self.tau_max = tau_max
        self.select_on = select_on
        self.epoch = 0  # epochs completed

    def run_epoch(self) -> EpochResult:
        """Train, evaluate, select, adjust temperatures and share the best member's state."""
        epoch = self.epoch
        members = self.members
        tau_used = [m.tau for m in members]
        sums = [0.0] * len(members)
        batches = 0
        train_seconds = 0.0  # the members' own steps; batch preparation and schedules count as engine time
        t0 = time.perf_counter()
        for batch in self.task.batches(epoch):
            batches += 1
            t_step = time.perf_counter()
            step_losses = self.stepper(members, batch)
            train_seconds += time.perf_counter() - t_step
            for k, m in enumerate(members):
                sums[k] += step_losses[k]
                m.steps += 1
                if m.schedule.per_step:
                    ctx = StepContext(member=m.index, epoch=epoch, step=m.steps)
                    m.tau = clamp(m.schedule.on_step(m.tau, ctx), self.tau_min, self.tau_max)
        t1 = time.perf_counter()
        train_losses = [s / max(batches, 1) for s in sums]
        if self.select_on == "train":
            losses = train_losses
        else:
            losses = [self.task.evaluate(m.model, m.tau) for m in members]
        t2 = time.perf_counter()

        best = self.selection.choose(losses)
        best_loss = losses[best]
        rows: list[dict[str, Any]] = []
        for k, m in enumerate(members):
            # The best member sees no gap, so a patience rule resets its counter (Algorithm 3 line 10).
            delta = self.feedback.delta(m.feedback_state, losses[k], best_loss)
            tau_end = m.tau
            ctx = EpochContext(member=m.index, epoch=epoch)
            tau_strategy = clamp(m.schedule.on_epoch(tau_end, ctx), self.tau_min, self.tau_max)
            m.tau = clamp(tau_strategy + delta, self.tau_min, self.tau_max)
            rows.append({
                "epoch": epoch, "member": m.index, "strategy": m.strategy,
                "tau": tau_used[k], "tau_end": tau_end,
                "train_loss": train_losses[k], "loss": losses[k], "best": k == best,
                **m.feedback_state,
                "delta_tau": delta, "tau_strategy": tau_strategy, "tau_next": m.tau,
                "steps": m.steps,
            })
        for k, m in enumerate(members):
            if k != best:
                copy_member_state(members[best], m)
        self.epoch += 1
        t3 = time.perf_counter()
        return EpochResult(epoch=epoch, best=best, rows=rows, train_seconds=train_seconds, eval_seconds=t2 - t1,
                           engine_seconds=t3 - t2 + (t1 - t0 - train_seconds))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly: weights, optimizers, generators, temperatures.

        After an epoch every member holds the best member's weights and optimizer state, so those
        are stored once (``shared``); each member keeps only its own temperature state and noise.
        """
        if self.epoch == 0:
            raise RuntimeError("the population state is saved after an epoch, when members share weights")
        first = self.members[0]
        return {
            "epoch": self.epoch,
            "shared": {"model": first.model.state_dict(), "optimizer": first.optimizer.state_dict()},
            "members": [
                {"index": m.index, "strategy": m.strategy, "tau": m.tau, "steps": m.steps,
                 "feedback_state": dict(m.feedback_state), "generator": m.generator.get_state()}
                for m in self.members
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by ``state_dict``; the caller checks it matches the configuration."""
        self.epoch = int(state["epoch"])
        for m, s in zip(self.members, state["members"], strict=True):
            m.tau = float(s["tau"])
            m.steps = int(s["steps"])
            m.feedback_state = dict(s["feedback_state"])
            m.model.load_state_dict(state["shared"]["model"])
            # Optimizer.load_state_dict keeps the given tensors: each member needs its own copy.
            m.optimizer.load_state_dict(copy.deepcopy(state["shared"]["optimizer"]))
            m.generator.set_state(s["generator"])
