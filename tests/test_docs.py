"""Every ``tempsched`` command written in README.md and docs/*.md is accepted by the CLI as written.

Each command line is parsed (not run) by the same click command ``main`` runs, so a renamed or removed
option fails here. Placeholders in the docs (``...``, ``STUDY_DIR``) are filled with harmless values.
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
import typer

from tempsched.cli.app import app
from tempsched.cli.options import adopt_run_options

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")
        for match in re.finditer(r"(?m)(?:^|`|\$ |&& )(tempsched (?:run|tune|plugins|eval)\b[^`\n#]*)", text):
            line = match.group(1).strip().rstrip(".,;:)")
            found.append((path.name, line))
    return found


COMMANDS = _commands()


def test_the_docs_hold_commands() -> None:
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("where,line", COMMANDS, ids=[f"{w}:{i}" for i, (w, _) in enumerate(COMMANDS)])
def test_documented_command_is_accepted(where: str, line: str) -> None:
    # Placeholders: "..." for more options, [optional parts], STUDY_DIR-like names, S for a seed.
    args = [a.strip("[]") for a in shlex.split(line)[1:] if a not in ("...", "…")]
    args = ["1" if a == "S" else re.sub(r"^[A-Z][A-Z_]+$", "placeholder", a) for a in args]
    root = typer.main.get_command(app)
    try:
        _parse(root, args)
    except typer.Exit as exc:  # --help, --version
        assert exc.exit_code == 0


def _parse(root, args: list[str]) -> None:
    adopt_run_options(root)
    ctx = root.make_context("tempsched", list(args), resilient_parsing=False)
    command = root
    while hasattr(command, "resolve_command") and _pending(ctx):
        name, command, rest = command.resolve_command(ctx, _pending(ctx))
        ctx = command.make_context(name, rest, parent=ctx)


def _pending(ctx) -> list[str]:
    """Arguments a group left for its subcommand (click keeps the command name apart)."""
    return [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]


# --- docs/architecture.md names only what exists ------------------------------------------------------------

ARCHITECTURE = ROOT / "docs" / "architecture.md"
FILE_SUFFIXES = ("toml", "jsonl", "json", "pt", "png", "md", "py", "txt")
MODULES = {p.stem for p in (ROOT / "tempsched").glob("*.py")} | {"cli", "tune", "gsvae"}


def _resolves(module: str, dotted: str) -> bool:
    """Whether ``dotted`` (``name`` or ``Class.attribute``) is found in tempsched module ``module``."""
    try:
        node: object = importlib.import_module(module)
    except ImportError:
        return False
    for part in dotted.split("."):
        if not hasattr(node, part):
            if isinstance(node, type) and part in getattr(node, "__dataclass_fields__", {}):
                continue  # a dataclass field without a default
            return False
        node = getattr(node, part)
    return True


def _architecture_names() -> list[tuple[str, str]]:
    """(where, what) for every module, class and function docs/architecture.md names: the files and folders
    of its module table, the names in each module's row, and module-qualified names (``session.execute``)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    found: list[tuple[str, str]] = []
    for row in re.finditer(r"(?m)^\| `((?:tempsched|plugins)/[\w/]*(?:\.py)?)` \| (.*) \|$", text):
        path, holds = row.group(1), row.group(2)
        found.append(("path", path))
        if path.endswith(".py"):
            module = path[:-3].replace("/", ".").removesuffix(".__init__")
            for name in re.findall(r"`([A-Za-z_][\w.]*)`", holds):
                first, _, rest = name.partition(".")
                if name.endswith(FILE_SUFFIXES):
                    continue  # a file the module writes: `trajectories.png`
                found.append((f"tempsched.{first}", rest) if first in MODULES and rest else (module, name))
        else:
            found += [("path", f"{path.rstrip('/')}/{name}") for name in re.findall(r"`([\w/]+(?:\.py|/))`", holds)]
    for first, rest in re.findall(r"`(\w+)\.([\w.]+)(?:\(|`)", text):
        if first in MODULES and not rest.endswith(FILE_SUFFIXES):
            found.append((f"tempsched.{first}", rest))
    return found


def test_every_name_in_the_architecture_exists() -> None:
    names = _architecture_names()
    assert len(names) > 60  # the walk reads the table
    missing = [what for where, what in names
               if not ((ROOT / what).exists() if where == "path" else _resolves(where, what))]
    assert missing == []
