"""Our straight-through estimators beside the ReinMax benchmark's published numbers, cell by cell.

A cell is one estimator at one seed: the ``reinmax-bench-<estimator>`` preset (MNIST 10x30 MLP VAE, RAdam,
lr 5e-4, batch 100, the estimator's tuned tau, ``tempsched.gsvae.presets``) trained to 160 epochs on the
MNIST training images of ``../shared/datasets``. On the way it stops at 5, 10, 20 and 40 epochs and
measures the learning curve; each stop resumes the same run with more epochs (``--resume --epochs``),
so a cell killed anywhere continues from its last checkpoint, and a measured point or a finished cell is
never redone.

What is measured, as the anchor defines it: the train -ELBO is the running mean of the training loss
over the last epoch (the metrics row's ``train_loss``); the test -ELBO is the mean over the 10,000 test
images of the -ELBO with one sample per image (the task's fixed evaluation noise), of the weights at
that epoch.

    python benchmarks/estimators_anchor.py --list           # each cell's budget and state
    python benchmarks/estimators_anchor.py                  # run every cell not done (about 24 min each on
                                                            # one core), then write docs/estimators.md
    python benchmarks/estimators_anchor.py --cells st-gs-seed0 --epochs 1 --train-size 1000 \\
        --out /tmp/anchor --cache /tmp/anchor-runs          # a smoke test, kept away from the results
    python benchmarks/estimators_anchor.py --write-docs     # only rewrite the doc from the results

Results: one JSON file per cell in ``--out`` (default docs/estimators/), written atomically after every
measured point; docs/estimators.md's generated section is rendered from them alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (ROOT, add_cell_arguments, check_cell_arguments, last_weights, pick_cells,  # noqa: E402
                     replace_section, train_to)

from tempsched import rundir as rd  # noqa: E402
from tempsched.errors import UserError  # noqa: E402
from tempsched.gsvae.presets import BENCH_TAU  # noqa: E402
from tempsched.plugins import PluginManager  # noqa: E402
from tempsched.spec import RunSpec  # noqa: E402

RESULTS = ROOT / "docs" / "estimators"
DOC = ROOT / "docs" / "estimators.md"
CACHE = ROOT.parent / "estimator-runs"
ESTIMATORS = ("st-gs", "reinmax")
SEEDS = (0, 1, 2)
EPOCHS = 160
CURVE = (5, 10, 20, 40)  # the epochs of the anchor's learning curve


@dataclass(frozen=True)
class Anchor:
    """One estimator's published figures on 10x30 (10 seeds): final train -ELBO mean and sd, test mean."""

    train: float
    train_sd: float
    test: float
    curve: dict[int, float]  # test -ELBO after 5, 10, 20, 40 epochs (10-seed mean), where published


# The "Beyond ReinMax" authors' 10-seed re-run of the benchmark at its tuned settings (issue 20 quotes them).
ANCHORS = {
    "st-gs": Anchor(99.80, 0.34, 101.74, {5: 145.8, 10: 128.6, 20: 117.8, 40: 109.3}),
    "reinmax": Anchor(98.50, 0.41, 100.80, {}),
}
BEGIN, END = "<!-- estimators_anchor.py: begin -->", "<!-- estimators_anchor.py: end -->"


@dataclass(frozen=True)
class Cell:
    estimator: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.estimator}-seed{self.seed}"


CELLS = [Cell(e, s) for e in ESTIMATORS for s in SEEDS]


@dataclass(frozen=True)
class Budget:
    """How long a cell trains and on how much data (the smoke-test flags change it)."""

    epochs: int
    train_size: int  # 0: all
    test_size: int  # 0: all

    def stops(self) -> list[int]:
        """The epochs a cell measures at: the learning curve's, then the last."""
        return [e for e in CURVE if e < self.epochs] + [self.epochs]

    def as_dict(self) -> dict[str, int]:
        return {"epochs": self.epochs, "train_size": self.train_size, "test_size": self.test_size}


def _result_path(out: Path, cell: Cell) -> Path:
    return out / f"{cell.name}.json"


def load_result(out: Path, cell: Cell, budget: Budget | None = None) -> dict[str, Any] | None:
    """A cell's stored result; with ``budget``, refused (one line) when it was measured on another budget."""
    path = _result_path(out, cell)
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if budget is not None and result["budget"] != budget.as_dict():
        raise UserError(f"{path} was measured with budget {result['budget']}, not {budget.as_dict()}: "
                        "give another --out and --cache for another budget")
    return result


def _spec(cell: Cell, budget: Budget, epochs: int, threads: int, data_dir: Path) -> RunSpec:
    """The spec of the cell's run trained to ``epochs``."""
    return RunSpec({
        "plugin": f"reinmax-bench-{cell.estimator}", "seed": cell.seed, "epochs": epochs,
        "task_options": {"data_dir": str(data_dir), "train_size": budget.train_size, "test_size": budget.test_size},
        "performance": {"threads": threads},
    })


def _train_to(manager: PluginManager, cell: Cell, budget: Budget, epochs: int, run_dir: Path, threads: int,
              data_dir: Path) -> None:
    """Train the cell's run to ``epochs``: resumed from its checkpoint where there is one."""
    train_to(manager, run_dir, lambda: _spec(cell, budget, epochs, threads, data_dir),
             {"epochs": epochs, "performance.threads": threads})


def _measure(manager: PluginManager, run_dir: Path, epochs: int) -> dict[str, float]:
    """Train -ELBO (the row's running mean over epoch ``epochs``) and test -ELBO of the weights at that epoch."""
    rows = [r for r in rd.RunDir(run_dir).read_metrics() if r["epoch"] == epochs - 1]
    built = last_weights(manager, run_dir)  # the last epoch's weights, not best.pt's
    member = built.population.members[0]
    metrics = built.task.test_metrics(member.model, member.tau)
    state = rd.load_torch(run_dir / rd.STATE, rd.STATE_FORMAT)
    return {"train": float(rows[0]["train_loss"]), "test": metrics["test_neg_elbo"],
            "test_hard": metrics["test_neg_elbo_hard"], "train_seconds": float(state["train_seconds"])}


def run_cell(manager: PluginManager, cell: Cell, budget: Budget, out: Path, cache: Path, threads: int,
             data_dir: Path) -> None:
    """Every stop of ``cell`` not measured yet: train to it, measure, keep the result."""
    result = load_result(out, cell, budget) or {"estimator": cell.estimator, "seed": cell.seed,
                                                 "tau": BENCH_TAU[cell.estimator], "budget": budget.as_dict(),
                                                 "points": {}}
    run_dir = cache / cell.name
    for stop in budget.stops():
        if str(stop) in result["points"]:
            continue
        print(f"{cell.name}: training to epoch {stop}", file=sys.stderr, flush=True)
        _train_to(manager, cell, budget, stop, run_dir, threads, data_dir)
        result["points"][str(stop)] = _measure(manager, run_dir, stop)
        out.mkdir(parents=True, exist_ok=True)
        rd.write_text(_result_path(out, cell), json.dumps(result, indent=1) + "\n")


def cell_state(out: Path, cell: Cell, budget: Budget) -> str:
    result = load_result(out, cell)
    if result is None:
        return "not run"
    done = sorted(int(e) for e in result["points"])
    if result["budget"] != budget.as_dict():
        return f"measured with another budget {result['budget']}"
    return "done" if budget.epochs in done else f"measured at epochs {', '.join(map(str, done))}"


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def verdict(ours: list[float], anchor: float, anchor_sd: float) -> str:
    """Met when the seeds' mean lies within max(1 nat, 2 x the anchor's sd) of the anchor; else the miss."""
    if not ours:
        return "not run"
    tolerance = max(1.0, 2 * anchor_sd)
    gap = statistics.mean(ours) - anchor
    word = "met" if abs(gap) <= tolerance else "not met"
    return f"{word}: {gap:+.2f} nats (tolerance {tolerance:.2f}, {len(ours)} seed{'s' * (len(ours) != 1)})"


def render(out: Path) -> str:
    """The generated section of docs/estimators.md: final figures with verdicts, and the learning curve."""
    results = {c.name: load_result(out, c) for c in CELLS}
    full = Budget(EPOCHS, 0, 0).as_dict()
    lines = [BEGIN, "", f"Rendered by `benchmarks/estimators_anchor.py` from `docs/estimators/*.json`. A cell counts "
             f"once it has reached {EPOCHS} epochs on all training and test images.", "",
             "| estimator (tau) | seeds done | train -ELBO, ours | anchor | verdict | test -ELBO, ours | anchor | "
             "verdict | training time per seed |", "|---|---|---|---|---|---|---|---|---|"]
    for est in ESTIMATORS:
        anchor = ANCHORS[est]
        done = [r for r in (results[Cell(est, s).name] for s in SEEDS)
                if r is not None and r["budget"] == full and str(EPOCHS) in r["points"]]
        train = [r["points"][str(EPOCHS)]["train"] for r in done]
        test = [r["points"][str(EPOCHS)]["test"] for r in done]
        hours = [r["points"][str(EPOCHS)]["train_seconds"] / 3600 for r in done]
        lines.append(f"| {est} ({BENCH_TAU[est]:g}) | {len(done)} of {len(SEEDS)} | "
                     f"{_mean_sd(train) if train else 'not run'} | {anchor.train:.2f} ± {anchor.train_sd:.2f} | "
                     f"{verdict(train, anchor.train, anchor.train_sd)} | {_mean_sd(test) if test else 'not run'} | "
                     f"{anchor.test:.2f} | {verdict(test, anchor.test, anchor.train_sd)} | "
                     f"{f'{statistics.mean(hours):.2f} h' if hours else '-'} |")
    lines += ["", "Learning curve, test -ELBO (mean over the seeds measured at that epoch; the anchor's is "
              "ST-GS's 10-seed mean):", "",
              "| epochs | anchor, ST-GS | " + " | ".join(f"ours, {e}" for e in ESTIMATORS) + " |",
              "|---|---|" + "---|" * len(ESTIMATORS)]
    for epoch in CURVE:
        cells = []
        for est in ESTIMATORS:
            values = [r["points"][str(epoch)]["test"] for r in (results[Cell(est, s).name] for s in SEEDS)
                      if r is not None and r["budget"] == full and str(epoch) in r["points"]]
            cells.append(f"{_mean_sd(values)} ({len(values)} seed{'s' * (len(values) != 1)})" if values else "not run")
        lines.append(f"| {epoch} | {ANCHORS['st-gs'].curve[epoch]:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", END])


def write_docs(out: Path) -> None:
    """Replace the generated section of docs/estimators.md (between its markers) with ``render(out)``."""
    replace_section(DOC, BEGIN, END, render(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cell_arguments(parser, epochs=EPOCHS, doc="docs/estimators.md", results=RESULTS, cache=CACHE)
    args = parser.parse_args(argv)
    budget = Budget(args.epochs, args.train_size, args.test_size)
    try:
        check_cell_arguments(args)
        cells = pick_cells(args.cells, CELLS)
        if args.list:
            updates = "all images" if not args.train_size else f"{args.train_size} images"
            for cell in cells:
                print(f"{cell.name}: tau {BENCH_TAU[cell.estimator]:g}, {budget.epochs} epochs on {updates}, "
                      f"measured at {', '.join(map(str, budget.stops()))}: {cell_state(args.out, cell, budget)}")
            return 0
        if not args.write_docs:
            manager = PluginManager()
            for cell in cells:
                run_cell(manager, cell, budget, args.out, args.cache, args.threads, args.data_dir)
        if args.out.resolve() == RESULTS.resolve():
            write_docs(args.out)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
