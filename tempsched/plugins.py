"""The plugin manager: loads the shipped and installed plugins and builds the registry of parts.

The plugins tempsched ships are ordinary plugin modules registered through the same hooks as any
third-party package; third-party packages are found through the ``tempsched`` entry-point group.
Set ``TEMPSCHED_PLUGINS`` to a comma-separated list of entry-point names to load only those (an
empty value loads none), which keeps tests independent of whatever else is installed.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from tempsched import hookspecs
from tempsched.errors import UserError
from tempsched.parts import Preset
from tempsched.space import SearchSpace

ENTRY_POINT_GROUP = "tempsched"
ENV_PLUGINS = "TEMPSCHED_PLUGINS"

# name -> module of the plugins tempsched ships; registered like any other plugin.
DEFAULT_PLUGINS: dict[str, str] = {
    "gsvae": "tempsched.gsvae.plugin",
    "paper-default": "tempsched_plugins.paper_default",
    "standard-annealing": "tempsched_plugins.standard_annealing",
}

KINDS = ("schedules", "feedback_rules", "selection_policies", "tasks", "presets")


@dataclass
class Registry:
    """Everything the loaded plugins registered, by kind and name, with who registered it."""

    schedules: dict[str, Callable[..., Any]] = field(default_factory=dict)
    feedback_rules: dict[str, Callable[..., Any]] = field(default_factory=dict)
    selection_policies: dict[str, Callable[..., Any]] = field(default_factory=dict)
    tasks: dict[str, Callable[..., Any]] = field(default_factory=dict)
    presets: dict[str, Preset] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> Any:
        """The part ``name`` of ``kind``, or a UserError that lists the names there are."""
        table: dict[str, Any] = getattr(self, kind)
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            label = kind.replace("_", " ").rstrip("s")
            raise UserError(f"unknown {label} '{name}' (known: {known})")
        return table[name]


class PluginManager:
    """A pluggy manager for the ``tempsched`` project with the registry built from its plugins."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for name, module_name in DEFAULT_PLUGINS.items():
            self.pm.register(importlib.import_module(module_name), name=name)
        if load_entry_points:
            self._load_entry_points()
        self._registry: Registry | None = None

    def _load_entry_points(self) -> None:
        wanted = os.environ.get(ENV_PLUGINS)
        if wanted is None:
            try:
                self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
            except Exception as exc:  # a broken third-party package must not hide which one it is
                raise UserError(f"a plugin failed to load: {type(exc).__name__}: {exc}") from exc
            return
        from importlib.metadata import entry_points

        names = {n.strip() for n in wanted.split(",") if n.strip()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in names and self.pm.get_plugin(ep.name) is None:
                try:
                    self.pm.register(ep.load(), name=ep.name)
                except Exception as exc:
                    raise UserError(f"plugin '{ep.name}' failed to load: {exc}") from exc

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register one more plugin object or module (tests and the CLI's reporters use this)."""
        self.pm.register(plugin, name=name)
        self._registry = None

    def unregister(self, plugin: object) -> None:
        """Remove a plugin registered with ``register``."""
        self.pm.unregister(plugin)
        self._registry = None

    @property
    def hook(self) -> Any:
        """The lifecycle hooks to call: ``hook.tempsched_epoch_end(report=...)`` and friends."""
        return self.pm.hook

    @property
    def registry(self) -> Registry:
        """The parts registered by every loaded plugin (built once, on first use)."""
        if self._registry is None:
            self._registry = self._build_registry()
        return self._registry

    def search_space(self, preset: Preset) -> SearchSpace:
        """The space ``tempsched tune`` samples for ``preset``, built by every plugin in registration order."""
        space = SearchSpace()
        for impl in self.pm.hook.tempsched_search_space.get_hookimpls():
            impl.function(preset=preset, space=space)
        return space

    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins, shipped ones first."""
        return [name for name, _ in self.pm.list_name_plugin()]

    def _build_registry(self) -> Registry:
        registry = Registry()
        for kind in KINDS:
            caller = getattr(self.pm.hook, f"register_{kind}")
            # get_hookimpls() lists plugins in registration order (shipped ones first), so
            # "already registered by" names the plugin that came first.
            for impl in caller.get_hookimpls():
                self._call_register(registry, kind, impl.plugin_name, impl.function)
        return registry

    @staticmethod
    def _call_register(registry: Registry, kind: str, plugin_name: str, impl: Callable[..., None]) -> None:
        table: dict[str, Any] = getattr(registry, kind)

        def register(name_or_preset: Any, factory: Any = None) -> None:
            if kind == "presets":
                if not isinstance(name_or_preset, Preset):
                    raise UserError(f"plugin '{plugin_name}' registered a preset that is not a Preset")
                name, item = name_or_preset.name, name_or_preset
            else:
                if not isinstance(name_or_preset, str) or not callable(factory):
                    raise UserError(f"plugin '{plugin_name}' called register() for {kind} without a name and factory")
                name, item = name_or_preset, factory
            if name in table:
                other = registry.owners[(kind, name)]
                raise UserError(
                    f"plugin '{plugin_name}' registers {kind.rstrip('s')} '{name}', already registered by '{other}'"
                )
            table[name] = item
            registry.owners[(kind, name)] = plugin_name

        try:
            impl(register=register)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"plugin '{plugin_name}' failed in register_{kind}: {type(exc).__name__}: {exc}") from exc

    def describe(self) -> list[tuple[str, dict[str, list[str]]]]:
        """For ``tempsched plugins``: each plugin with what it registered, by kind."""
        registry = self.registry
        rows: list[tuple[str, dict[str, list[str]]]] = []
        for plugin_name in self.plugin_names():
            what: dict[str, list[str]] = {}
            for (kind, name), owner in registry.owners.items():
                if owner == plugin_name:
                    what.setdefault(kind, []).append(name)
            rows.append((plugin_name, what))
        return rows

