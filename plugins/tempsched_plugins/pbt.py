"""``pbt``: population-based training of the temperature (Jaderberg et al., 2017) inside one population.

Every ``interval`` epochs the members are ranked by selection loss (a member whose loss is not finite
ranks last; ties go to the lower index). Each of the bottom ceil(quantile * n) members, at most
floor(n / 2), copies a member of the top quantile drawn at random: its weights, its optimizer state
and its temperature (exploit). It then perturbs that temperature (explore): times 1.2 or 0.8, or,
with probability ``resample_probability``, a fresh draw log-uniform over [tau.min, tau.max]. The result
is clamped into the bounds, so tau never leaves them (Ray Tune's PBT perturbs past the search space's
bounds, ray#5035). The other members keep their own state. The draws come from the plan generator the
engine seeds from the run seed and saves in state.pt, so a resumed run draws what an uninterrupted one
would, on any number of processes.

The preset's members follow the ``fixed`` schedule with no feedback: the plan alone moves tau, so the
rows show what PBT found. They start log-spaced over the bounds (``tau.members`` overrides that).
Only tau is explored: the learning rate belongs to the task's optimizer, which a copy takes whole
(Adam's settings travel with its state), so a copied member trains at the task's learning rate as before.
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence

from tempsched import Action, Copy, Keep, Param, PopulationView, Preset, SelectionPolicy, hookimpl, log_spaced

PERTURB = (1.2, 0.8)  # Jaderberg et al.'s factors, as in Ray Tune's PBT


class PopulationBasedTraining(SelectionPolicy):
    """The bottom quantile copies a random member of the top quantile, tau included, and perturbs that tau."""

    name = "pbt"
    params = {
        "interval": Param(1, "epochs between exploit steps", "chosen here: an epoch is the engine's unit", low=1),
        "quantile": Param(0.25, "fraction of members that copy (bottom) and that are copied (top)",
                          "Jaderberg et al. 2017; Ray Tune's default", low=0.0, high=0.5),
        "resample_probability": Param(0.25, "chance that explore draws tau afresh instead of perturbing it",
                                      "Ray Tune's default", low=0.0, high=1.0),
    }

    def __init__(self, interval: int, quantile: float, resample_probability: float) -> None:
        self.interval = interval
        self.quantile = quantile
        self.resample = resample_probability

    def plan(self, view: PopulationView, rng: random.Random) -> Sequence[Action]:
        plan: list[Action] = [Keep() for _ in view.members]
        if (view.epoch + 1) % self.interval:
            return plan
        ranked = view.ranked()
        count = min(math.ceil(self.quantile * len(ranked)), len(ranked) // 2)
        top = [k for k in ranked[:count] if view.members[k].finite]
        for k in sorted(ranked[len(ranked) - count:]) if count else []:
            source = rng.choice(top)
            plan[k] = Copy(source, self.explore(view.members[source].tau_next, view, rng))
        return plan

    def explore(self, tau: float, view: PopulationView, rng: random.Random) -> float:
        """The copied ``tau`` perturbed, or resampled log-uniformly; always inside [tau_min, tau_max]."""
        if rng.random() < self.resample:
            tau = math.exp(rng.uniform(math.log(view.tau_min), math.log(view.tau_max)))
        else:
            tau *= rng.choice(PERTURB)
        return min(view.tau_max, max(view.tau_min, tau))


@hookimpl
def tempsched_register_selection_policies(register: Any) -> None:
    register(PopulationBasedTraining)


@hookimpl
def tempsched_register_presets(register: Any) -> None:
    register(Preset(
        name="pbt",
        description="Population-based training of tau: the worst quarter copies the best quarter and perturbs "
                    "its tau (fixed schedules, no feedback, members log-spaced over the bounds).",
        task="gsvae", members=8, assign=lambda n: ["fixed"] * n, feedback="none", selection="pbt",
        tau_initial=1.0, tau_min=0.1, tau_max=10.0, tau_members=log_spaced,
    ))
