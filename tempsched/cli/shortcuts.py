"""The shortcut options plugins declare: ``Param(..., cli="--patience")`` on a part's parameter or a task's
option gives ``tempsched run`` (and ``tune`` and ``eval``, which take run's options) ``--patience N``, the
same as ``--param patience=N`` (``--option NAME=VALUE`` for a task's).

The core command line names no plugin's parameter: the options are collected from the registry when a
command that takes them parses its arguments (``TakesShortcuts``), so ``tempsched --help`` loads no plugin
and a broken one cannot break it. One flag declared by two plugins, or a flag the command has already,
is one line naming them.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from tempsched.cli import options as opt
from tempsched.errors import UserError
from tempsched.parts import Param
from tempsched.plugins import PluginManager, Registry

SHORTCUT_VALUES = "tempsched.shortcuts"  # where the given shortcuts' values wait in the click context
FLAG = re.compile(r"--[a-z][a-z0-9]*(-[a-z0-9]+)*")
# kind of registered class -> the table of dotted keys its parameters live in, and its panel
KINDS = {"schedules": ("params", opt.POPULATION), "feedback_rules": ("params", opt.POPULATION),
         "selection_policies": ("params", opt.POPULATION), "tasks": ("task_options", opt.DATA)}


@dataclass(frozen=True)
class Shortcut:
    """One declared shortcut: its flag, the dotted configuration key it sets, the declaration and who made it."""

    flag: str
    key: str  # params.NAME (every part of the preset that takes NAME) or task_options.NAME
    param: Param
    owner: str  # the plugin that registered the part or task
    panel: str

    @property
    def name(self) -> str:
        """The option's name in the click context (``--feedback-lr``: ``feedback_lr``)."""
        return self.flag[2:].replace("-", "_")


def declared(registry: Registry, taken: set[str]) -> list[Shortcut]:
    """The shortcuts the registered parts and tasks declare, once each; ``taken``: the command's own flags."""
    found: dict[str, Shortcut] = {}
    for kind, (table, panel) in KINDS.items():
        for name, cls in getattr(registry, kind).items():
            owner = registry.owners[(kind, name)]
            for param_name, param in cls.params.items():
                if not param.cli:
                    continue
                shortcut = Shortcut(param.cli, f"{table}.{param_name}", param, owner, panel)
                if not FLAG.fullmatch(shortcut.flag):
                    raise UserError(f"plugin '{owner}' declares the option '{shortcut.flag}' for {shortcut.key}: "
                                    "a shortcut is written --lower-case-words")
                if shortcut.flag in taken:
                    raise UserError(f"plugin '{owner}' declares the option {shortcut.flag}, which the command has "
                                    "already")
                other = found.setdefault(shortcut.flag, shortcut)
                if (other.owner, other.key) != (owner, shortcut.key):
                    raise UserError(f"the option {shortcut.flag} is declared twice: by plugin '{other.owner}' "
                                    f"for {other.key} and by plugin '{owner}' for {shortcut.key}")
    return list(found.values())


def parse_list(text: str, flag: str) -> list[Any]:
    """A list option's value: ``2,3`` (comma-separated) or a TOML list (``[8, 4]``)."""
    value = opt.parse_value(text) if text.strip().startswith("[") else [
        opt.parse_value(item.strip()) for item in text.split(",") if item.strip()]
    if not isinstance(value, list):
        raise UserError(f"{flag} takes a comma-separated list, got '{text}'")
    return value


def _keep(shortcut: Shortcut) -> Any:
    """The option's callback: its value (when given) goes to the context under its dotted key."""
    def keep(ctx: Any, param: Any, value: Any) -> Any:
        if value is not None:
            if isinstance(shortcut.param.default, list):
                value = parse_list(value, shortcut.flag)
            ctx.meta.setdefault(SHORTCUT_VALUES, {})[shortcut.key] = value
        return value
    return keep


def _help(shortcut: Shortcut) -> str:
    default = shortcut.param.default
    text = ",".join(map(str, default)) if isinstance(default, list) else str(default)
    shown = f" (default {text})" if text else ""
    same = "--param" if shortcut.key.startswith("params.") else "--option"
    return (f"{shortcut.param.help}{shown}. Same as {same} {shortcut.key.split('.', 1)[1]}=VALUE; declared by "
            f"{shortcut.owner}.")


def build_options(shortcuts: list[Shortcut]) -> list[Any]:
    """The shortcuts as typer options (built by typer from a signature, as it builds a command's own), whose
    values go to the context (``values``), not to the command's function."""
    def command(**values: Any) -> None:
        """Never called: typer reads its signature."""

    parameters = []
    for s in shortcuts:
        kind = type(s.param.default)
        flags = f"{s.flag}/--no-{s.flag[2:]}" if kind is bool else s.flag
        annotation = Optional[str] if kind is list else Optional[kind]
        parameters.append(inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                            default=typer.Option(None, flags, help=_help(s), rich_help_panel=s.panel)))
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    builder = typer.Typer(add_completion=False)
    builder.command()(command)
    built = list(typer.main.get_command(builder).params)
    for option, shortcut in zip(built, shortcuts, strict=True):
        option.expose_value = False
        option.callback = _keep(shortcut)
    return built


def values(ctx: Any) -> dict[str, Any]:
    """The shortcuts given on the command line, as dotted configuration keys (an adopting command's too:
    ``tune`` and ``eval`` read them from their own context)."""
    return dict(ctx.meta.get(SHORTCUT_VALUES, {}))


def add_shortcuts(command: Any, manager: PluginManager) -> None:
    """Give ``command`` the declared shortcuts, each after the last option of its panel."""
    taken = {flag for p in command.params for flag in [*p.opts, *p.secondary_opts]}
    for option in build_options(declared(manager.registry, taken)):
        panel = option.rich_help_panel
        same = [i for i, p in enumerate(command.params) if getattr(p, "rich_help_panel", None) == panel]
        command.params.insert(same[-1] + 1 if same else len(command.params), option)


class TakesShortcuts:
    """A command that takes run's options: the declared shortcuts join its options when it parses its
    arguments (``--help`` included), not when the app is built."""

    params: list[Any]
    with_shortcuts = False

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not self.with_shortcuts:
            self.adopt(PluginManager())
            self.with_shortcuts = True
        return super().parse_args(ctx, args)  # type: ignore[misc]

    def adopt(self, manager: PluginManager) -> None:
        """What the command takes from the plugins when it parses its arguments: the shortcut options."""
        add_shortcuts(self, manager)


class ShortcutCommand(TakesShortcuts, TyperCommand):
    """``run`` and ``eval``."""


class ShortcutGroup(TakesShortcuts, TyperGroup):
    """``tune`` (a group: ``tune report`` is its subcommand)."""
