"""The small objects a plugin provides: schedules, feedback rules, selection policies and presets.

Each part is a plain class with one or two methods (the way Optuna shapes samplers and pruners) that
declares its own parameters in ``params``: a default, a help text, bounds and, where ``tempsched tune``
should search it, a range. The engine builds a part with ``Part(**values)``, after checking every value
against its declaration, so a part's constructor only sees well-typed values inside their bounds. A
preset picks parts and may override their defaults; it never re-declares their parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, MutableMapping, Sequence

from tempsched.errors import UserError

Value = float | int | bool | str | list[Any]


@dataclass(frozen=True)
class Range:
    """Where ``tempsched tune`` samples a parameter: ``[low, high]``, log-uniformly with ``log``."""

    low: float | int
    high: float | int
    log: bool = False


@dataclass(frozen=True)
class Param:
    """One parameter of a part: its default (whose type is the parameter's type), meaning and limits.

    ``low``/``high`` are the smallest and largest values the part accepts (inclusive); ``choices`` the
    only values it accepts; ``tune`` the range ``tempsched tune`` searches (None: not tuned);
    ``source`` where the default comes from (a paper, a code base), shown in the docs.
    ``omitted_at_default``: a task option added after runs existed whose default computes what those runs
    computed; at its default it is left out of the resolved configuration (config.toml and the fingerprint
    that names and guards a run), so those runs keep their names and still resume.
    """

    default: Value
    help: str
    source: str = ""
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()
    tune: Range | None = None
    omitted_at_default: bool = False

    def check(self, value: Any, where: str) -> Value:
        """``value`` as this parameter's type, or a one-line UserError naming ``where`` (part and key)."""
        kind = type(self.default)
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
              else isinstance(value, int) and not isinstance(value, bool) if kind is int
              else isinstance(value, kind))
        if not ok:
            raise UserError(f"{where} must be {kind.__name__}, got {value!r}")
        if kind is float:
            value = float(value)
            if not math.isfinite(value):
                raise UserError(f"{where} must be finite, got {value}")
        if self.low is not None and value < self.low:
            raise UserError(f"{where} must be >= {self.low}, got {value}")
        if self.high is not None and value > self.high:
            raise UserError(f"{where} must be <= {self.high}, got {value}")
        if self.choices and value not in self.choices:
            raise UserError(f"{where} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        return value


class Part:
    """What every schedule, feedback rule, selection policy, task and evaluation shares: a name and its
    declared parameters. ``register(PartClass)`` adds one; the engine builds it as ``PartClass(**values)``."""

    name: ClassVar[str] = "part"
    params: ClassVar[Mapping[str, Param]] = {}


@dataclass(frozen=True)
class StepContext:
    """Where a member stands after one training step, and the run's temperature settings."""

    member: int  # 1-based, as in the paper's algorithms
    epoch: int  # 0-based epoch being trained
    step: int  # training steps this member has taken in the whole run, counting this one
    epochs: int  # the run's planned total epochs (a resume with more epochs raises it from then on)
    tau_initial: float
    tau_min: float
    tau_max: float


@dataclass(frozen=True)
class EpochContext:
    """Where a member stands at the end of an epoch, and the run's temperature settings."""

    member: int  # 1-based, as in the paper's algorithms
    epoch: int  # 0-based epoch that just finished
    epochs: int  # the run's planned total epochs (a resume with more epochs raises it from then on)
    tau_initial: float
    tau_min: float
    tau_max: float


class Schedule(Part):
    """How one member's temperature moves on its own (Algorithm 2 of the paper is five of these).

    Override ``on_epoch`` for a per-epoch rule and ``on_step`` (with ``per_step = True``) for a
    per-step one; the engine clamps whatever they return into [tau_min, tau_max]. Every member gets
    its own instance. Schedules must be pure functions of their arguments and parameters, so that a
    resumed run is exact.
    """

    per_step: ClassVar[bool] = False

    def on_step(self, tau: float, ctx: StepContext) -> float:
        """Temperature for the next training step; called only when ``per_step`` is true."""
        return tau

    def on_epoch(self, tau: float, ctx: EpochContext) -> float:
        """Temperature for the next epoch, before feedback."""
        return tau


class FeedbackRule(Part):
    """Turns a member's loss and the best loss into a temperature change (Algorithm 3 is one).

    ``state`` is the member's own JSON-serialisable dict (a patience counter, say); the rule may
    change it in place. It is saved with the population, so a resumed run continues exactly, and shown
    in the member's metrics row under ``feedback``, its own field, so no key of it can replace one of
    the engine's. ``loss`` and ``best_loss`` are always finite: a member that diverged is not passed to
    the rule, and its state starts again as ``{}``.
    """

    def delta(self, state: MutableMapping[str, Any], loss: float, best_loss: float) -> float:
        """Temperature change to add after the member's schedule step."""
        raise NotImplementedError


class SelectionPolicy(Part):
    """Names the member whose weights and optimizer state every other member takes."""

    def choose(self, losses: Sequence[float]) -> int:
        """Index (0-based) into ``losses`` of the chosen member.

        ``losses`` holds the finite selection losses only, in member order: the engine leaves out the
        members that diverged (non-finite training or selection loss), so a NaN can never win. When none
        diverged, the index is the member's.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class Preset:
    """A complete recipe, picked with ``--plugin NAME``: which parts, how many members, tau settings.

    ``assign(n)`` gives the schedule name of each of the ``n`` members. ``defaults`` overrides the
    defaults the parts declare (``NAME`` for every part of the preset that takes it, ``PART.NAME``
    for one part; ``task_options.NAME`` for the task). ``tune`` adds or changes search ranges by
    dotted configuration key (``tau.min``, ``params.patience.patience``). ``select_on`` is the loss
    members are judged on (None: the task's default for its options).
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
    defaults: Mapping[str, Value] = field(default_factory=dict)
    tune: Mapping[str, Range] = field(default_factory=dict)
    select_on: str | None = None
