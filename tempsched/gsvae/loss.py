"""The GS-VAE loss: -ELBO = BCE reconstruction + KL to a uniform categorical prior (eq. 1-10)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(q || uniform) of eq. 9, summed over the N variables of a layer; one value per example."""
    log_q = F.log_softmax(logits, dim=-1)
    k = logits.shape[-1]
    return (log_q.exp() * (log_q + math.log(k))).sum(dim=(-2, -1))


def reconstruction_bce(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Eq. 4 summed over pixels; one value per example."""
    return F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).sum(dim=1)


def negative_elbo(x_hat: torch.Tensor, x: torch.Tensor, *logits: torch.Tensor) -> torch.Tensor:
    """Per-example -ELBO (eq. 10) with the KL of every latent layer (z1 and z2 for the paper's model)."""
    loss = reconstruction_bce(x_hat, x)
    for layer in logits:
        loss = loss + kl_to_uniform(layer)
    return loss
