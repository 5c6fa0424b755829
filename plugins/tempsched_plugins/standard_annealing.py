"""``standard-annealing``: the baseline of the paper, one GS-VAE with the annealing of Jang et al.

tau = max(tau_min, tau0 * exp(-rate * step)), recomputed every ``anneal_every`` training steps;
defaults tau0 = 1, tau_min = 0.5, rate = 3e-5, every 1000 steps (Jang, Gu and Poole, 2017). No
feedback, no selection beyond the single member.
"""

from __future__ import annotations

import math
from typing import Any, MutableMapping

from tempsched import FeedbackRule, Param, Preset, Schedule, StepContext, hookimpl


class JangAnnealing(Schedule):
    """Per-step exponential decay from tau_initial towards tau_min (the engine clamps)."""

    name = "jang-anneal"
    per_step = True
    params = {
        "anneal_rate": Param(3e-5, "r in tau_initial * exp(-r * step)", "Jang et al. 2017", low=0.0),
        "anneal_every": Param(1000, "recompute tau every N training steps", "Jang et al. 2017", low=1),
    }

    def __init__(self, anneal_rate: float, anneal_every: int) -> None:
        self.rate = anneal_rate
        self.every = anneal_every

    def on_step(self, tau: float, ctx: StepContext) -> float:
        if ctx.step % self.every == 0:
            return ctx.tau_initial * math.exp(-self.rate * ctx.step)
        return tau


class NoFeedback(FeedbackRule):
    """Temperatures follow their schedules only."""

    name = "none"

    def delta(self, state: MutableMapping[str, Any], loss: float, best_loss: float) -> float:
        return 0.0


@hookimpl
def tempsched_register_schedules(register: Any) -> None:
    register(JangAnnealing)


@hookimpl
def tempsched_register_feedback_rules(register: Any) -> None:
    register(NoFeedback)


@hookimpl
def tempsched_register_presets(register: Any) -> None:
    register(Preset(
        name="standard-annealing",
        description="Baseline: one GS-VAE, tau annealed as in Jang et al. (2017); no feedback.",
        task="gsvae", members=1, assign=lambda n: ["jang-anneal"] * n, feedback="none", selection="min-loss",
        tau_initial=1.0, tau_min=0.5, tau_max=1.0,
    ))
