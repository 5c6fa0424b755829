"""Registers the GS-VAE task, the paper's experiments on it and the ReinMax benchmark's presets (a shipped
plugin like any other)."""

from __future__ import annotations

from typing import Any

from tempsched.gsvae.experiments.anomaly import Anomaly
from tempsched.gsvae.experiments.attacks import Attacks
from tempsched.gsvae.experiments.latents import Latents
from tempsched.gsvae.experiments.recon import Recon
from tempsched.gsvae.experiments.sweeps import NSweep, TauSweep
from tempsched.gsvae.experiments.unseen import Unseen
from tempsched.gsvae.presets import PRESETS
from tempsched.gsvae.task import GSVAETask
from tempsched.hookspecs import hookimpl


@hookimpl
def tempsched_register_tasks(register: Any) -> None:
    register(GSVAETask)


@hookimpl
def tempsched_register_evaluations(register: Any) -> None:
    register(Recon)
    register(NSweep)
    register(TauSweep)
    register(Latents)
    register(Unseen)
    register(Anomaly)
    register(Attacks)


@hookimpl
def tempsched_register_presets(register: Any) -> None:
    for preset in PRESETS:
        register(preset)
