"""The exact log-likelihood of a categorical VAE small enough to enumerate its codes (8x4: 8^4 = 4,096).

A -ELBO only bounds -log p(x); where every code z can be decoded, log p(x) = log sum_z p(z) p(x | z) is
computed exactly, with p(z) the uniform prior of the KL term (``tempsched.gsvae.loss``) and
-log p(x | z) the decoder's BCE summed over the pixels, as in the -ELBO. On grey levels in [0, 1] that
BCE is the benchmark's reconstruction term, not a normalised density, so the figure is comparable with
the -ELBO (it is at most the -ELBO) and between models, not with a likelihood of binarised images.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from tempsched.gsvae.model import CategoricalVAE

MAX_CODES = 1 << 16  # enumerating more codes than this is a mistake, not a measurement


def all_codes(variables: int, classes: int) -> torch.Tensor:
    """Every one-hot code of ``variables`` categorical variables with ``classes`` classes each, shaped
    (classes ** variables, variables, classes), the first variable varying slowest."""
    if classes ** variables > MAX_CODES:
        raise ValueError(f"{classes}^{variables} codes are too many to enumerate (at most {MAX_CODES})")
    index = torch.tensor(list(itertools.product(range(classes), repeat=variables)), dtype=torch.long)
    return F.one_hot(index.reshape(-1, variables), classes).float()


@torch.no_grad()
def exact_log_likelihood(model: CategoricalVAE, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """log p(x) of each image of ``x`` under ``model``'s decoder and uniform prior, summing over every code.

    Each code is decoded once; the BCE of every image against every decoded code is two matrix products
    (log x_hat and log(1 - x_hat) clamped at -100, as ``torch.nn.functional.binary_cross_entropy`` does).
    Only models with a single latent layer (the benchmark's MLP) can be enumerated this way.
    """
    if len(model.latents) != 1:
        raise ValueError("exact_log_likelihood enumerates models with one latent layer only")
    variables, classes = model.latents[0]
    model.eval()
    codes = all_codes(variables, classes).to(x.device)
    x_hat = model.decode([codes]).flatten(1).double()
    log_p, log_not_p = x_hat.log().clamp(min=-100), (1 - x_hat).log().clamp(min=-100)
    log_prior = -variables * math.log(classes)
    out = []
    for xb in x.flatten(1).double().split(batch):
        log_px_given_z = xb @ log_p.T + (1 - xb) @ log_not_p.T  # (images, codes): -BCE of each pair
        out.append(torch.logsumexp(log_px_given_z, dim=1) + log_prior)
    return torch.cat(out).float()
