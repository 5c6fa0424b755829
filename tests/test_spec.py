"""A run spec apart from its resolution: what a run asks for is saved beside what it resolved to, edits are
made on specs and resolved again, and a resume is refused when the spec would now resolve to another run.
Run directories made before specs existed (no spec.json) still resume and still serve as ``--config``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tempsched.errors import UserError
from tempsched.plugins import PluginManager
from tempsched.spec import SPEC, RunSpec, resume, saved_spec
from test_cli import TINY, _one_line_error, cli
from test_distributed import _main


def test_later_overrides_win_and_a_spec_survives_its_file(tmp_path: Path) -> None:
    spec = RunSpec({"plugin": "paper-default", "epochs": 3}, {"params.patience": 3, "seed": 1})
    edited = spec.with_overrides({"params.patience.patience": 4, "seed": 2, "schedules": None})
    assert list(edited.overrides) == ["params.patience", "params.patience.patience", "seed", "schedules"]
    registry = PluginManager().registry
    assert edited.resolve(registry).params["patience"]["patience"] == 4  # the later, per-part value
    assert spec.resolve(registry).params["patience"]["patience"] == 3 and spec.overrides["seed"] == 1  # unchanged
    (tmp_path / SPEC).write_text(edited.to_json())
    assert RunSpec.load(tmp_path / SPEC) == edited
    (tmp_path / SPEC).write_text('{"format": "other"}')
    with pytest.raises(UserError, match="is damaged"):
        RunSpec.load(tmp_path / SPEC)


def test_a_derived_spec_gets_the_presets_choices_for_what_it_changes() -> None:
    """Editing a resolved configuration kept the base's member list; a spec resolves members again."""
    registry = PluginManager().registry
    three = RunSpec({}, {"members": 3}).resolve(registry)
    five = RunSpec({}, {"members": 3}).with_overrides({"members": 5}).resolve(registry)
    assert len(three.schedules) == 3 and five.schedules == registry.get("presets", "paper-default").assign(5)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("spec") / "run"
    code = _main("run", *TINY, "--epochs", "1", "--seed", "7", "--out", str(run))
    assert code == 0
    return run


def test_a_run_keeps_what_it_asked_for_beside_what_it_resolved_to(run: Path) -> None:
    spec = json.loads((run / SPEC).read_text())
    assert spec["base"] == {} and spec["overrides"]["seed"] == 7 and spec["overrides"]["epochs"] == 1
    assert json.loads((run / "summary.json").read_text())["files"]["spec"] == SPEC  # the summary lists it
    registry = PluginManager().registry
    assert saved_spec(run).resolve(registry).to_toml() == (run / "config.toml").read_text()


def test_a_resume_whose_spec_now_resolves_to_another_run_is_refused(run: Path, tmp_path: Path, capsys) -> None:
    """As when a preset's defaults change after a run started: its spec and its config.toml disagree."""
    moved = tmp_path / "run"
    moved.mkdir()
    for path in run.iterdir():
        (moved / path.name).write_bytes(path.read_bytes())
    spec = json.loads((moved / SPEC).read_text())
    spec["overrides"]["seed"] = 8  # what the same spec would resolve to under other defaults
    (moved / SPEC).write_text(json.dumps(spec))
    with pytest.raises(UserError, match="changed since"):
        resume(moved, PluginManager().registry, {"epochs": 2})
    before = {p.name: p.read_bytes() for p in moved.iterdir()}
    code, _, stderr = cli("run", "--resume", str(moved), "--epochs", "2", capsys=capsys)
    _one_line_error(code, stderr, "changed since")
    assert {p.name: p.read_bytes() for p in moved.iterdir()} == before  # refused before anything is written


def test_a_run_directory_made_before_specs_resumes_and_serves_as_config(run: Path, tmp_path: Path, capsys) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for path in run.iterdir():
        if path.name != SPEC:  # what a run directory written before this change holds
            (old / path.name).write_bytes(path.read_bytes())
    code, _, stderr = cli("run", "--resume", str(old), "--epochs", "2", capsys=capsys)
    assert code == 0, stderr
    assert len((old / "metrics.jsonl").read_text().splitlines()) == 2 * 3  # 3 members, 2 epochs
    assert json.loads((old / SPEC).read_text())["overrides"] == {"epochs": 2}  # its config.toml is its spec
    code, _, stderr = cli("run", "--config", str(run / "config.toml"), "--out", str(tmp_path / "again"), capsys=capsys)
    assert code == 0, stderr
    assert (tmp_path / "again" / "metrics.jsonl").read_bytes() == (run / "metrics.jsonl").read_bytes()
