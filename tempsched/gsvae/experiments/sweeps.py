"""``n-sweep`` (the paper's Fig. 4) and ``tau-sweep`` (Fig. 5): how the population size and the decoding
temperature change the reconstruction error.

Fig. 4 claims that the error falls with n up to about 8 while the training time grows linearly, so
``n-sweep`` trains one population per n with everything else equal and reports both. Fig. 5 claims that
the temperature the population found decodes best, so ``tau-sweep`` decodes one trained model's test set
at the paper's list of temperatures plus the run's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from tempsched import LoadedRun, RunConfig, RunSpec
from tempsched import rundir as rd
from tempsched.errors import UserError
from tempsched.evaluation import Cell, EvalContext, Evaluation
from tempsched.gsvae.experiments.common import (GRID_IMAGES, HARD_DRAWS, canvas, load_gsvae_runs, noise_seed,
                                                positive_list, soft_and_hard)
from tempsched.gsvae.measure import discreteness, reconstruct, score, unit_images
from tempsched.parts import Param

PAPER_OPTIMUM = 98.901  # the temperature the authors' population found on CIFAR-10 (Fig. 5)
# Fig. 5 (left), CIFAR-10, as printed.
PAPER_TAUS = [0.5, 0.9, 10.0, 30.0, 60.0, PAPER_OPTIMUM, 120.0, 160.0, 200.0, 300.0]


def with_members(ctx: EvalContext, spec: RunSpec, members: int) -> RunSpec:
    """``spec`` with ``members`` members: the preset assigns their schedules (and initial taus) again, and the
    parameter values of parts the new population no longer uses are dropped (the others keep theirs)."""
    sized = spec.with_overrides({"members": members, "schedules": None, "tau.members": None})
    bare = RunSpec({k: v for k, v in sized.base.items() if k != "params"},
                   {k: v for k, v in sized.overrides.items() if not k.startswith("params.")})
    parts = set(ctx.resolve(bare).params)
    tables = {part: table for part, table in dict(sized.base.get("params", {})).items()
              if part in parts or not isinstance(table, dict)}  # a flat value applies wherever a part takes it
    overrides = {k: v for k, v in sized.overrides.items()
                 if not k.startswith("params.") or k.count(".") == 1 or k.split(".")[1] in parts}
    return RunSpec({**bare.base, **({"params": tables} if tables else {})}, overrides)


def _wall_time(run_dir: Path) -> tuple[float, str]:
    """The wall time a finished run recorded in its summary (all its sessions, resumes included) and the
    hardware that trained it ("-" for runs whose summary predates that record)."""
    path = run_dir / rd.SUMMARY
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        return float(summary["wall_seconds"]), str(summary.get("hardware") or "-")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read the wall time from {path} ({type(exc).__name__}): train the run again") from None


class NSweep(Evaluation):
    """Fig. 4: one population per n, same preset, seed, data and epochs; test MSE and wall time vs n."""

    name = "n-sweep"
    task = "gsvae"
    title = "Population size n: test MSE and wall time (the paper's Fig. 4)"
    needs_runs = 0
    params = {
        "members": Param([1, 2, 4, 8], "population sizes n to train, each with the same preset, seed, data and "
                         "epochs (those of the run directory given, else of the run options)"),
        "hard_draws": HARD_DRAWS,
    }

    def __init__(self, members: list[int], hard_draws: int) -> None:
        self.members = positive_list(members, "members", integers=True)
        self.hard_draws = hard_draws

    def run(self, ctx: EvalContext) -> None:
        if len(ctx.runs) > 1:
            raise UserError("n-sweep takes at most one run directory (the configuration to sweep around)")
        given = Path(ctx.runs[0]) if ctx.runs else None
        # What to train comes from the run given; where and how fast (device, threads, backend) from this
        # command line, as for every run an evaluation trains: those settings enter no run's fingerprint.
        spec = ctx.run_spec(given) if given is not None else ctx.spec
        base = ctx.resolve(spec)
        specs = [with_members(ctx, spec, n) for n in self.members]
        configs = [ctx.resolve(s) for s in specs]  # every one checked before training
        advance = ctx.progress("n-sweep: train (or reuse) and measure each population", len(configs))
        rows: list[list[Cell]] = []
        task = None
        for spec_n, config in zip(specs, configs):
            if given is not None and config.to_dict() == base.to_dict() and (given / rd.SUMMARY).is_file():
                run_dir = given  # the finished run given stands for its own n
            else:
                run_dir = ctx.train(spec_n)
            # every n has the same task options: one task, one data load
            loaded = ctx.load_run(run_dir, task)
            task = loaded.task
            m = soft_and_hard(loaded, task.data.x_test, loaded.tau, self.hard_draws)
            assert config.members is not None
            rows.append([config.members, str(run_dir), loaded.tau, m.soft.mse, m.hard.mse, *_wall_time(run_dir),
                         config.members * config.epochs])
            advance(1)
        assert task is not None  # members is never empty
        self._report(ctx, base, rows, len(task.data.x_test))

    def _report(self, ctx: EvalContext, base: RunConfig, rows: list[list[Cell]], images: int) -> None:
        report = ctx.report
        report.text(f"One `{base.plugin}` population per n: seed {base.seed}, {base.epochs} epochs, the same data "
                    f"and task options; each best model (best.pt) on the full test set ({images} images). **soft**: "
                    f"a Gumbel-softmax sample at the run's tau (its eval_noise_seed); **hard**: exact one-hot "
                    f"samples, {self.hard_draws} noise draws. Wall time is each run's own record (summary.json): "
                    "a reused run keeps the time of the machine and load it was trained under, so compare times "
                    "of runs trained together.")
        headers = ["n", "run", "tau", "soft MSE", f"hard MSE ({self.hard_draws} draws)", "wall s", "trained on",
                   "member-epochs"]
        report.table("n_sweep", headers, rows)
        figure, ax = canvas()
        ns = [r[0] for r in rows]
        ax.plot(ns, [r[3] for r in rows], "o-", color="tab:blue", label="soft MSE")
        ax.plot(ns, [r[4] for r in rows], "s--", color="tab:blue", alpha=0.6, label="hard MSE")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("members n")
        ax.set_ylabel("test MSE", color="tab:blue")
        ax.legend(loc="upper left")
        time_ax = ax.twinx()
        time_ax.plot(ns, [r[5] for r in rows], "^-", color="tab:red")
        time_ax.set_ylabel("wall time (s)", color="tab:red")
        report.figure("n_sweep", figure, "Test MSE (blue) and wall time (red) against n, as the paper's Fig. 4.")


@dataclass
class _Sweep:
    """One run's tau sweep: a table row per tau, the tau-free figures and the image grid."""

    run: LoadedRun
    taus: list[float]
    rows: list[list[Cell]]
    hard_mse: float
    argmax_mse: float
    grid: torch.Tensor


class TauSweep(Evaluation):
    """Fig. 5: one model's test set decoded at many temperatures; MSE per tau and a grid row per tau."""

    name = "tau-sweep"
    task = "gsvae"
    title = "Decoding temperature tau: test MSE per tau (the paper's Fig. 5)"
    params = {
        "taus": Param(list(PAPER_TAUS), "temperatures to decode at (the run's own tau is always added); default: "
                      "the paper's Fig. 5 CIFAR-10 list"),
        "images": GRID_IMAGES,
        "hard_draws": HARD_DRAWS,
    }

    def __init__(self, taus: list[float], images: int, hard_draws: int) -> None:
        self.taus = positive_list(taus, "taus")
        self.images = images
        self.hard_draws = hard_draws

    def run(self, ctx: EvalContext) -> None:
        runs = load_gsvae_runs(ctx)
        advance = ctx.progress("tau-sweep: decode the test set at each tau",
                               sum(len(self._taus(run)) for run in runs))
        sweeps = [self._sweep(run, advance) for run in runs]
        report = ctx.report
        report.text(
            "Each run's best model (best.pt) decodes its full test set with a Gumbel-softmax sample at every tau "
            "(the run's eval_noise_seed, the same noise for every tau). The model was trained at its own tau only; "
            f"the list is the paper's Fig. 5 (CIFAR-10, where {PAPER_OPTIMUM} is the tau the authors' population "
            "found) plus each run's own tau. **mean max-prob**: the largest component of the soft samples "
            "(1 = one-hot), how discrete the code the decoders got really is.")
        report.table("tau_sweep", ["run", "tau", "which", "soft MSE", "mean max-prob"],
                     [row for sweep in sweeps for row in sweep.rows])
        report.text("The hard and the noise-free (argmax) decodings do not depend on tau:")
        report.table("tau_free", ["run", "run's tau", f"hard MSE ({self.hard_draws} draws)", "argmax MSE"],
                     [[str(s.run.run_dir), s.run.tau, s.hard_mse, s.argmax_mse] for s in sweeps])
        self._plot(ctx, sweeps)
        for i, sweep in enumerate(sweeps, start=1):
            report.image(f"tau_grid_{i}", sweep.grid, nrow=self.images, caption=(
                f"{sweep.run.run_dir}: the top row holds {self.images} test images, then one row per tau, from "
                f"{sweep.taus[0]:g} (top) to {sweep.taus[-1]:g} (bottom), soft decoding."))

    def _taus(self, run: LoadedRun) -> list[float]:
        return sorted({*self.taus, run.tau})

    def _sweep(self, run: LoadedRun, advance: Callable[[int], None]) -> _Sweep:
        x, seed = run.task.data.x_test, noise_seed(run)
        rows: list[list[Cell]] = []
        grid = [unit_images(x[:self.images])]
        taus = self._taus(run)
        for tau in taus:
            which = "run's tau" if tau == run.tau else "paper's optimum (CIFAR-10)" if tau == PAPER_OPTIMUM else None
            soft = score(run.model, x, tau, "soft", noise_seed=seed)
            rows.append([str(run.run_dir), tau, which, soft.mse, discreteness(run.model, x, tau, seed).max_prob])
            grid.append(reconstruct(run.model, x[:self.images], tau, "soft", noise_seed=seed))
            advance(1)
        hard = score(run.model, x, run.tau, "hard", noise_seed=seed, draws=self.hard_draws)
        argmax = score(run.model, x, run.tau, "argmax", noise_seed=seed)
        return _Sweep(run, taus, rows, hard.mse, argmax.mse, torch.cat(grid))

    def _plot(self, ctx: EvalContext, sweeps: list[_Sweep]) -> None:
        figure, ax = canvas()
        for i, sweep in enumerate(sweeps):
            colour, label = f"C{i}", sweep.run.run_dir.name
            ax.plot(sweep.taus, [row[3] for row in sweep.rows], "o-", color=colour, label=f"{label}: soft")
            ax.axvline(sweep.run.tau, color=colour, linestyle=":", linewidth=1)
            ax.axhline(sweep.hard_mse, color=colour, linestyle="--", linewidth=1, label=f"{label}: hard (any tau)")
            ax.axhline(sweep.argmax_mse, color=colour, linestyle="-.", linewidth=1,
                       label=f"{label}: argmax (any tau)")
        ax.set_xscale("log")
        ax.set_xlabel("decoding tau (log scale; dotted: the run's own)")
        ax.set_ylabel("test MSE")
        ax.legend(fontsize="small")
        ctx.report.figure("tau_sweep", figure, "Test MSE of the soft decoding against tau, as the paper's Fig. 5.")
