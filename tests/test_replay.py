"""Replay: every run records its best member's temperatures (policy.json), and the replay schedule plays
them back on one model exactly; a run that could not play them exactly is refused before it trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import toy
from tempsched.config import RunConfig, layer
from tempsched.errors import UserError
from tempsched.plugins import PluginManager
from tempsched.session import execute
from tempsched.spec import saved_config
from tempsched.trajectories import read_policy, replay_spec


def replay_config(source: Path, manager: PluginManager) -> RunConfig:
    """The resolved configuration of a model replaying ``source``'s policy."""
    return replay_spec(source, saved_config(source, manager.registry)).resolve(manager.registry)


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _source_config(manager: PluginManager, epochs: int = 6) -> RunConfig:
    # patience 1: feedback fires, so the temperatures are not just the strategies' straight lines
    return layer(manager.registry, {"plugin": "toy-paper", "epochs": epochs, "seed": 3,
                                    "params": {"patience": {"patience": 1}}})


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("replay") / "source"
    execute(_source_config(toy.toy_manager()), toy.toy_manager(), run_dir)
    return run_dir


def test_policy_is_each_epochs_best_member(source: Path) -> None:
    best = [r for r in _rows(source) if r["best"]]
    policy = read_policy(source)
    assert [(p["epoch"], p["tau"], p["member"], p["strategy"]) for p in policy] == \
        [(r["epoch"], r["tau"], r["member"], r["strategy"]) for r in best]
    assert len({p["tau"] for p in policy}) > 2  # a real trajectory, not a constant
    assert read_policy(source / "policy.json") == policy


def test_replay_reproduces_the_policy_exactly(source: Path, tmp_path: Path) -> None:
    manager = toy.toy_manager()
    config = replay_config(source, manager)
    assert (config.plugin, config.members, config.schedules, config.feedback) == ("replay", 1, ["replay"], "none")
    assert (config.epochs, config.seed, config.task) == (6, 3, "toy")
    execute(config, manager, tmp_path / "replayed")
    taus = [r["tau"] for r in _rows(tmp_path / "replayed")]
    assert taus == [p["tau"] for p in read_policy(source)]  # exactly, not approximately


def test_policy_survives_a_resume(source: Path, tmp_path: Path) -> None:
    manager = toy.toy_manager()

    def stop(record) -> None:
        if record.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(_source_config(manager), manager, tmp_path / "cut", on_epoch=stop)
    assert len(read_policy(tmp_path / "cut")) == 3
    execute(_source_config(manager), manager, tmp_path / "cut", resume=True)
    assert read_policy(tmp_path / "cut") == read_policy(source)


@pytest.mark.parametrize("changes,needle", [
    ({"tau.initial": 2.0}, "set --tau-initial 1.0"),
    ({"epochs": 7}, "covers 6 epochs, not 7"),
    ({"tau.max": 1.05}, "use the source run's bounds"),
])
def test_a_run_that_cannot_replay_exactly_is_refused_before_training(source: Path, tmp_path: Path, changes: dict,
                                                                     needle: str) -> None:
    manager = toy.toy_manager()
    config = replay_spec(source, saved_config(source, manager.registry)).with_overrides(changes).resolve(manager.registry)
    with pytest.raises(UserError, match=needle):
        execute(config, manager, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # nothing trained, nothing left behind


def test_bad_policies_are_one_line_errors(source: Path, tmp_path: Path) -> None:
    manager = toy.toy_manager()
    with pytest.raises(UserError, match="needs a policy"):
        execute(layer(manager.registry, {"plugin": "replay", "task": "toy"}), manager, tmp_path / "a")
    (tmp_path / "older").mkdir()  # a run directory without policy.json (written before policies were)
    (tmp_path / "older" / "config.toml").write_bytes((source / "config.toml").read_bytes())
    with pytest.raises(UserError, match="no policy at"):
        replay_config(tmp_path / "older", manager)
    broken = tmp_path / "policy.json"
    broken.write_text('{"format": "tempsched-policy-1", "epochs": [{"epoch": 0, "tau": -1}]}')
    with pytest.raises(UserError, match="not a positive number"):
        read_policy(broken)
    broken.write_text("not json")
    with pytest.raises(UserError, match="is not a tempsched policy"):
        read_policy(broken)
