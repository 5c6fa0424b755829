"""The plugin manager: shipped plugins through the hooks, entry points, clear errors naming the plugin."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from tempsched import hookimpl
from tempsched.errors import UserError
from tempsched.plugins import PluginManager
from test_cli import cli


def test_shipped_parts_are_registered_through_hooks() -> None:
    registry = PluginManager().registry
    assert {"fixed", "linear-up", "linear-down", "exp-up", "exp-down", "jang-anneal"} <= set(registry.schedules)
    assert {"paper-default", "standard-annealing"} <= set(registry.presets)
    assert registry.owners[("presets", "paper-default")] == "paper-default"
    assert registry.owners[("tasks", "gsvae")] == "gsvae"


class Duplicate:
    @hookimpl
    def register_schedules(self, register: Any) -> None:
        register("linear-up", lambda i, p: None)


class Broken:
    @hookimpl
    def register_presets(self, register: Any) -> None:
        raise RuntimeError("boom")


def test_duplicate_name_names_both_plugins() -> None:
    manager = PluginManager()
    manager.register(Duplicate(), name="my-dup-plugin")
    with pytest.raises(UserError, match="plugin 'my-dup-plugin' registers schedule 'linear-up', already "
                                        "registered by 'paper-default'"):
        _ = manager.registry


def test_raising_plugin_is_named() -> None:
    manager = PluginManager()
    manager.register(Broken(), name="broken-plugin")
    with pytest.raises(UserError, match="plugin 'broken-plugin' failed in register_presets: RuntimeError: boom"):
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
