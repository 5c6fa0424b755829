"""Helpers for the population benchmarks: one MNIST configuration, runs in fresh processes, timings.

Each measured run goes to its own Python process, so that one run's peak memory, warmed caches or
thread settings never leak into the next; the parent collects a JSON line from each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TEMPSCHED_PLUGINS", "")

import torch  # noqa: E402
from _common import SHARED_DATA, header  # noqa: E402

from tempsched.config import RunConfig  # noqa: E402
from tempsched.plugins import PluginManager  # noqa: E402
from tempsched.session import execute  # noqa: E402
from tempsched.spec import RunSpec  # noqa: E402

RESULT_PREFIX = "RESULT "


def mnist_config(manager: PluginManager, members: int, epochs: int, train_size: int, seed: int = 0,
                 **performance: Any) -> RunConfig:
    """paper-default with ``members`` members on the first ``train_size`` MNIST images (0: all)."""
    return RunSpec({
        "plugin": "paper-default", "members": members, "epochs": epochs, "seed": seed,
        "data": {"dataset": "mnist", "data_dir": str(SHARED_DATA), "train_size": train_size},
        "performance": performance,
    }).resolve(manager.registry)


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_run(config: RunConfig, manager: PluginManager) -> dict[str, Any]:
    """Run ``config`` in a scratch directory; per-epoch timings (wall, own passes, engine) and the result."""
    epochs: list[Any] = []  # the run's per-epoch records (train/eval/engine/save seconds, rows)
    work = Path(tempfile.mkdtemp(prefix="tempsched-bench-"))
    try:
        summary = execute(config, manager, work / "run", on_epoch=epochs.append)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "epochs": [{"train": e.train_seconds, "eval": e.eval_seconds, "engine": e.engine_seconds,
                    "save": e.save_seconds} for e in epochs],
        "best_loss": summary.best_loss, "final_loss": min(r["loss"] for r in epochs[-1].rows),
        "wall": summary.wall_seconds, "peak_rss_mb": peak_rss_mb(),
    }


def epoch_figures(result: dict[str, Any]) -> dict[str, float]:
    """Wall time and engine share of the fastest epoch, leaving out the first (warm-up) when there are more.

    The fastest epoch, not the mean: on a shared machine other jobs only ever slow an epoch down.
    """
    epoch = min(result["epochs"][1:] or result["epochs"], key=lambda e: sum(e.values()))
    wall = sum(epoch.values())
    return {"epoch_seconds": wall, "overhead_share": (epoch["engine"] + epoch["save"]) / wall}


def in_subprocess(script: str, *args: str) -> dict[str, Any]:
    """Run ``script --worker args`` in a fresh interpreter and return the JSON it prints last."""
    out = subprocess.run([sys.executable, script, "--worker", *args], capture_output=True, text=True,
                         cwd=Path(script).resolve().parent)
    lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if out.returncode or not lines:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def emit(result: dict[str, Any]) -> None:
    """A worker's answer to ``in_subprocess``."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def command_line(doc: str, worker: Callable[[str], None], quick: str = "2 epochs on 2000 images",
                 members: bool = False) -> tuple[argparse.Namespace, int, int] | None:
    """The options every population benchmark takes: (args, epochs, train images), or None in a worker.

    In a worker process (``--worker SPEC``) it runs ``worker(SPEC)`` instead and returns None; otherwise it
    prints the machine line (``header``) before returning.
    """
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help=quick)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=6000, help="first N MNIST training images")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for every side (0: torch's default); 1 keeps a busy shared machine fair")
    if members:
        ap.add_argument("--members", type=int, default=8)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return None
    if args.threads:
        torch.set_num_threads(args.threads)  # also what the section's machine line reports
    header()  # the machine line first, before any figure
    epochs, size = (2, 2000) if args.quick else (args.epochs, args.train_size)
    return args, epochs, size


def tempsched_side(members: int, epochs: int, train_size: int, threads: int) -> dict[str, Any]:
    """tempsched with its defaults (but ``threads``), as the comparisons run it."""
    manager = PluginManager()
    return timed_run(mnist_config(manager, members, epochs, train_size, threads=threads), manager)


def verdict(ours: dict[str, Any], other: dict[str, Any], target: float) -> str:
    """Speed-up over ``other`` and the final-loss gap, each against its target (speed-up, loss within 2%)."""
    speedup = other["wall"] / ours["wall"]
    gap = ours["final_loss"] / other["final_loss"] - 1
    speed = "met" if speedup >= target else f"MISSED by {100 * (1 - speedup / target):.0f}%"
    loss = "met" if abs(gap) <= 0.02 else "MISSED"
    return (f"- tempsched is {speedup:.2f}x faster (target >= {target:g}x: {speed}); its final validation loss "
            f"differs by {100 * gap:+.2f}% (target within 2%: {loss}).")
