"""benchmarks/pbt_vs_grid.py: grid run k starts as population member k; finished runs are reused and a cut-off
cell resumes with the same numbers; ``--list`` states; verdicts and tables come from the results alone; the
exact log-likelihood sums over every code."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from tempsched import rundir as rd
from tempsched.build import build
from tempsched.config import layer
from tempsched.errors import UserError
from tempsched.gsvae.estimators import ESTIMATORS
from tempsched.gsvae.likelihood import all_codes, exact_log_likelihood
from tempsched.gsvae.loss import kl_to_uniform, reconstruction_bce
from tempsched.gsvae.model import MLPVAE
from tempsched.plugins import PluginManager
from tempsched.records import EpochRecord

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pbt_vs_grid", ROOT / "benchmarks" / "pbt_vs_grid.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["pbt_vs_grid"] = bench  # before it runs: its dataclasses look their module up
_spec.loader.exec_module(bench)

BUDGET = bench.Budget(2, 0, 0)  # the data folder is small: 270 training images, 3 updates per epoch


def test_grid_run_k_starts_from_population_member_ks_weights_and_noise(mnist: Path) -> None:
    manager = PluginManager()
    grid, population = bench.Cell("reinmax", 0, "grid"), bench.Cell("reinmax", 0, "population")
    pop_config = bench.run_config(manager, population, BUDGET, mnist, 1, "population", Path("unused"))
    pop = build(pop_config, manager)
    for k, run in enumerate(grid.runs()):
        config = bench.run_config(manager, grid, BUDGET, mnist, 1, run, Path("unused"))
        assert config.tau.initial == pop.population.members[k].tau == grid.taus[k]
        alone = build(config, manager).population.members[0]
        member = pop.population.members[k]
        assert all(torch.equal(a, b) for a, b in zip(alone.model.parameters(), member.model.parameters()))
        assert torch.equal(alone.generator.get_state(), member.generator.get_state())
    first, second = pop.population.members[:2]
    assert not torch.equal(next(first.model.parameters()), next(second.model.parameters()))
    assert "member_offset" not in pop_config.to_dict()  # left out when not set: runs from before keep their names
    with pytest.raises(UserError, match="member_offset must be between 0 and"):
        layer(manager.registry, pop_config.to_dict(), {"member_offset": -1})


class Killed(Exception):
    """Ends a run after an epoch's checkpoint, as a kill there would."""


def _figures(result: dict) -> dict:
    """A result's final figures without their timings."""
    return {run: {k: v for k, v in entry["final"].items() if k != "train_seconds"}
            for run, entry in result["runs"].items()}


def test_a_cell_reuses_finished_runs_and_a_cut_off_cell_resumes_with_the_same_numbers(tmp_path: Path,
                                                                                      mnist: Path) -> None:
    manager = PluginManager()
    out, cache = tmp_path / "out", tmp_path / "runs"
    grid, population = bench.Cell("st-gs", 1, "grid"), bench.Cell("st-gs", 1, "population")
    assert bench.cell_state(out, BUDGET, population, cache) == "not run"
    with pytest.raises(UserError, match="run cell st-gs-seed1-population first"):
        bench.run_cell(manager, bench.Cell("st-gs", 1, "replay"), BUDGET, out, cache, 1, mnist)
    for cell in (grid, population):
        bench.run_cell(manager, cell, BUDGET, out, cache, 1, mnist)
        assert bench.cell_state(out, BUDGET, cell, cache) == "done"
    whole = bench.load_result(out, BUDGET, population)
    rows = rd.RunDir(cache / "10x30" / population.name / "population").read_metrics()
    for k, run in enumerate(grid.runs(), start=1):  # epoch 1: the same weights, noise, batches and held-out images
        alone = rd.RunDir(cache / "10x30" / grid.name / run).read_metrics()[0]
        paired = next(r for r in rows if r["epoch"] == 0 and r["member"] == k)
        assert (alone["tau"], alone["train_loss"], alone["loss"]) == (paired["tau"], paired["train_loss"], paired["loss"])
    bench.run_cell(manager, bench.Cell("st-gs", 1, "replay"), BUDGET, out, cache, 1, mnist)
    replayed = rd.RunDir(cache / "10x30" / "st-gs-seed1-replay" / "replay").read_metrics()[0]
    root = json.loads((cache / "10x30" / population.name / "population" / "policy.json").read_text())["epochs"][0]
    paired = next(r for r in rows if r["epoch"] == 0 and r["member"] == root["member"])
    assert root["member"] != 1  # (seed 1's lineage starts at member 2 on these images: the offset matters)
    assert (replayed["tau"], replayed["loss"]) == (paired["tau"], paired["loss"])  # starts as the lineage's root
    log = whole["runs"]["population"]["epochs"]
    assert set(log) == {"1", "2"} and all(e["pairs"] and e["best_check"] < 1e-3 for e in log.values())

    metrics = cache / "10x30" / population.name / "population" / rd.METRICS
    before = metrics.read_bytes()
    bench.run_cell(manager, population, BUDGET, out, cache, 1, mnist)  # done: nothing trained again
    assert metrics.read_bytes() == before and bench.load_result(out, BUDGET, population) == whole

    # Killed after its first epoch's checkpoint, before the benchmark saw it: the cell resumes the run (a new
    # run in that folder would be refused), so equal numbers mean a bit-exact resume.
    cut_out, cut_cache = tmp_path / "cut", tmp_path / "cut-runs"
    run_dir = cut_cache / "10x30" / population.name / "population"

    def killed(record: EpochRecord) -> None:
        raise Killed

    with pytest.raises(Killed):
        bench.train_to(manager, run_dir, lambda: bench.run_spec(manager, population, BUDGET, mnist, 1, "population",
                                                                cut_cache), {}, killed)
    assert bench.cell_state(cut_out, BUDGET, population, cut_cache) == "0 of 1 runs done, population at epoch 1 of 2"
    bench.run_cell(manager, population, BUDGET, cut_out, cut_cache, 1, mnist)
    cut = bench.load_result(cut_out, BUDGET, population)
    assert _figures(cut) == _figures(whole)
    assert set(cut["runs"]["population"]["epochs"]) == {"2"}  # the epoch before the kill went unmeasured
    with pytest.raises(UserError, match="was measured with budget"):
        bench.load_result(out, bench.Budget(40, 0, 0), population)
    assert bench.cell_state(out, bench.Budget(40, 0, 0), population, cache).startswith("measured with another budget")


def _final(tau: float, val: float, test: float, lineage: list[float] | None = None) -> dict:
    return {"member": 1, "tau": tau, "val_hard": val, "test_hard": test, "test": test, "train_seconds": 10.0,
            "member_epochs": 4, "lineage_tau": lineage or [tau] * 4, "members": []}


def _write(out: Path, cell: object, runs: dict) -> None:
    path = out / "10x30" / f"{cell.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    budget = bench.Budget(4, 0, 0).as_dict()
    path.write_text(json.dumps({"cell": cell.name, "budget": budget, "runs": runs}))


def _epochs(pairs: dict, k: int = 0) -> dict:
    """Four epochs' figures; run ``k`` trains 2 s in every other epoch, 1 s in the others."""
    return {str(e): {"train": 1.0 + (k + e) % 2, "eval": 0.5, "engine": 0.1, "save": 0.4, "spread": 2.0,
                     "pairs": pairs} for e in range(1, 5)}


def test_verdicts_and_tables_come_from_the_results(tmp_path: Path) -> None:
    budget = bench.Budget(4, 0, 0)
    text = bench.render(tmp_path, budget)
    assert text.count("Does one population run reach the grid's best? not run.") == 2
    assert "detects only a mean difference larger than 2.48 standard deviations" in text

    grid_best = {0: 100.0, 1: 101.0, 2: 102.0}  # sd 1.0
    for seed in bench.SEEDS:
        grid = bench.Cell("st-gs", seed, "grid")
        # tau 0.5 has the lowest held-out loss; tau 0.1 the lowest test loss, which must not decide
        runs = {run: {"epochs": _epochs({}, k), "final": _final(tau, 95.0 if tau == 0.5 else 96.0 + tau,
                                                              grid_best[seed] if tau == 0.5 else 90.0)}
                for k, (run, tau) in enumerate(zip(grid.runs(), grid.taus))}
        _write(tmp_path, grid, runs)
        pop = {0: -0.5, 1: 0.5, 2: 1.6}[seed]  # mean +0.53: within the sd; not better by more than it
        _write(tmp_path, bench.Cell("st-gs", seed, "population"), {"population": {
            "epochs": _epochs({"2": [0.3, 0.1], "3": [0.05, 0.1]}),
            "final": _final(0.42, 94.0, grid_best[seed] + pop, [0.5, 0.6, 0.48, 0.42])}})
        _write(tmp_path, bench.Cell("st-gs", seed, "replay"), {"replay": {
            "epochs": {}, "final": _final(0.42, 94.0, grid_best[seed] + 2.0)}})  # worse by 2 > sd
        _write(tmp_path, bench.Cell("st-gs", seed, "annealing"), {"annealing": {
            "epochs": {}, "final": _final(0.5, 94.0, grid_best[seed] + pop + 3.0)}})  # population better by 3
        if seed == 1:  # two seeds give an sd, and a verdict that says what it rests on
            text = bench.render(tmp_path, budget)
            assert "? met: population − grid's best mean +0.00, min -0.50, max +0.50 nats over 2 seeds. " \
                   "Provisional: 2 of 3 seeds." in text
    text = bench.render(tmp_path, budget)
    assert "Provisional" not in text
    assert ("Does one population run reach the grid's best at 4 epochs (target: paired difference no worse than "
            "the grid's seed sd, 1.00)? met: population − grid's best mean +0.53, min -0.50, max +1.60") in text
    assert "Does it beat the grid by more than one sd (stretch)? not met: mean +0.53 against −1.00." in text
    # differences -0.5, 0.5, 1.6: mean 0.533, sd 1.050, t = 0.533 / (1.050 / sqrt 3) = 0.88 on 2 df
    assert "max +1.60 nats over 3 seeds. Paired t-test: t = +0.88, p = 0.47; the mean difference is not " \
           "distinguishable from zero at the 5 % level." in text
    assert "Paired t-test: t = +inf, p = 0.00; the mean difference differs from zero" in text  # replay: +2 on each
    assert "beat annealing? not measured for reinmax: Jang's schedule decays towards 0.5, below this " \
           "estimator's grid (tau ≥ 1)." in text
    assert "at 1/n of the compute at 4 epochs (replay − grid's best no worse than the grid's seed sd, 1.00)? no:" in text
    assert ("beat annealing at equal compute (5 members × 4 epochs against one model annealed for 20 epochs)? yes, "
            "by more than the grid's seed sd (1.00)") in text
    assert "| 0 | 0.5 | 100.00 | 0.42 | 99.50 | -0.50 | 102.00 | +2.00 | 102.50 | -3.00 |" in text
    assert "| mean |  |  |  |  | +0.53 |  | +2.00 |  | -3.00 |" in text
    assert "ranking at 4 epochs (at 160 epochs on all images the benchmark's grid chose tau 1.3 for 10x30" in text
    assert "| 0.5 | 95.00 | 101.00 | 1 |" in text  # the grid's ranking: held-out mean, test mean, rank
    assert "| 0 | 0.5 | 0.6 | 0.42 |" in text  # the lineage's tau at the epochs shown: 1, 2 and the last
    assert "| 2 | 2.00 | 0.10 | 3 of 6 |" in text  # spread; median SE; |gap| > 2 SE: 0.3 of each seed's pair
    assert "Does one population run reach the grid's best? not run." in text  # reinmax
    assert "### 8x4: not run" in text and "#### 10x30, st-gs: grid 0.1, 0.3, 0.5, 0.7, 1" in text
    assert "| grid | 20 | 50 | 20 | 3 |" in text
    # in lockstep each epoch waits for a 2 s run: 8 s, against 6 s for the slowest run alone
    assert "would have cost 33.3 % more time than the slowest run alone" in text


def test_pbt_vs_grid_main_refuses_bad_input_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--setting", "9x9", "--list"]) == 2
    assert bench.main(["--cells", "nope", "--list"]) == 2
    assert bench.main(["--epochs", "0", "--list"]) == 2
    assert bench.main(["--threads", "0", "--list"]) == 2
    assert [line.startswith("error: ") for line in capsys.readouterr().err.splitlines()] == [True] * 4


def test_exact_log_likelihood_sums_over_every_code_and_bounds_the_elbo() -> None:
    torch.manual_seed(0)
    model = MLPVAE((1, 2, 2), (2, 3), ESTIMATORS["st-gs"], hidden=(5, 4))  # 3^2 = 9 codes, 4 pixels
    x = torch.rand(7, 1, 2, 2)
    codes = all_codes(2, 3)
    assert codes.shape == (9, 2, 3) and len({tuple(c.argmax(-1).tolist()) for c in codes}) == 9
    by_code = torch.stack([-reconstruction_bce(model.decode([code.expand(7, 2, 3)]), x) for code in codes])
    expected = torch.logsumexp(by_code, dim=0) - math.log(9)
    got = exact_log_likelihood(model, x, batch=3)
    assert torch.allclose(got, expected, atol=1e-5)
    # The ELBO, its expectation over q taken exactly, lies below log p(x) (Jensen).
    q = torch.softmax(model.encode(x)[0], dim=-1)  # (7, 2, 3)
    weight = torch.stack([q[:, 0, i] * q[:, 1, j] for i, j in itertools.product(range(3), repeat=2)])
    elbo = (weight * by_code).sum(0) - kl_to_uniform(model.encode(x)[0])
    assert bool((elbo <= got + 1e-5).all()) and bool((elbo < got - 1e-3).any())
    with pytest.raises(ValueError, match="too many"):
        all_codes(30, 10)
