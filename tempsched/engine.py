"""The population and one epoch of the paper's Algorithm 1, generic over the task and the parts.

Per epoch: every member trains on the same batches at its own temperature; each member's selection
loss is computed; the selection policy names the best; the feedback rule turns each loss gap into a
temperature change; each member's schedule takes its epoch step; the results are clamped; then every
member takes the best member's weights and optimizer state while keeping its own temperature,
schedule and feedback state.

A member whose training or selection loss is not finite has diverged: the engine leaves it out of
selection (the policy sees finite losses only) and out of feedback (a rule never sees a NaN), and it
goes on from the chosen member's weights, optimizer state and temperature with a fresh feedback state;
its schedule goes on. If every member diverged there is nothing good to go on from, and the epoch ends
in ``Diverged`` before anything is shared or saved.

The members may be spread over processes (``tempsched.distributed``): each process then trains a slice
of them, and a ``Placement`` says which, gathers the epoch's losses and sends the best member's state.
Every process keeps every member's temperature, schedule and feedback state, so selection and feedback
run the same everywhere; only models, optimizers and noise generators live with the member's process.
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import nn

from tempsched.errors import PartError, UserError, describe_exception
from tempsched.parts import EpochContext, FeedbackRule, Schedule, SelectionPolicy, StepContext
from tempsched.records import EpochRecord
from tempsched.steppers import LoopStepper, Stepper
from tempsched.task import Task

# A diverged member's row says why it was reset (the rows of members that went on normally have no "reset").
RESET_NONFINITE = "non-finite loss"


class Diverged(UserError):
    """Every member's loss was non-finite in one epoch: no member is fit to go on from."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch  # 0-based
        super().__init__(f"every member's loss was non-finite in epoch {epoch + 1} (all diverged)")


@dataclass
class Member:
    """One member: its temperature state, and where this process trains it, its model, optimizer and noise.

    ``model``, ``optimizer`` and ``generator`` are None in a process that does not train the member;
    ``noise_state`` then holds its generator's state as of the last epoch, which the checkpoint needs.
    """

    index: int  # 1-based, as in the paper
    strategy: str
    schedule: Schedule
    model: nn.Module | None
    optimizer: torch.optim.Optimizer | None
    generator: torch.Generator | None
    tau: float
    feedback_state: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    noise_state: torch.Tensor | None = None

    def noise(self) -> torch.Tensor:
        """The state of the member's noise generator, wherever the member trains."""
        if self.generator is not None:
            return self.generator.get_state()
        assert self.noise_state is not None, f"member {self.index} trains elsewhere and no state came from there"
        return self.noise_state


def _call(part: Any, method: str, *args: Any) -> Any:
    """Call a part's method; its own failure becomes a PartError naming the part (the run adds the plugin)."""
    try:
        return getattr(part, method)(*args)
    except UserError:
        raise
    except Exception as exc:
        raise PartError(part, method, describe_exception(exc)) from exc


def _finite(part: Any, method: str, value: Any) -> float:
    """A part's temperature or temperature change, refused unless it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PartError(part, method, f"returned {value!r}, not a finite number")
    return float(value)


class _Timer:
    """Where an epoch's time goes: members' steps, selection passes, and the engine's own work."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.spent = {"train": 0.0, "eval": 0.0}

    def time(self, what: str, call: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return call()
        finally:
            self.spent[what] += time.perf_counter() - t0

    def seconds(self) -> dict[str, float]:
        total = time.perf_counter() - self.start
        return {"train_seconds": self.spent["train"], "eval_seconds": self.spent["eval"],
                "engine_seconds": total - self.spent["train"] - self.spent["eval"]}


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


@dataclass(frozen=True)
class TauBounds:
    """The run's temperature settings that every schedule step and feedback result is clamped into."""

    initial: float
    min: float
    max: float


BatchCallback = Callable[[int], None]


class Placement(Protocol):
    """Which members this process trains, and how the processes of one run agree on an epoch.

    The engine calls it at the three points of Algorithm 1 where members trained elsewhere matter.
    ``Alone`` (every member here) is the default; ``tempsched.distributed.Spread`` spreads them.
    """

    def owns(self, k: int) -> bool:
        """Whether this process trains member ``k`` (0-based)."""
        ...

    def check(self) -> None:
        """Called after every batch: a process that stopped ends the run here, not an epoch later."""
        ...

    def gather(self, members: Sequence[Member], train_losses: list[float],
               losses: list[float]) -> tuple[list[float], list[float]]:
        """Every member's mean training and selection losses, from this process's (in member order).

        Also leaves the noise-generator state of members trained elsewhere in their ``noise_state``.
        """
        ...

    def share(self, members: Sequence[Member], best: int) -> None:
        """Give every member this process trains the weights and optimizer state of member ``best``."""
        ...


class Alone:
    """Every member trains in this process: nothing to gather, the best state is copied in memory."""

    def owns(self, k: int) -> bool:
        return True

    def check(self) -> None:
        pass

    def gather(self, members: Sequence[Member], train_losses: list[float],
               losses: list[float]) -> tuple[list[float], list[float]]:
        return train_losses, losses

    def share(self, members: Sequence[Member], best: int) -> None:
        for k, m in enumerate(members):
            if k != best:
                copy_member_state(members[best], m)


class Population:
    """n members trained side by side; ``run_epoch`` is one pass of Algorithm 1."""

    def __init__(self, task: Task, members: Sequence[Member], feedback: FeedbackRule, selection: SelectionPolicy,
                 tau: TauBounds, epochs: int, select_on: str = "val", stepper: Stepper | None = None,
                 on_batch: BatchCallback | None = None, placement: Placement | None = None) -> None:
        self.task = task
        self.stepper = stepper or LoopStepper(task)
        self.members = list(members)  # all of them, in every process
        self.placement = placement or Alone()
        self.local = [m for k, m in enumerate(self.members) if self.placement.owns(k)]  # those trained here
        self.feedback = feedback
        self.selection = selection
        self.tau = tau
        self.epochs = epochs  # planned total; the contexts tell the parts
        self.select_on = select_on
        self.on_batch = on_batch
        self.epoch = 0  # epochs completed

    def run_epoch(self) -> EpochRecord:
        """Algorithm 1, one epoch: train, measure, select, adjust temperatures, share the best state."""
        timer = _Timer()
        tau_used = [m.tau for m in self.members]
        own_train_losses = self._train(timer)
        own_losses = timer.time("eval", lambda: self._selection_losses(own_train_losses))
        train_losses, losses = self.placement.gather(self.members, own_train_losses, own_losses)
        diverged = [not (math.isfinite(t) and math.isfinite(v)) for t, v in zip(train_losses, losses, strict=True)]
        best = self._select(losses, diverged)
        tau_best = self.members[best].tau  # where the chosen weights ended the epoch; diverged members restart here
        rows = [self._adjust(k, m, tau_used[k], train_losses[k], losses, best, tau_best if diverged[k] else None)
                for k, m in enumerate(self.members)]
        self.placement.share(self.members, best)
        self.epoch += 1
        return EpochRecord(epoch=self.epoch - 1, epochs=self.epochs, best=best, rows=rows, **timer.seconds())

    def _train(self, timer: _Timer) -> list[float]:
        """The members trained here take a step on each of the epoch's batches (the same batches for all);
        every member's step count and per-step temperature advance in every process. Returns the mean
        training loss of each member trained here."""
        sums = [0.0] * len(self.local)
        batches = 0
        for batch in self.task.batches(self.epoch):  # preparing a batch counts as engine time
            step_losses = timer.time("train", lambda: self.stepper(self.local, batch))
            batches += 1
            for k, loss in enumerate(step_losses):
                sums[k] += loss
            for m in self.members:
                m.steps += 1
                if m.schedule.per_step:
                    ctx = StepContext(m.index, self.epoch, m.steps, self.epochs, *self._tau_settings())
                    m.tau = self._clamped(m.schedule, "on_step", _call(m.schedule, "on_step", m.tau, ctx))
            self.placement.check()
            if self.on_batch is not None:
                self.on_batch(batches)
        return [s / max(batches, 1) for s in sums]

    def _selection_losses(self, train_losses: list[float]) -> list[float]:
        """The selection loss of each member trained here."""
        if self.select_on == "train":
            return train_losses
        return [self.task.evaluate(m.model, m.tau, self.select_on) for m in self.local]

    def _select(self, losses: list[float], diverged: list[bool]) -> int:
        """The chosen member (0-based): the selection policy picks among the members that did not diverge."""
        candidates = [k for k, bad in enumerate(diverged) if not bad]
        if not candidates:
            raise Diverged(self.epoch)
        pick = _call(self.selection, "choose", [losses[k] for k in candidates])
        if not isinstance(pick, numbers.Integral) or isinstance(pick, bool) or not 0 <= pick < len(candidates):
            raise PartError(self.selection, "choose", f"returned {pick!r}, not a member index 0..{len(candidates) - 1}")
        return candidates[int(pick)]

    def _adjust(self, k: int, m: Member, tau_used: float, train_loss: float, losses: list[float], best: int,
                reset_to: float | None) -> dict[str, Any]:
        """Algorithm 3's feedback and Algorithm 2's strategy step for member ``k``; returns its metrics row.

        ``reset_to`` (a diverged member): the chosen member's temperature, which the member's schedule
        steps from instead of its own; its feedback state starts afresh and the feedback rule is skipped,
        since a gap to a non-finite loss means nothing.
        """
        tau_end = m.tau
        if reset_to is None:
            # The best member sees no gap, so a patience rule resets its counter (Algorithm 3 line 10).
            delta = _finite(self.feedback, "delta",
                            _call(self.feedback, "delta", m.feedback_state, losses[k], losses[best]))
        else:
            m.feedback_state, delta = {}, 0.0
        ctx = EpochContext(m.index, self.epoch, self.epochs, *self._tau_settings())
        start = tau_end if reset_to is None else reset_to
        tau_strategy = self._clamped(m.schedule, "on_epoch", _call(m.schedule, "on_epoch", start, ctx))
        m.tau = clamp(tau_strategy + delta, self.tau.min, self.tau.max)
        row = {
            "epoch": self.epoch, "member": m.index, "strategy": m.strategy, "tau": tau_used, "tau_end": tau_end,
            "train_loss": train_loss, "loss": losses[k], "best": k == best,
            "feedback": copy.deepcopy(m.feedback_state),  # its own field: a rule's keys never replace the engine's
            "delta_tau": delta, "tau_strategy": tau_strategy, "tau_next": m.tau, "steps": m.steps,
        }
        if reset_to is not None:
            row["reset"] = RESET_NONFINITE
        return row

    def shared_model(self) -> nn.Module:
        """The weights every member holds after an epoch (the best member's), from a member trained here."""
        model = self.local[0].model
        assert model is not None
        return model

    def _tau_settings(self) -> tuple[float, float, float]:
        return self.tau.initial, self.tau.min, self.tau.max

    def _clamped(self, part: Any, method: str, tau: Any) -> float:
        return clamp(_finite(part, method, tau), self.tau.min, self.tau.max)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly: weights, optimizers, generators, temperatures.

        After an epoch every member holds the best member's weights and optimizer state, so those
        are stored once (``shared``); each member keeps only its own temperature state and noise.
        """
        if self.epoch == 0:
            raise RuntimeError("the population state is saved after an epoch, when members share weights")
        first = self.local[0]
        assert first.model is not None and first.optimizer is not None
        return {
            "epoch": self.epoch,
            "shared": {"model": first.model.state_dict(), "optimizer": first.optimizer.state_dict()},
            "members": [
                {"index": m.index, "strategy": m.strategy, "tau": m.tau, "steps": m.steps,
                 "feedback_state": dict(m.feedback_state), "generator": m.noise()}
                for m in self.members
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by ``state_dict``; the caller checks it matches the configuration.

        The state does not depend on how many processes wrote it or read it: each process loads the
        shared weights into the members it trains and keeps the others' noise state for its checkpoints.
        """
        self.epoch = int(state["epoch"])
        for m, s in zip(self.members, state["members"], strict=True):
            m.tau = float(s["tau"])
            m.steps = int(s["steps"])
            m.feedback_state = dict(s["feedback_state"])
            if m.model is None or m.optimizer is None or m.generator is None:
                m.noise_state = s["generator"]
                continue
            m.model.load_state_dict(state["shared"]["model"])
            # Optimizer.load_state_dict keeps the given tensors: each member needs its own copy.
            m.optimizer.load_state_dict(copy.deepcopy(state["shared"]["optimizer"]))
            m.generator.set_state(s["generator"])
