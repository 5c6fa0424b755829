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

from typing import Any, Mapping, MutableMapping, Sequence

from tempsched import hookimpl
from tempsched.errors import UserError
from tempsched.parts import EpochContext, FeedbackRule, Param, Preset, Schedule, SelectionPolicy
from tempsched.space import Dim, SearchSpace

STRATEGIES = ("fixed", "linear-up", "linear-down", "exp-up", "exp-down")


def paper_assignment(n: int) -> list[str]:
    """Algorithm 2's strategy for members 1..n: member 1 fixed, then by i mod 4."""
    by_mod = {2: "linear-up", 3: "linear-down", 0: "exp-up", 1: "exp-down"}
    return ["fixed"] + [by_mod[i % 4] for i in range(2, n + 1)]


class PaperStrategy(Schedule):
    """One of Algorithm 2's five per-epoch rules for member i.

    With ``index_scaled`` the rate is multiplied by (i - 1) as Algorithm 2 prints it; without, the
    rate is used as given (the authors' code).
    """

    def __init__(self, name: str, member_index: int, params: Mapping[str, Any]) -> None:
        if params["r_inc"] <= 0 or params["r_dec"] <= 0:
            raise UserError("r_inc and r_dec must be positive")
        if name.startswith("exp-") and params["index_scaled"] and member_index < 2:
            raise UserError(f"with index_scaled, member {member_index} cannot follow '{name}' (factor i - 1 = 0)")
        self.name = name
        self.scale = float(member_index - 1) if params["index_scaled"] else 1.0
        self.params = params

    def on_epoch(self, tau: float, ctx: EpochContext) -> float:
        s, p = self.scale, self.params
        if self.name == "linear-up":
            return tau + s * p["l_inc"]
        if self.name == "linear-down":
            return tau - s * p["l_dec"]
        if self.name == "exp-up":
            return tau * (s * p["r_inc"])
        if self.name == "exp-down":
            return tau / (s * p["r_dec"])
        return tau  # fixed


class PatienceFeedback(FeedbackRule):
    """Algorithm 3: count the epochs a member trails the best; from ``patience`` on, add lr * gap.

    The counter resets as soon as the member is not behind (``loss <= best_loss``); it is not reset
    after feedback fires, so a member that stays behind gets feedback every epoch (as printed).
    """

    name = "patience"

    def __init__(self, lr: float, patience: int) -> None:
        if patience <= 0:
            raise UserError(f"patience must be a positive integer, got {patience}")
        if lr < 0:
            raise UserError(f"feedback_lr must be >= 0, got {lr}")
        self.lr = lr
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


PARAMS = {
    "l_inc": Param(0.1, "linear-up: tau += l_inc per epoch", "chosen here; authors' code used 1.0"),
    "l_dec": Param(0.05, "linear-down: tau -= l_dec per epoch", "chosen here; authors' code used 0.005-0.01"),
    "r_inc": Param(1.05, "exp-up: tau *= r_inc per epoch", "authors' code"),
    "r_dec": Param(1.05, "exp-down: tau /= r_dec per epoch", "chosen here; authors' 0.99 made it an increase"),
    "index_scaled": Param(False, "multiply each rate by (i - 1) as Algorithm 2 prints it", "paper, Algorithm 2"),
    "feedback_lr": Param(0.01, "Algorithm 3: delta tau = feedback_lr * (L_i - L_best)", "authors' code"),
    "patience": Param(5, "Algorithm 3: epochs behind the best before feedback starts", "authors' code, paper"),
}


@hookimpl
def register_schedules(register: Any) -> None:
    for strategy in STRATEGIES:
        register(strategy, lambda i, params, _s=strategy: PaperStrategy(_s, i, params))


@hookimpl
def register_feedback_rules(register: Any) -> None:
    register("patience", lambda params: PatienceFeedback(params["feedback_lr"], params["patience"]))


@hookimpl
def register_selection_policies(register: Any) -> None:
    register("min-loss", lambda params: MinLoss())


@hookimpl
def register_presets(register: Any) -> None:
    register(Preset(
        name="paper-default",
        description="The paper's population: five tau strategies, patience feedback, best-loss selection.",
        task="gsvae", members=8, assign=paper_assignment, feedback="patience", selection="min-loss",
        tau_initial=1.0, tau_min=0.5, tau_max=300.0, params=PARAMS,
    ))


# What ``tempsched tune`` searches for any preset that uses these parameters (docs/tuning.md explains
# the ranges). tau_min's range lies wholly below tau_max's, so every sample keeps tau_min < tau_max, and
# both bracket tau_initial = 1.0 so the start temperature is never clamped.
SEARCH_SPACE = (
    Dim("feedback_lr", "params.feedback_lr", 1e-4, 1.0, log=True, minimum=0.0,
        help="Algorithm 3's feedback step; the default 0.01 sits two decades above the bottom"),
    Dim("patience", "params.patience", 1, 10, integer=True, minimum=1,
        help="epochs behind the best before feedback; above the run's epochs feedback never fires"),
    Dim("tau_min", "tau.min", 0.05, 1.0, log=True, help="lower temperature bound (default 0.5)"),
    Dim("tau_max", "tau.max", 2.0, 500.0, log=True, help="upper temperature bound (default 300)"),
)


@hookimpl
def tempsched_search_space(preset: Preset, space: SearchSpace) -> None:
    if {"feedback_lr", "patience"} <= set(preset.params):
        for dim in SEARCH_SPACE:
            space.add(dim)
        space.require_below("tau_min", "tau_max")
