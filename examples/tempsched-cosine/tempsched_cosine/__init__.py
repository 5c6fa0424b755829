"""A cosine temperature schedule from tau_max down to tau_min over the run's epochs, and a preset using it."""
import math

from tempsched import Preset, Schedule, hookimpl


class Cosine(Schedule):
    name = "cosine"

    def on_epoch(self, tau, ctx):
        done = (ctx.epoch + 1) / ctx.epochs
        return ctx.tau_min + 0.5 * (ctx.tau_max - ctx.tau_min) * (1 + math.cos(math.pi * done))


@hookimpl
def tempsched_register_schedules(register):
    register(Cosine)


@hookimpl
def tempsched_register_presets(register):
    register(Preset(name="cosine", description="Every member anneals tau on a cosine; paper feedback and selection.",
                    task="gsvae", members=4, assign=lambda n: ["cosine"] * n, feedback="patience",
                    selection="min-loss", tau_initial=5.0, tau_min=0.5, tau_max=5.0))
