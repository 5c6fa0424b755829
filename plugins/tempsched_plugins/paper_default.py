"""``paper-default``: the five temperature strategies (Algorithm 2), patience feedback (Algorithm 3)
and best-loss selection of "A Parallel Gumbel-Softmax VAE Framework with Performance-Based Tuning"
(ECAI 2024), as a preset.

Defaults and their sources (see docs/paper-defaults.md for the reasoning):

* tau_initial 1.0, tau in [0.5, 300], feedback lr 0.01, patience 5, n = 8: the authors' code.
* Rates are constant per strategy by default, as in the authors' code. Algorithm 2 as printed
  multiplies each rate by (i - 1); with the authors' rates that multiplies member 4's tau by
  3.15 and member 8's by 7.35 every epoch, so it is an option (``index_scaled = true``), not
  the default.
* l_inc 0.1 (authors: 1.0, which doubles tau_initial in one epoch), l_dec 0.05 (authors: 0.01;
  0.05 walks tau from 1.0 to tau_min 0.5 in ten epochs), r_inc 1.05 (authors), r_dec 1.05
  (authors: 0.99, which under tau / r_dec made "exponential decrease" a 1% increase per epoch).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, MutableMapping, Sequence

from tempsched import EpochContext, FeedbackRule, Param, Preset, Range, Schedule, SelectionPolicy, UserError, hookimpl

INDEX_SCALED = Param(False, "multiply the rate by (i - 1) as Algorithm 2 prints it (member i)", "paper, Algorithm 2")


def paper_assignment(n: int) -> list[str]:
    """Algorithm 2's strategy for members 1..n: member 1 fixed, then by i mod 4."""
    by_mod = {2: "linear-up", 3: "linear-down", 0: "exp-up", 1: "exp-down"}
    return ["fixed"] + [by_mod[i % 4] for i in range(2, n + 1)]


class Fixed(Schedule):
    """Algorithm 2, member 1: tau stays where it is (feedback may still move it)."""

    name = "fixed"


class _Rated(Schedule):
    """A strategy with one rate; with ``index_scaled`` the rate is multiplied by (i - 1) for member i."""

    rate: ClassVar[str]

    def __init__(self, index_scaled: bool, **rate: float) -> None:
        self.index_scaled = index_scaled
        self.value = rate[self.rate]

    def scale(self, ctx: EpochContext) -> float:
        return float(ctx.member - 1) if self.index_scaled else 1.0


class LinearUp(_Rated):
    """Algorithm 2, i mod 4 = 2: tau + l_inc per epoch."""

    name, rate = "linear-up", "l_inc"
    params = {"l_inc": Param(0.1, "tau += l_inc per epoch", "chosen here; authors' code used 1.0", low=0.0),
              "index_scaled": INDEX_SCALED}

    def on_epoch(self, tau: float, ctx: EpochContext) -> float:
        return tau + self.scale(ctx) * self.value


class LinearDown(_Rated):
    """Algorithm 2, i mod 4 = 3: tau - l_dec per epoch."""

    name, rate = "linear-down", "l_dec"
    params = {"l_dec": Param(0.05, "tau -= l_dec per epoch", "chosen here; authors' code used 0.005-0.01", low=0.0),
              "index_scaled": INDEX_SCALED}

    def on_epoch(self, tau: float, ctx: EpochContext) -> float:
        return tau - self.scale(ctx) * self.value


class _Exponential(_Rated):
    """A multiplicative strategy: member 1 cannot follow it with ``index_scaled`` (its factor is 0)."""

    def factor(self, ctx: EpochContext) -> float:
        factor = self.scale(ctx) * self.value
        if factor <= 0:
            raise UserError(f"with index_scaled, member {ctx.member} cannot follow '{self.name}' (factor i - 1 = 0)")
        return factor


class ExpUp(_Exponential):
    """Algorithm 2, i mod 4 = 0: tau * r_inc per epoch."""

    name, rate = "exp-up", "r_inc"
    params = {"r_inc": Param(1.05, "tau *= r_inc per epoch", "authors' code", low=1e-12),
              "index_scaled": INDEX_SCALED}

    def on_epoch(self, tau: float, ctx: EpochContext) -> float:
        return tau * self.factor(ctx)


class ExpDown(_Exponential):
    """Algorithm 2, i mod 4 = 1: tau / r_dec per epoch."""

    name, rate = "exp-down", "r_dec"
    params = {"r_dec": Param(1.05, "tau /= r_dec per epoch", "chosen here; authors' 0.99 made it an increase",
                             low=1e-12),
              "index_scaled": INDEX_SCALED}

    def on_epoch(self, tau: float, ctx: EpochContext) -> float:
        return tau / self.factor(ctx)


class PatienceFeedback(FeedbackRule):
    """Algorithm 3: count the epochs a member trails the best; from ``patience`` on, add lr * gap.

    The counter resets as soon as the member is not behind (``loss <= best_loss``); it is not reset
    after feedback fires, so a member that stays behind gets feedback every epoch (as printed).
    """

    name = "patience"
    params = {
        "feedback_lr": Param(0.01, "delta tau = feedback_lr * (L_i - L_best)", "authors' code, paper", low=0.0,
                             tune=Range(1e-4, 1.0, log=True), cli="--feedback-lr"),
        "patience": Param(5, "epochs behind the best before feedback starts", "authors' code, paper", low=1,
                          tune=Range(1, 10), cli="--patience"),
    }

    def __init__(self, feedback_lr: float, patience: int) -> None:
        self.lr = feedback_lr
        self.patience = patience

    def delta(self, state: MutableMapping[str, Any], loss: float, best_loss: float) -> float:
        if loss > best_loss:
            state["patience"] = int(state.get("patience", 0)) + 1
            if state["patience"] >= self.patience:
                return self.lr * (loss - best_loss)
            return 0.0
        state["patience"] = 0
        return 0.0


class MinLoss(SelectionPolicy):
    """The member with the smallest loss; ties go to the lowest index."""

    name = "min-loss"

    def choose(self, losses: Sequence[float]) -> int:
        return min(range(len(losses)), key=lambda k: (losses[k], k))


STRATEGIES: Mapping[str, type[Schedule]] = {cls.name: cls for cls in (Fixed, LinearUp, LinearDown, ExpUp, ExpDown)}


@hookimpl
def tempsched_register_schedules(register: Any) -> None:
    for cls in STRATEGIES.values():
        register(cls)


@hookimpl
def tempsched_register_feedback_rules(register: Any) -> None:
    register(PatienceFeedback)


@hookimpl
def tempsched_register_selection_policies(register: Any) -> None:
    register(MinLoss)


# tau_min's range lies wholly below tau_max's, so every sample keeps tau_min < tau_max, and both bracket
# tau_initial = 1.0 so the start temperature is never clamped (docs/tuning.md explains the ranges).
PAPER_DEFAULT = Preset(
    name="paper-default",
    description="The paper's population: five tau strategies, patience feedback, best-loss selection.",
    task="gsvae", members=8, assign=paper_assignment, feedback="patience", selection="min-loss",
    tau_initial=1.0, tau_min=0.5, tau_max=300.0,
    tune={"tau.min": Range(0.05, 1.0, log=True), "tau.max": Range(2.0, 500.0, log=True)},
)


@hookimpl
def tempsched_register_presets(register: Any) -> None:
    register(PAPER_DEFAULT)
