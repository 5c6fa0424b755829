"""One exception type for every mistake a user can make, so the CLI can turn it into one line."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a config value, a CLI option, a plugin, a data path, a checkpoint.

    The CLI prints ``error: <message>`` and exits with status 2; no traceback, nothing overwritten.
    """


class PartError(UserError):
    """A part (schedule, feedback rule, selection policy, task) failed or returned something unusable.

    The engine raises it with the part; the run names the plugin that registered the part's class
    (the engine does not know plugins).
    """

    def __init__(self, part: object, method: str, reason: str) -> None:
        self.part = part
        self.method = method
        self.reason = reason
        super().__init__(f"{getattr(part, 'name', type(part).__name__)}.{method}: {reason}")


def describe_exception(exc: BaseException) -> str:
    """``Type: first line of the message``, short enough for a one-line error."""
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def flat_message(exc: BaseException, limit: int = 300) -> str:
    """All of ``exc``'s message on one line, shortened to ``limit`` characters: for messages whose first
    line says nothing, such as torch's ``load_state_dict``, which lists each mismatch on a line of its own."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else f"{text[:limit - 3]}..."
