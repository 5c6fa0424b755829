"""The command line's view of the configuration: which option sets which dotted key, and how
``--param NAME=VALUE`` / ``--option NAME=VALUE`` values are read.

Each of ``run``'s own options (``--members``, ``--tau-min``, ...) maps to one dotted configuration key
(README: every setting has one dotted key). The shortcuts for a part's parameter or a task's option (``--patience``,
``--dataset``) are declared by the plugins and collected by ``shortcuts``.
"""

from __future__ import annotations

import copy
import datetime as dt
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping

from tempsched.errors import UserError

# run's option name -> dotted configuration key (``--preset`` sets ``plugin``, the key config.toml keeps)
SHORTCUTS: dict[str, str] = {
    "preset": "plugin", "members": "members", "epochs": "epochs", "seed": "seed", "select_on": "select_on",
    "device": "device",
    "tau_initial": "tau.initial", "tau_min": "tau.min", "tau_max": "tau.max",
    "backend": "performance.backend", "precision": "performance.precision",
    "channels_last": "performance.channels_last", "threads": "performance.threads",
}
DATA, POPULATION = "Data", "Population"  # run --help's panels that plugins' shortcut options join

RUN_OPTIONS_NOT_TAKEN = ("out", "resume", "procs", "peer_timeout")  # a study or report runs in one process
RUN_OPTIONS = "tempsched.run-options"  # where the adopted options' values wait in the click context

# Settings a resumed run may change: they do not change what the run computes (beyond a stated tolerance).
RESUMABLE = ("epochs", "device", "backend", "threads")


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


def overrides(given: Mapping[str, Any], params: Iterable[str] = (), options: Iterable[str] = (),
              declared: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The dotted configuration keys the user set: run's options (not None), the plugins' shortcut options
    (``declared``, by dotted key), then --param and --option."""
    out: dict[str, Any] = {SHORTCUTS[name]: value for name, value in given.items()
                           if value is not None and name in SHORTCUTS}
    out.update(declared or {})
    out.update(assignments(params, "--param", "params"))
    out.update(assignments(options, "--option", "task_options"))
    return out


def _keep_run_option(ctx: Any, param: Any, value: Any) -> Any:
    ctx.meta.setdefault(RUN_OPTIONS, {})[param.name] = value
    return value


def adopt_run_options(root: Any, commands: tuple[str, ...] = ("tune", "eval")) -> None:
    """Give the ``tune`` and ``eval`` commands of the built click app every option of ``run`` (but --out,
    --resume).

    Each is a copy of run's own parsed option, so help, types and panels are the same; its value goes to
    the context instead of a function argument.
    """
    run_command = root.commands["run"]
    for name in commands:
        for param in run_command.params:
            if param.name in RUN_OPTIONS_NOT_TAKEN:
                continue
            adopted = copy.copy(param)
            adopted.expose_value = False
            adopted.callback = _keep_run_option
            root.commands[name].params.append(adopted)


def run_values(ctx: Any) -> dict[str, Any]:
    """The adopted run options a command received (``adopt_run_options``), by name."""
    return dict(ctx.meta.get(RUN_OPTIONS, {}))


def fresh_path(folder: str, name: str) -> Path:
    """``folder/name-<time>``, with a counter when that exists already (the default --out of run and eval)."""
    base = Path(folder) / f"{name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = Path(f"{base}-{k}")
    return path
