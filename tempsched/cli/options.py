"""The command line's view of the configuration: which option sets which dotted key, and how
``--param NAME=VALUE`` / ``--option NAME=VALUE`` values are read.

The shortcut options (``--patience``, ``--dataset``, ...) are documented conveniences; each maps to one
dotted configuration key (``docs/configuration.md``), and the preset's parts and task decide whether
that key exists for the run.
"""

from __future__ import annotations

import tomllib
from typing import Any, Iterable, Mapping

from tempsched.errors import UserError

# option name -> dotted configuration key
SHORTCUTS: dict[str, str] = {
    "plugin": "plugin", "members": "members", "epochs": "epochs", "seed": "seed", "select_on": "select_on",
    "device": "device",
    "tau_initial": "tau.initial", "tau_min": "tau.min", "tau_max": "tau.max",
    "patience": "params.patience", "feedback_lr": "params.feedback_lr",
    "dataset": "task_options.dataset", "data_dir": "task_options.data_dir",
    "batch_size": "task_options.batch_size", "exclude_classes": "task_options.exclude_classes",
    "train_size": "task_options.train_size", "val_size": "task_options.val_size",
    "test_size": "task_options.test_size", "learning_rate": "task_options.learning_rate",
    "backend": "performance.backend", "precision": "performance.precision",
    "channels_last": "performance.channels_last", "threads": "performance.threads",
}

# Settings a resumed run may change: they do not change what the run computes (beyond a stated tolerance).
RESUMABLE = ("epochs", "device", "backend", "threads")


def parse_classes(text: str) -> list[int]:
    """``--exclude-classes 2,3`` as a list of class numbers."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--exclude-classes takes comma-separated class numbers, got '{text}'") from None


def parse_value(text: str) -> Any:
    """A value written on the command line, read as TOML (``5``, ``0.1``, ``true``, ``[8, 4]``, ``"x"``);
    anything that is not a TOML value is taken as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def assignments(texts: Iterable[str], option: str, prefix: str) -> dict[str, Any]:
    """``NAME=VALUE`` pairs of a repeatable option as dotted keys under ``prefix``."""
    out: dict[str, Any] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise UserError(f"{option} takes NAME=VALUE, got '{text}'")
        out[f"{prefix}.{name.strip()}"] = parse_value(value.strip())
    return out


def overrides(given: Mapping[str, Any], params: Iterable[str] = (), options: Iterable[str] = ()) -> dict[str, Any]:
    """The dotted configuration keys the user set: shortcut options (not None), then --param and --option."""
    out: dict[str, Any] = {}
    for name, value in given.items():
        if value is None or name not in SHORTCUTS:
            continue
        out[SHORTCUTS[name]] = parse_classes(value) if name == "exclude_classes" else value
    out.update(assignments(params, "--param", "params"))
    out.update(assignments(options, "--option", "task_options"))
    return out
