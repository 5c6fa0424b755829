"""The plugin manager: shipped plugins through the hooks, entry points, clear errors naming the plugin."""

from __future__ import annotations

import json
import math
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from tempsched import Schedule, hookimpl
from tempsched.errors import UserError
from tempsched.plugins import PluginManager
from test_cli import cli


def test_shipped_parts_are_registered_through_hooks() -> None:
    registry = PluginManager().registry
    assert {"fixed", "linear-up", "linear-down", "exp-up", "exp-down", "jang-anneal"} <= set(registry.schedules)
    assert {"paper-default", "standard-annealing"} <= set(registry.presets)
    assert registry.owners[("presets", "paper-default")] == "paper-default"
    assert registry.owners[("tasks", "gsvae")] == "gsvae"


class _LinearUp(Schedule):
    name = "linear-up"


class Duplicate:
    @hookimpl
    def tempsched_register_schedules(self, register: Any) -> None:
        register(_LinearUp)


class Broken:
    @hookimpl
    def tempsched_register_presets(self, register: Any) -> None:
        raise RuntimeError("boom")


class Misspelled:
    @hookimpl
    def tempsched_register_schedule(self, register: Any) -> None:  # no such hook: singular
        register(_LinearUp)


class NotAPart:
    @hookimpl
    def tempsched_register_schedules(self, register: Any) -> None:
        register(lambda i, params: None)  # the 0.1 convention: a factory, not a Schedule class


def test_duplicate_name_names_both_plugins() -> None:
    manager = PluginManager()
    manager.register(Duplicate(), name="my-dup-plugin")
    with pytest.raises(UserError, match="plugin 'my-dup-plugin' registers schedule 'linear-up', already "
                                        "registered by 'paper-default'"):
        _ = manager.registry


def test_raising_plugin_is_named() -> None:
    manager = PluginManager()
    manager.register(Broken(), name="broken-plugin")
    with pytest.raises(UserError, match="plugin 'broken-plugin' failed in tempsched_register_presets: "
                                        "RuntimeError: boom"):
        _ = manager.registry


def test_misspelled_hook_is_refused_naming_the_plugin() -> None:
    manager = PluginManager()
    with pytest.raises(UserError, match="plugin 'typo' implements unknown hook.s. tempsched_register_schedule "):
        manager.register(Misspelled(), name="typo")


def test_registering_something_that_is_not_a_part_is_refused() -> None:
    manager = PluginManager()
    manager.register(NotAPart(), name="old-style")
    with pytest.raises(UserError, match="plugin 'old-style' registered .* expected a tempsched.Schedule subclass"):
        _ = manager.registry


def test_unknown_part_lists_known_names() -> None:
    with pytest.raises(UserError, match=r"unknown schedule 'cosine' \(known: .*linear-up"):
        PluginManager().registry.get("schedules", "cosine")


def test_plugins_command_lists_what_each_plugin_registers(capsys) -> None:
    code, out, _ = cli("plugins", capsys=capsys)
    assert code == 0
    assert "paper-default (shipped)" in out and "schedules: exp-down, exp-up, fixed, linear-down, linear-up" in out
    assert "preset standard-annealing" in out


def test_example_plugin_installed_through_its_entry_point(monkeypatch, tmp_path: Path, capsys) -> None:
    # .ci/run and the README install examples/tempsched-cyclic; this test needs it installed.
    assert any(ep.name == "cyclic" for ep in entry_points(group="tempsched")), \
        "install the example plugin: pip install -e examples/tempsched-cyclic"
    monkeypatch.setenv("TEMPSCHED_PLUGINS", "cyclic")
    code, out, _ = cli("plugins", capsys=capsys)
    assert "cyclic (installed)" in out and "schedules: cyclic" in out
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('[task_options]\nz1 = [8, 4]\nz2 = [4, 4]\nchannels = [8, 16]\n')
    run = tmp_path / "run"
    code, out, err = cli("run", "--plugin", "cyclic", "--config", str(cfg), "--epochs", "3", "--train-size", "320",
                         "--val-size", "64", "--test-size", "64", "--batch-size", "64", "--out", str(run),
                         capsys=capsys)
    assert code == 0, err
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"cyclic"} and len(rows) == 12
    taus = [r["tau_strategy"] for r in rows if r["member"] == 1]
    assert len(set(taus)) == 3 and all(0.5 <= t <= 2.0 for t in taus)  # it cycles inside its bounds


def test_external_cosine_plugin_from_the_docs(monkeypatch, tmp_path: Path, capsys) -> None:
    """docs/writing-plugins.md: a schedule plugin in under 20 lines that imports only from ``tempsched``."""
    assert any(ep.name == "cosine" for ep in entry_points(group="tempsched")), \
        "install the example plugin: pip install -e examples/tempsched-cosine"
    source = Path(__file__).parents[1] / "examples" / "tempsched-cosine" / "tempsched_cosine" / "__init__.py"
    code_lines = [ln for ln in source.read_text().splitlines() if ln.strip()]
    assert len(code_lines) < 20
    imports = [ln for ln in code_lines if ln.startswith(("import ", "from "))]
    assert all(ln in ("import math", "from tempsched import Preset, Schedule, hookimpl") for ln in imports), imports
    monkeypatch.setenv("TEMPSCHED_PLUGINS", "cosine")
    code, out, _ = cli("plugins", capsys=capsys)
    assert "cosine (installed)" in out and "schedules: cosine" in out and "preset cosine" in out
    run = tmp_path / "run"
    code, out, err = cli("run", "--plugin", "cosine", "--epochs", "4", "--members", "2", "--train-size", "320",
                         "--val-size", "64", "--test-size", "64", "--batch-size", "64", "--option", "z1=[8, 4]",
                         "--option", "z2=[4, 4]", "--option", "channels=[8, 16]", "--out", str(run), capsys=capsys)
    assert code == 0, err
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    expected = [0.5 + 0.5 * (5.0 - 0.5) * (1 + math.cos(math.pi * (e + 1) / 4)) for e in range(4)]
    assert [r["tau_strategy"] for r in rows if r["member"] == 1] == pytest.approx(expected)
