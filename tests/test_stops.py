"""Runs stopped from outside: kill -9 before the first checkpoint, SIGTERM, a killed ``--procs`` launcher; and
checkpoints that do not load, each one line that says what to do."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import pytest
import torch
from conftest import WAIT_SECONDS, wait_for
from gate import epoch_gate, plugin_env
from test_cli import _one_line_error, cli

from tempsched import session
from tempsched.errors import UserError

TINY = ["--members", "2", "--train-size", "320", "--val-size", "64", "--test-size", "64", "--batch-size", "64",
        "--option", "z1=[8,4]", "--option", "z2=[4,4]", "--option", "channels=[8,16]", "--threads", "1"]
PEER_TIMEOUT = 30  # --peer-timeout of the launcher tests: every process must be gone within it


def _held_run(tmp_path: Path, epoch: int, *options: str) -> subprocess.Popen[str]:
    """``tempsched run OPTIONS`` in a process of its own, returned once it is held in epoch ``epoch`` (0-based)."""
    gates = tmp_path / "gates"
    process = subprocess.Popen([sys.executable, "-m", "tempsched", "run", *options],
                               env={**os.environ, **plugin_env(gates, [epoch])},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert epoch_gate(gates, epoch).reached(process), process.communicate()[1]
    return process


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# --- kill -9 before the first checkpoint: the same command starts afresh, --resume says so --------------------


@pytest.fixture
def killed_before_first_checkpoint(tmp_path: Path) -> tuple[Path, list[str]]:
    """A run killed with kill -9 in its first epoch, and the options that started it."""
    run = tmp_path / "run"
    options = [*TINY, "--epochs", "1", "--out", str(run)]
    process = _held_run(tmp_path, 0, *options)
    process.kill()
    process.communicate()
    assert sorted(p.name for p in run.iterdir()) == [".lock", "config.toml", "spec.json"]
    return run, options


def test_the_same_command_starts_a_run_killed_before_its_first_checkpoint_afresh(
        killed_before_first_checkpoint: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    run, options = killed_before_first_checkpoint
    code, _, stderr = cli("run", *options, capsys=capsys)
    assert code == 0, stderr
    assert torch.load(run / "state.pt", weights_only=True)["population"]["epoch"] == 1
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2 and not (run / ".lock").exists()


def test_resume_of_a_run_killed_before_its_first_checkpoint_is_one_line_and_changes_nothing(
        killed_before_first_checkpoint: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    run, options = killed_before_first_checkpoint
    before = _snapshot(run)
    code, _, stderr = cli("run", "--resume", str(run), capsys=capsys)
    _one_line_error(code, stderr, f"{run} has no checkpoint (the run stopped before its first epoch ended): "
                                  "run the same command without --resume to start it afresh")
    assert _snapshot(run).keys() == before.keys() and (run / "config.toml").read_bytes() == before["config.toml"]
    assert cli("run", *options, capsys=capsys)[0] == 0  # and the advice works after the refusal too


def test_a_folder_without_a_sign_of_a_killed_run_is_not_taken_over(finished: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Only a run that died holding its folder leaves ``.lock``: a folder that holds a run's config.toml and no
    state.pt otherwise (copied there, or state.pt deleted) is neither started afresh nor resumed."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_bytes((finished / "config.toml").read_bytes())
    before = _snapshot(run)
    code, _, stderr = cli("run", *TINY, "--epochs", "1", "--out", str(run), capsys=capsys)
    _one_line_error(code, stderr, "already holds a run")
    code, _, stderr = cli("run", "--resume", str(run), capsys=capsys)
    _one_line_error(code, stderr, f"{run} has no checkpoint (state.pt), so there is nothing to resume")
    assert _snapshot(run) == before


# --- SIGTERM is Ctrl+C ---------------------------------------------------------------------------------------


def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    process = _held_run(tmp_path, 1, *TINY, "--epochs", "2", "--out", str(run))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode == 130 and _lines(stderr) == [f"interrupted: resume with  tempsched run --resume {run}"]
    assert not (run / ".lock").exists()
    assert torch.load(run / "state.pt", weights_only=True)["population"]["epoch"] == 1
    code, _, stderr = cli("run", "--resume", str(run), capsys=capsys)
    assert code == 0, stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4


# --- a --procs launcher killed or stopped ---------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    """The processes ``pid`` started and theirs, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` is alive (a zombie waiting for a parent to reap it has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("stop,line", [
    (signal.SIGKILL, "error: the tempsched process that launched this run (pid {pid}) was killed; "
                     "resume with  tempsched run --resume {run}"),
    (signal.SIGTERM, "interrupted: resume with  tempsched run --resume {run}"),
], ids=["kill-9", "sigterm"])
def test_stopping_the_procs_launcher_ends_every_process_with_one_line(stop: signal.Signals, line: str,
                                                                     tmp_path: Path) -> None:
    run = tmp_path / "run"
    launcher = subprocess.Popen([sys.executable, "-m", "tempsched", "run", *TINY, "--epochs", "1000", "--procs", "2",
                                 "--peer-timeout", str(PEER_TIMEOUT), "--out", str(run)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    processes: set[int] = set()
    try:
        wait_for(lambda: (run / "state.pt").exists() or launcher.poll() is not None, "the first checkpoint")
        assert launcher.poll() is None, launcher.communicate()[1]
        processes = _children(launcher.pid)
        assert len(processes) >= 2  # the two ranks (and multiprocessing's resource tracker)
        launcher.send_signal(stop)
        wait_for(lambda: not any(_running(p) for p in processes), "every process of the run to end",
                 timeout=PEER_TIMEOUT)
        _, stderr = launcher.communicate(timeout=WAIT_SECONDS)  # the ranks wrote to the launcher's stderr
    finally:
        launcher.kill()
        for pid in filter(_running, processes):
            os.kill(pid, signal.SIGKILL)
    assert _lines(stderr) == [line.format(pid=launcher.pid, run=run)], stderr  # no C++ stack dumps either
    assert stop == signal.SIGKILL or launcher.returncode == 130
    assert torch.load(run / "state.pt", weights_only=True)["population"]["epoch"] >= 1
    assert not (run / ".lock").exists()


# --- checkpoints that do not load: one line that says what to do -----------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("stops") / "run"
    from tempsched.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["run", *TINY, "--epochs", "1", "--out", str(run)])
    assert exit_.value.code == 0
    return run


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished run to break."""
    copy = tmp_path / "run"
    copy.mkdir()
    for path in finished.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    return copy


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _flip_a_byte(path: Path) -> None:
    """One byte of the pickled contents changed, as a bad disk or copy does (the archive stays whole)."""
    with zipfile.ZipFile(path) as archive:
        offset = next(i for i in archive.infolist() if i.filename.endswith("/data.pkl")).header_offset
    data = bytearray(path.read_bytes())
    name, extra = struct.unpack("<HH", data[offset + 26:offset + 30])  # the local file header's field lengths
    data[offset + 30 + name + extra] ^= 0xFF  # the first opcode of the pickle
    path.write_bytes(bytes(data))


def _other_weights(path: Path) -> None:
    """best.pt of the right kind and configuration whose weights belong to another model."""
    best = torch.load(path, weights_only=True)
    best["model"] = torch.nn.Linear(3, 2).state_dict()
    torch.save(best, path)


@pytest.mark.parametrize("name,breaker,args,needle", [
    ("state.pt", _cut, ["run", "--resume", "{run}", "--epochs", "2"],
     "(not a torch archive: cut off, overwritten, or another kind of file): put back an intact copy"),
    ("state.pt", lambda p: p.write_bytes(b""), ["run", "--resume", "{run}", "--epochs", "2"],
     "(the file is empty): put back an intact copy"),
    ("state.pt", _flip_a_byte, ["run", "--resume", "{run}", "--epochs", "2"],
     "fails its checksum: damaged on disk or in a copy"),
    ("best.pt", _other_weights, ["eval", "recon", "{run}", "--out", "{report}"],
     "best.pt does not fit the model of its configuration (Error(s) in loading state_dict for"),
    ("best.pt", _other_weights, ["run", "--resume", "{run}"],  # a finished run: straight to reading best.pt
     "best.pt does not fit the model of its configuration (Error(s) in loading state_dict for"),
], ids=["cut-state", "empty-state", "flipped-byte", "foreign-weights-eval", "foreign-weights-finish"])
def test_a_checkpoint_that_does_not_load_is_one_line_that_says_what_to_do(
        run: Path, name: str, breaker: Callable[[Path], None], args: list[str], needle: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    breaker(run / name)
    code, _, stderr = cli(*(arg.format(run=run, report=run.parent / "report") for arg in args), capsys=capsys)
    _one_line_error(code, stderr, needle)


def test_a_user_error_of_several_lines_is_printed_as_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The last guard: whatever message a UserError quotes (a plugin's, a library's), the CLI prints one line."""
    def fails(*args: object, **kwargs: object) -> None:
        raise UserError("plugin 'x' failed: Error(s) in loading:\n\tMissing key(s): 'a'.\n\tUnexpected key(s): 'b'.")

    monkeypatch.setattr(session, "execute", fails)
    code, _, stderr = cli("run", *TINY, "--out", str(tmp_path / "run"), capsys=capsys)
    _one_line_error(code, stderr, "failed: Error(s) in loading: Missing key(s): 'a'. Unexpected key(s): 'b'.")
