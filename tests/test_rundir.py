"""The run directory: one process per run, resume only from files that belong together, metrics.jsonl
that stays JSON, no orphan folder after an early failure, and a resume's new epoch count saved."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import tomli_w
import torch
from conftest import tiny_gsvae
from gate import Gate
from test_cli import _one_line_error, _snapshot, cli

from tempsched import hookimpl, rundir, session
from tempsched.engine import Population
from tempsched.errors import UserError
from tempsched.plugins import PluginManager

WORKER = Path(__file__).with_name("rundir_worker.py")
TIMEOUT = 300


def _tiny(manager: PluginManager, **overrides: Any) -> Any:
    return tiny_gsvae(manager, **{"members": 2, "performance": {"threads": 1}, **overrides})


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _epochs(run: Path) -> list[int]:
    return [row["epoch"] for row in _rows(run)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two finished runs, made once: 'base' (2 epochs, seed 0) and 'other' (1 epoch, seed 1)."""
    root = tmp_path_factory.mktemp("finished")
    manager = PluginManager()
    session.execute(_tiny(manager, epochs=2), manager, root / "base")
    session.execute(_tiny(manager, epochs=1, seed=1), manager, root / "other")
    return {"base": root / "base", "other": root / "other"}


@pytest.fixture
def run(finished: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the finished 2-epoch run to resume or break."""
    return Path(shutil.copytree(finished["base"], tmp_path / "run"))


# --- one process per run directory -------------------------------------------------------------------


def test_a_run_directory_has_one_holder_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "run"
    with rundir.RunDir(path).hold(new=True):
        assert (path / ".lock").read_text() == f"{os.getpid()}\n"
        for new in (False, True):
            with pytest.raises(UserError, match=rf"in use by another tempsched process \(pid {os.getpid()}\)"):
                with rundir.RunDir(path).hold(new=new):
                    pass
        assert (path / ".lock").is_file()
    assert list(path.iterdir()) == []  # the lock file goes with its holder


def test_exclusive_write_never_replaces_a_file(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_text("first")
    with pytest.raises(UserError, match="already exists"):
        rundir.write_text(target, "second", exclusive=True)
    assert list(tmp_path.iterdir()) == [target] and target.read_text() == "first"


@pytest.fixture
def paused_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A 2-epoch run training in another process, holding its directory after epoch 1 until released."""
    path = tmp_path / "run"
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, str(WORKER), str(path), "2", "1"], stdout=subprocess.DEVNULL,
                              stderr=log)
    gate = Gate(tmp_path, path.name)
    try:
        assert gate.reached(worker), (tmp_path / "worker.log").read_text()
        yield worker, path
    finally:
        gate.open()
        worker.wait(TIMEOUT)
        log.close()


def _cli_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line in a process of its own."""
    return subprocess.run([sys.executable, "-c", "from tempsched.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_a_second_process_is_refused_while_a_run_trains(paused_run: tuple[subprocess.Popen[bytes], Path],
                                                        tmp_path: Path) -> None:
    worker, path = paused_run
    config = tmp_path / "tiny.toml"
    config.write_text(_tiny(PluginManager(), epochs=2).to_toml())
    before = _snapshot(path)
    for args in (["--resume", str(path)], ["--config", str(config), "--out", str(path)]):
        done = _cli_process("run", *args)
        _one_line_error(done.returncode, done.stderr, f"is in use by another tempsched process (pid {worker.pid})")
    assert _snapshot(path) == before

    Gate(tmp_path, path.name).open()
    assert worker.wait(TIMEOUT) == 0, (tmp_path / "worker.log").read_text()
    assert _epochs(path) == [0, 0, 1, 1]
    assert not (path / ".lock").exists()


def test_a_killed_run_leaves_no_stale_lock(paused_run: tuple[subprocess.Popen[bytes], Path]) -> None:
    worker, path = paused_run
    assert (path / ".lock").read_text() == f"{worker.pid}\n"
    worker.kill()  # SIGKILL: no cleanup runs, the lock file stays behind
    worker.wait(TIMEOUT)
    done = _cli_process("run", "--resume", str(path))
    assert done.returncode == 0, done.stderr
    assert _epochs(path) == [0, 0, 1, 1]
    assert not (path / ".lock").exists()


# --- resume only from a state, configuration and metrics that belong together -------------------------


def test_fingerprint_ignores_exactly_what_a_resume_may_change() -> None:
    config = _tiny(PluginManager()).to_dict()
    allowed = copy.deepcopy(config)
    allowed["epochs"] += 5
    allowed["device"] = "cuda"
    allowed["performance"] = {**allowed["performance"], "threads": 7, "a_new_setting": True}
    assert rundir.fingerprint(allowed) == rundir.fingerprint(config)

    def leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        for key, value in tree.items():
            yield from leaves(value, (*prefix, key)) if isinstance(value, dict) else [(*prefix, key)]

    checked = 0
    for keys in leaves(config):
        if any(".".join(keys) == k or ".".join(keys).startswith(f"{k}.") for k in rundir.RESUMABLE_KEYS):
            continue
        changed = copy.deepcopy(config)
        node = changed
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = [node[keys[-1]]]
        assert rundir.fingerprint(changed) != rundir.fingerprint(config), keys
        checked += 1
    assert checked > 10


def _edit_config(run: Path, suffix: str, change: Callable[[Any], Any]) -> None:
    """Change the one config.toml value whose dotted key ends in ``suffix``, wherever the layout puts it."""
    path = run / "config.toml"
    data = tomllib.loads(path.read_text())

    def paths(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        for key, value in tree.items():
            yield from paths(value, (*prefix, key)) if isinstance(value, dict) else [(*prefix, key)]

    (found,) = [keys for keys in paths(data) if ".".join(keys).endswith(suffix)]
    node = data
    for key in found[:-1]:
        node = node[key]
    node[found[-1]] = change(node[found[-1]])
    path.write_text(tomli_w.dumps(data))


def _edit_state(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path, dict[str, Path]], None]:
    def breaker(run: Path, _: dict[str, Path]) -> None:
        state = torch.load(run / "state.pt", weights_only=True)
        change(state)
        torch.save(state, run / "state.pt")

    return breaker


def _replace_metrics_line(run: Path, _: dict[str, Path]) -> None:
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = '{"epoch": 0, "member": 2, "lo\n'
    (run / "metrics.jsonl").write_text("".join(lines))


@pytest.mark.parametrize("breaker,needle", [
    (lambda run, _: _edit_config(run, "tau.max", lambda v: v / 2), "they differ in tau.max"),
    (lambda run, _: _edit_config(run, "learning_rate", lambda v: v * 2), "learning_rate"),
    (lambda run, other: shutil.copy(other["other"] / "state.pt", run / "state.pt"), "they differ in seed"),
    (lambda run, other: shutil.copy(other["other"] / "best.pt", run / "best.pt"), "best.pt does not belong"),
    (_edit_state(lambda s: s.pop("fingerprint")), "predates configuration fingerprints"),
    (_edit_state(lambda s: s["population"].update(epoch=-5)), "it says -5 epochs are done"),
    (_edit_state(lambda s: s["population"].update(epoch=3)), "holds 0 rows of epoch 3"),
    (_edit_state(lambda s: s.pop("best_loss")), "is damaged or incomplete"),
    (_edit_state(lambda s: s["population"]["members"][0].pop("tau")), "is damaged or incomplete"),
    (_edit_state(lambda s: s["population"]["members"][1].update(tau=1e6)), "tau 1e+06 lies outside"),
    (_replace_metrics_line, "metrics.jsonl line 2 is damaged"),
], ids=["tau-bounds-edited", "learning-rate-edited", "state-of-another-seed", "best-of-another-run",
        "state-without-fingerprint", "negative-epoch", "epoch-beyond-metrics", "missing-key",
        "member-missing-key", "tau-out-of-bounds", "bad-middle-metrics-line"])
def test_resume_refuses_files_that_do_not_belong_together(
        run: Path, finished: dict[str, Path], breaker: Callable[[Path, dict[str, Path]], None], needle: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    breaker(run, finished)
    before = _snapshot(run)
    code, _, stderr = cli("run", "--resume", str(run), "--epochs", "3", capsys=capsys)
    _one_line_error(code, stderr, needle)
    assert _snapshot(run) == before


def test_resume_refuses_fewer_epochs_than_done(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(run)
    code, _, stderr = cli("run", "--resume", str(run), "--epochs", "1", capsys=capsys)
    _one_line_error(code, stderr, "has already trained 2 epochs, more than the 1 asked for")
    assert _snapshot(run) == before


# --- metrics.jsonl ------------------------------------------------------------------------------------


def test_nonfinite_values_are_written_as_null_and_read_back(tmp_path: Path) -> None:
    run = rundir.RunDir(tmp_path)
    run.append_metrics([{"epoch": 0, "member": 1, "tau": 1.0, "loss": float("nan"), "train_loss": float("-inf")}])

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    row = json.loads((tmp_path / "metrics.jsonl").read_text(), parse_constant=refuse)
    assert row["loss"] is None and row["train_loss"] is None
    assert row["nonfinite"] == {"loss": "nan", "train_loss": "-inf"}
    (back,) = run.read_metrics()
    assert math.isnan(back["loss"]) and back["train_loss"] == float("-inf") and back["tau"] == 1.0
    assert "nonfinite" not in back


# --- a run that fails before its first checkpoint leaves nothing behind -----------------------------


class _FailingStart:
    @hookimpl
    def tempsched_run_start(self, info: Any) -> None:
        raise RuntimeError("this plugin is broken")


def _interrupt(self: Population) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize("failure", ["plugin-hook", "first-epoch"])
@pytest.mark.parametrize("folder", ["made-by-the-run", "already-there"])
def test_failure_before_the_first_checkpoint_leaves_no_orphan(failure: str, folder: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    manager = PluginManager()
    config = _tiny(manager, epochs=1)
    if failure == "plugin-hook":
        manager.register(_FailingStart(), name="failing")
    else:
        monkeypatch.setattr(Population, "run_epoch", _interrupt)
    out = tmp_path / "parent" / "run" if folder == "made-by-the-run" else tmp_path / "mine"
    if folder == "already-there":
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    with pytest.raises((RuntimeError, KeyboardInterrupt, UserError)):
        session.execute(config, manager, out)
    if folder == "made-by-the-run":
        assert list(tmp_path.iterdir()) == []  # the run folder and the parent it made are gone
    else:
        assert _snapshot(out) == {"notes.txt": b"keep me"}


def test_out_of_range_seed_leaves_no_orphan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(_tiny(PluginManager(), epochs=1).to_toml())
    out = tmp_path / "run"
    try:
        cli("run", "--config", str(config), "--seed", str(2**63 - 1), "--out", str(out), capsys=capsys)
    except (ValueError, RuntimeError, OverflowError):
        pass  # the task refuses the seed during the first epoch (a one-line error once the config checks it)
    assert not out.exists()


# --- a resume's new epoch count is saved ---------------------------------------------------------------


def test_resume_saves_a_new_epoch_count(run: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    execute = session.execute

    def interrupted_after_epoch_3(*args: Any, **kwargs: Any) -> Any:
        def stop(record: Any) -> None:
            if record.epoch == 2:
                raise KeyboardInterrupt

        return execute(*args, **kwargs, on_epoch=stop)

    monkeypatch.setattr(session, "execute", interrupted_after_epoch_3)
    code, _, stderr = cli("run", "--resume", str(run), "--epochs", "4", capsys=capsys)
    assert code == 130 and "tempsched run --resume" in stderr
    monkeypatch.undo()
    assert tomllib.loads((run / "config.toml").read_text())["epochs"] == 4
    code, _, stderr = cli("run", "--resume", str(run), capsys=capsys)  # what the hint says
    assert code == 0, stderr
    assert _epochs(run) == [0, 0, 1, 1, 2, 2, 3, 3]
