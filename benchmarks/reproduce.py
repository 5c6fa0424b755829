"""Fill docs/reproduction.md cell by cell: the paper's experiments at the budgets of issue 11.

Each cell trains its runs through ``training.ensure_run`` under ``runs/repro/`` (a finished run is reused,
a cut-off one resumed), runs its evaluations into ``runs/repro/reports/<cell>/`` and records that it is
done; rerun the script after a session ends and it continues where it stopped. ``--cells a,b`` runs only
those; ``--list`` shows every cell with its state; ``--write-docs`` regenerates docs/reproduction.md from
the finished cells (commentary lives in ``benchmarks/reproduction_notes.md`` and is copied in by heading).

    python benchmarks/reproduce.py --cells mnist-population --threads 1
    python benchmarks/reproduce.py --write-docs
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = "../shared/datasets"
REPRO = ROOT / "runs" / "repro"


@dataclass(frozen=True)
class Cell:
    """One piece of docs/reproduction.md: the runs it trains and the evaluations that read them."""

    name: str
    what: str
    budget: str
    run: dict[str, Any]  # the population's configuration (TOML-shaped)
    evaluations: tuple[tuple[str, dict[str, Any]], ...] = ()


def _gsvae(dataset: str, **task: Any) -> dict[str, Any]:
    return {"dataset": dataset, "data_dir": DATA, **task}


CELLS: tuple[Cell, ...] = (
    Cell("mnist-population", "MNIST, paper-default n = 8, 10 epochs, seed 0, with the fair baselines",
         "full MNIST (54,000 train / 6,000 val / 10,000 test), 10 epochs, n = 8, CPU",
         {"plugin": "paper-default", "members": 8, "epochs": 10, "seed": 0, "task_options": _gsvae("mnist")},
         (("recon", {"baselines": True}), ("tau-sweep", {}), ("latents", {}))),
    Cell("fashion-population", "Fashion-MNIST, paper-default n = 8, 10 epochs, seed 0, with the fair baselines",
         "full Fashion-MNIST, 10 epochs, n = 8, CPU",
         {"plugin": "paper-default", "members": 8, "epochs": 10, "seed": 0,
          "task_options": _gsvae("fashion-mnist")},
         (("recon", {"baselines": True}), ("tau-sweep", {}), ("latents", {}))),
)


def _config(manager: Any, toml: dict[str, Any], threads: int) -> Any:
    from tempsched.config import layer

    return layer(manager.registry, toml, {"performance.threads": threads} if threads else None)


def _state(cell: Cell) -> str:
    done = REPRO / "cells" / f"{cell.name}.json"
    return "done" if done.is_file() else "to do"


def run_cell(cell: Cell, threads: int) -> None:
    """Train the cell's population (reused or resumed if there), then run its evaluations."""
    from tempsched import training
    from tempsched.cli.eval_cmd import evaluation_options
    from tempsched.evaluation import EvalContext, Report
    from tempsched.plugins import PluginManager

    manager = PluginManager()
    config = _config(manager, cell.run, threads)
    started = time.time()
    run_dir = training.ensure_run(config, manager, REPRO)
    reports = {}
    for name, settings in cell.evaluations:
        if name not in manager.registry.evaluations:
            print(f"{cell.name}: evaluation '{name}' is not available yet; skipped", flush=True)
            continue
        out = REPRO / "reports" / cell.name / name
        report = Report(out, f"{cell.name}: {name}")
        chosen = evaluation_options(manager, name, settings)
        evaluation = training.build_part(manager, "evaluations", name, chosen)
        evaluation.run(EvalContext(runs=[run_dir], base=config, report=report,
                                   train=lambda c: training.ensure_run(c, manager, REPRO)))
        report.write({"evaluation": name, "options": chosen, "runs": [str(run_dir)], "base": config.to_dict()})
        reports[name] = str(out.relative_to(ROOT))
    record = {"cell": cell.name, "run": str(run_dir.relative_to(ROOT)), "reports": reports,
              "complete": len(reports) == len(cell.evaluations), "seconds_this_session": time.time() - started}
    if record["complete"]:
        from tempsched.rundir import write_text

        write_text(REPRO / "cells" / f"{cell.name}.json", json.dumps(record, indent=2) + "\n")
    print(json.dumps(record), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="", help="comma-separated cell names (default: every cell not done)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--list", action="store_true", help="list the cells and their state")
    args = parser.parse_args(argv)
    # A stopped session sends SIGTERM: turn it into KeyboardInterrupt so a run cut before its first
    # checkpoint cleans up after itself (later ones resume from their state.pt anyway).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    os.chdir(ROOT)  # run directories and data paths are relative to the repository
    sys.path.insert(0, str(ROOT))
    wanted = [c for c in CELLS if not args.cells or c.name in args.cells.split(",")]
    if args.list:
        for cell in CELLS:
            print(f"{cell.name:24} {_state(cell):6} {cell.what}")
        return 0
    for cell in wanted:
        if _state(cell) != "done" or args.cells:
            run_cell(cell, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
