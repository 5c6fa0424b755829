"""The small objects a plugin provides: schedules, feedback rules, selection policies and presets.

Each part is a plain class with one or two methods (the way Optuna shapes samplers and pruners) that
declares its own parameters in ``params``: a default, a help text, bounds and, where ``tempsched tune``
should search it, a range. The engine builds a part with ``Part(**values)``, after checking every value
against its declaration, so a part's constructor only sees well-typed values inside their bounds. A
preset picks parts and may override their defaults; it never re-declares their parameters.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, MutableMapping, Sequence

from tempsched.errors import UserError

if TYPE_CHECKING:  # pragma: no cover - an annotation only: evaluation imports the plugin manager, which imports this
    from tempsched.evaluation import EvalContext

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
    that names and guards a run), so those runs keep their names and still resume. The same for an
    evaluation's option: at its default it is left out of the report's config.toml, so reports written
    before it existed still count as written for the same inputs.
    ``cli``: a shortcut option of ``tempsched run`` (``"--patience"``), the same as ``--param NAME=VALUE``
    for a part's parameter or ``--option NAME=VALUE`` for a task's; the command line collects them from
    the registry, so it names no plugin's parameter itself.
    """

    default: Value
    help: str
    source: str = ""
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()
    tune: Range | None = None
    omitted_at_default: bool = False
    cli: str = ""

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


@dataclass(frozen=True)
class MemberView:
    """One member as the selection policy sees it at the end of an epoch (read-only)."""

    member: int  # 1-based, as in the rows
    strategy: str
    loss: float  # the selection loss; NaN or inf when the member diverged (or is retired)
    train_loss: float
    tau: float  # trained at in this epoch (at its start, for a per-step schedule)
    tau_next: float  # after its schedule step and feedback: what it trains at next unless the plan changes it
    steps: int
    alive: bool  # trained in this epoch; a retired member stays in the view, with alive False

    @property
    def finite(self) -> bool:
        """Whether both losses are finite numbers (a member that is not has diverged)."""
        return math.isfinite(self.loss) and math.isfinite(self.train_loss)


@dataclass(frozen=True)
class PopulationView:
    """The population at the end of an epoch, after feedback and schedules, before the plan (read-only).

    ``best`` is the member ``SelectionPolicy.choose`` named (0-based): feedback measured every gap to it,
    and it keeps its weights whatever the plan says of others. ``history`` holds the views of the earlier
    epochs, oldest first (each with an empty history of its own); a resumed run restores it from state.pt.
    """

    epoch: int  # 0-based epoch that just finished
    epochs: int  # the run's planned total
    best: int
    tau_min: float
    tau_max: float
    members: tuple[MemberView, ...]
    history: tuple["PopulationView", ...] = ()

    def alive(self) -> list[int]:
        """The members (0-based) that trained in this epoch."""
        return [k for k, m in enumerate(self.members) if m.alive]

    def ranked(self) -> list[int]:
        """The members that trained in this epoch, best first: by selection loss, ties by index, and every
        member whose loss is not finite last (by index), so a NaN never ranks high."""
        return sorted(self.alive(), key=lambda k: (not self.members[k].finite,
                                                   self.members[k].loss if self.members[k].finite else 0.0, k))


@dataclass(frozen=True)
class Keep:
    """The member goes on with its own weights, optimizer state and temperature."""


@dataclass(frozen=True)
class Copy:
    """The member takes member ``source``'s (0-based) weights and optimizer state.

    ``tau`` None keeps the member's own temperature (Algorithm 1: every member copies the best and keeps
    its tau); a number is the temperature it trains at next (PBT's exploit, the source's ``tau_next``,
    and its explore step, that tau perturbed), clamped into the bounds. The member keeps its own noise
    generator and schedule; a member that takes a temperature starts a fresh feedback state, since the
    state it had described how its old temperature fared.
    """

    source: int
    tau: float | None = None


@dataclass(frozen=True)
class Retire:
    """The member stops: it is not trained, evaluated or copied from again and writes no row after this one."""


Action = Keep | Copy | Retire


class SelectionPolicy(Part):
    """Names the epoch's best member (``choose``) and decides what every member does next (``plan``).

    A policy that overrides only ``choose`` gets Algorithm 1's plan: every other member copies the best
    and keeps its own temperature. ``plan`` may keep, copy or retire each member; any randomness it
    needs comes from ``rng``, which the engine seeds from the run seed and saves in state.pt, so a
    resumed run draws what an uninterrupted one would.
    """

    def choose(self, losses: Sequence[float]) -> int:
        """Index (0-based) into ``losses`` of the chosen member; by default the smallest, ties to the lowest index.

        ``losses`` holds the finite selection losses of the members still training, in member order:
        the engine leaves out the members that diverged (non-finite training or selection loss) and
        those that retired, so a NaN can never win. When none is left out, the index is the member's.
        """
        return min(range(len(losses)), key=lambda k: (losses[k], k))

    def plan(self, view: PopulationView, rng: random.Random) -> Sequence[Action]:
        """One action per member of ``view.members`` (retired ones: ``Keep()`` or ``Retire()``, both a no-op).

        The engine refuses, naming the policy, a plan that copies from a member that does not keep
        its own weights this epoch (one that copies, retires, is retired or diverged), copies a member
        from itself, or does not keep the best. A member that diverged and is told to keep is reset
        from the best instead (it has nothing of its own to keep).
        """
        return [Keep() if k == view.best or not m.alive else Copy(view.best) for k, m in enumerate(view.members)]


class Evaluation(Part):
    """A named experiment on run directories (``tempsched eval NAME``). Declare options in ``params`` (set with
    ``--set NAME=VALUE``); ``run`` fills ``ctx.report`` (``tempsched.evaluation``). ``needs_runs`` says how
    many run directories the command line must give; ``task``, the task whose runs it measures or trains
    (None: any), checked before it runs. Declared here, with the other parts, because the plugin manager
    checks what plugins register against it."""

    needs_runs: ClassVar[int] = 1
    title: ClassVar[str] = ""
    task: ClassVar[str | None] = None

    def run(self, ctx: EvalContext) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Preset:
    """A complete recipe, picked with ``--preset NAME``: which parts, how many members, tau settings.

    ``assign(n)`` gives the schedule name of each of the ``n`` members; ``tau_members(n, tau_min, tau_max)``,
    where given, their initial temperatures (``tau.members`` in the configuration overrides it).
    ``defaults`` overrides the defaults the parts declare (``NAME`` for every part of the preset that
    takes it, ``PART.NAME`` for one part; ``task_options.NAME`` for the task). ``tune`` adds or changes search ranges by
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
    tau_members: Callable[[int, float, float], list[float]] | None = None  # (n, tau_min, tau_max) -> initial taus


def log_spaced(n: int, low: float, high: float) -> list[float]:
    """``n`` temperatures log-evenly spaced over [low, high], both ends included (one member: their geometric
    mean): the start a preset gives a population that should search the whole range."""
    if n == 1:
        return [math.sqrt(low * high)]
    return [min(high, max(low, low * (high / low) ** (i / (n - 1)))) for i in range(n)]
