"""The ``tempsched`` command line (typer + rich): ``app`` joins the commands, ``main`` is the entry point."""

from tempsched.cli.app import app, main

__all__ = ["app", "main"]
