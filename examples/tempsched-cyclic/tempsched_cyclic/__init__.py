"""A complete tempsched plugin in one file: one schedule, one preset, registered through hooks."""

from __future__ import annotations

import math
from typing import Any, Mapping

from tempsched import hookimpl
from tempsched.parts import EpochContext, Param, Preset, Schedule


class CyclicSchedule(Schedule):
    """Cosine cycle between the tau bounds; member i starts (i - 1) / n of a period later."""

    name = "cyclic"

    def __init__(self, member_index: int, params: Mapping[str, Any]) -> None:
        self.low, self.high = params["tau_min"], min(params["tau_max"], params["cycle_high"])
        self.period = params["cycle_epochs"]
        self.phase = (member_index - 1) / max(params["cycle_members"], 1)

    def on_epoch(self, tau: float, ctx: EpochContext) -> float:
        t = (ctx.epoch + 1) / self.period + self.phase
        return self.low + 0.5 * (self.high - self.low) * (1 - math.cos(2 * math.pi * t))


@hookimpl
def register_schedules(register: Any) -> None:
    register("cyclic", CyclicSchedule)


@hookimpl
def register_presets(register: Any) -> None:
    register(Preset(
        name="cyclic",
        description="Every member cycles tau on a cosine, phases spread; paper feedback and selection.",
        task="gsvae", members=4, assign=lambda n: ["cyclic"] * n, feedback="patience", selection="min-loss",
        tau_initial=1.0, tau_min=0.5, tau_max=5.0,
        params={
            "cycle_epochs": Param(4, "period of the cycle in epochs"),
            "cycle_high": Param(2.0, "top of the cycle (capped by tau_max)"),
            "cycle_members": Param(4, "phases are spread over this many members"),
            "feedback_lr": Param(0.01, "patience feedback step (paper's Algorithm 3)"),
            "patience": Param(5, "patience threshold (paper's Algorithm 3)"),
        },
    ))
