"""The ``tempsched`` command: the typer app that joins the commands, and ``main``, which turns every user
mistake (ours or the option parser's) into one line ``error: ...`` and exit status 2 (``exits``)."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from tempsched import __version__
from tempsched.cli import eval_cmd, options, plugins_cmd, run, tune
from tempsched.cli.exits import one_line_errors
from tempsched.cli.shortcuts import ShortcutCommand

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train a population of Gumbel-Softmax VAEs that tune their softmax temperature while they learn.",
)
app.command(cls=ShortcutCommand)(run.run)
app.command(name="plugins")(plugins_cmd.plugins)
app.add_typer(tune.tune_app, name="tune")
app.command(name="eval", cls=eval_cmd.EvalCommand)(eval_cmd.evaluate)


def _show_version(value: bool) -> None:
    if value:
        print(f"tempsched {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Optional[bool] = typer.Option(None, "--version", is_eager=True, callback=_show_version,
                                                 help="Print the version and exit.")) -> None:
    """Train a population of Gumbel-Softmax VAEs that tune their softmax temperature while they learn."""


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: run the app; a user error or a bad option is one line and exit status 2."""
    command = typer.main.get_command(app)
    options.adopt_run_options(command)
    with one_line_errors():
        code = command.main(args=argv, prog_name="tempsched", standalone_mode=False)
    sys.exit(code if isinstance(code, int) else 0)
