"""How a ``tempsched`` process ends: every user mistake (ours or the option parser's) as one line
``error: ...`` and exit status 2, Ctrl+C as ``interrupted`` and 130.

Shared by the console entry point (``app.main``) and the processes a ``--procs`` run starts
(``run.train_rank``), which report their errors the same way without going through the command parser.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import typer
from rich.console import Console

from tempsched.errors import UserError, describe_exception


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn what a user can cause into one line on stderr and the project's exit status."""
    err = Console(stderr=True)
    try:
        yield
    except UserError as exc:
        # One line whatever the message holds: a plugin's or a library's message quoted in it may have several.
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        err.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:  # raised on purpose with its status (a run stopped by Ctrl+C: 130)
        sys.exit(exc.exit_code)
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
