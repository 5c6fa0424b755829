"""The small objects a plugin provides: schedules, feedback rules, selection policies and presets.

Each is a plain class with one or two methods (the way Optuna shapes samplers and pruners), so that a
new temperature schedule is a few lines. The engine composes them; none of them sees a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, MutableMapping, Sequence


@dataclass(frozen=True)
class StepContext:
    """Where a member stands after one training step."""

    member: int  # 1-based, as in the paper's algorithms
    epoch: int  # 0-based epoch being trained
    step: int  # training steps this member has taken in the whole run, counting this one


@dataclass(frozen=True)
class EpochContext:
    """Where a member stands at the end of an epoch."""

    member: int  # 1-based
    epoch: int  # 0-based epoch that just finished


class Schedule:
    """How one member's temperature moves on its own (Algorithm 2 of the paper is five of these).

    Override ``on_epoch`` for a per-epoch rule and ``on_step`` (with ``per_step = True``) for a
    per-step one; the engine clamps whatever they return into [tau_min, tau_max]. Schedules must be
    pure functions of their arguments and constructor parameters, so that a resumed run is exact.
    """

    name: str = "schedule"
    per_step: bool = False

    def on_step(self, tau: float, ctx: StepContext) -> float:
        """Temperature for the next training step; called only when ``per_step`` is true."""
        return tau

    def on_epoch(self, tau: float, ctx: EpochContext) -> float:
        """Temperature for the next epoch, before feedback."""
        return tau


class FeedbackRule:
    """Turns a member's loss and the best loss into a temperature change (Algorithm 3 is one).

    ``state`` is the member's own JSON-serialisable dict (a patience counter, say); the rule may
    change it in place. It is saved with the population, so a resumed run continues exactly.
    """

    name: str = "feedback"

    def delta(self, state: MutableMapping[str, Any], loss: float, best_loss: float) -> float:
        """Temperature change to add after the member's schedule step."""
        raise NotImplementedError


class SelectionPolicy:
    """Names the member whose weights and optimizer state every other member takes."""

    name: str = "selection"

    def choose(self, losses: Sequence[float]) -> int:
        """Index (0-based) of the chosen member."""
        raise NotImplementedError


@dataclass(frozen=True)
class Param:
    """A preset parameter: its default, what it means and where the default comes from."""

    default: float | int | bool | str
    help: str
    source: str = ""


@dataclass(frozen=True)
class Preset:
    """A complete recipe, picked with ``--plugin NAME``.

    ``assign(n)`` gives the schedule name of each of the ``n`` members. ``params`` declares every
    parameter the preset's schedules and rules read; a user value for any other name is an error.
    """

    name: str
    description: str
    task: str
    members: int
    assign: Callable[[int], list[str]]
    feedback: str
    selection: str
    tau_initial: float
    tau_min: float
    tau_max: float
    params: Mapping[str, Param] = field(default_factory=dict)
