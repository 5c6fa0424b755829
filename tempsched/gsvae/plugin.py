"""Registers the GS-VAE task (a shipped plugin like any other)."""

from __future__ import annotations

from typing import Any

from tempsched.hookspecs import hookimpl


@hookimpl
def tempsched_register_tasks(register: Any) -> None:
    from tempsched.gsvae.task import GSVAETask

    register(GSVAETask)
