"""A complete tempsched plugin in one file: one schedule, one preset, registered through hooks."""

from __future__ import annotations

import math
from typing import Any

from tempsched import EpochContext, Param, Preset, Schedule, hookimpl


class CyclicSchedule(Schedule):
    """Cosine cycle between tau_min and cycle_high; member i starts (i - 1) / cycle_members of a period later."""

    name = "cyclic"
    params = {
        "cycle_epochs": Param(4, "period of the cycle in epochs", low=1),
        "cycle_high": Param(2.0, "top of the cycle (capped by tau_max)"),
        "cycle_members": Param(4, "phases are spread over this many members", low=1),
    }

    def __init__(self, cycle_epochs: int, cycle_high: float, cycle_members: int) -> None:
        self.period, self.high, self.spread = cycle_epochs, cycle_high, cycle_members

    def on_epoch(self, tau: float, ctx: EpochContext) -> float:
        low, high = ctx.tau_min, min(ctx.tau_max, self.high)
        t = (ctx.epoch + 1) / self.period + (ctx.member - 1) / self.spread
        return low + 0.5 * (high - low) * (1 - math.cos(2 * math.pi * t))


@hookimpl
def tempsched_register_schedules(register: Any) -> None:
    register(CyclicSchedule)


@hookimpl
def tempsched_register_presets(register: Any) -> None:
    register(Preset(
        name="cyclic",
        description="Every member cycles tau on a cosine, phases spread; paper feedback and selection.",
        task="gsvae", members=4, assign=lambda n: ["cyclic"] * n, feedback="patience", selection="min-loss",
        tau_initial=1.0, tau_min=0.5, tau_max=5.0,
    ))
