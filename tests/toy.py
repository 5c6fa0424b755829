"""A tiny non-VAE task that shows the engine is generic: noisy linear regression with a temperature.

The target is y = 3 x; the model is one weight. The temperature scales the input noise, and the
selection loss adds (tau - 2)^2, so members whose tau sits near 2 win selection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from tempsched import hookimpl
from tempsched.config import RunConfig
from tempsched.parts import Preset
from tempsched_plugins.paper_default import PARAMS as PAPER_PARAMS


class ToyTask:
    def __init__(self, config: RunConfig) -> None:
        self.device = torch.device("cpu")
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 1, generator=g)
        self.y = 3 * self.x
        self.seed = config.seed
        self.batch_size = config.data.batch_size

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

    def evaluate(self, model: nn.Module, tau: float) -> float:
        with torch.no_grad():
            return float(((model(self.x) - self.y) ** 2).mean()) + (tau - 2.0) ** 2

    def test_metrics(self, model: nn.Module, tau: float) -> dict[str, float]:
        return {"weight": float(model.weight.detach().squeeze())}

    def save_artifacts(self, model: nn.Module, tau: float, directory: Path) -> dict[str, str]:
        return {}


@hookimpl
def register_tasks(register: Any) -> None:
    register("toy", ToyTask)


@hookimpl
def register_presets(register: Any) -> None:
    register(Preset(
        name="toy-paper", description="paper strategies on the toy task", task="toy", members=5,
        assign=lambda n: ["fixed", "linear-up", "linear-down", "exp-up", "exp-down"][:n],
        feedback="patience", selection="min-loss", tau_initial=1.0, tau_min=0.5, tau_max=4.0,
        params=dict(PAPER_PARAMS),
    ))
