"""Shared fixtures: a plugin manager with the toy task, tiny GS-VAE configurations, a CLI runner."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Tests see only the shipped plugins unless one asks for more (installed packages stay out of the way).
os.environ.setdefault("TEMPSCHED_PLUGINS", "")

import toy  # noqa: E402

from tempsched.config import RunConfig, layer  # noqa: E402
from tempsched.plugins import PluginManager  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture
def manager() -> PluginManager:
    m = PluginManager()
    m.register(toy, name="toy")
    return m


def tiny_gsvae(manager: PluginManager, **overrides: object) -> RunConfig:
    """A GS-VAE run that takes seconds: 256 sample images, 3 members, 2 epochs."""
    base = {"plugin": "paper-default", "members": 3, "epochs": 2,
            "task_options": {"dataset": "sample", "train_size": 320, "val_size": 64, "test_size": 64, "batch_size": 64,
                             "z1": [8, 4], "z2": [4, 4], "channels": [8, 16]}}
    for key, value in overrides.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return layer(manager.registry, base)
