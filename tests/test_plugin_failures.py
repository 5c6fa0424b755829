"""A plugin that fails or returns nonsense at run time ends the run with one line naming it and the hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tempsched import Preset, Schedule, SelectionPolicy, UserError, hookimpl
from tempsched.config import layer
from tempsched.plugins import PluginManager
from tempsched.session import execute
from tempsched.space import SearchSpace


def _schedule_returning(value: Any) -> type[Schedule]:
    class Returns(Schedule):
        name = "returns"

        def on_epoch(self, tau, ctx):
            return value() if callable(value) else value

    return Returns


class Raises(Schedule):
    name = "raises"

    def on_epoch(self, tau, ctx):
        raise ValueError("schedule broke")


class FailsToBuild(Schedule):
    name = "fails-to-build"

    def __init__(self) -> None:
        raise RuntimeError("constructor broke")


def _selection_returning(value: Any) -> type[SelectionPolicy]:
    class Picks(SelectionPolicy):
        name = "picks"

        def choose(self, losses):
            return value

    return Picks


class _Plugin:
    def __init__(self, schedule: type | None = None, selection: type | None = None) -> None:
        self.schedule, self.selection = schedule, selection

    @hookimpl
    def tempsched_register_schedules(self, register: Any) -> None:
        if self.schedule is not None:
            register(self.schedule)

    @hookimpl
    def tempsched_register_selection_policies(self, register: Any) -> None:
        if self.selection is not None:
            register(self.selection)

    @hookimpl
    def tempsched_register_presets(self, register: Any) -> None:
        register(Preset(name="faulty", description="a preset with a faulty part", task="toy", members=2,
                        assign=lambda n: [self.schedule.name if self.schedule else "fixed"] * n,
                        feedback="patience", selection=self.selection.name if self.selection else "min-loss",
                        tau_initial=1.0, tau_min=0.5, tau_max=4.0))


def _run(manager: PluginManager, plugin: object, tmp_path: Path) -> str:
    manager.register(plugin, name="faulty-plugin")
    with pytest.raises(UserError) as info:
        execute(layer(manager.registry, {"plugin": "faulty", "epochs": 2}), manager, tmp_path / "run")
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("value", ["1.5", None, torch.tensor(1.5), float("nan"), float("inf"), True])
def test_schedule_returning_a_non_number_is_named(manager, tmp_path: Path, value: Any) -> None:
    message = _run(manager, _Plugin(schedule=_schedule_returning(value)), tmp_path)
    assert message.startswith("plugin 'faulty-plugin' failed: returns.on_epoch: returned")
    assert "not a finite number" in message


def test_schedule_that_raises_is_named(manager, tmp_path: Path) -> None:
    message = _run(manager, _Plugin(schedule=Raises), tmp_path)
    assert message == "plugin 'faulty-plugin' failed: raises.on_epoch: ValueError: schedule broke"


def test_part_that_fails_to_build_is_named(manager, tmp_path: Path) -> None:
    message = _run(manager, _Plugin(schedule=FailsToBuild), tmp_path)
    assert message == ("plugin 'faulty-plugin' failed building schedule 'fails-to-build': "
                       "RuntimeError: constructor broke")
    assert not (tmp_path / "run").exists()  # nothing was created for a run that could not start


@pytest.mark.parametrize("value", [5, 0.0, -1, "0", None])
def test_selection_returning_no_member_index_is_named(manager, tmp_path: Path, value: Any) -> None:
    message = _run(manager, _Plugin(selection=_selection_returning(value)), tmp_path)
    assert message.startswith("plugin 'faulty-plugin' failed: picks.choose: returned")
    assert "not a member index 0..1" in message


class _LoudListener:
    def __init__(self, hook: str) -> None:
        self.hook = hook

    def _maybe_fail(self, hook: str) -> None:
        if hook == self.hook:
            raise KeyError("listener broke")

    @hookimpl
    def tempsched_run_start(self, info: Any) -> None:
        self._maybe_fail("tempsched_run_start")

    @hookimpl
    def tempsched_epoch_end(self, record: Any) -> None:
        self._maybe_fail("tempsched_epoch_end")

    @hookimpl
    def tempsched_run_end(self, summary: Any) -> None:
        self._maybe_fail("tempsched_run_end")

    @hookimpl
    def tempsched_search_space(self, preset: Any, space: Any) -> None:
        self._maybe_fail("tempsched_search_space")


@pytest.mark.parametrize("hook", ["tempsched_run_start", "tempsched_epoch_end", "tempsched_run_end"])
def test_lifecycle_hook_that_raises_is_named(manager, tmp_path: Path, hook: str) -> None:
    manager.register(_LoudListener(hook), name="loud")
    with pytest.raises(UserError, match=f"^plugin 'loud' failed in {hook}: KeyError: 'listener broke'$"):
        execute(layer(manager.registry, {"plugin": "toy-paper", "epochs": 1}), manager, tmp_path / "run")


def test_search_space_hook_that_raises_is_named(manager) -> None:
    manager.register(_LoudListener("tempsched_search_space"), name="loud")
    base = layer(manager.registry, {"plugin": "toy-paper"})
    with pytest.raises(UserError, match="^plugin 'loud' failed in tempsched_search_space: KeyError"):
        manager.search_space(manager.registry.presets["toy-paper"], SearchSpace.for_run(base, manager.registry))


def test_a_finite_tau_is_still_clamped_not_refused(manager, tmp_path: Path) -> None:
    manager.register(_Plugin(schedule=_schedule_returning(1e9)), name="big")
    execute(layer(manager.registry, {"plugin": "faulty", "epochs": 1}), manager, tmp_path / "run")
    rows = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert '"tau_strategy": 4.0' in rows


class _Recorder:
    """Lifecycle hook implementations that note, in a shared list, when they run (and what they saw)."""

    def __init__(self, calls: list[str], label: str, fail: bool = False) -> None:
        self.calls, self.label, self.fail = calls, label, fail

    @hookimpl
    def tempsched_epoch_end(self, record: Any) -> None:
        self.calls.append(self.label)
        if self.fail:
            raise KeyError("listener broke")


class _Wrapper:
    """A ``wrapper=True`` implementation: it runs before and after the others and sees what they raised."""

    def __init__(self, calls: list[str], fail_after: bool = False) -> None:
        self.calls, self.fail_after = calls, fail_after

    @hookimpl(wrapper=True)
    def tempsched_epoch_end(self, record: Any) -> Any:
        self.calls.append("wrapper before")
        try:
            result = yield
        except Exception as exc:
            self.calls.append(f"wrapper saw {type(exc).__name__}")
            raise
        self.calls.append("wrapper after")
        if self.fail_after:
            raise ValueError("wrapper broke")
        return result


class _First:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl(tryfirst=True)
    def tempsched_epoch_end(self, record: Any) -> None:
        self.calls.append("tryfirst")


def _one_epoch(manager: PluginManager, tmp_path: Path) -> None:
    execute(layer(manager.registry, {"plugin": "toy-paper", "epochs": 1}), manager, tmp_path / "run")


def test_a_wrapper_runs_around_the_other_implementations(manager, tmp_path: Path) -> None:
    calls: list[str] = []
    manager.register(_Wrapper(calls), name="wrapper")
    manager.register(_Recorder(calls, "plain"), name="plain")
    _one_epoch(manager, tmp_path)
    assert calls == ["wrapper before", "plain", "wrapper after"]


def test_a_tryfirst_implementation_runs_first(manager, tmp_path: Path) -> None:
    calls: list[str] = []
    manager.register(_First(calls), name="first")  # registered first: without tryfirst pluggy would call it last
    manager.register(_Recorder(calls, "plain"), name="plain")
    _one_epoch(manager, tmp_path)
    assert calls == ["tryfirst", "plain"]


def test_a_failure_under_a_wrapper_names_its_own_plugin(manager, tmp_path: Path) -> None:
    calls: list[str] = []
    manager.register(_Wrapper(calls), name="wrapper")
    manager.register(_Recorder(calls, "plain", fail=True), name="broken")
    with pytest.raises(UserError, match="^plugin 'broken' failed in tempsched_epoch_end: KeyError: 'listener broke'$"):
        _one_epoch(manager, tmp_path)
    assert calls == ["wrapper before", "plain", "wrapper saw KeyError"]  # the wrapper saw the original exception


def test_a_wrapper_that_fails_is_named(manager, tmp_path: Path) -> None:
    calls: list[str] = []
    manager.register(_Wrapper(calls, fail_after=True), name="bad-wrapper")
    manager.register(_Recorder(calls, "plain"), name="plain")
    with pytest.raises(UserError, match="^plugin 'bad-wrapper' failed in tempsched_epoch_end: ValueError: wrapper broke$"):
        _one_epoch(manager, tmp_path)


def test_batch_end_is_called_only_when_a_plugin_implements_it(manager, tmp_path: Path, monkeypatch) -> None:
    hooks: list[str] = []
    notify = PluginManager.notify
    monkeypatch.setattr(PluginManager, "notify", lambda self, hook, **kw: (hooks.append(hook), notify(self, hook, **kw)))
    _one_epoch(manager, tmp_path / "quiet")
    assert "tempsched_batch_end" not in hooks and "tempsched_epoch_end" in hooks  # nobody listens: no call per batch

    class Batches:
        @hookimpl
        def tempsched_batch_end(self, progress: Any) -> None:
            hooks.append(f"batch {progress.batch}")

    manager.register(Batches(), name="batches")
    hooks.clear()
    _one_epoch(manager, tmp_path / "listened")
    assert [h for h in hooks if h.startswith("batch ")] == ["batch 1"]  # the toy's 64 points: one batch of 128
