"""The import graph of tempsched/ and plugins/, read with ``ast`` (function bodies included): no tempsched
module imported inside a function (an import circle dodged at run time), no module importing one that
imports it back, evaluations that build on the public API, not on training or configuration internals, and
configurations built only by resolving a spec.
A broken third-party plugin does not break ``tempsched --help``."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import python_path


REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"tempsched": REPO / "tempsched", "tempsched_plugins": REPO / "plugins" / "tempsched_plugins"}
OURS = tuple(PACKAGES)


@dataclass(frozen=True)
class Import:
    """One import statement: the module it is in, the modules it names, where, and whether a function holds it."""

    module: str
    names: tuple[str, ...]
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    for package, root in PACKAGES.items():
        if path.is_relative_to(root):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise AssertionError(path)


MODULES = {_module_name(path): path for root in PACKAGES.values() for path in sorted(root.rglob("*.py"))}


def _imported(node: ast.Import | ast.ImportFrom, module: str) -> tuple[str, ...]:
    """The modules an import statement names: ``from P import N`` names ``P.N`` where that is a module, else ``P``."""
    if isinstance(node, ast.Import):
        return tuple(alias.name for alias in node.names)
    base = node.module or ""
    if node.level:
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
    return tuple(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)


def _imports(module: str) -> list[Import]:
    """Every import statement of ``module`` that runs (not those under ``if TYPE_CHECKING:``)."""
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child, in_function)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(Import(module, _imported(node, module), node.lineno, in_function))
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(ast.parse(MODULES[module].read_text(encoding="utf-8")), False)
    return found


IMPORTS = [item for module in MODULES for item in _imports(module)]


def _ours(name: str) -> bool:
    return name.split(".")[0] in OURS


def test_the_walk_sees_function_bodies_and_the_shipped_plugins() -> None:
    """The walk is not vacuous: it finds the lazy imports of optional packages inside functions, and
    modules of both packages."""
    assert any(i.in_function and "matplotlib.pyplot" in i.names for i in IMPORTS)
    assert {"tempsched.cli.run", "tempsched_plugins.replay", "tempsched.gsvae.plugin"} <= set(MODULES)


def test_no_tempsched_module_is_imported_inside_a_function() -> None:
    """Lazy imports are for optional third-party packages; one of ours inside a function hides a circle."""
    inside = [f"{i.module}:{i.line} imports {', '.join(n for n in i.names if _ours(n))}"
              for i in IMPORTS if i.in_function and any(_ours(n) for n in i.names)]
    assert inside == []


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    """The module-level graph of explicit imports has no cycle (docs/architecture.md says imports go one way)."""
    graph = {m: {n for i in IMPORTS if i.module == m and not i.in_function for n in i.names if n in MODULES} - {m}
             for m in MODULES}
    done: set[str] = set()

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            if found := cycle_from(target, path + [module]):
                return found
        done.add(module)
        return None

    assert [c for m in sorted(graph) if (c := cycle_from(m, []))] == []


# What evaluations may not reach into: how runs are built, trained, cached and configured. They get all of
# that from their ``EvalContext`` and the public names of ``tempsched`` (``RunSpec``, ``RunConfig``, ...).
ENGINE_INTERNALS = ("tempsched.config", "tempsched.build", "tempsched.session", "tempsched.runs", "tempsched.spec",
                    "tempsched.plugins", "tempsched_plugins")


def test_experiments_use_no_training_or_config_internals() -> None:
    found = [f"{i.module}:{i.line} imports {n}" for i in IMPORTS if i.module.startswith("tempsched.gsvae.experiments")
             for n in i.names if n.startswith(ENGINE_INTERNALS)]
    assert found == []


# The functions that turn mappings into a configuration or change one; only the spec (``RunSpec.resolve``)
# and the configuration module itself call them, so that every configuration comes from one entry point.
CONFIG_BUILDERS = {"layer", "resolve", "replace_keys", "from_dict"}


def _config_builders_used(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.relative_to(REPO)}:{node.lineno} imports {alias.name}" for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "tempsched.config"
            for alias in node.names if alias.name in CONFIG_BUILDERS]


def test_configurations_are_built_only_by_resolving_a_spec() -> None:
    """No module but ``spec`` (and ``config`` itself) builds or edits a configuration, benchmarks included."""
    paths = [p for root in PACKAGES.values() for p in sorted(root.rglob("*.py"))]
    paths += sorted((REPO / "benchmarks").glob("*.py"))
    allowed = {REPO / "tempsched" / "spec.py", REPO / "tempsched" / "config.py"}
    found = [hit for path in paths if path not in allowed for hit in _config_builders_used(path)]
    assert found == []
    assert _config_builders_used(REPO / "tempsched" / "spec.py")  # the check sees the one module that may


def _broken_plugin_env(folder: Path) -> dict[str, str]:
    """Environment under which ``tempsched`` finds an installed plugin ``broken`` whose import raises."""
    dist = folder / "tempsched_broken-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tempsched-broken\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[tempsched]\nbroken = tempsched_broken\n")
    (folder / "tempsched_broken.py").write_text("raise RuntimeError('this plugin is broken')\n")
    return {**os.environ, "PYTHONPATH": python_path(folder), "TEMPSCHED_PLUGINS": "broken"}


def test_a_broken_third_party_plugin_does_not_break_help(tmp_path: Path) -> None:
    env = _broken_plugin_env(tmp_path)
    shown = subprocess.run([sys.executable, "-m", "tempsched", "--help"], env=env, capture_output=True, text=True)
    assert shown.returncode == 0 and "run" in shown.stdout, shown.stderr
    # ... while a command that needs the plugins says which one is broken, in one line
    refused = subprocess.run([sys.executable, "-m", "tempsched", "plugins"], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "error: plugin 'broken' failed to load: RuntimeError: this plugin is broken"], refused.stderr
