"""Members stacked (torch.func.vmap over the members' weights) against the reference loop, for the ReinMax
benchmark's MLP VAE (10x30), side by side on this machine: issue 21's population of straight-through members.

Each side is the issue-21 population (``pbt``, the grid's temperatures as members) on the first
``--train-size`` MNIST images, in a fresh process, one after the other; the figure per side is its fastest
epoch after the first. The vmap stepper computes the same losses as the loop (tests/test_estimators.py), so
the final selection losses are shown beside the times as a check, not a result.
Usage: python benchmarks/stacked_members.py [--quick] [--epochs 3] [--train-size 6000] [--threads 1]
"""

from __future__ import annotations

import json
from pathlib import Path

from _common import SHARED_DATA, append_section
from _population import command_line, emit, epoch_figures, in_subprocess, timed_run
from pbt_vs_grid import Budget, Cell, run_spec

from tempsched.plugins import PluginManager

BACKENDS = ("loop", "vmap")
ESTIMATORS = ("st-gs", "reinmax")


def worker(spec: str) -> None:
    args = json.loads(spec)
    manager = PluginManager()
    cell = Cell(args["estimator"], 0, "population")
    budget = Budget(args["epochs"], args["train_size"], 1000)
    config = run_spec(manager, cell, budget, SHARED_DATA, args["threads"], "population", Path("unused")) \
        .with_overrides({"performance.backend": args["backend"]}).resolve(manager.registry)
    emit({**(result := timed_run(config, manager)), **epoch_figures(result), "members": config.members})


def measure(estimator: str, backend: str, epochs: int, train_size: int, threads: int) -> dict:
    spec = {"estimator": estimator, "backend": backend, "epochs": epochs, "train_size": train_size,
            "threads": threads}
    result = in_subprocess(__file__, json.dumps(spec))
    print(f"{estimator} {backend}: {result['epoch_seconds']:.2f} s/epoch, final loss {result['final_loss']:.4f}",
          flush=True)
    return result


def main() -> None:
    parsed = command_line(__doc__, worker)
    if parsed is None:
        return
    args, epochs, size = parsed
    threads = args.threads or 1
    results = {(e, b): measure(e, b, epochs, size, threads) for e in ESTIMATORS for b in BACKENDS}
    lines = ["| estimator | members | loop s/epoch | vmap s/epoch | vmap speed vs loop | final loss loop / vmap |",
             "|---|---|---|---|---|---|"]
    for e in ESTIMATORS:
        loop, vmap = results[(e, "loop")], results[(e, "vmap")]
        lines.append(f"| {e} | {loop['members']} | {loop['epoch_seconds']:.2f} | {vmap['epoch_seconds']:.2f} | "
                     f"{loop['epoch_seconds'] / vmap['epoch_seconds']:.2f}x | "
                     f"{loop['final_loss']:.4f} / {vmap['final_loss']:.4f} |")
    faster = [e for e in ESTIMATORS if results[(e, "vmap")]["epoch_seconds"] < results[(e, "loop")]["epoch_seconds"]]
    lines += ["", f"{epochs} epochs on the first {size} MNIST training images (10 % held out), batch 100, "
              f"torch threads {threads}; each side in a fresh process, one after the other. "
              + (f"Stacked members were faster for {', '.join(faster)}." if faster else
                 "Stacked members were not faster than the loop for either estimator on this CPU.")]
    append_section("Stacked members (vmap) vs the loop: the ReinMax benchmark's MLP population", "\n".join(lines))


if __name__ == "__main__":
    main()
