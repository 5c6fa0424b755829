"""The plugin manager: loads the shipped and installed plugins and builds the registry of parts.

The plugins tempsched ships are ordinary plugin modules registered through the same hooks as any
third-party package; third-party packages are found through the ``tempsched`` entry-point group.
Set ``TEMPSCHED_PLUGINS`` to a comma-separated list of entry-point names to load only those (an
empty value loads none), which keeps tests independent of whatever else is installed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pluggy

from tempsched import hookspecs
from tempsched.errors import UserError, describe_exception
from tempsched.parts import Evaluation, FeedbackRule, Preset, Schedule, SelectionPolicy
from tempsched.space import SearchSpace

ENTRY_POINT_GROUP = "tempsched"
ENV_PLUGINS = "TEMPSCHED_PLUGINS"
FAILED_IN = "tempsched_plugin"  # set on an exception raised by a hook implementation: the plugin's name

# name -> module of the plugins tempsched ships; registered like any other plugin.
DEFAULT_PLUGINS: dict[str, str] = {
    "gsvae": "tempsched.gsvae.plugin",
    "paper-default": "tempsched_plugins.paper_default",
    "standard-annealing": "tempsched_plugins.standard_annealing",
    "replay": "tempsched_plugins.replay",
    "pbt": "tempsched_plugins.pbt",
    "halving": "tempsched_plugins.halving",
    "tensorboard": "tempsched_plugins.tensorboard",
}


@dataclass(frozen=True)
class Kind:
    """One kind of registered thing: its hook, its label in messages and what a registered item must be."""

    attr: str  # Registry attribute and the suffix of the hook name
    label: str  # singular, for messages
    check: Callable[[Any], bool]
    expected: str


def _subclass(base: type) -> Callable[[Any], bool]:
    return lambda item: isinstance(item, type) and issubclass(item, base)


KINDS: tuple[Kind, ...] = (
    Kind("schedules", "schedule", _subclass(Schedule), "a tempsched.Schedule subclass"),
    Kind("feedback_rules", "feedback rule", _subclass(FeedbackRule), "a tempsched.FeedbackRule subclass"),
    Kind("selection_policies", "selection policy", _subclass(SelectionPolicy), "a tempsched.SelectionPolicy subclass"),
    Kind("tasks", "task", lambda item: isinstance(item, type) and hasattr(item, "params"),
         "a task class with name and params"),
    Kind("presets", "preset", lambda item: isinstance(item, Preset), "a tempsched.Preset"),
    Kind("evaluations", "evaluation", _subclass(Evaluation), "a tempsched.Evaluation subclass"),
)


@dataclass
class Registry:
    """Everything the loaded plugins registered, by kind and name, with who registered it."""

    schedules: dict[str, type] = field(default_factory=dict)
    feedback_rules: dict[str, type] = field(default_factory=dict)
    selection_policies: dict[str, type] = field(default_factory=dict)
    tasks: dict[str, type] = field(default_factory=dict)
    presets: dict[str, Preset] = field(default_factory=dict)
    evaluations: dict[str, type] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> Any:
        """The part ``name`` of ``kind``, or a UserError that lists the names there are."""
        table: dict[str, Any] = getattr(self, kind)
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            label = next(k.label for k in KINDS if k.attr == kind)
            raise UserError(f"unknown {label} '{name}' (known: {known})")
        return table[name]

    def owner_of(self, item: Any) -> str:
        """The plugin that registered ``item`` (a part class or a preset), or '?'."""
        for (kind, name), owner in self.owners.items():
            if getattr(self, kind).get(name) is item:
                return owner
        return "?"


@contextlib.contextmanager
def _marking(plugin_name: str) -> Iterator[None]:
    """Name the plugin on an exception raised inside, unless an implementation nearer its origin did (a
    wrapper re-raising the exception of an implementation it wraps leaves that one named)."""
    try:
        yield
    except Exception as exc:
        if not hasattr(exc, FAILED_IN):
            with contextlib.suppress(AttributeError):  # a type without a __dict__ is reported unnamed
                setattr(exc, FAILED_IN, plugin_name)
        raise


def _naming(impl: Any) -> Callable[..., Any]:
    """``impl``'s function, marking what it raises with its plugin's name and raising it on unchanged.

    The exception itself goes on, so pluggy's wrappers see what the implementations they wrap raised;
    ``notify`` reads the mark. A wrapper's function returns a generator, so its stand-in is one too.
    """
    function, name = impl.function, impl.plugin_name
    if impl.wrapper or impl.hookwrapper:
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with _marking(name):
                return (yield from function(*args, **kwargs))
        return wrapper

    def plain(*args: Any, **kwargs: Any) -> Any:
        with _marking(name):
            return function(*args, **kwargs)
    return plain


class PluginManager:
    """A pluggy manager for the ``tempsched`` project with the registry built from its plugins."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for name, module_name in DEFAULT_PLUGINS.items():
            self._add(importlib.import_module(module_name), name)
        if load_entry_points:
            self._load_entry_points()
        self._check_pending()
        self._registry: Registry | None = None

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        wanted = os.environ.get(ENV_PLUGINS)
        names = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if (names is not None and ep.name not in names) or self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                self._add(ep.load(), ep.name)
            except Exception as exc:  # a broken third-party package must not hide which one it is
                raise UserError(f"plugin '{ep.name}' failed to load: {describe_exception(exc)}") from None

    def _check_pending(self) -> None:
        """Refuse a ``@hookimpl`` whose name matches no hook (a misspelling would else be silence)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
            hooks = sorted(n for n in vars(hookspecs) if n.startswith("tempsched_"))
            unknown = [n for n in dir(exc.plugin) if n not in hooks
                       and getattr(getattr(exc.plugin, n, None), f"{hookspecs.PROJECT}_impl", None) is not None]
            self.pm.unregister(exc.plugin)
            raise UserError(f"plugin '{name}' implements unknown hook(s) {', '.join(unknown)} "
                            f"(tempsched's hooks: {', '.join(hooks)})") from None

    def _add(self, plugin: object, name: str | None) -> None:
        """Register ``plugin`` with pluggy, each of its hook implementations wrapped to name it when it fails."""
        self.pm.register(plugin, name=name)
        for caller in self.pm.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin:
                    impl.function = _naming(impl)  # pluggy calls impl.function with the argnames it read first

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register one more plugin object or module (tests and the CLI's live view use this)."""
        self._add(plugin, name)
        self._check_pending()
        self._registry = None

    def unregister(self, plugin: object) -> None:
        """Remove a plugin registered with ``register``."""
        self.pm.unregister(plugin)
        self._registry = None

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Call lifecycle hook ``hook`` through pluggy's hook caller, so ``wrapper=True``, ``tryfirst`` and
        ``trylast`` implementations run as pluggy documents; a plugin that raises is named in a UserError."""
        try:
            getattr(self.pm.hook, hook)(**kwargs)
        except UserError:
            raise
        except Exception as exc:
            name = getattr(exc, FAILED_IN, "?")
            raise UserError(f"plugin '{name}' failed in {hook}: {describe_exception(exc)}") from None

    def has_listeners(self, hook: str) -> bool:
        """Whether any plugin implements ``hook`` (the engine skips per-batch records nobody reads)."""
        return bool(getattr(self.pm.hook, hook).get_hookimpls())

    @property
    def registry(self) -> Registry:
        """The parts registered by every loaded plugin (built once, on first use)."""
        if self._registry is None:
            self._registry = self._build_registry()
        return self._registry

    def search_space(self, preset: Preset, space: SearchSpace) -> SearchSpace:
        """Let every plugin change ``space`` (built from the preset's parts), in registration order."""
        for impl in self.pm.hook.tempsched_search_space.get_hookimpls():
            try:
                impl.function(preset=preset, space=space)
            except UserError:
                raise
            except Exception as exc:
                raise UserError(f"plugin '{impl.plugin_name}' failed in tempsched_search_space: "
                                f"{describe_exception(exc)}") from None
        return space

    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins, shipped ones first."""
        return [name for name, _ in self.pm.list_name_plugin()]

    def _build_registry(self) -> Registry:
        registry = Registry()
        for kind in KINDS:
            hook = f"tempsched_register_{kind.attr}"
            # get_hookimpls() lists plugins in registration order (shipped ones first), so
            # "already registered by" names the plugin that came first.
            for impl in getattr(self.pm.hook, hook).get_hookimpls():
                self._call_register(registry, kind, hook, impl.plugin_name, impl.function)
        return registry

    @staticmethod
    def _call_register(registry: Registry, kind: Kind, hook: str, plugin_name: str,
                       impl: Callable[..., None]) -> None:
        table: dict[str, Any] = getattr(registry, kind.attr)

        def register(item: Any) -> None:
            name = getattr(item, "name", None)
            if not kind.check(item) or not isinstance(name, str) or not name:
                raise UserError(f"plugin '{plugin_name}' registered {item!r} in {hook}: expected {kind.expected} "
                                f"with a name")
            if name in table:
                other = registry.owners[(kind.attr, name)]
                raise UserError(f"plugin '{plugin_name}' registers {kind.label} '{name}', already registered by "
                                f"'{other}'")
            table[name] = item
            registry.owners[(kind.attr, name)] = plugin_name

        try:
            impl(register=register)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"plugin '{plugin_name}' failed in {hook}: {describe_exception(exc)}") from None

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
