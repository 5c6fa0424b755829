"""The models a robustness experiment puts side by side: the population's best and a standard GS-VAE.

Fig. 9 and Tables 2-3 compare the population's best model with a standard GS-VAE trained on the same data.
An evaluation gets them as run directories (``tempsched eval anomaly POP_RUN STD_RUN``); given only the
population, it trains the standard GS-VAE itself through the evaluation's run cache (``ctx.train``): the
``baseline`` preset with the population's task options, seed and epochs, i.e. the same run as ``recon``'s
same-epoch baseline, so neither is trained twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tempsched import LoadedRun, RunConfig, RunSpec
from tempsched.errors import UserError
from tempsched.evaluation import EvalContext

# Options that decide which images a run's task holds: runs compared on one image set must agree on them.
DATA_OPTIONS = ("dataset", "data_dir", "train_size", "val_size", "test_size")


@dataclass
class Compared:
    """One model of the comparison, with the label the report gives it."""

    label: str
    loaded: LoadedRun


def baseline_spec(population: RunConfig, preset: str, base: RunConfig, **more: Any) -> RunSpec:
    """``preset`` on the population's task options, seed and epochs; device and speed from ``base``; ``more``:
    other top-level keys (``epochs``, ``members``, ``tau``) for the baselines that change them."""
    return RunSpec({
        "plugin": preset, "epochs": population.epochs, "seed": population.seed, "select_on": population.select_on,
        "device": base.device, "performance": dataclasses.asdict(base.performance),
        "task_options": dict(population.task_options), **more})


def _label(config: RunConfig, run_dir: Path, taken: set[str]) -> str:
    label = f"{config.plugin} (n={config.members})"
    return f"{label}, {run_dir.name}" if label in taken else label


def compared_models(ctx: EvalContext, baseline: str) -> list[Compared]:
    """Every run given, plus the trained ``baseline`` (a preset name; empty: none) when only one is given.

    All of them must be runs on the same images, or their scores could not be compared.
    """
    runs = [Path(r) for r in ctx.need_runs()]
    configs = [ctx.run_config(r) for r in runs]
    for run_dir, config in zip(runs, configs):
        differ = [k for k in DATA_OPTIONS if config.task_options.get(k) != configs[0].task_options.get(k)]
        if differ:
            raise UserError(f"{run_dir} was trained on other images than {runs[0]} (task options differ: "
                            f"{', '.join(differ)}); compare runs of one data set")
    if len(runs) == 1 and baseline:
        spec = baseline_spec(configs[0], baseline, ctx.base)
        configs.append(ctx.resolve(spec))
        runs.append(ctx.train(spec))
    out: list[Compared] = []
    for run_dir, config in zip(runs, configs):
        # a run with the first one's task options can share its task, and so its images in memory
        task = out[0].loaded.task if out and config.task_options == configs[0].task_options else None
        loaded = ctx.load_run(run_dir, task)
        out.append(Compared(_label(config, run_dir, {c.label for c in out}), loaded))
    return out
