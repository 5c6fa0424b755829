"""The dual-latent GS-VAE: shapes, the loss terms of eq. 1-10, Gumbel-Softmax samples, fixed-noise eval."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_gsvae
from tempsched.build import build
from tempsched.gsvae.loss import kl_to_uniform, negative_elbo, reconstruction_bce
from tempsched.gsvae.model import DualGSVAE, gumbel_softmax


@pytest.mark.parametrize("channels,size,in_ch", [([16, 32], 28, 1), ([8, 16, 32, 64], 32, 3), ([8, 16, 32, 64], 64, 3)])
def test_shapes(channels: list[int], size: int, in_ch: int) -> None:
    model = DualGSVAE(in_ch, size, channels, (32, 8), (16, 8))
    x = torch.rand(5, in_ch, size, size)
    x_hat, l1, l2 = model(x, 1.0, torch.Generator().manual_seed(0))
    assert x_hat.shape == x.shape and l1.shape == (5, 32, 8) and l2.shape == (5, 16, 8)
    assert 0.0 <= float(x_hat.detach().min()) and float(x_hat.detach().max()) <= 1.0
    assert model.head1 is not model.head2 and model.decoder1 is not model.decoder2  # two separate layers


def test_output_is_mean_of_both_decoders() -> None:
    model = DualGSVAE(1, 28, [8, 16], (4, 4), (2, 4))
    x = torch.rand(2, 1, 28, 28)
    x_hat, _, _ = model(x, 0.7, torch.Generator().manual_seed(3))
    l1, l2 = model.encode(x)
    g = torch.Generator().manual_seed(3)
    s1, s2 = gumbel_softmax(l1, 0.7, g).flatten(1), gumbel_softmax(l2, 0.7, g).flatten(1)
    assert torch.allclose(x_hat, 0.5 * (model.decoder1(s1) + model.decoder2(s2)))


def test_kl_to_uniform() -> None:
    assert torch.allclose(kl_to_uniform(torch.zeros(3, 5, 4)), torch.zeros(3))  # q uniform: no divergence
    peaked = torch.tensor([[[100.0, 0.0, 0.0, 0.0]]])
    assert kl_to_uniform(peaked).item() == pytest.approx(math.log(4), rel=1e-4)  # one-hot: log K per variable


def test_negative_elbo_is_bce_plus_both_kls() -> None:
    x = torch.tensor([[[[1.0, 0.0]]]])
    x_hat = torch.tensor([[[[0.8, 0.3]]]])
    bce = -(math.log(0.8) + math.log(0.7))
    assert reconstruction_bce(x_hat, x).item() == pytest.approx(bce, rel=1e-5)
    l1, l2 = torch.randn(1, 3, 4), torch.randn(1, 2, 4)
    total = negative_elbo(x_hat, x, l1, l2)
    assert total.item() == pytest.approx(bce + kl_to_uniform(l1).item() + kl_to_uniform(l2).item(), rel=1e-5)


def test_gumbel_softmax_temperature_and_hard() -> None:
    logits = torch.randn(2000, 1, 4)
    cold = gumbel_softmax(logits, 0.05, torch.Generator().manual_seed(0))
    hot = gumbel_softmax(logits, 50.0, torch.Generator().manual_seed(0))
    assert torch.allclose(cold.sum(-1), torch.ones(2000, 1))
    assert cold.max(-1).values.mean() > 0.95 and hot.max(-1).values.mean() < 0.3  # eq. 7: tau sets discreteness
    hard = gumbel_softmax(logits, 1.0, torch.Generator().manual_seed(0), hard=True)
    assert torch.equal(hard.argmax(-1), cold.argmax(-1)) and set(hard.unique().tolist()) == {0.0, 1.0}
    # Class frequencies follow softmax(logits) (eq. 6 and 8).
    freq = gumbel_softmax(torch.tensor([[2.0, 0.0, 0.0, -1.0]]).expand(20000, 4), 1.0,
                          torch.Generator().manual_seed(1), hard=True).mean(0)
    assert torch.allclose(freq, torch.softmax(torch.tensor([2.0, 0.0, 0.0, -1.0]), 0), atol=0.02)


def test_evaluation_uses_fixed_noise_and_training_lowers_loss(manager) -> None:
    built = build(tiny_gsvae(manager, members=1), manager)
    task, member = built.task, built.population.members[0]
    before = task.evaluate(member.model, 1.0)
    assert task.evaluate(member.model, 1.0) == before  # same noise every call
    for _ in range(3):
        for batch in task.batches(0):
            task.train_step(member.model, member.optimizer, batch, 1.0, member.generator)
    assert task.evaluate(member.model, 1.0) < before
    metrics = task.test_metrics(member.model, 1.0)
    assert set(metrics) == {"test_mse", "test_mse_hard", "test_neg_elbo", "test_neg_elbo_hard"}
    assert 0 < metrics["test_mse"] < 0.25
