"""The two checkpoints a run writes, each owning its layout and its checks.

``best.pt`` (``BestModel``): the weights of the best member so far and where they came from; evaluations
load it. ``state.pt`` (``PopulationState``): everything a resume needs, written after every epoch. Both
carry the run's identity (the configuration and its fingerprint, ``rundir.fingerprint``), so a file that
belongs to another run is refused before it is used. Reading one checks its kind, its fields and their
types, so a damaged or foreign file is one line, never a KeyError deep in a resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from tempsched import rundir as rd
from tempsched.errors import UserError


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """What ties a checkpoint to its run: the configuration (``RunConfig.to_dict()``) and its fingerprint."""
    return {"fingerprint": rd.fingerprint(config), "config": dict(config)}


@dataclass
class BestModel:
    """best.pt: a member's weights at the epoch its loss was the run's best, with its tau (its own).
    ``fingerprint``: that of the configuration it was trained with, as read (a new one gets its run's on save)."""

    epoch: int
    member: int
    strategy: str
    tau: float
    loss: float
    model: dict[str, torch.Tensor]
    fingerprint: str | None = None

    def save(self, path: Path, config: Mapping[str, Any]) -> None:
        rd.save_torch(path, {"format": rd.BEST_FORMAT, "epoch": self.epoch, "member": self.member,
                             "strategy": self.strategy, "tau": self.tau, "loss": self.loss, "model": self.model,
                             **identity(config)})

    @classmethod
    def load(cls, path: Path, config: Mapping[str, Any] | None = None, config_path: Path | None = None) -> BestModel:
        """best.pt at ``path``; with ``config``, refused unless it was trained with it (``config_path`` holds it)."""
        raw = rd.load_torch(path, rd.BEST_FORMAT)
        if config is not None:
            rd.check_fingerprint(path, raw, config, config_path or path.with_name(rd.CONFIG))
        missing = [key for key in ("epoch", "member", "strategy", "tau", "loss", "model") if key not in raw]
        if missing:
            raise UserError(f"{path} is damaged or incomplete (no {', '.join(missing)}): {rd.RUN_REMEDY}")
        return cls(int(raw["epoch"]), int(raw["member"]), str(raw["strategy"]), float(raw["tau"]),
                   float(raw["loss"]), raw["model"], raw.get("fingerprint"))

    def load_into(self, model: torch.nn.Module, path: Path) -> float:
        """Put these weights (read from ``path``) into ``model``; their tau. Another model's weights: one line."""
        rd.load_weights(model, self.model, path)
        return self.tau


@dataclass
class PopulationState:
    """state.pt: the population (``Population.state_dict``), the best loss so far and its epoch, and the
    training and wall seconds spent, so a resumed run's summary counts the whole run."""

    population: dict[str, Any]
    best_loss: float
    best_epoch: int
    train_seconds: float
    wall_seconds: float

    @property
    def epoch(self) -> int:
        return self.population["epoch"]

    @property
    def strategies(self) -> list[str]:
        return [m["strategy"] for m in self.population["members"]]

    def save(self, path: Path, config: Mapping[str, Any]) -> None:
        rd.save_torch(path, {"format": rd.STATE_FORMAT, "population": self.population, "best_loss": self.best_loss,
                             "best_epoch": self.best_epoch, "train_seconds": self.train_seconds,
                             "wall_seconds": self.wall_seconds, **identity(config)})

    @classmethod
    def load(cls, path: Path, config: Mapping[str, Any], config_path: Path) -> PopulationState:
        """state.pt at ``path``, refused unless it was trained with ``config`` and is whole."""
        raw = rd.load_torch(path, rd.STATE_FORMAT)
        rd.check_fingerprint(path, raw, config, config_path)
        try:
            state = cls(raw["population"], float(raw["best_loss"]), int(raw["best_epoch"]),
                        float(raw["train_seconds"]), float(raw["wall_seconds"]))
            epoch, _ = state.epoch, state.strategies
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path} is damaged or incomplete ({type(exc).__name__}: {exc}): start a new run") from None
        if type(epoch) is not int or epoch < 1:
            raise UserError(f"{path} is corrupt: it says {epoch!r} epochs are done; start a new run")
        return state
