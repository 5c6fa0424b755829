"""Can one ``pbt`` population run find a straight-through estimator's temperature as well as a grid of runs?

The protocol of issue 21, cell by cell; one cell is an estimator at a seed in one arm:

- ``grid``: one fixed-tau run per value of the grid (ST-GS tau in {0.1, 0.3, 0.5, 0.7, 1.0}, ReinMax
  {1.0, 1.1, ..., 1.5}; the ``reinmax-bench-*`` preset: MLP VAE, RAdam 5e-4, batch 100); the grid's best is
  the run with the lowest held-out hard -ELBO after the last epoch, reported on the test set.
- ``population``: ``pbt`` with one member per grid value, started at the grid's tau, bounds = the grid's
  range, a perturbation every epoch. Grid run k starts as member k does (``member_offset``: the same
  initial weights and noise stream), and both see the same batches and held-out images, so each seed is
  a paired comparison. Each epoch the cell also measures, on the held-out images, the per-image losses of
  the members the plan left alone (the best one among them): the standard error of the paired
  differences says whether the member losses' spread is signal or the noise of the held-out sample.
- ``replay``: the tau of the population's final best lineage (policy.json) replayed on one model, at 1/n
  of the compute (the ``replay`` preset), started from the weights and noise of the lineage's first member.
- ``annealing`` (ST-GS only): Jang et al.'s schedule from 1 towards 0.5 (the ``standard-annealing``
  preset) on one model trained for the grid's total compute (n times the epochs).

Each arm's run trains in its own folder under ``--cache``; a finished run is reused, a killed one resumes
from its checkpoint (``tempsched run --resume``'s path), so the cells can be killed anywhere. Every model
is measured on its last epoch's weights. ``--setting 8x4`` runs the 8x4 VAE (Adam, the benchmark's tuned
learning rates) and adds the exact log-likelihood of every final model (4,096 codes enumerated).

    python benchmarks/pbt_vs_grid.py --list                 # each cell's budget (epochs, updates) and state
    python benchmarks/pbt_vs_grid.py                        # every cell not done, then docs/estimators.md
    python benchmarks/pbt_vs_grid.py --cells st-gs-seed0-grid,st-gs-seed0-population
    python benchmarks/pbt_vs_grid.py --epochs 2 --train-size 600 --test-size 200 \\
        --out /tmp/pbt --cache /tmp/pbt-runs               # a smoke test, kept away from the results
    python benchmarks/pbt_vs_grid.py --write-docs           # only rewrite the doc from the results

Results: one JSON file per cell in ``--out``/SETTING (default docs/estimators/pbt/), written atomically;
docs/estimators.md's generated section is rendered from them alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from scipy.stats import t as student_t

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (ROOT, add_cell_arguments, check_cell_arguments, last_weights, pick_cells,  # noqa: E402
                     replace_section, train_to)

from tempsched import rundir as rd  # noqa: E402
from tempsched.build import Built, build  # noqa: E402
from tempsched.config import RunConfig  # noqa: E402
from tempsched.errors import UserError  # noqa: E402
from tempsched.gsvae.data import validation_size  # noqa: E402
from tempsched.gsvae.likelihood import exact_log_likelihood  # noqa: E402
from tempsched.gsvae.presets import BENCH_OPTIONS, BENCH_TAU  # noqa: E402
from tempsched.plugins import PluginManager  # noqa: E402
from tempsched.records import EpochRecord  # noqa: E402
from tempsched.spec import RunSpec, saved_config  # noqa: E402
from tempsched.trajectories import copied_from, read_policy, replay_spec  # noqa: E402

RESULTS = ROOT / "docs" / "estimators" / "pbt"
DOC = ROOT / "docs" / "estimators.md"
CACHE = ROOT.parent / "pbt-vs-grid-runs"
BEGIN, END = "<!-- pbt_vs_grid.py: begin -->", "<!-- pbt_vs_grid.py: end -->"
ESTIMATORS = ("st-gs", "reinmax")
GRIDS = {"st-gs": (0.1, 0.3, 0.5, 0.7, 1.0), "reinmax": (1.0, 1.1, 1.2, 1.3, 1.4, 1.5)}  # the benchmark's grids
SEEDS = (0, 1, 2)
EPOCHS = 40
SELECT_ON = "val-hard"
MNIST_TRAIN = 60_000  # training images of MNIST, before the validation split
BATCH = int(BENCH_OPTIONS["task_options.batch_size"])
ANCHOR_UPDATES = MNIST_TRAIN // BATCH  # the benchmark trains on every image: 600 updates per epoch
SHOWN_EPOCHS = (1, 2, 5, 10, 20, 40)  # the epochs the tables show (and the last)


@dataclass(frozen=True)
class Setting:
    """A VAE size of the benchmark with the optimizer and learning rates its grid chose there (issue 20)."""

    latent: tuple[int, int]  # (L variables, C categories): "C x L" in the benchmark's words
    optimizer: str
    learning_rate: dict[str, float]

    @property
    def enumerable(self) -> bool:
        """Small enough to sum the likelihood over every code."""
        return self.latent[1] ** self.latent[0] <= 4096


SETTINGS = {"10x30": Setting((30, 10), "radam", {"st-gs": 5e-4, "reinmax": 5e-4}),
            "8x4": Setting((4, 8), "adam", {"st-gs": 3e-4, "reinmax": 5e-4})}


@dataclass(frozen=True)
class Budget:
    """How long each run trains and on how much data (the smoke-test flags change it)."""

    epochs: int
    train_size: int  # 0: all
    test_size: int  # 0: all
    setting: str = "10x30"

    def as_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "train_size": self.train_size, "test_size": self.test_size,
                "setting": self.setting}

    def updates_per_epoch(self) -> int:
        """Training batches per epoch once the held-out split is carved out (the task's own rule)."""
        available = self.train_size or MNIST_TRAIN
        return -(-(available - validation_size(available, 0, "MNIST")) // BATCH)


@dataclass(frozen=True)
class Cell:
    estimator: str
    seed: int
    arm: str  # grid, population, replay or annealing

    @property
    def name(self) -> str:
        return f"{self.estimator}-seed{self.seed}-{self.arm}"

    @property
    def taus(self) -> tuple[float, ...]:
        return GRIDS[self.estimator]

    def runs(self) -> list[str]:
        """The names of the cell's runs: one per tau for the grid, else one."""
        return [f"tau{t:g}" for t in self.taus] if self.arm == "grid" else [self.arm]

    def epochs(self, budget: Budget) -> int:
        """Each run's epochs: the budget, or for annealing the grid's total (n times it)."""
        return budget.epochs * len(self.taus) if self.arm == "annealing" else budget.epochs

    def member_epochs(self, budget: Budget) -> int:
        return self.epochs(budget) * (len(self.taus) if self.arm in ("grid", "population") else 1)


def arms(estimator: str) -> tuple[str, ...]:
    """Annealing only for ST-GS: Jang's schedule ends at 0.5, below ReinMax's tau >= 1."""
    return ("grid", "population", "replay") + (("annealing",) if estimator == "st-gs" else ())


CELLS = [Cell(e, s, a) for e in ESTIMATORS for s in SEEDS for a in arms(e)]


def _result_path(out: Path, budget: Budget, cell: Cell) -> Path:
    return out / budget.setting / f"{cell.name}.json"


def load_result(out: Path, budget: Budget, cell: Cell, check: bool = True) -> dict[str, Any] | None:
    """A cell's stored result; with ``check``, refused (one line) when measured on another budget."""
    path = _result_path(out, budget, cell)
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if check and result["budget"] != budget.as_dict():
        raise UserError(f"{path} was measured with budget {result['budget']}, not {budget.as_dict()}: "
                        "give another --out and --cache for another budget")
    return result


def _save(out: Path, budget: Budget, cell: Cell, result: dict[str, Any]) -> None:
    path = _result_path(out, budget, cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    rd.write_text(path, json.dumps(result, indent=1) + "\n")


def _keys(cell: Cell, budget: Budget, data_dir: Path, threads: int) -> dict[str, Any]:
    """The dotted keys every arm shares: the benchmark's task at this setting, the seed, the hard selection loss.

    The validation split is the task's default (10 % of the images, at most 5,000), which every arm
    selects on; the benchmark's presets keep one image only, since the benchmark does not select."""
    setting = SETTINGS[budget.setting]
    return {**BENCH_OPTIONS, "task_options.estimator": cell.estimator, "task_options.latent": list(setting.latent),
            "task_options.optimizer": setting.optimizer,
            "task_options.learning_rate": setting.learning_rate[cell.estimator], "task_options.val_size": 0,
            "task_options.data_dir": str(data_dir), "task_options.train_size": budget.train_size,
            "task_options.test_size": budget.test_size, "seed": cell.seed, "epochs": cell.epochs(budget),
            "select_on": SELECT_ON, "performance.threads": threads}


def run_spec(manager: PluginManager, cell: Cell, budget: Budget, data_dir: Path, threads: int,
             run: str, cache: Path) -> RunSpec:
    """The spec of the cell's run named ``run`` (see ``Cell.runs``)."""
    keys, taus = _keys(cell, budget, data_dir, threads), cell.taus
    bounds = {"tau.min": min(taus), "tau.max": max(taus)}
    if cell.arm == "grid":
        k = cell.runs().index(run)
        return RunSpec({}, {**keys, **bounds, "plugin": f"reinmax-bench-{cell.estimator}",
                            "tau.initial": taus[k], "member_offset": k})
    if cell.arm == "population":
        return RunSpec({}, {**keys, **bounds, "plugin": "pbt", "members": len(taus),
                            "tau.members": list(taus), "params.pbt.interval": 1})
    if cell.arm == "replay":
        source = _run_dir(cache, budget, Cell(cell.estimator, cell.seed, "population"), "population")
        if not (source / rd.SUMMARY).is_file():
            raise UserError(f"cell {cell.name} replays {source}, which has not finished: run cell "
                            f"{cell.estimator}-seed{cell.seed}-population first")
        root = read_policy(source)[0]["member"]  # the lineage's first member: the replay starts as it did
        replay = replay_spec(source, saved_config(source, manager.registry)).resolve(manager.registry)
        return RunSpec(replay.to_dict(), {"performance.threads": threads, "member_offset": root - 1})
    return RunSpec({}, {**keys, "plugin": "standard-annealing"})


def run_config(manager: PluginManager, cell: Cell, budget: Budget, data_dir: Path, threads: int,
               run: str, cache: Path) -> RunConfig:
    """The configuration of the cell's run named ``run``: its ``run_spec`` resolved."""
    return run_spec(manager, cell, budget, data_dir, threads, run, cache).resolve(manager.registry)


def _run_dir(cache: Path, budget: Budget, cell: Cell, run: str) -> Path:
    return cache / budget.setting / cell.name / run


def _held_out_signal(built: Built, run_dir: Path, record: EpochRecord) -> dict[str, Any]:
    """The spread of the members' selection losses this epoch, and for each member the plan left alone,
    its mean per-image gap to the best member and the standard error of that paired gap.

    The checkpoint holds the weights after the plan: a member that copied holds another's weights, so
    only the members that kept their own are measured (the best always is)."""
    pop = built.population
    pop.load_state_dict(rd.load_torch(run_dir / rd.STATE, rd.STATE_FORMAT)["population"])
    best = record.best_row["member"]
    kept = [r["member"] for r in record.rows if copied_from(r, best) == r["member"]]
    losses = {k: built.task.held_out_losses(pop.members[k - 1].model, pop.members[k - 1].tau, SELECT_ON)
              for k in kept}
    finite = [r["loss"] for r in record.rows if math.isfinite(r["loss"])]
    pairs = {}
    for k in kept:
        if k != best:
            gap = losses[k] - losses[best]
            pairs[str(k)] = [float(gap.mean()), float(gap.std() / math.sqrt(len(gap)))]
    return {"spread": max(finite) - min(finite), "pairs": pairs,
            "best_check": abs(float(losses[best].double().mean()) - record.best_row["loss"])}


def _epoch_logger(manager: PluginManager, cell: Cell, run_dir: Path, entry: dict[str, Any],
                  save: Callable[[], None]) -> Callable[[EpochRecord], None]:
    """The callback that keeps each epoch's timings (and for the population, the held-out signal) in ``entry``."""
    probe: list[Built] = []  # the population's parts, built once, that the checkpoints are loaded into

    def on_epoch(record: EpochRecord) -> None:
        figures: dict[str, Any] = {"train": record.train_seconds, "eval": record.eval_seconds,
                                   "engine": record.engine_seconds, "save": record.save_seconds}
        if cell.arm == "population":
            if not probe:
                probe.append(build(saved_config(run_dir, manager.registry), manager))
            figures.update(_held_out_signal(probe[0], run_dir, record))
        entry["epochs"][str(record.epoch + 1)] = figures
        save()

    return on_epoch


def _finished(run_dir: Path, epochs: int) -> bool:
    """Whether the run in ``run_dir`` finished (summary.json) at ``epochs``, so that it is reused as it is."""
    return (run_dir / rd.SUMMARY).is_file() and 1 + max(r["epoch"] for r in rd.RunDir(run_dir).read_metrics()) == epochs


def _final(manager: PluginManager, run_dir: Path, setting: Setting) -> dict[str, Any]:
    """The last epoch's chosen member (the lowest selection loss), measured on its last weights; with the
    tau and loss of every member in every epoch, the chosen lineage's tau, and the compute spent."""
    rows = rd.RunDir(run_dir).read_metrics()
    last = max(r["epoch"] for r in rows)
    chosen = next(r for r in rows if r["epoch"] == last and r["best"])
    built = last_weights(manager, run_dir)
    member = built.population.members[chosen["member"] - 1]
    metrics = built.task.test_metrics(member.model, member.tau)
    state = rd.load_torch(run_dir / rd.STATE, rd.STATE_FORMAT)
    per_epoch: list[dict[str, list[float]]] = [{} for _ in range(last + 1)]
    for r in rows:
        per_epoch[r["epoch"]][str(r["member"])] = [r["tau"], r["loss"]]
    final = {"member": chosen["member"], "tau": chosen["tau"], "val_hard": chosen["loss"],
             "test_hard": metrics["test_neg_elbo_hard"], "test": metrics["test_neg_elbo"],
             "train_seconds": float(state["train_seconds"]), "member_epochs": len(rows),
             "updates_per_epoch": built.task.batch_count(), "train_images": built.task.train_examples,
             "val_images": len(built.task.data.x_val), "lineage_tau": [e["tau"] for e in read_policy(run_dir)],
             "members": per_epoch}
    if setting.enumerable:
        x = built.task.data.x_test.float().div(255.0)
        final["test_log_likelihood"] = float(exact_log_likelihood(member.model, x).mean())
    return final


def run_cell(manager: PluginManager, cell: Cell, budget: Budget, out: Path, cache: Path, threads: int,
             data_dir: Path) -> None:
    """Every run of ``cell`` not finished: train (or resume) it, keep each epoch's figures, measure it once."""
    result = load_result(out, budget, cell) or {"cell": cell.name, "estimator": cell.estimator, "seed": cell.seed,
                                                "arm": cell.arm, "budget": budget.as_dict(), "runs": {}}
    for run in cell.runs():
        entry = result["runs"].setdefault(run, {"epochs": {}})
        if "final" in entry:
            continue
        run_dir = _run_dir(cache, budget, cell, run)
        print(f"{cell.name}: {run}", file=sys.stderr, flush=True)
        save = lambda: _save(out, budget, cell, result)  # noqa: E731 - the callback's one action
        if not _finished(run_dir, cell.epochs(budget)):
            train_to(manager, run_dir, lambda: run_spec(manager, cell, budget, data_dir, threads, run, cache),
                     {"epochs": cell.epochs(budget), "performance.threads": threads},
                     _epoch_logger(manager, cell, run_dir, entry, save))
        entry["final"] = _final(manager, run_dir, SETTINGS[budget.setting])
        save()


def cell_state(out: Path, budget: Budget, cell: Cell, cache: Path) -> str:
    """Done, measured with another budget, or how far its runs got (from their checkpoints)."""
    result = load_result(out, budget, cell, check=False)
    if result is not None and result["budget"] != budget.as_dict():
        return f"measured with another budget {result['budget']}"
    runs = (result or {}).get("runs", {})
    done = [r for r in cell.runs() if "final" in runs.get(r, {})]
    if len(done) == len(cell.runs()):
        return "done"
    started = {}
    for run in cell.runs():
        metrics = _run_dir(cache, budget, cell, run) / rd.METRICS
        if run not in done and metrics.is_file():
            started[run] = 1 + max((r["epoch"] for r in rd.RunDir(metrics.parent).read_metrics()), default=-1)
    if not done and not started:
        return "not run"
    parts = [f"{len(done)} of {len(cell.runs())} runs done"] + [
        f"{run} at epoch {e} of {cell.epochs(budget)}" for run, e in started.items()]
    return ", ".join(parts)


def describe_budget(cell: Cell, budget: Budget) -> str:
    """A cell's compute: runs x epochs x updates per epoch."""
    u, runs = budget.updates_per_epoch(), len(cell.runs())
    members = len(cell.taus) if cell.arm == "population" else 1
    who = f"{runs} runs x " if runs > 1 else (f"{members} members x " if members > 1 else "")
    return (f"{who}{cell.epochs(budget)} epochs x {u} updates = {cell.member_epochs(budget) * u:,} member-updates "
            f"({cell.member_epochs(budget)} member-epochs)")


# ---------------------------------------------------------------- what the results say


@dataclass(frozen=True)
class SeedFigures:
    """One seed of one estimator, from its cells' results (None: that cell has not finished)."""

    seed: int
    grid: dict[str, Any] | None  # the grid's best run's final figures
    grid_runs: dict[float, dict[str, Any]]  # every finished grid run's final figures, by tau
    population: dict[str, Any] | None
    replay: dict[str, Any] | None
    annealing: dict[str, Any] | None


def _finals(result: dict[str, Any] | None, cell: Cell) -> list[dict[str, Any]] | None:
    """The final figures of every run of a cell's result, or None when a run has none yet."""
    if result is None:
        return None
    finals = [result["runs"].get(run, {}).get("final") for run in cell.runs()]
    return None if any(f is None for f in finals) else finals


def seed_figures(results: dict[str, dict[str, Any] | None], estimator: str) -> list[SeedFigures]:
    """Per seed, the figures of each arm that finished; the grid's best is the lowest held-out hard -ELBO."""
    out = []
    for seed in SEEDS:
        arm = {a: _finals(results.get(Cell(estimator, seed, a).name), Cell(estimator, seed, a)) for a in arms(estimator)}
        grid = arm["grid"]
        out.append(SeedFigures(
            seed, min(grid, key=lambda f: f["val_hard"]) if grid else None,
            dict(zip(GRIDS[estimator], grid)) if grid else {},
            *(arm[a][0] if arm.get(a) else None for a in ("population", "replay", "annealing"))))
    return out


def differences(seeds: list[SeedFigures], arm: str, against: str = "grid") -> dict[int, float]:
    """Per seed where both finished, test hard -ELBO of ``arm`` minus that of ``against`` (negative: better)."""
    out = {}
    for s in seeds:
        a, b = getattr(s, arm), getattr(s, against)
        if a is not None and b is not None:
            out[s.seed] = a["test_hard"] - b["test_hard"]
    return out


def grid_sd(seeds: list[SeedFigures]) -> float | None:
    """The sd over seeds of the grid's best test hard -ELBO (None below two seeds)."""
    values = [s.grid["test_hard"] for s in seeds if s.grid is not None]
    return statistics.stdev(values) if len(values) > 1 else None


def _spread(diffs: dict[int, float]) -> str:
    values = list(diffs.values())
    return (f"mean {statistics.mean(values):+.2f}, min {min(values):+.2f}, max {max(values):+.2f} nats over "
            f"{len(values)} seed{'s' * (len(values) != 1)}")


def _provisional(*diffs: dict[int, float]) -> str:
    """A verdict resting on fewer seeds than the protocol's says so: the sd of two seeds is itself a guess."""
    n = min(len(d) for d in diffs)
    return "" if n >= len(SEEDS) else f" Provisional: {n} of {len(SEEDS)} seeds."


def _answer(question: str, diffs: dict[int, float], sd: float | None, at: str, label: str,
            judge: Callable[[float, float], str]) -> list[str]:
    """One question of the protocol: "not run" without paired seeds, the differences alone without the grid's
    seed sd, else ``judge(mean, sd)``'s word followed by the figures it rests on."""
    if not diffs:
        return [f"- {question}? not run."]
    if sd is None:
        return [f"- {label} {at}: {_spread(diffs)}; no verdict yet (needs the grid's seed sd)."]
    return [f"- {question} {at}{judge(statistics.mean(diffs.values()), sd)}: {label} {_spread(diffs)}."
            f"{_provisional(diffs)}{_significance(diffs)}"]


def _significance(diffs: dict[int, float]) -> str:
    """A two-sided paired t-test of the mean difference over the seeds. The protocol's verdicts compare the
    mean with the grid's seed sd, a rule of thumb; this says whether the seeds could tell the difference from
    zero at all, so a "met" on 3 seeds is not read as a detected effect."""
    values = list(diffs.values())
    if len(values) < 2:
        return ""
    mean, sd = statistics.mean(values), statistics.stdev(values)
    t = mean / (sd / math.sqrt(len(values))) if sd else math.copysign(math.inf, mean) if mean else 0.0
    p = 2 * float(student_t.sf(abs(t), len(values) - 1))
    word = "differs from zero" if p < 0.05 else "is not distinguishable from zero"
    return f" Paired t-test: t = {t:+.2f}, p = {p:.2f}; the mean difference {word} at the 5 % level."


def verdicts(seeds: list[SeedFigures], epochs: int, estimator: str) -> list[str]:
    """The issue's questions, each answered from the numbers, or "not run" where the cells have not run."""
    at = f"at {epochs} epochs"
    sd = grid_sd(seeds)
    pop = differences(seeds, "population")
    lines = _answer("Does one population run reach the grid's best", pop, sd, at, "population − grid's best",
                    lambda mean, sd: f" (target: paired difference no worse than the grid's seed sd, {sd:.2f})? "
                                     f"{'met' if mean <= sd else 'not met'}")
    if pop and sd is not None:
        mean = statistics.mean(pop.values())
        lines.append(f"- Does it beat the grid by more than one sd (stretch)? {'met' if mean < -sd else 'not met'}: "
                     f"mean {mean:+.2f} against −{sd:.2f}.{_provisional(pop)}")
    lines += _answer("Does the replayed schedule keep the result at 1/n of the compute", differences(seeds, "replay"),
                     sd, at, "replay − grid's best",
                     lambda mean, sd: f" (replay − grid's best no worse than the grid's seed sd, {sd:.2f})? "
                                      f"{'yes' if mean <= sd else 'no'}")
    if estimator == "st-gs":
        n = len(GRIDS[estimator])
        lines += _answer("Does the population beat annealing at equal compute",
                         differences(seeds, "population", "annealing"), sd,
                         f"({n} members × {epochs} epochs against one model annealed for {n * epochs} epochs)",
                         "population − annealing",
                         lambda mean, sd: "? " + ("yes, by more than the grid's seed sd" if mean < -sd else
                                                  "no: it does worse by more than the grid's seed sd" if mean > sd
                                                  else "no difference beyond the grid's seed sd") + f" ({sd:.2f})")
    else:
        lines.append(f"- Does the population beat annealing? not measured for {estimator}: Jang's schedule decays "
                     f"towards 0.5, below this estimator's grid (tau ≥ {min(GRIDS[estimator]):g}).")
    return lines


def detectable(seeds: int) -> float | None:
    """The smallest mean paired difference, in sd of the differences, that a two-sided paired t-test at the
    5 % level can detect with ``seeds`` seeds."""
    return None if seeds < 2 else float(student_t.ppf(0.975, seeds - 1)) / math.sqrt(seeds)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _shown(epochs: int) -> list[int]:
    return sorted({e for e in SHOWN_EPOCHS if e < epochs} | {epochs})


def _seed_table(seeds: list[SeedFigures], estimator: str) -> list[str]:
    ann = estimator == "st-gs"
    head = ("| seed | grid's best tau (held-out) | grid's best | population: tau found | population | pop − grid | "
            "replay | replay − grid |" + (" annealing | pop − annealing |" if ann else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in seeds:
        cells = [str(s.seed), _fmt(s.grid and s.grid["tau"], "g"), _fmt(s.grid and s.grid["test_hard"]),
                 _fmt(s.population and s.population["tau"], ".3g"), _fmt(s.population and s.population["test_hard"]),
                 _fmt(differences([s], "population").get(s.seed), "+.2f"), _fmt(s.replay and s.replay["test_hard"]),
                 _fmt(differences([s], "replay").get(s.seed), "+.2f")]
        if ann:
            cells += [_fmt(s.annealing and s.annealing["test_hard"]),
                      _fmt(differences([s], "population", "annealing").get(s.seed), "+.2f")]
        lines.append("| " + " | ".join(cells) + " |")
    for label, pick in (("mean", statistics.mean), ("min", min), ("max", max)):
        diffs = [differences(seeds, "population"), differences(seeds, "replay")] + (
            [differences(seeds, "population", "annealing")] if ann else [])
        cells = [_fmt(pick(d.values()) if d else None, "+.2f") for d in diffs]
        row = [label, "", "", "", "", cells[0], "", cells[1]] + (["", cells[2]] if ann else [])
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _ranking(seeds: list[SeedFigures], estimator: str) -> list[str]:
    lines = ["| tau | held-out hard −ELBO (mean over seeds) | test hard −ELBO | rank (held-out) |", "|---|---|---|---|"]
    means = {}
    for tau in GRIDS[estimator]:
        runs = [s.grid_runs[tau] for s in seeds if tau in s.grid_runs]
        if runs:
            means[tau] = (statistics.mean(r["val_hard"] for r in runs), statistics.mean(r["test_hard"] for r in runs))
    order = sorted(means, key=lambda t: means[t][0])
    for tau in GRIDS[estimator]:
        val, test = means.get(tau, (None, None))
        lines.append(f"| {tau:g} | {_fmt(val)} | {_fmt(test)} | {order.index(tau) + 1 if tau in means else '-'} |")
    return lines


def _trajectories(seeds: list[SeedFigures], epochs: int) -> list[str]:
    shown = _shown(epochs)
    lines = ["| seed | " + " | ".join(f"epoch {e}" for e in shown) + " |", "|---|" + "---|" * len(shown)]
    for s in seeds:
        if s.population is not None:
            taus = s.population["lineage_tau"]
            lines.append(f"| {s.seed} | " + " | ".join(f"{taus[e - 1]:.3g}" for e in shown) + " |")
    return lines if len(lines) > 2 else ["not run"]


def _signal(results: dict[str, dict[str, Any] | None], estimator: str, epochs: int) -> list[str]:
    """Per shown epoch, over the seeds measured: the members' loss spread, the median paired SE, and the share
    of measured member-vs-best gaps larger than 2 SE."""
    lines = ["| epoch | spread of member losses (max − min) | paired SE, member − best (median) | gaps > 2 SE |",
             "|---|---|---|---|"]
    logs = [r["runs"]["population"]["epochs"] for r in (results.get(Cell(estimator, s, "population").name)
                                                        for s in SEEDS) if r is not None and "population" in r["runs"]]
    for e in _shown(epochs):
        measured = [log[str(e)] for log in logs if str(e) in log]
        if not measured:
            lines.append(f"| {e} | not run | | |")
            continue
        pairs = [p for m in measured for p in m["pairs"].values()]
        ses = [se for _, se in pairs]
        apart = sum(abs(gap) > 2 * se for gap, se in pairs)
        lines.append(f"| {e} | {statistics.mean(m['spread'] for m in measured):.2f} | "
                     f"{_fmt(statistics.median(ses) if ses else None)} | {apart} of {len(pairs)} |")
    return lines


def _compute(results: dict[str, dict[str, Any] | None], estimator: str) -> list[str]:
    """Member-epochs and seconds per arm (mean over seeds), and what the population's epoch barrier would cost
    with one member per process, estimated from the grid runs' own per-epoch training times."""
    lines = ["| arm | member-epochs | training s | evaluation + plan + save s | seeds |", "|---|---|---|---|---|"]
    barrier = []
    for arm in arms(estimator):
        finished = [r for r in (results.get(Cell(estimator, s, arm).name) for s in SEEDS)
                    if _finals(r, Cell(estimator, 0, arm)) is not None]
        if not finished:
            lines.append(f"| {arm} | not run | | | 0 |")
            continue
        member_epochs = statistics.mean(sum(run["final"]["member_epochs"] for run in r["runs"].values())
                                        for r in finished)
        train = statistics.mean(sum(run["final"]["train_seconds"] for run in r["runs"].values()) for r in finished)
        other = statistics.mean(sum(e["eval"] + e["engine"] + e["save"] for run in r["runs"].values()
                                    for e in run["epochs"].values()) for r in finished)
        lines.append(f"| {arm} | {member_epochs:g} | {train:.0f} | {other:.0f} | {len(finished)} |")
        if arm == "grid":
            for r in finished:
                per_run = [run["epochs"] for run in r["runs"].values()]
                shared = set.intersection(*(set(p) for p in per_run))
                if shared:
                    lockstep = sum(max(p[e]["train"] for p in per_run) for e in shared)
                    apart = max(sum(p[e]["train"] for e in shared) for p in per_run)
                    barrier.append((lockstep - apart) / apart)
    if barrier:
        lines += ["", f"The grid is embarrassingly parallel; the population waits every epoch for its slowest member. "
                  f"With one member per process, waiting for the slowest grid run at each epoch would have cost "
                  f"{100 * statistics.mean(barrier):.1f} % more time than the slowest run alone (the grid runs' "
                  f"measured per-epoch training times, {len(barrier)} seed{'s' * (len(barrier) != 1)}); here the "
                  "population trained its members one after another in one process."]
    return lines


def _likelihood(seeds: list[SeedFigures], estimator: str) -> list[str]:
    lines = ["| seed | grid's best | population | replay |" + (" annealing |" if estimator == "st-gs" else ""),
             "|---|---|---|---|" + ("---|" if estimator == "st-gs" else "")]
    for s in seeds:
        arms_ = [s.grid, s.population, s.replay] + ([s.annealing] if estimator == "st-gs" else [])
        lines.append(f"| {s.seed} | " + " | ".join(_fmt(a and a.get("test_log_likelihood")) for a in arms_) + " |")
    return lines


def _results(out: Path, budget: Budget) -> dict[str, dict[str, Any]]:
    """The cells' results measured with ``budget``, by cell name."""
    results = {c.name: load_result(out, budget, c, check=False) for c in CELLS}
    return {k: r for k, r in results.items() if r is not None and r["budget"] == budget.as_dict()}


def render(out: Path, budget: Budget) -> str:
    """The generated section of docs/estimators.md: for 10x30, and for each other setting with results, per
    estimator the paired differences and verdicts, the grid's tau ranking, the tau found, the held-out signal
    and the compute; where the codes can be enumerated, the exact likelihoods."""
    n_seeds = detectable(len(SEEDS))
    lines = [BEGIN, "", "Rendered by `benchmarks/pbt_vs_grid.py` from `docs/estimators/pbt/SETTING/*.json`. Every "
             "figure is the hard −ELBO (nats, lower is better) of a model's last weights on the test images; the "
             "grid's best is chosen on the held-out images.", ""]
    if n_seeds is not None:
        lines += [f"With {len(SEEDS)} seeds a two-sided paired t-test at the 5 % level detects only a mean difference "
                  f"larger than {n_seeds:.2f} standard deviations of the per-seed differences: the verdicts below "
                  "can tell apart only differences of several standard deviations.", ""]
    for name in SETTINGS:
        setting_budget = dataclasses.replace(budget, setting=name)
        results = _results(out, setting_budget)
        if results or name == "10x30":
            lines += _render_setting(results, setting_budget)
        else:
            lines += [f"### {name}: not run", ""]
    return "\n".join(lines + [END])


def _render_setting(results: dict[str, dict[str, Any]], budget: Budget) -> list[str]:
    u = budget.updates_per_epoch()
    lines = [f"### {budget.setting}, {budget.epochs} epochs", "",
             f"{budget.epochs} epochs of {u} updates ({budget.epochs * u:,} updates per model; the benchmark's epoch "
             f"has {ANCHOR_UPDATES}, since it keeps no held-out split).", ""]
    for est in ESTIMATORS:
        seeds = seed_figures(results, est)
        lines += [f"#### {budget.setting}, {est}: grid {', '.join(f'{t:g}' for t in GRIDS[est])}", ""]
        lines += verdicts(seeds, budget.epochs, est) + [""]
        lines += _seed_table(seeds, est) + ["", f"The grid's tau ranking at {budget.epochs} epochs (at 160 epochs on "
                                            f"all images the benchmark's grid chose tau {BENCH_TAU[est]:g} for "
                                            "10x30, by training −ELBO):", ""]
        lines += _ranking(seeds, est) + ["", "tau of the population's final best lineage (the schedule replayed):", ""]
        lines += _trajectories(seeds, budget.epochs)
        lines += ["", "Is selection seeing signal or noise? Each epoch, the spread of the members' held-out losses "
                  "against the standard error of paired per-image differences between a member and the best "
                  "(members that kept their own weights; mean over seeds):", ""]
        lines += _signal(results, est, budget.epochs) + ["", "Compute (mean per seed):", ""]
        lines += _compute(results, est) + [""]
        if SETTINGS[budget.setting].enumerable:
            lines += ["Exact test log-likelihood (nats, all codes enumerated; higher is better):", ""]
            lines += _likelihood(seeds, est) + [""]
    return lines


def write_docs(out: Path, budget: Budget) -> None:
    """Replace the generated section of docs/estimators.md (between its markers) with ``render``."""
    replace_section(DOC, BEGIN, END, render(out, budget))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cell_arguments(parser, epochs=EPOCHS, doc="docs/estimators.md", results=RESULTS, cache=CACHE)
    parser.add_argument("--setting", default="10x30", help=f"VAE size: {', '.join(SETTINGS)} (default 10x30)")
    args = parser.parse_args(argv)
    try:
        if args.setting not in SETTINGS:
            raise UserError(f"unknown --setting '{args.setting}' (settings: {', '.join(SETTINGS)})")
        check_cell_arguments(args)
        budget = Budget(args.epochs, args.train_size, args.test_size, args.setting)
        cells = pick_cells(args.cells, CELLS)
        if args.list:
            for cell in cells:
                print(f"{cell.name}: {describe_budget(cell, budget)}: {cell_state(args.out, budget, cell, args.cache)}")
            return 0
        if not args.write_docs:
            manager = PluginManager()
            for cell in cells:
                run_cell(manager, cell, budget, args.out, args.cache, args.threads, args.data_dir)
        if args.out.resolve() == RESULTS.resolve():
            write_docs(args.out, budget)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
