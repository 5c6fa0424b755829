"""``tempsched plugins``: every loaded plugin, what it registers, and the parameters each part takes."""

from __future__ import annotations

from rich.console import Console

from tempsched.plugins import DEFAULT_PLUGINS, KINDS, PluginManager

console = Console()


def _params(cls: type) -> str:
    declared = getattr(cls, "params", {})
    return ", ".join(f"{name}={p.default!r}" + (f" (one of {'|'.join(map(str, p.choices))})" if p.choices else "")
                     for name, p in declared.items())


def plugins() -> None:
    """List every loaded plugin, what it registers and the parameters of each part."""
    manager = PluginManager()
    registry = manager.registry
    for name, what in manager.describe():
        origin = "shipped" if name in DEFAULT_PLUGINS else "installed"
        console.print(f"[bold]{name}[/] ({origin})", highlight=False)
        for kind in KINDS:
            if kind.attr == "presets":
                for preset in sorted(what.get("presets", [])):
                    console.print(f"  preset [italic]{preset}[/]: {registry.presets[preset].description}",
                                  highlight=False)
                continue
            names = sorted(what.get(kind.attr, []))
            if names:
                console.print(f"  {kind.attr.replace('_', ' ')}: {', '.join(names)}", highlight=False)
            for part in names:
                params = _params(getattr(registry, kind.attr)[part])
                if params:
                    console.print(f"    {part}: {params}", highlight=False)
