"""The ``tempsched`` command: the typer app that joins the commands, and ``main``, which turns every user
mistake (ours or the option parser's) into one line ``error: ...`` and exit status 2."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console

from tempsched import __version__
from tempsched.cli import eval_cmd, options, plugins_cmd, run, tune
from tempsched.errors import UserError, describe_exception

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train a population of Gumbel-Softmax VAEs that tune their softmax temperature while they learn.",
)
app.command()(run.run)
app.command(name="plugins")(plugins_cmd.plugins)
app.add_typer(tune.tune_app, name="tune")
app.command(name="eval")(eval_cmd.evaluate)


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
    err = Console(stderr=True)
    command = typer.main.get_command(app)
    options.adopt_run_options(command)
    try:
        code = command.main(args=argv, prog_name="tempsched", standalone_mode=False)
    except UserError as exc:
        # One line whatever the message holds: a plugin's or a library's message quoted in it may have several.
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        err.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except typer.TyperException as exc:  # the option parser's own errors: unknown option, 'abc' for a number
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err.print(f"error: {' '.join(message.split())}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 2) or 2)
    except typer.Abort:
        err.print("interrupted")
        sys.exit(130)
    except OSError as exc:  # the machine said no: a full disk, a path that is a file, no permission
        where = f" ({exc.filename})" if exc.filename else ""
        err.print(f"error: {exc.strerror or describe_exception(exc)}{where}", highlight=False, markup=False,
                  soft_wrap=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
