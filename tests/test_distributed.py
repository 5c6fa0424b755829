"""Members spread over processes (gloo on the CPU): byte-identical to one process, resume across world sizes,
a killed process ends the run with one line and the run resumes, bad launches refused up front."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from conftest import assert_same_member_state, tiny_gsvae, wait_for
from gate import epoch_gate, epoch_seconds, plugin_env
from test_cli import _one_line_error, cli

from tempsched.build import build
from tempsched.distributed import Spread, _load_member_state, _member_state
from tempsched.plugins import PluginManager

SMALL = ["--val-size", "64", "--test-size", "64", "--option", "z1=[8,4]", "--option", "z2=[4,4]",
         "--option", "channels=[8,16]", "--threads", "1", "--seed", "5", "--patience", "1"]
TINY = ["--members", "3", "--train-size", "320", "--batch-size", "64", *SMALL]


def _state(run: Path) -> dict[str, Any]:
    return torch.load(run / "state.pt", weights_only=True)


def _equal(a: Any, b: Any) -> bool:
    """Nested checkpoint contents equal, tensors bit for bit, NaN to NaN."""
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:  # a NaN (the saved loss of a diverged or retired member) equals a NaN
        return isinstance(b, float) and b != b
    return a == b


def _same_run(a: Path, b: Path) -> None:
    """Byte-equal metrics, weight-equal best.pt, the same population state (not its timings)."""
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
    best_a, best_b = (torch.load(run / "best.pt", weights_only=True) for run in (a, b))
    assert best_a["member"] == best_b["member"] and _equal(best_a["model"], best_b["model"])
    assert _equal(_state(a)["population"], _state(b)["population"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One process for 2 and for 3 epochs, and 2 processes for 2 epochs (members 1 | 2 3), same seed."""
    root = tmp_path_factory.mktemp("distributed")
    out = {}
    for name, args in (("one-2", ["--epochs", "2"]), ("one-3", ["--epochs", "3"]),
                       ("two-2", ["--epochs", "2", "--procs", "2"])):
        code = _main("run", *TINY, *args, "--out", str(root / name))
        assert code == 0, name
        out[name] = root / name
    return out


def _main(*args: str) -> int:
    """The CLI in this process, its exit status (output goes where pytest puts it)."""
    from tempsched.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_two_processes_write_what_one_process_writes(runs: dict[str, Path]) -> None:
    _same_run(runs["one-2"], runs["two-2"])
    rows = [json.loads(line) for line in (runs["two-2"] / "metrics.jsonl").read_text().splitlines()]
    assert any(r["member"] > 1 for r in rows if r["best"])  # process 1 (members 2, 3) sent the best state


@pytest.mark.parametrize("procs", [1, 2])
def test_a_two_process_run_resumes_with_any_number_of_processes(runs: dict[str, Path], procs: int,
                                                                tmp_path: Path) -> None:
    run = Path(shutil.copytree(runs["two-2"], tmp_path / "run"))
    assert _main("run", "--resume", str(run), "--epochs", "3", "--procs", str(procs)) == 0
    _same_run(runs["one-3"], run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_killed_process_ends_the_run_with_one_line_and_it_resumes(tmp_path: Path, capsys) -> None:
    """torchrun's environment by hand (process 0 hosts the store): kill -9 rank 1 mid-epoch; process 0 stops
    within 60 s with one line, epoch 1's files intact.

    The test plugin ``test-gate`` holds process 0 in the middle of each epoch, so the kill falls inside epoch 2
    on a machine of any speed: rank 1 is then training epoch 2 or waiting for process 0 at its end. Process 0
    goes on at once after the kill, and its watchdog has to notice. Epoch 1 is held longer than --peer-timeout
    while rank 1 waits, silent but alive, which must not stop the run."""
    run, timeout, gates = tmp_path / "run", 2, tmp_path / "gates"
    args = [sys.executable, "-m", "tempsched", "run", *SMALL, "--members", "2", "--batch-size", "16",
            "--epochs", "2", "--peer-timeout", str(timeout), "--out", str(run)]
    env = {**os.environ, **plugin_env(gates, epochs=[0, 1]), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    ranks = [subprocess.Popen(args, env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for r in (0, 1)]
    try:
        first, second = epoch_gate(gates, 0), epoch_gate(gates, 1)
        assert first.reached(ranks[0]), ranks[0].communicate()
        # A live process silent for longer than --peer-timeout is the case to check, so this wait is on the clock.
        until = time.monotonic() + 1.5 * timeout
        wait_for(lambda: time.monotonic() > until, "the hold to outlast --peer-timeout")
        first.open()
        assert second.reached(ranks[0]), ranks[0].communicate()
        ranks[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        second.open()
        _, stderr = ranks[0].communicate(timeout=60)
        assert time.monotonic() - killed < 60
    finally:
        for p in ranks:
            p.kill()
            p.wait()
    state = _state(run)
    assert state["population"]["epoch"] == 1 and epoch_seconds(gates, 0) > timeout  # an epoch outlasts the timeout
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert ranks[0].returncode == 2 and len(lines) == 1, stderr
    assert lines[0].startswith("error: rank 1 of 2 stopped answering") and f"--resume {run}" in lines[0]
    assert {json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()} == {0}
    code, stdout, stderr = cli("run", "--resume", str(run), capsys=capsys)
    assert code == 0, stderr
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [0, 0, 1, 1]


@pytest.mark.parametrize("args,needle", [
    (["--procs", "4"], "--procs 4 for 3 members"),
    (["--procs", "0"], "Invalid value for '--procs'"),
    (["--procs", "2", "--device", "cuda"], "device 'cuda' requested"),
    (["--procs", "2", "--peer-timeout", "0"], "Invalid value for '--peer-timeout'"),
])
def test_bad_launches_are_one_line_before_anything_starts(args: list[str], needle: str, tmp_path: Path,
                                                          capsys) -> None:
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, stderr = cli("run", *TINY, *args, "--out", str(tmp_path / "run"), capsys=capsys)
    _one_line_error(code, stderr, needle)
    assert not (tmp_path / "run").exists()


def test_slices_are_contiguous_balanced_and_smaller_first() -> None:
    for members, world in ((3, 2), (8, 3), (8, 8), (5, 1)):
        spreads = [Spread(SimpleNamespace(world=world, rank=r), members) for r in range(world)]  # type: ignore[arg-type]
        slices = [list(s.mine) for s in spreads]
        assert sum(slices, []) == list(range(members))
        assert max(map(len, slices)) - min(map(len, slices)) <= 1 and len(slices[0]) == min(map(len, slices))
        assert all(spreads[0].owner(k) == r for r, part in enumerate(slices) for k in part)


def test_sent_member_state_equals_a_copy_in_memory(manager: PluginManager) -> None:
    """What ``share`` sends (weights, Adam moments, Adam's CPU step, settings) is what copy_member_state copies."""
    built = build(tiny_gsvae(manager), manager)
    task, (a, b, _) = built.task, built.population.members
    batches = list(task.batches(0))
    for batch, member in ((batches[0], a), (batches[1], a), (batches[2], b)):
        task.train_step(member.model, member.optimizer, batch, member.tau, member.generator)
    layout, tensors = _member_state(a)
    _load_member_state(b, layout, [t.clone() for t in tensors])
    assert_same_member_state(a, b)
    for pb in b.model.parameters():
        assert b.optimizer.state[pb]["step"].device.type == "cpu"
    assert a.optimizer.param_groups[0]["lr"] == b.optimizer.param_groups[0]["lr"]
