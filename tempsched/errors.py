"""One exception type for every mistake a user can make, so the CLI can turn it into one line."""


class UserError(Exception):
    """Bad input from the user: a config value, a CLI option, a plugin, a data path, a checkpoint.

    The CLI prints ``error: <message>`` and exits with status 2; no traceback, nothing overwritten.
    """
