"""``halving``: successive halving (Jamieson and Talwalkar, 2016) of one population's temperatures.

With n members and E epochs there are r = ceil(log2 n) rungs, after ceil(E / 2^r), ..., ceil(E / 4),
ceil(E / 2) epochs; at each rung the worse half of the members still training retires (a member whose
loss is not finite ranks last; ties go to the lower index), until one is left. A retired member costs
nothing afterwards, so with n = 8 the run trains 8 E/8 + 4 E/8 + 2 E/4 + E/2 = 2.5 E member-epochs
instead of 8 E (the summary's ``member_epochs``). Spread over processes, retiring saves compute but not
wall time: the process whose members all retired waits for the others at the end of each epoch.

Members never copy each other here: successive halving compares configurations trained on their own, and
a member that took the best's weights each epoch would be judged on weights its own temperature did
not train (that is Algorithm 1's rule, ``paper-default``). The rung epochs depend on E, so a resume with
more epochs moves the rungs that are still ahead.
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence

from tempsched import Action, Keep, PopulationView, Preset, Retire, SelectionPolicy, hookimpl, log_spaced


def rungs(members: int, epochs: int) -> list[int]:
    """The epochs done at each rung, in order (equal ones repeat: several halvings in one epoch)."""
    count = math.ceil(math.log2(members)) if members > 1 else 0
    return [math.ceil(epochs / 2**j) for j in range(count, 0, -1)]


class SuccessiveHalving(SelectionPolicy):
    """At each rung the worse half of the members still training retires; nobody copies."""

    name = "halving"

    def plan(self, view: PopulationView, rng: random.Random) -> Sequence[Action]:
        ranked = view.ranked()
        keep = len(ranked)
        for _ in range(rungs(len(view.members), view.epochs).count(view.epoch + 1)):
            keep = math.ceil(keep / 2)
        retire = set(ranked[keep:])
        return [Retire() if k in retire else Keep() for k in range(len(view.members))]


@hookimpl
def tempsched_register_selection_policies(register: Any) -> None:
    register(SuccessiveHalving)


@hookimpl
def tempsched_register_presets(register: Any) -> None:
    register(Preset(
        name="halving",
        description="Successive halving of tau: the worse half retires at geometric rungs until one member is "
                    "left (about 2.5 models' compute at n = 8; fixed schedules, members log-spaced over the bounds).",
        task="gsvae", members=8, assign=lambda n: ["fixed"] * n, feedback="none", selection="halving",
        tau_initial=1.0, tau_min=0.1, tau_max=10.0, tau_members=log_spaced,
    ))
