"""The gradient estimators on cases small enough to enumerate, and the GS-VAE task that trains with them.

Each estimator has a test only it passes: replacing one by another fails at least one test here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chi2
from test_cli import _one_line_error, cli

from tempsched.build import build
from tempsched.config import layer
from tempsched.errors import UserError
from tempsched.gsvae.estimators import ESTIMATORS, Estimator, categorical_sample, gumbel
from tempsched.gsvae.loss import reconstruction_bce
from tempsched.gsvae.measure import measure, score
from tempsched.gsvae.model import DualGSVAE, MLPVAE
from tempsched.plugins import PluginManager
from tempsched.steppers import LoopStepper, VmapStepper

THETA = torch.tensor([1.0, 0.0, -0.5, 0.3])  # one categorical variable of four classes
STRAIGHT_THROUGH = [name for name, e in ESTIMATORS.items() if e.discrete]


def _estimator(name: str, draws: int = 8) -> Estimator:
    return ESTIMATORS[name].with_draws(draws)


def _uniforms(estimator: Estimator, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand((estimator.draws, *shape), generator=torch.Generator().manual_seed(seed))


def _forcing(classes: torch.Tensor, k: int, estimator: Estimator, seed: int = 0) -> torch.Tensor:
    """Uniforms whose first draw makes the Gumbel-max sample ``classes`` (for logits within a few nats):
    the forced class gets Gumbel noise of about 13.8, every other class about 0.37."""
    u = _uniforms(estimator, (len(classes), k), seed)
    u[0] = 0.5
    u[0, torch.arange(len(classes)), classes] = 1 - 1e-6
    return u


def _grad(fn: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor) -> torch.Tensor:
    leaf = theta.detach().clone().requires_grad_(True)
    fn(leaf).backward()
    assert leaf.grad is not None
    return leaf.grad


@pytest.mark.parametrize("name", STRAIGHT_THROUGH)
def test_forward_samples_are_one_hot_with_the_frequencies_of_softmax(name: str) -> None:
    n, est = 20000, _estimator(name, draws=2)
    z = est(THETA.expand(n, 4), 0.7, _uniforms(est, (n, 4), seed=1))
    assert set(z.unique().tolist()) == {0.0, 1.0} and torch.equal(z.sum(-1), torch.ones(n))
    expected = n * F.softmax(THETA, -1)
    statistic = float(((z.sum(0) - expected) ** 2 / expected).sum())
    assert statistic < chi2.ppf(0.999, df=3)


def test_the_relaxed_estimator_is_torch_gumbel_softmax_on_the_same_noise() -> None:
    theta = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(7)
    reference = F.gumbel_softmax(theta, tau=0.6)
    torch.manual_seed(7)  # gumbel_softmax's draw: g = -log(E), E ~ Exp(1); the same g from u = exp(-E)
    u = torch.exp(-torch.empty_like(theta).exponential_())
    ours = ESTIMATORS["relaxed"](theta, 0.6, u[None])
    torch.testing.assert_close(ours, reference)
    assert not torch.equal(ours, categorical_sample(theta, u))  # a relaxation, not a one-hot


def test_st_gs_is_one_hot_forward_and_the_relaxation_at_the_same_noise_backward() -> None:
    theta = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(0))
    w = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(1))
    est, tau = ESTIMATORS["st-gs"], 0.5
    u = _uniforms(est, theta.shape, seed=2)
    g = gumbel(u[0])
    z = est(theta, tau, u)
    assert torch.equal(z, F.one_hot((theta + g).argmax(-1), 5).float())
    torch.testing.assert_close(_grad(lambda t: (w * est(t, tau, u)).sum(), theta),
                               _grad(lambda t: (w * F.softmax((t + g) / tau, -1)).sum(), theta))
    torch.manual_seed(11)  # torch's own straight-through Gumbel-Softmax, fed the same noise
    u_torch = torch.exp(-torch.empty_like(theta).exponential_())[None]
    torch.manual_seed(11)
    torch.testing.assert_close(_grad(lambda t: (w * F.gumbel_softmax(t, tau=tau, hard=True)).sum(), theta),
                               _grad(lambda t: (w * est(t, tau, u_torch)).sum(), theta))


def test_st_backward_is_the_gradient_of_the_tempered_softmax() -> None:
    theta = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(0))
    w = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(1))
    est, tau = ESTIMATORS["st"], 2.0
    u = _uniforms(est, theta.shape, seed=2)
    torch.testing.assert_close(_grad(lambda t: (w * est(t, tau, u)).sum(), theta),
                               _grad(lambda t: (w * F.softmax(t / tau, -1)).sum(), theta))


def test_gst_backward_moves_the_sample_to_the_top_and_the_rest_a_gap_below() -> None:
    theta = torch.randn(64, 5, generator=torch.Generator().manual_seed(0)) * 2
    w = torch.randn(64, 5, generator=torch.Generator().manual_seed(1))
    est, tau = ESTIMATORS["gst-1.0"], 0.5
    u = _uniforms(est, theta.shape, seed=2)
    sample = categorical_sample(theta, u[0]).bool()
    top = theta.max(-1, keepdim=True).values
    moved = torch.where(sample, top, torch.minimum(theta, top - 1.0))  # Fan et al. 2022, gap 1.0

    def reference(t: torch.Tensor) -> torch.Tensor:
        return (w * F.softmax((t + (moved - theta)) / tau, -1)).sum()

    assert torch.equal(est(theta, tau, u), sample.float())
    torch.testing.assert_close(_grad(lambda t: (w * est(t, tau, u)).sum(), theta), _grad(reference, theta))


def _per_sample_grads(est: Estimator, n: int, tau: float, f: Callable[[torch.Tensor], torch.Tensor],
                      seed: int) -> torch.Tensor:
    rows = THETA.expand(n, 4).clone().requires_grad_(True)
    f(est(rows, tau, _uniforms(est, (n, 4), seed))).sum().backward()
    assert rows.grad is not None
    return rows.grad


def _quadratic(z: torch.Tensor) -> torch.Tensor:
    a = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.3, 2.0, -1.0, 1.5], [0.0, 1.0, -0.5, 2.0], [-1.0, 0.2, 0.4, 1.0]])
    b = torch.tensor([0.5, -1.0, 2.0, 0.1])
    return ((z @ a) * z).sum(-1) + z @ b


def test_gumbel_rao_has_st_gs_mean_gradient_with_lower_variance() -> None:
    n, tau = 20000, 0.5
    st_gs = _per_sample_grads(_estimator("st-gs"), n, tau, _quadratic, seed=3)
    rao = _per_sample_grads(_estimator("gumbel-rao", draws=10), n, tau, _quadratic, seed=4)
    se = ((st_gs.var(0) + rao.var(0)) / n).sqrt()
    assert ((rao.mean(0) - st_gs.mean(0)).abs() < 4 * se).all()
    assert rao.var(0).sum() < 0.7 * st_gs.var(0).sum()


def _true_gradient(f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """d/dtheta of E_{D ~ softmax(theta)} f(D), by enumerating the four classes."""
    values = f(torch.eye(4))
    return _grad(lambda t: (F.softmax(t, -1) * values).sum(), THETA)


def _expected_gradient(name: str, tau: float, f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """E_D of the estimator's gradient, enumerating D: each class forced once, weighted by its probability."""
    est = _estimator(name)
    u = _forcing(torch.arange(4), 4, est)
    rows = THETA.expand(4, 4).clone().requires_grad_(True)
    z = est(rows, tau, u)
    assert torch.equal(z, torch.eye(4))  # each row took the class it was forced to
    f(z).sum().backward()
    assert rows.grad is not None
    return (F.softmax(THETA, -1)[:, None] * rows.grad).sum(0)


def _linear(z: torch.Tensor) -> torch.Tensor:
    return z @ torch.tensor([1.5, -2.0, 0.7, 3.0])


def test_st_expected_gradient_is_exact_for_a_linear_f_at_tau_1() -> None:
    torch.testing.assert_close(_expected_gradient("st", 1.0, _linear), _true_gradient(_linear))
    assert not torch.allclose(_expected_gradient("st", 1.0, _quadratic), _true_gradient(_quadratic), atol=1e-2)
    assert not torch.allclose(_expected_gradient("st", 2.0, _linear), _true_gradient(_linear), atol=1e-2)


def test_reinmax_expected_gradient_is_exact_for_a_quadratic_f_at_tau_1() -> None:
    torch.testing.assert_close(_expected_gradient("reinmax", 1.0, _quadratic), _true_gradient(_quadratic))


@pytest.mark.parametrize("tau", [1.0, 1.3, 2.0])
def test_reinmax_equals_the_reinmax_package_on_the_same_one_hot_sample(tau: float) -> None:
    reinmax_package = pytest.importorskip("reinmax")  # the dev extra installs it
    theta = torch.randn(16, 3, 5, generator=torch.Generator().manual_seed(0))
    w = torch.randn(16, 3, 5, generator=torch.Generator().manual_seed(1))
    leaf = theta.clone().requires_grad_(True)
    torch.manual_seed(5)
    sample, _ = reinmax_package.reinmax(leaf, tau)
    (w * sample).sum().backward()
    est = ESTIMATORS["reinmax"]
    u = _forcing(sample.argmax(-1).flatten(), 5, est).view(1, 16, 3, 5)
    ours = est(theta, tau, u)
    assert torch.equal(ours, sample.detach())
    torch.testing.assert_close(_grad(lambda t: (w * est(t, tau, u)).sum(), theta), leaf.grad)


def _models(est: Estimator) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [MLPVAE((1, 28, 28), (6, 4), est), DualGSVAE(1, 28, [8, 16], (4, 4), (2, 4), est)]


def _encoder_grad(model: torch.nn.Module) -> torch.Tensor:
    """The gradient of the reconstruction alone (no KL, which reaches the encoder by itself) at the first layer."""
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    x_hat, *_ = model(x, 0.8, torch.Generator().manual_seed(1))
    reconstruction_bce(x_hat, x).sum().backward()
    first = next(p for name, p in model.named_parameters() if name.startswith("encoder"))
    return torch.zeros_like(first) if first.grad is None else first.grad  # None: no path from the loss


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_the_reconstruction_gradient_reaches_the_encoder(name: str) -> None:
    for model in _models(_estimator(name)):
        assert _encoder_grad(model).abs().sum() > 0


def test_a_one_hot_sample_without_a_surrogate_cuts_the_encoder_off() -> None:
    """The control for the test above: a forward-only one-hot (gumbel_softmax(hard=True) alone) has no gradient."""
    cut = Estimator("cut", "forward only", lambda logits, tau, u: categorical_sample(logits, u[0]))
    for model in _models(cut):
        assert not _encoder_grad(model).any()


def test_recon_measures_the_benchmark_model_and_refuses_its_missing_parts() -> None:
    model = _models(_estimator("reinmax"))[0]
    x = torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    m = measure(model, x, 1.3, hard_draws=2)
    figures = [m.soft.neg_elbo, m.hard.neg_elbo, m.argmax.neg_elbo, m.discreteness.entropy_fraction]
    assert torch.isfinite(torch.tensor(figures)).all()
    with pytest.raises(UserError, match="dual-latent"):
        score(model, x, 1.3, part="z1")


def _mlp_config(manager: PluginManager, estimator: str, **more: object):
    return layer(manager.registry, {
        "plugin": "paper-default", "members": 3, "epochs": 1, "seed": 3,
        "task_options": {"dataset": "sample", "train_size": 192, "val_size": 64, "test_size": 64, "batch_size": 64,
                         "model": "mlp", "latent": [6, 4], "estimator": estimator, "gumbel_rao_draws": 3,
                         "optimizer": "radam", **more}})


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_loop_and_vmap_steppers_give_equal_losses(manager: PluginManager, name: str) -> None:
    loop, vec = build(_mlp_config(manager, name), manager), build(_mlp_config(manager, name), manager)
    for m in loop.population.members + vec.population.members:
        m.tau = 0.5 + m.index / 4
    for batch in loop.task.batches(0):
        losses = LoopStepper(loop.task)(loop.population.members, batch)
        assert VmapStepper(vec.task)(vec.population.members, batch) == pytest.approx(losses, rel=1e-5)
    for a, b in zip(loop.population.members, vec.population.members):
        assert torch.equal(a.generator.get_state(), b.generator.get_state())


def test_val_hard_judges_the_discrete_model_whatever_tau(manager: PluginManager) -> None:
    built = build(_mlp_config(manager, "relaxed"), manager)
    model, task = built.population.members[0].model, built.task
    assert task.evaluate(model, 0.5, "val-hard") == task.evaluate(model, 5.0, "val-hard")
    assert task.evaluate(model, 0.5, "val") != task.evaluate(model, 5.0, "val")


BEFORE_ESTIMATORS = {"dataset", "data_dir", "exclude_classes", "batch_size", "val_size", "train_size", "test_size",
                     "learning_rate", "z1", "z2", "channels", "eval_noise_seed"}  # the task's options until then


def test_runs_from_before_the_estimators_keep_their_configuration_and_name(manager: PluginManager) -> None:
    """The new options are left out at their defaults, so an old run's config.toml and fingerprint are unchanged."""
    relaxed = layer(manager.registry, {"plugin": "paper-default"})
    assert set(relaxed.task_options) == BEFORE_ESTIMATORS
    st_gs = _mlp_config(manager, "st-gs")
    added = {"model", "latent", "estimator", "gumbel_rao_draws", "optimizer"}  # each set to a non-default value
    assert set(st_gs.task_options) - BEFORE_ESTIMATORS == added


@pytest.mark.parametrize("estimator, default", [("relaxed", "val"), ("st-gs", "val-hard"), ("reinmax", "val-hard")])
def test_straight_through_runs_are_judged_on_the_discrete_model_by_default(manager: PluginManager, estimator: str,
                                                                           default: str) -> None:
    assert _mlp_config(manager, estimator).select_on == default


MLP = ["--option", "model=mlp", "--option", "latent=[6,4]", "--train-size", "192", "--val-size", "64",
       "--test-size", "64", "--batch-size", "64", "--threads", "1", "--members", "3", "--epochs", "2"]


def test_a_straight_through_run_selects_on_the_hard_elbo(tmp_path: Path, capsys) -> None:
    code, out, err = cli("run", *MLP, "--option", "estimator=st-gs", "--select-on", "val-hard",
                         "--out", str(tmp_path / "run"), capsys=capsys)
    assert code == 0, err
    assert "loss (val-hard)" in out  # the live view names the loss members are judged on
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor([r["loss"], r["train_loss"]])).all() for r in rows)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "test_neg_elbo_hard" in summary["test_metrics"]


def test_tune_optimises_the_hard_elbo(tmp_path: Path, capsys) -> None:
    code, _, err = cli("tune", *MLP, "--option", "estimator=reinmax", "--select-on", "val-hard", "--trials", "1",
                       "--out", str(tmp_path / "study"), capsys=capsys)
    assert code == 0, err
    trial = tmp_path / "study" / "trials" / "0"
    assert 'select_on = "val-hard"' in (trial / "config.toml").read_text()
    rows = [json.loads(line) for line in (trial / "metrics.jsonl").read_text().splitlines()]
    assert json.loads((trial / "summary.json").read_text())["best_loss"] == min(r["loss"] for r in rows if r["best"])


@pytest.mark.parametrize("args, needle", [
    (["--option", "estimator=st-gumbel"], "task option 'estimator' must be one of relaxed, st-gs"),
    (["--select-on", "hard"], "select_on must be one of val, val-hard, train"),
    (["--option", "optimizer=sgd"], "task option 'optimizer' must be one of adam, radam"),
])
def test_unknown_estimator_or_loss_is_one_error_line(args: list[str], needle: str, tmp_path: Path, capsys) -> None:
    code, _, err = cli("run", *MLP, *args, "--out", str(tmp_path / "run"), capsys=capsys)
    _one_line_error(code, err, needle)


def test_plugins_lists_the_estimators(capsys) -> None:
    code, out, _ = cli("plugins", capsys=capsys)
    assert code == 0 and all(name in out for name in ESTIMATORS)


def test_one_and_two_processes_write_equal_rows(tmp_path: Path, capsys) -> None:
    args = [*MLP, "--option", "estimator=gumbel-rao", "--option", "gumbel_rao_draws=3", "--seed", "5"]
    for name, procs in (("one", "1"), ("two", "2")):
        code, _, err = cli("run", *args, "--procs", procs, "--out", str(tmp_path / name), capsys=capsys)
        assert code == 0, err
    assert (tmp_path / "one" / "metrics.jsonl").read_bytes() == (tmp_path / "two" / "metrics.jsonl").read_bytes()
