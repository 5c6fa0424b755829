"""A tiny non-VAE task that shows the engine is generic: noisy linear regression with a temperature.

The target is y = 3 x; the model is one weight. The temperature scales the input noise, and the
selection loss adds (tau - 2)^2, so members whose tau sits near 2 win selection.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from tempsched import Param, Preset, Range, RunSpec, TaskEnv, hookimpl, log_spaced
from tempsched.plugins import PluginManager
from tempsched.space import SearchSpace
from tempsched.tune import TuneSettings


class ToyTask:
    name = "toy"
    params = {"batch_size": Param(128, "points per step", low=1)}

    def __init__(self, env: TaskEnv, batch_size: int) -> None:
        self.device = torch.device("cpu")
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 1, generator=g)
        self.y = 3 * self.x
        self.seed = env.seed
        self.batch_size = batch_size

    def batch_count(self) -> int:
        return -(-len(self.x) // self.batch_size)

    @property
    def train_examples(self) -> int:
        return len(self.x)

    def describe_data(self) -> str:
        return "toy regression, 64 points"

    def build_model(self) -> nn.Module:
        return nn.Linear(1, 1, bias=False)

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=0.05)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.seed + epoch))
        for i in range(0, len(perm), self.batch_size):
            idx = perm[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Any, tau: float,
                   generator: torch.Generator) -> float:
        x, y = batch
        noise = torch.randn(x.shape, generator=generator) * 0.01 * tau
        loss = ((model(x + noise) - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    @classmethod
    def selection_losses(cls, options: Any) -> tuple[str, ...]:
        return ("val",)

    def evaluate(self, model: nn.Module, tau: float, loss: str) -> float:
        with torch.no_grad():
            return float(((model(self.x) - self.y) ** 2).mean()) + (tau - 2.0) ** 2

    def test_metrics(self, model: nn.Module, tau: float) -> dict[str, float]:
        return {"weight": float(model.weight.detach().squeeze())}

    def save_artifacts(self, model: nn.Module, tau: float, directory: Path) -> dict[str, str]:
        return {}


@hookimpl
def tempsched_register_tasks(register: Any) -> None:
    register(ToyTask)


@hookimpl
def tempsched_register_presets(register: Any) -> None:
    register(Preset(
        name="toy-paper", description="paper strategies on the toy task", task="toy", members=5,
        assign=lambda n: ["fixed", "linear-up", "linear-down", "exp-up", "exp-down"][:n],
        feedback="patience", selection="min-loss", tau_initial=1.0, tau_min=0.5, tau_max=4.0,
        tune={"tau.min": Range(0.5, 3.5, log=True), "tau.max": Range(3.6, 8.0, log=True)},
    ))
    for policy in ("pbt", "halving"):  # the shipped plans on the toy task, whose best tau is 2
        register(Preset(
            name=f"toy-{policy}", description=f"{policy} on the toy task", task="toy", members=8,
            assign=lambda n: ["fixed"] * n, feedback="none", selection=policy, tau_initial=1.0, tau_min=0.5,
            tau_max=4.0, tau_members=log_spaced,
        ))


def toy_manager() -> PluginManager:
    """A plugin manager with the toy plugin; a module-level function, so tune's spawned workers can call it."""
    m = PluginManager()
    m.register(sys.modules[__name__], name="toy")
    return m


class _HangOnTrial:
    """Makes the run into a directory named ``hang_dir_name`` stop after its first epoch until killed."""

    def __init__(self, hang_dir_name: str, marker: Path) -> None:
        self.hang_dir_name = hang_dir_name
        self.marker = marker
        self.current = ""

    @hookimpl
    def tempsched_epoch_end(self, record: Any) -> None:
        if self.current == self.hang_dir_name:
            self.marker.write_text(str(os.getpid()))
            time.sleep(600)

    @hookimpl
    def tempsched_run_start(self, info: Any) -> None:
        self.current = Path(info.run_dir).name


def hanging_manager() -> PluginManager:
    """The toy manager plus a plugin that hangs trial ``TOY_HANG_TRIAL`` (for the kill -9 test)."""
    m = toy_manager()
    m.register(_HangOnTrial(os.environ["TOY_HANG_TRIAL"], Path(os.environ["TOY_HANG_MARKER"])), name="hang")
    return m


def toy_settings(study_dir: Path, trials: int, **changes: Any) -> TuneSettings:
    """A tune study of the toy-paper preset (4 epochs, milliseconds a trial).

    The ranges let tau sit anywhere from 0.5 to 8, so a trial with tau far from 2 is clearly bad (the
    toy's loss adds (tau - 2)^2); ``changes`` sets other TuneSettings fields.
    """
    manager = changes.get("manager_factory", toy_manager)()
    spec = RunSpec({"plugin": "toy-paper", "epochs": 4, "seed": 0})
    base = spec.resolve(manager.registry)
    space = manager.search_space(manager.registry.presets["toy-paper"], SearchSpace.for_run(base, manager.registry))
    settings = TuneSettings(spec=spec, space=space, trials=trials, study_dir=study_dir, study_name="toy",
                            manager_factory=toy_manager)
    for key, value in changes.items():
        setattr(settings, key, value)
    return settings
