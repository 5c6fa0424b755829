"""The interface between the engine and what it trains.

The engine never imports a model: it asks a ``Task`` to build one per member, to give the epoch's
batches (once, shared by every member), to take one training step at a member's temperature and to
evaluate a member's selection loss. The GS-VAE in ``tempsched.gsvae`` is one task; the tests drive
the engine with a toy regression task to keep it honest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Protocol, Sequence

import torch
from torch import nn

from tempsched.parts import Param


@dataclass(frozen=True)
class TaskEnv:
    """What a task gets from the run besides its own options: where to run, the seed and speed settings."""

    device: str  # 'cpu', 'cuda' or 'auto'
    seed: int
    backend: str
    precision: str  # 'fp32' or 'bf16'
    channels_last: bool


class Task(Protocol):
    """What a population trains. Implementations must be deterministic given the generators passed.

    A task class declares its options in ``params`` (like a part) and is built as ``cls(env, **options)``.
    """

    name: ClassVar[str]
    params: ClassVar[Mapping[str, Param]]
    device: torch.device  # where the members' models and noise generators live

    def describe_data(self) -> str:
        """The data in words, shown to the user (e.g. "MNIST (full): 55000 train / 5000 val")."""
        ...

    def build_model(self) -> nn.Module:
        """A freshly initialised model; the engine seeds torch's global RNG before each call."""
        ...

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The member's own optimizer; its state is copied with the weights."""
        ...

    def batches(self, epoch: int) -> Iterable[Any]:
        """The training batches of ``epoch``, in an order that depends only on the seed and epoch."""
        ...

    def batch_count(self) -> int:
        """How many batches ``batches`` yields per epoch (for progress and ETA)."""
        ...

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Any, tau: float,
                   generator: torch.Generator) -> float:
        """One optimisation step at temperature ``tau``; returns the batch loss."""
        ...

    @classmethod
    def selection_losses(cls, options: Mapping[str, Any]) -> Sequence[str]:
        """The held-out losses ``evaluate`` computes for a task built with ``options``, its default first.

        ``--select-on`` takes one of these or ``train`` (the mean training loss, which needs no task call).
        """
        ...

    def evaluate(self, model: nn.Module, tau: float, loss: str) -> float:
        """The held-out loss ``loss`` (one of ``selection_losses``), with fixed noise so members compare fairly."""
        ...

    def test_metrics(self, model: nn.Module, tau: float) -> dict[str, float]:
        """Final figures on the test set (for the summary)."""
        ...

    def save_artifacts(self, model: nn.Module, tau: float, directory: Path) -> dict[str, str]:
        """Write pictures or other outputs of the final model; returns {label: file name}."""
        ...

    @property
    def train_examples(self) -> int:
        """Examples in one training epoch (for throughput figures)."""
        ...
