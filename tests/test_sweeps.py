"""n-sweep, tau-sweep and latents on a tiny population: figures recomputed by hand, tau-sweep equal to recon
at the run's tau, runs trained once and reused, the report folder through the CLI, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import tiny_gsvae
from tempsched.config import RunConfig
from tempsched.errors import UserError
from tempsched.evaluation import EvalContext, Evaluation, Report
from tempsched.gsvae.experiments.latents import Latents
from tempsched.gsvae.experiments.recon import Recon
from tempsched.gsvae.experiments.sweeps import NSweep, TauSweep
from tempsched.plugins import PluginManager
from tempsched.runs import load_best
from tempsched.session import execute
from tempsched.spec import RunSpec, saved_config
from test_cli import TINY, _one_line_error, cli

TASK = {"train_size": 192}  # 128 training images: 2 batches an epoch


def evaluate(evaluation: Evaluation, runs: list[Path], base: RunConfig, out: Path, cache: Path) -> dict[str, Any]:
    """Run ``evaluation`` as ``tempsched eval`` does and return its results.json."""
    manager = PluginManager()
    report = Report(out, evaluation.name)
    evaluation.run(EvalContext(runs=runs, spec=RunSpec(base.to_dict()), report=report, manager=manager, cache=cache))
    report.write({"evaluation": evaluation.name, "runs": [str(r) for r in runs], "base": base.to_dict()})
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny population: 2 members, 1 epoch."""
    manager = PluginManager()
    run_dir = tmp_path_factory.mktemp("sweeps") / "population"
    execute(tiny_gsvae(manager, members=2, epochs=1, task_options=TASK), manager, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def loaded(population: Path) -> Any:
    return load_best(population, PluginManager())


def _by_hand(loaded: Any, tau: float, part: str = "both", hard: bool = False) -> float:
    """Soft (or hard: one-hot) MSE on the whole (tiny) test set written out: logits, Gumbel noise drawn in the
    model's order, the decoders."""
    model, x = loaded.model, loaded.task.data.x_test.float() / 255.0
    generator = torch.Generator().manual_seed(loaded.config.task_options["eval_noise_seed"])
    with torch.no_grad():
        l1, l2 = model.encode(x)
        codes = []
        for logits in (l1, l2):
            u = torch.rand(logits.shape, generator=generator)
            neg_log_u = -torch.log(u.clamp_min(1e-10))
            gumbel = -torch.log(neg_log_u.clamp_min(1e-10))
            scores = F.log_softmax(logits, -1) + gumbel
            code = F.one_hot(scores.argmax(-1), logits.shape[-1]).float() if hard else F.softmax(scores / tau, -1)
            codes.append(code.flatten(1))
        out = {"z1": model.decoder1(codes[0]), "z2": model.decoder2(codes[1])}
        out["both"] = 0.5 * (out["z1"] + out["z2"])
    return float(((out[part] - x) ** 2).mean())


def _grid_rows(path: Path, size: int = 28) -> int:
    """Rows of a torchvision image grid (2 pixels of padding around each image)."""
    return (Image.open(path).height - 2) // (size + 2)


def test_tau_sweep_equals_recon_at_the_runs_tau(population: Path, loaded: Any, tmp_path: Path) -> None:
    results = evaluate(TauSweep(taus=[3.0, 0.5, 3.0], images=8, hard_draws=1), [population], loaded.config,
                       tmp_path / "tau", tmp_path / "cache")
    rows = results["tau_sweep"]
    assert [r["tau"] for r in rows] == [0.5, loaded.tau, 3.0]  # sorted, repeats dropped, the run's tau added
    assert [r["which"] for r in rows] == [None, "run's tau", None]
    recon = evaluate(Recon(baselines=False, hard_draws=1, baseline_seeds=1), [population], loaded.config, tmp_path / "recon",
                     tmp_path / "cache")
    assert rows[1]["soft MSE"] == recon["recon"][0]["soft MSE"]  # exactly: same noise, same images
    for row in rows:
        assert row["soft MSE"] == pytest.approx(_by_hand(loaded, row["tau"]), rel=1e-5)
    # a higher tau flattens every soft sample, so the code gets less one-hot
    max_prob = [r["mean max-prob"] for r in rows]
    assert max_prob[0] > max_prob[1] > max_prob[2]
    (tau_free,) = results["tau_free"]
    assert tau_free["hard MSE (1 draws)"] == recon["recon"][0]["hard MSE (1 draws)"]
    assert tau_free["argmax MSE"] == recon["recon"][0]["argmax MSE"]
    assert _grid_rows(tmp_path / "tau" / "tau_grid_1.png") == 1 + len(rows)  # originals, then one row per tau
    assert "![" in (tmp_path / "tau" / "report.md").read_text() and (tmp_path / "tau" / "tau_sweep.png").is_file()


def test_latents_each_decoder_alone_and_their_mean(population: Path, loaded: Any, tmp_path: Path) -> None:
    results = evaluate(Latents(images=4, hard_draws=1), [population], loaded.config, tmp_path / "latents",
                       tmp_path / "cache")
    rows = {r["reconstruction"]: r for r in results["latents"]}
    by_part = dict(zip(("z1", "z2", "both"), rows.values()))
    for part, row in by_part.items():
        assert row["soft MSE"] == pytest.approx(_by_hand(loaded, loaded.tau, part), rel=1e-5)
        assert row["hard MSE (1 draws)"] == pytest.approx(_by_hand(loaded, loaded.tau, part, hard=True), rel=1e-5)
    # the squared error is convex: the mean of two reconstructions is never worse than their mean error
    assert by_part["both"]["soft MSE"] <= 0.5 * (by_part["z1"]["soft MSE"] + by_part["z2"]["soft MSE"]) + 1e-9
    assert _grid_rows(tmp_path / "latents" / "latents_grid_1.png") == 4  # originals, z1, z2, merged


def test_n_sweep_reuses_the_given_run_and_trains_each_other_n_once(population: Path, loaded: Any,
                                                                    tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    sweep = NSweep(members=[2, 1], hard_draws=1)
    results = evaluate(sweep, [population], loaded.config, tmp_path / "n", cache)
    rows = results["n_sweep"]
    assert [r["n"] for r in rows] == [1, 2]
    assert rows[1]["run"] == str(population)  # n = 2 is the run given: not trained again
    single = Path(rows[0]["run"])
    assert single.parent == cache
    config, pop = saved_config(single, PluginManager().registry), loaded.config
    assert config.members == 1 and config.schedules == ["fixed"]
    assert (config.seed, config.epochs, config.task_options, config.params["patience"]) == \
        (pop.seed, pop.epochs, pop.task_options, pop.params["patience"])
    for row in rows:
        summary = json.loads((Path(row["run"]) / "summary.json").read_text())
        assert row["wall s"] == summary["wall_seconds"]
        assert row["trained on"] == summary["hardware"]
        assert row["soft MSE"] == pytest.approx(summary["test_metrics"]["test_mse"], rel=1e-6)
        assert row["member-epochs"] == row["n"]
    stamp = (single / "summary.json").stat().st_mtime_ns
    assert evaluate(sweep, [population], loaded.config, tmp_path / "again", cache)["n_sweep"] == rows
    assert (single / "summary.json").stat().st_mtime_ns == stamp  # reused from the cache
    assert (tmp_path / "n" / "n_sweep.png").is_file()


def test_n_sweep_trains_with_the_command_lines_speed_settings(population: Path, loaded: Any,
                                                              tmp_path: Path) -> None:
    """The run given says what to train; threads and backend come from the evaluation's own options (a run
    trained with 2 threads must not make the sweep oversubscribe a machine it shares with 1 thread)."""
    given = loaded.config
    command_line = dataclasses.replace(given, performance=dataclasses.replace(
        given.performance, threads=given.performance.threads + 1, backend="loop"))
    rows = evaluate(NSweep(members=[2, 1], hard_draws=1), [population], command_line, tmp_path / "n",
                    tmp_path / "cache")["n_sweep"]
    assert rows[1]["run"] == str(population)  # the settings enter no fingerprint: the given run is reused
    trained = saved_config(Path(rows[0]["run"]), PluginManager().registry)
    assert trained.performance == command_line.performance != given.performance


@pytest.mark.parametrize("build,needle", [
    (lambda: TauSweep(taus=[0.5, 0.0], images=8, hard_draws=1), "every value must be a positive number, got 0.0"),
    (lambda: TauSweep(taus=[], images=8, hard_draws=1), "'taus' needs at least one value"),
    (lambda: TauSweep(taus=[1, "x"], images=8, hard_draws=1), "got 'x'"),
    (lambda: NSweep(members=[0, 2], hard_draws=1), "every value must be a positive integer, got 0"),
    (lambda: NSweep(members=[1.5], hard_draws=1), "positive integer, got 1.5"),
])
def test_bad_options_are_refused_when_built(build: Any, needle: str) -> None:
    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        build()


def test_eval_from_the_command_line(population: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    code, stdout, stderr = cli("eval", "tau-sweep", str(population), "--set", "taus=[0.5, 2]", "--set", "hard_draws=1",
                               "--out", str(out), capsys=capsys)
    assert code == 0, stderr
    results = json.loads((out / "results.json").read_text())
    assert len(results["tau_sweep"]) == 3 and all(r["soft MSE"] > 0 for r in results["tau_sweep"])
    assert tomllib.loads((out / "config.toml").read_text())["options"]["taus"] == [0.5, 2]
    assert f"{results['tau_sweep'][0]['soft MSE']:.5g}" in (out / "report.md").read_text()
    cases = [(["tau-sweep", str(population), "--set", "taus=[-1]"], "got -1"),
             (["latents", str(population), "--set", "images=0"], "'images' must be >= 1"),
             (["n-sweep", str(population), str(population)], "n-sweep takes at most one run directory"),
             (["n-sweep", "--set", "members=[1, 0]", *TINY], "positive integer, got 0")]
    for args, needle in cases:
        code, _, stderr = cli("eval", *args, "--out", str(tmp_path / "bad"), capsys=capsys)
        _one_line_error(code, stderr, needle)
        assert not (tmp_path / "bad").exists()
