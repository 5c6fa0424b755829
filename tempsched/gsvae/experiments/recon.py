"""``recon``: the paper's Table 1 on full test sets, with the fair baselines and the paper's own figures.

The paper printed one MSE per data set, measured by the authors' code on 15-128 images resized to 64 x 64,
with a soft code at tau 93-300 (``../shared/paper/authors-code-facts.md``). A soft figure alone cannot
tell a good discrete code from a temperature that made the code continuous, so every row here shows the
soft, hard and noise-free (argmax) decodings and how discrete the code is; and a population's win is
only a win next to baselines that had the same chance: the same epochs, the same compute (members x
epochs on one model), its own final tau held fixed, and its discovered schedule replayed on one model.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tempsched import RunConfig, RunSpec, replay_spec
from tempsched.errors import UserError
from tempsched.evaluation import Cell, EvalContext, Evaluation
from tempsched.gsvae.experiments.compared import baseline_spec
from tempsched.gsvae.measure import Measurement, measure
from tempsched.parts import Param

PAPER = "paper, Table 1 (printed)"
# Our input and reconstruction upsampled to 64 x 64 afterwards: beside the authors' figures, not their metric.
PROXY_64 = "MSE@64x64 proxy (upsampled)"
# The paper's Table 1, rows "Our model" (n = 8) and "Standard GS-VAE", as printed; the authors' code measured
# them at 64 x 64 with soft codes (authors-code-facts.md), so they sit in the 64 x 64 column.
PAPER_TABLE_1: dict[str, dict[str, float]] = {
    "MNIST": {"our model": 0.0002, "standard GS-VAE": 0.0154},
    "Fashion-MNIST": {"our model": 0.0036, "standard GS-VAE": 0.0354},
    "CIFAR-10": {"our model": 0.0012, "standard GS-VAE": 0.0591},
    "CelebA-HD": {"our model": 0.0032, "standard GS-VAE": 0.0474},
}
# What the authors' stored notebooks hold (authors-code-facts.md): MSE at 64 x 64, the tau it was measured at.
AUTHORS_STORED: dict[str, tuple[float, float, str]] = {
    "MNIST": (0.000524, 93.0, "trained without digits 2 and 3"),
    "CelebA-HD": (0.0032, 300.0, "128 images of a leaky split"),
}
PAPER_DATASET = {"sample": "MNIST", "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
                 "cifar10-jpeg": "CIFAR-10", "cifar10-exact": "CIFAR-10", "celeba": "CelebA-HD"}


@dataclass(frozen=True)
class Measured:
    """One run's row: its label, configuration, the temperature it is decoded at and what it scored."""

    label: str
    run_dir: Path
    config: RunConfig
    measurement: Measurement

    @property
    def compute(self) -> int:
        """Member-epochs: what the run cost, in epochs of one model."""
        assert self.config.members is not None
        return self.config.members * self.config.epochs

    def cells(self) -> list[Cell]:
        m = self.measurement
        return [self.label, self.config.plugin, self.config.members, self.config.epochs, m.tau, m.soft.mse,
                m.hard.mse, m.argmax.mse, m.soft.neg_elbo, m.hard.neg_elbo, m.discreteness.max_prob,
                m.discreteness.entropy_fraction, m.mse_64, self.compute]


class Recon(Evaluation):
    """Table 1: MSE and -ELBO per decoding on the full test set, discreteness, baselines, paper figures."""

    name = "recon"
    task = "gsvae"
    title = "Reconstruction on the full test set (the paper's Table 1)"
    params = {
        "baselines": Param(False, "train the first run's fair baselines (same epochs, equal compute, its final "
                           "tau fixed, its policy replayed) and add them"),
        "hard_draws": Param(5, "noise draws the hard decoding's figures are averaged over", low=1),
        "baseline_seeds": Param(1, "with baselines: train (b) and (d) at this many seeds (the population's, then "
                                "the next ones) and compare the population with their mean and sd", low=1,
                                omitted_at_default=True),
    }

    def __init__(self, baselines: bool, hard_draws: int, baseline_seeds: int) -> None:
        self.baselines = baselines
        self.hard_draws = hard_draws
        self.baseline_seeds = baseline_seeds

    def run(self, ctx: EvalContext) -> None:
        if self.baseline_seeds > 1 and not self.baselines:
            raise UserError("recon: baseline_seeds needs baselines=true (it trains baselines (b) and (d) again)")
        runs = ctx.need_runs()
        advance = ctx.progress("recon: measuring runs", len(runs))
        rows = []
        for run_dir in runs:
            rows.append(self._measure(str(run_dir), run_dir, ctx))
            advance(1)
        baselines: list[Measured] = []
        reseeded: list[Measured] = []
        if self.baselines:
            specs = baseline_specs(rows[0], ctx)
            again = [(f"{label}, seed {seed}", spec.with_overrides({"seed": seed}))
                     for seed in range(rows[0].config.seed + 1, rows[0].config.seed + self.baseline_seeds)
                     for label, spec in (specs[i] for i in RESEEDED)]
            advance = ctx.progress("recon: baselines (train, measure)", len(specs) + len(again))
            for into, todo in ((baselines, specs), (reseeded, again)):
                for label, spec in todo:
                    into.append(self._measure(label, ctx.train(spec), ctx))
                    advance(1)
        self._report(ctx, rows, baselines, reseeded)

    def _measure(self, label: str, run_dir: Path, ctx: EvalContext) -> Measured:
        loaded = ctx.load_run(run_dir)
        seed = int(loaded.config.task_options["eval_noise_seed"])
        result = measure(loaded.model, loaded.task.data.x_test, loaded.tau, noise_seed=seed,
                         hard_draws=self.hard_draws)
        return Measured(label, Path(run_dir), loaded.config, result)

    def _report(self, ctx: EvalContext, runs: list[Measured], baselines: list[Measured],
                reseeded: list[Measured]) -> None:
        report, k = ctx.report, self.hard_draws
        rows, first = runs + baselines + reseeded, runs[0]
        report.text(f"Each run's best model (best.pt) on its full test set ({first.measurement.images} images for "
                    f"the first run). **soft**: a Gumbel-softmax sample at the run's tau, fixed noise (the task's "
                    f"eval_noise_seed); **hard**: exact one-hot samples, averaged over {k} noise draws; **argmax**: "
                    "the noise-free code. MSE is per pixel on [0, 1]; -ELBO per image. Soft figures at different "
                    "tau are not comparable on their own: compare the hard and argmax columns too.")
        headers = ["run", "preset", "members", "epochs", "tau", "soft MSE", f"hard MSE ({k} draws)", "argmax MSE",
                   "-ELBO soft", f"-ELBO hard ({k} draws)", "mean max-prob", "entropy / log K",
                   PROXY_64, "member-epochs"]
        table = [r.cells() for r in rows] + reference_rows(rows)
        report.table("recon", headers, table, caption=(
            "mean max-prob: largest component of the soft samples (1 = one-hot); entropy / log K: entropy of "
            "q(z|x) per variable over its maximum (1 = uniform). MSE@64x64 proxy: our input and its soft "
            "reconstruction bilinearly upsampled to 64 x 64 after the fact, only to set beside the authors' "
            "figures, which their code measured on a model trained at 64 x 64 (MNIST on the whole test set, "
            "Fashion-MNIST on one batch, CIFAR-10 on a handful of images; soft codes): a proxy, not their "
            "metric. member-epochs = members x epochs."))
        report.result("runs", {r.label: str(r.run_dir) for r in rows})
        comparisons = compare(first, baselines) + [paper_sentence(first, baselines)]
        report.heading("Comparisons")
        bullets = "\n".join(f"- {c['sentence']}" for c in comparisons)
        report.text("Decided from soft and hard MSE together (population first). Each run is one seed: a "
                    f"difference of a few percent may be noise.\n\n{bullets}")
        report.result("comparisons", comparisons)
        if reseeded:
            over = over_seeds(first, baselines, reseeded, self.baseline_seeds)
            report.heading(f"Baselines (b) and (d) over {self.baseline_seeds} seeds")
            report.text("The population is one model of one seed; each of these baselines was trained at "
                        f"{self.baseline_seeds} seeds (initial weights and noise), so the population's figure is "
                        "set against their mean ± sd (sample sd) and their range.\n\n"
                        + "\n".join(f"- {o['sentence']}" for o in over))
            report.result("over_seeds", over)


def baseline_specs(population: Measured, ctx: EvalContext) -> list[tuple[str, RunSpec]]:
    """The fair baselines of a population run: (a) standard-annealing for its epochs, (b) standard-annealing
    for members x epochs, (c) one model at the population's final tau, fixed, for members x epochs, (d) its
    policy replayed on one model for its epochs. Same task options and seed; device and speed settings
    from the evaluation's command line."""
    pop, tau = population.config, population.measurement.tau
    assert pop.tau.min is not None and pop.tau.max is not None
    budget = population.compute

    def config(plugin: str, epochs: int, **more: Any) -> RunSpec:
        return baseline_spec(pop, plugin, ctx.base, epochs=epochs, **more)

    replay = ctx.with_local_settings(replay_spec(population.run_dir, ctx.run_config(population.run_dir)))
    return [
        ("(a) standard-annealing, same epochs", config("standard-annealing", pop.epochs)),
        ("(b) standard-annealing, equal compute", config("standard-annealing", budget)),
        (f"(c) tau fixed at {tau:.4g}, equal compute", config(
            "paper-default", budget, members=1,
            tau={"initial": tau, "min": min(pop.tau.min, tau), "max": max(pop.tau.max, tau)})),
        ("(d) population's policy replayed, same epochs", replay),
    ]


# The baselines trained again at other seeds with ``baseline_seeds``: (b) and (d), the one-model rivals at
# equal compute and of the schedule alone, whose single runs the verdicts leaned on.
RESEEDED = (1, 3)


def over_seeds(population: Measured, baselines: Sequence[Measured], reseeded: Sequence[Measured],
               seeds: int) -> list[dict[str, Any]]:
    """Per reseeded baseline: mean, sd and range over its seeds of soft and hard MSE, and where the
    population's figure lies against them (below every seed, above every seed, or inside the range)."""
    out = []
    for i, index in enumerate(RESEEDED):
        group = [baselines[index], *reseeded[i::len(RESEEDED)]]
        assert len(group) == seeds
        figures, parts = {}, []
        for name, value in (("soft MSE", lambda m: m.measurement.soft.mse),
                            ("hard MSE", lambda m: m.measurement.hard.mse)):
            values = [value(m) for m in group]
            ours = value(population)
            where = ("below every seed" if ours < min(values) else "above every seed" if ours > max(values)
                     else "inside their range")
            figures[name] = {"mean": statistics.fmean(values), "sd": statistics.stdev(values),
                             "min": min(values), "max": max(values), "population": ours, "where": where}
            parts.append(f"{name} {ours:.4g} vs {statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g} "
                         f"(range {min(values):.4g}-{max(values):.4g}): {where}")
        out.append({"baseline": baselines[index].label, "seeds": seeds, "figures": figures,
                    "sentence": f"Population vs {baselines[index].label} over {seeds} seeds: " + "; ".join(parts)
                                + "."})
    return out


def reference_rows(rows: Sequence[Measured]) -> list[list[Cell]]:
    """The paper's printed figures and the authors' stored ones, for the data sets the runs used."""
    datasets = dict.fromkeys(PAPER_DATASET[r.config.task_options["dataset"]] for r in rows)
    out: list[list[Cell]] = []
    for name in datasets:
        for model, mse in PAPER_TABLE_1[name].items():
            out.append([f"{PAPER}: {model}, {name}", None, 8 if model == "our model" else 1, None, None, None,
                        None, None, None, None, None, None, mse, None])
        if name in AUTHORS_STORED:
            mse, tau, note = AUTHORS_STORED[name]
            out.append([f"authors' stored result, {name} ({note})", None, None, None, tau, None, None, None, None,
                        None, None, None, mse, None])
    return out


def _versus(a: Measured, b: Measured) -> tuple[str, str]:
    """Which of ``a`` and ``b`` is lower on soft and hard MSE taken together ("a", "b", "equal" or
    "mixed"; a tie on one figure lets the other decide), and the figures in words."""
    ma, mb = a.measurement, b.measurement
    signs = {(ma.soft.mse > mb.soft.mse) - (ma.soft.mse < mb.soft.mse),
             (ma.hard.mse > mb.hard.mse) - (ma.hard.mse < mb.hard.mse)}
    lower = "equal" if signs == {0} else "a" if max(signs) <= 0 else "b" if min(signs) >= 0 else "mixed"
    figures = (f"soft {ma.soft.mse:.4g} vs {mb.soft.mse:.4g} ({_change(ma.soft.mse, mb.soft.mse)}), "
               f"hard {ma.hard.mse:.4g} vs {mb.hard.mse:.4g} ({_change(ma.hard.mse, mb.hard.mse)}), "
               f"tau {ma.tau:.3g} vs {mb.tau:.3g}, {a.compute} vs {b.compute} member-epochs")
    return lower, figures


def _change(a: float, b: float) -> str:
    return "equal" if a == b else f"{100 * (a - b) / b:+.1f}%"


QUESTIONS = ("more epochs of one model", "the same compute on one model", "the right tau alone",
             "the discovered schedule alone, without selection")


def compare(population: Measured, baselines: Sequence[Measured]) -> list[dict[str, str]]:
    """One sentence per baseline: which is lower, on soft and on hard MSE, decided from the figures."""
    out = []
    for baseline, question in zip(baselines, QUESTIONS):
        lower, figures = _versus(population, baseline)
        verdict = {"a": "population lower", "b": "baseline lower", "equal": "equal",
                   "mixed": "mixed (lower on one of soft and hard, higher on the other)"}[lower]
        out.append({"baseline": baseline.label, "verdict": verdict, "sentence": (
            f"Population vs {baseline.label} ({question}): {verdict}; {figures}.")})
    return out


def paper_sentence(population: Measured, baselines: Sequence[Measured]) -> dict[str, str]:
    """The first run next to the paper's printed figure: reached, not reached at our budget, or contradicted.

    The paper's claim is a trend (the population far below the annealed baseline) and a magnitude. The
    magnitude alone says nothing at our budget (the authors trained 120-1000 epochs); the trend, measured
    against the same-epoch annealing baseline (a) on both soft and hard MSE, decides between the two.
    """
    name = PAPER_DATASET[population.config.task_options["dataset"]]
    printed = PAPER_TABLE_1[name]["our model"]
    ours = population.measurement.mse_64
    head = (f"The paper prints {printed} for {name} (the authors' metric, a model trained at 64x64); this run "
            f"gives {ours:.4g} on the upsampled 64x64 proxy "
            f"({ours / printed:.3g} times the printed figure)")
    if ours <= printed:
        verdict, why = "reached", ""
    elif not baselines:
        verdict, why = "undecided", "no baseline trained (--set baselines=true)"
    else:
        lower, figures = _versus(population, baselines[0])
        verdict = {"a": "not reached at our budget", "b": "contradicted"}.get(lower, "undecided")
        why = {"a": "the trend holds: the population is below the same-epoch annealing baseline",
               "b": "the population is above the same-epoch annealing baseline",
               "equal": "the population equals the same-epoch annealing baseline",
               "mixed": "the population is below the same-epoch annealing baseline on one figure only"}[lower]
        why += f" ({figures})"
    return {"baseline": PAPER, "verdict": verdict, "sentence": f"{head}: {verdict}" + (f"; {why}." if why else ".")}
