"""Registers the GS-VAE task under the name ``gsvae`` (a shipped plugin like any other)."""

from __future__ import annotations

from typing import Any

from tempsched.hookspecs import hookimpl


@hookimpl
def register_tasks(register: Any) -> None:
    from tempsched.gsvae.task import GSVAETask

    register("gsvae", GSVAETask)
