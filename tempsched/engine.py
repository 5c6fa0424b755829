"""The population and one epoch of the paper's Algorithm 1, generic over the task and the parts.

Per epoch: every member still training trains on the same batches at its own temperature; each
member's selection loss is computed; the selection policy names the best; the feedback rule turns each
loss gap into a temperature change; each member's schedule takes its epoch step; the results are
clamped. Then the policy makes the epoch's plan from a read-only view of the population
(``parts.PopulationView``): each member keeps its state, copies another's (with or without its
temperature) or retires; the engine checks the plan and carries it out. Algorithm 1's plan, every
member takes the best member's weights and optimizer state while keeping its own temperature,
schedule and feedback state, is the default one; PBT and successive halving are others.

A member whose training or selection loss is not finite has diverged: the engine leaves it out of
selection (the policy sees finite losses only) and out of feedback (a rule never sees a NaN), and it
goes on from the chosen member's weights, optimizer state and temperature with a fresh feedback state;
its schedule goes on. If every member diverged there is nothing good to go on from, and the epoch ends
in ``Diverged`` before anything is shared or saved.

A retired member costs nothing afterwards: it is not trained or evaluated and writes no row after
its retirement row; nothing is copied from it.

The members may be spread over processes (``tempsched.distributed``): each process then trains a slice
of them, and a ``Placement`` says which, gathers the epoch's losses and carries out the plan's copies
(each source's state sent once, by the process that trains it).
Every process keeps every member's temperature, schedule and feedback state, so selection and feedback
run the same everywhere; only models, optimizers and noise generators live with the member's process.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import nn

from tempsched.errors import PartError, UserError, describe_exception
from tempsched.parts import (Action, Copy, EpochContext, FeedbackRule, Keep, MemberView, PopulationView, Retire,
                             Schedule, SelectionPolicy, StepContext)
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
    alive: bool = True  # False once the plan retired it
    # In process 0, when another process trains it: its weights and optimizer state after the last plan
    # (``Placement.collect``), which state.pt and best.pt need.
    fetched: dict[str, Any] | None = None

    def weights(self) -> dict[str, Any]:
        """The member's model and optimizer state dicts, wherever it trains (from process 0's view)."""
        if self.model is not None and self.optimizer is not None:
            return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        assert self.fetched is not None, f"member {self.index} trains elsewhere and its state did not come here"
        return self.fetched

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

    def gather(self, members: Sequence[Member], trained: Sequence[int], train_losses: list[float],
               losses: list[float]) -> tuple[list[float], list[float]]:
        """Every member's mean training and selection losses (NaN for a retired one), from those of the
        members ``trained`` here (0-based, in order).

        Also leaves the noise-generator state of members trained elsewhere in their ``noise_state``.
        """
        ...

    def share(self, members: Sequence[Member], copies: Sequence[tuple[int, int]]) -> None:
        """Carry out the plan's copies ``(dst, src)``: each member ``dst`` this process trains takes the
        weights and optimizer state of member ``src``. Sources keep their own state this epoch."""
        ...

    def collect(self, members: Sequence[Member], groups: dict[int, list[int]]) -> None:
        """Make process 0 hold the state of each group's source (``groups``: source -> the members that
        hold its state), for state.pt and best.pt: fetched into ``Member.fetched`` when no member of the
        group trains there."""
        ...


class Alone:
    """Every member trains in this process: nothing to gather, the best state is copied in memory."""

    def owns(self, k: int) -> bool:
        return True

    def check(self) -> None:
        pass

    def gather(self, members: Sequence[Member], trained: Sequence[int], train_losses: list[float],
               losses: list[float]) -> tuple[list[float], list[float]]:
        return spread_out(len(members), trained, train_losses), spread_out(len(members), trained, losses)

    def share(self, members: Sequence[Member], copies: Sequence[tuple[int, int]]) -> None:
        for dst, src in copies:
            copy_member_state(members[src], members[dst])

    def collect(self, members: Sequence[Member], groups: dict[int, list[int]]) -> None:
        pass


def spread_out(n: int, at: Sequence[int], values: Sequence[float]) -> list[float]:
    """A list of ``n`` values, ``values`` at the places ``at`` and NaN elsewhere (retired members)."""
    out = [math.nan] * n
    for k, value in zip(at, values, strict=True):
        out[k] = value
    return out


class Population:
    """n members trained side by side; ``run_epoch`` is one pass of Algorithm 1, its last step a plan."""

    def __init__(self, task: Task, members: Sequence[Member], feedback: FeedbackRule, selection: SelectionPolicy,
                 tau: TauBounds, epochs: int, select_on: str = "val", stepper: Stepper | None = None,
                 on_batch: BatchCallback | None = None, placement: Placement | None = None,
                 plan_seed: int = 0) -> None:
        self.task = task
        self.stepper = stepper or LoopStepper(task)
        self.members = list(members)  # all of them, in every process
        self.placement = placement or Alone()
        self.feedback = feedback
        self.selection = selection
        self.tau = tau
        self.epochs = epochs  # planned total; the contexts tell the parts
        self.select_on = select_on
        self.on_batch = on_batch
        self.epoch = 0  # epochs completed
        self.rng = random.Random(plan_seed)  # the plans' randomness, saved with the state
        self.history: list[PopulationView] = []  # the view of each completed epoch
        # Who holds whose state after the last plan: source -> the members that hold it (source included).
        self.groups: dict[int, list[int]] = {k: [k] for k in range(len(self.members))}

    def run_epoch(self) -> EpochRecord:
        """Algorithm 1, one epoch: train, measure, select, adjust temperatures, then make and carry out the plan."""
        timer = _Timer()
        tau_used = [m.tau for m in self.members]
        trained = [k for k, m in enumerate(self.members) if m.alive and self.placement.owns(k)]
        own_train_losses = self._train(timer, [self.members[k] for k in trained])
        own_losses = timer.time("eval", lambda: self._selection_losses(
            own_train_losses, [self.members[k] for k in trained]))
        train_losses, losses = self.placement.gather(self.members, trained, own_train_losses, own_losses)
        diverged = [m.alive and not (math.isfinite(t) and math.isfinite(v))
                    for m, t, v in zip(self.members, train_losses, losses, strict=True)]
        best = self._select(losses, diverged)
        tau_best = self.members[best].tau  # where the chosen weights ended the epoch; diverged members restart here
        rows = {k: self._adjust(k, m, tau_used[k], train_losses[k], losses, best, tau_best if diverged[k] else None)
                for k, m in enumerate(self.members) if m.alive}
        view = PopulationView(self.epoch, self.epochs, best, self.tau.min, self.tau.max, tuple(
            MemberView(m.index, m.strategy, losses[k], train_losses[k], tau_used[k], m.tau, m.steps, m.alive)
            for k, m in enumerate(self.members)), tuple(self.history))
        plan = self._plan(view, diverged)
        copies = self._carry_out(plan, view, rows)
        self.placement.share(self.members, copies)
        self.placement.collect(self.members, self.groups)
        self.history.append(dataclasses.replace(view, history=()))
        self.epoch += 1
        return EpochRecord(epoch=self.epoch - 1, epochs=self.epochs, best=best, rows=list(rows.values()),
                           **timer.seconds())

    def _train(self, timer: _Timer, trained: list[Member]) -> list[float]:
        """The members ``trained`` here take a step on each of the epoch's batches (the same batches for all);
        every live member's step count and per-step temperature advance in every process. Returns the mean
        training loss of each member trained here."""
        sums = [0.0] * len(trained)
        batches = 0
        for batch in self.task.batches(self.epoch):  # preparing a batch counts as engine time
            step_losses = timer.time("train", lambda: self.stepper(trained, batch)) if trained else []
            batches += 1
            for k, loss in enumerate(step_losses):
                sums[k] += loss
            for m in self.members:
                if not m.alive:
                    continue
                m.steps += 1
                if m.schedule.per_step:
                    ctx = StepContext(m.index, self.epoch, m.steps, self.epochs, *self._tau_settings())
                    m.tau = self._clamped(m.schedule, "on_step", _call(m.schedule, "on_step", m.tau, ctx))
            self.placement.check()
            if self.on_batch is not None:
                self.on_batch(batches)
        return [s / max(batches, 1) for s in sums]

    def _selection_losses(self, train_losses: list[float], trained: list[Member]) -> list[float]:
        """The selection loss of each member trained here."""
        if self.select_on == "train":
            return train_losses
        return [self.task.evaluate(m.model, m.tau, self.select_on) for m in trained]

    def _select(self, losses: list[float], diverged: list[bool]) -> int:
        """The chosen member (0-based): the selection policy picks among the live members that did not diverge."""
        candidates = [k for k, m in enumerate(self.members) if m.alive and not diverged[k]]
        if not candidates:
            raise Diverged(self.epoch)
        pick = _call(self.selection, "choose", [losses[k] for k in candidates])
        if not isinstance(pick, numbers.Integral) or isinstance(pick, bool) or not 0 <= pick < len(candidates):
            raise PartError(self.selection, "choose", f"returned {pick!r}, not a member index 0..{len(candidates) - 1}")
        return candidates[int(pick)]

    def _plan(self, view: PopulationView, diverged: list[bool]) -> list[Action]:
        """The policy's plan for ``view``, checked; a diverged member told to keep is reset from the best."""
        made = _call(self.selection, "plan", view, self.rng)
        try:
            plan = list(made)
        except TypeError:
            raise PartError(self.selection, "plan", f"returned {made!r}, not a list of actions") from None
        n = len(self.members)
        if len(plan) != n:
            raise PartError(self.selection, "plan", f"returned {len(plan)} actions for {n} members")
        for k, action in enumerate(plan):
            if not isinstance(action, (Keep, Copy, Retire)):
                raise PartError(self.selection, "plan", f"gave member {k + 1} {action!r}, not Keep, Copy or Retire")
            if not self.members[k].alive:
                if isinstance(action, Copy):
                    raise PartError(self.selection, "plan", f"copies into member {k + 1}, which is retired")
                plan[k] = Keep()
            elif k == view.best and not isinstance(action, Keep):
                raise PartError(self.selection, "plan", f"does not keep member {k + 1}, the epoch's best")
            elif isinstance(action, Copy):
                self._check_copy(k, action, plan, diverged)
            elif isinstance(action, Keep) and diverged[k]:
                plan[k] = Copy(view.best)
        return plan

    def _check_copy(self, k: int, action: Copy, plan: list[Action], diverged: list[bool]) -> None:
        """A copy reads its source as the epoch left it, so the source must keep its own live, finite state."""
        j = action.source
        if not isinstance(j, numbers.Integral) or isinstance(j, bool) or not 0 <= j < len(self.members) or j == k:
            raise PartError(self.selection, "plan", f"copies member {k + 1} from {j!r}, not another member's index")
        if not self.members[j].alive or diverged[j] or not isinstance(plan[j], Keep):
            raise PartError(self.selection, "plan", f"copies member {k + 1} from member {j + 1}, which is retired, "
                                                    "diverged, or does not keep its own state this epoch")
        if action.tau is not None:
            _finite(self.selection, "plan", action.tau)

    def _carry_out(self, plan: list[Action], view: PopulationView,
                   rows: dict[int, dict[str, Any]]) -> list[tuple[int, int]]:
        """Apply the plan's temperatures and retirements and note them in the rows; returns the copies
        ``(dst, src)`` for the placement.

        The rows of an epoch whose plan is Algorithm 1's (every other member copies the best and keeps its
        tau, nobody retires) stay as they always were; any other plan's rows say where each member's state
        came from (``copied_from``: a member, or None for its own), the tau a copy set (``explored``) and
        a retirement (``retired``).
        """
        usual = all(isinstance(a, Keep) if k == view.best or not self.members[k].alive else a == Copy(view.best)
                    for k, a in enumerate(plan))
        copies, self.groups = [], {}
        for k, action in enumerate(plan):
            m = self.members[k]
            if not m.alive:
                continue
            row = rows[k]
            if not usual:
                row["copied_from"] = self.members[action.source].index if isinstance(action, Copy) else None
            if isinstance(action, Retire):
                m.alive = False
                row["retired"] = True
                continue
            source = action.source if isinstance(action, Copy) else k
            self.groups.setdefault(source, []).append(k)
            if isinstance(action, Copy):
                copies.append((k, source))
                if action.tau is not None:
                    m.tau = clamp(float(action.tau), self.tau.min, self.tau.max)
                    m.feedback_state = {}  # it described how the member's old temperature fared
                    row["tau_next"] = row["explored"] = m.tau
        return copies

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

    def model_state(self, k: int) -> dict[str, Any]:
        """The weights member ``k`` holds after the last plan, in process 0 whichever process trains it."""
        return self.members[self._holder(k)].weights()["model"]

    def _holder(self, source: int) -> int:
        """A member whose state this process can read that holds ``source``'s state after the last plan."""
        group = self.groups.get(source, [source])
        return next((k for k in group if self.members[k].model is not None), source)

    def rows_per_epoch(self) -> list[int]:
        """How many members wrote a row in each completed epoch (all of them where no view says otherwise)."""
        counts = [sum(m.alive for m in view.members) for view in self.history]
        return [len(self.members)] * (self.epoch - len(counts)) + counts

    def _tau_settings(self) -> tuple[float, float, float]:
        return self.tau.initial, self.tau.min, self.tau.max

    def _clamped(self, part: Any, method: str, tau: Any) -> float:
        return clamp(_finite(part, method, tau), self.tau.min, self.tau.max)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly: weights, optimizers, generators, temperatures, the
        plans' generator and the views of the epochs so far.

        Members that hold the same state after the last plan share one entry of ``weights`` (under
        Algorithm 1's plan, all of them: the state is stored once); each member keeps only its own
        temperature state and noise. A retired member's weights are not kept.
        """
        if self.epoch == 0:
            raise RuntimeError("the population state is saved after an epoch, when the plan has been carried out")
        sources = sorted(self.groups)
        place = {k: i for i, j in enumerate(sources) for k in self.groups[j]}
        return {
            "epoch": self.epoch,
            "weights": [{**self.members[self._holder(j)].weights(), "source": j} for j in sources],
            "members": [
                {"index": m.index, "strategy": m.strategy, "tau": m.tau, "steps": m.steps,
                 "feedback_state": dict(m.feedback_state), "generator": m.noise(), "alive": m.alive,
                 "weights": place.get(k)}
                for k, m in enumerate(self.members)
            ],
            "rng": self.rng.getstate(),
            "history": [_view_state(view) for view in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by ``state_dict``; the caller checks it matches the configuration.

        The state does not depend on how many processes wrote it or read it: each process loads the
        weights into the members it trains and keeps the others' noise state for its checkpoints. A
        state.pt written before plans existed (``shared``: one state for every member, no history) resumes
        too: its runs used Algorithm 1's plan, which reads neither the history nor the generator.
        """
        self.epoch = int(state["epoch"])
        weights = state["weights"] if "weights" in state else [{**state["shared"], "source": 0}]
        self.groups = {}
        for k, (m, s) in enumerate(zip(self.members, state["members"], strict=True)):
            m.tau = float(s["tau"])
            m.steps = int(s["steps"])
            m.feedback_state = dict(s["feedback_state"])
            m.alive = bool(s.get("alive", True))
            place = s.get("weights", 0) if m.alive else None
            if place is not None and not 0 <= place < len(weights):
                raise KeyError(f"weights {place} of member {m.index}")  # a damaged file, said in one line
            if place is not None:
                self.groups.setdefault(int(weights[place]["source"]), []).append(k)
            if m.model is None or m.optimizer is None or m.generator is None:
                m.noise_state = s["generator"]
                continue
            m.generator.set_state(s["generator"])
            if place is not None:
                m.model.load_state_dict(weights[place]["model"])
                # Optimizer.load_state_dict keeps the given tensors: each member needs its own copy.
                m.optimizer.load_state_dict(copy.deepcopy(weights[place]["optimizer"]))
        by_source = {int(w["source"]): w for w in weights}
        for j, m in enumerate(self.members):  # a group that no member here holds: process 0 keeps it from the file
            local = any(self.members[k].model is not None for k in self.groups.get(j, []))
            m.fetched = None if local or j not in self.groups else {
                "model": by_source[j]["model"], "optimizer": by_source[j]["optimizer"]}
        if "rng" in state:
            self.rng.setstate(_rng_state(state["rng"]))
        self.history = [_view_from_state(v, self.epochs) for v in state.get("history", [])]


# What a completed epoch's view keeps in state.pt besides its members: not ``epochs``, the planned total,
# which a resume may raise (the restored views take the run's), so that state.pt does not depend on it.
_VIEW_FIELDS = ("epoch", "best", "tau_min", "tau_max")


def _view_state(view: PopulationView) -> dict[str, Any]:
    """A completed epoch's view as plain values, for state.pt."""
    return {**{name: getattr(view, name) for name in _VIEW_FIELDS},
            "members": [dataclasses.asdict(m) for m in view.members]}


def _view_from_state(state: dict[str, Any], epochs: int) -> PopulationView:
    members = tuple(MemberView(**m) for m in state["members"])
    return PopulationView(**{name: state[name] for name in _VIEW_FIELDS}, epochs=epochs, members=members)


def _rng_state(state: Any) -> tuple[Any, ...]:
    """``random.Random.getstate()`` as torch.load gives it back (its tuples may come back as lists)."""
    version, internal, gauss = state
    return int(version), tuple(int(x) for x in internal), gauss
