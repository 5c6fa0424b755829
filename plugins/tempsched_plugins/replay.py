"""``replay``: play the temperature policy a population discovered on a single model.

Every run records in ``policy.json`` the temperature each epoch's best member trained at. A single model
that trains epoch e at that temperature follows the best member's lineage without the population: if it
reaches the population's error at 1/n of the compute, the schedule is what mattered; if not, the gain
came from selection. The policy is per epoch: a source whose schedule moves tau within an epoch
(``standard-annealing``) is replayed at each epoch's starting temperature.

The replaying run must start at the policy's first temperature and keep the source's bounds, or the
engine's clamping would change the sequence; ``tempsched.trajectories.replay_spec`` builds such a run, and a run
that would not replay the policy exactly is refused before its first epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tempsched import EpochContext, Param, Preset, RunInfo, Schedule, UserError, hookimpl
from tempsched.trajectories import read_policy


class Replay(Schedule):
    """Epoch e + 1 trains at the policy's temperature for epoch e + 1 (epoch 0 at ``tau.initial``)."""

    name = "replay"
    params = {"policy": Param("", "run directory (or its policy.json) whose best-member temperatures to play")}

    def __init__(self, policy: str) -> None:
        if not policy:
            raise UserError("schedule 'replay' needs a policy: --param policy=RUN_DIR (a run directory or policy.json)")
        self.taus = [float(entry["tau"]) for entry in read_policy(Path(policy))]

    def on_epoch(self, tau: float, ctx: EpochContext) -> float:
        return self.taus[min(ctx.epoch + 1, len(self.taus) - 1)]

    def check(self, epochs: int, tau_initial: float, tau_min: float, tau_max: float) -> None:
        """Refuse a run that would not play the policy exactly (too long, another start, tighter bounds)."""
        if epochs > len(self.taus):
            raise UserError(f"the replayed policy covers {len(self.taus)} epochs, not {epochs}: use --epochs "
                            f"{len(self.taus)} or fewer")
        if tau_initial != self.taus[0]:
            raise UserError(f"the replayed policy starts at tau {self.taus[0]!r}, but tau.initial is {tau_initial!r}: "
                            f"set --tau-initial {self.taus[0]!r}")
        outside = [t for t in self.taus[:epochs] if not tau_min <= t <= tau_max]
        if outside:
            raise UserError(f"the replayed policy reaches tau {outside[0]:g}, outside [{tau_min:g}, {tau_max:g}]: "
                            "use the source run's bounds (--tau-min, --tau-max)")


@hookimpl
def tempsched_register_schedules(register: Any) -> None:
    register(Replay)


@hookimpl
def tempsched_register_presets(register: Any) -> None:
    register(Preset(
        name="replay",
        description="One model that plays a recorded policy (--param policy=RUN_DIR); no feedback.",
        task="gsvae", members=1, assign=lambda n: ["replay"] * n, feedback="none", selection="min-loss",
        tau_initial=1.0, tau_min=0.5, tau_max=300.0,
    ))


@hookimpl
def tempsched_run_start(info: RunInfo) -> None:
    """Check, before the first epoch, that a run with replay schedules can play its policy exactly."""
    if "replay" not in info.strategies:
        return
    tau = info.config["tau"]
    Replay(info.config["params"]["replay"]["policy"]).check(info.epochs, tau["initial"], tau["min"], tau["max"])
