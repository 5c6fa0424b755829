"""What a trained GS-VAE does with a set of images: the measurements the paper's experiments rest on.

The training loss cannot tell whether a model reconstructs well because its code is informative or
because a high temperature turned the code into a continuous vector (the authors' best models sat
at tau 93-300, ``../shared/paper/authors-code-facts.md``). So every figure here comes in three
decodings of the latent code:

* ``soft``: a Gumbel-softmax sample at tau (eq. 7), the code the decoders were trained on;
* ``hard``: the one-hot argmax of (log pi + Gumbel noise), an exact categorical sample (eq. 6);
* ``argmax``: the one-hot argmax of the logits, noise-free.

The noise is drawn from a generator seeded with ``noise_seed`` in the order the model's own forward
pass draws it (z1 then z2, batch by batch of ``BATCH`` images), so the soft figures equal the task's
own ``test_metrics`` at the same seed; hard draw ``j`` uses seed ``noise_seed + j``. Everything runs in
eval mode without gradients, one batch at a time, so a full test set fits in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from tempsched.errors import UserError
from tempsched.gsvae.loss import negative_elbo
from tempsched.gsvae.model import CategoricalVAE, DualGSVAE, gumbel_softmax

BATCH = 1000  # images per pass; the task's own evaluation uses the same, so the noise streams agree
DECODINGS = ("soft", "hard", "argmax")
PARTS = ("both", "z1", "z2")
AUTHORS_SIZE = 64  # the authors resized every image to 64 x 64 and measured MSE there
DEFAULT_NOISE_SEED = 1234  # the task's default eval_noise_seed


@dataclass(frozen=True)
class Scores:
    """Reconstruction errors of one decoding over a set of images.

    ``mse`` is the per-pixel mean squared error on [0, 1]; ``neg_elbo`` the mean -ELBO per image
    (BCE summed over pixels plus both KL terms). With ``draws`` > 1 both are averages over that many
    noise draws. The per-image tensors (CPU, float64) let an evaluation rank images (anomaly scores).
    """

    decoding: str
    part: str
    draws: int
    mse: float
    neg_elbo: float
    per_image_mse: torch.Tensor
    per_image_neg_elbo: torch.Tensor


@dataclass(frozen=True)
class Discreteness:
    """How categorical the code really is.

    ``max_prob``: mean largest component of the soft samples (1 = one-hot). ``entropy``: mean entropy
    of q(z|x) per latent variable, in nats; ``entropy_fraction``: the same as a fraction of log K
    (1 = uniform, the code carries nothing the decoder could not get from noise).
    """

    max_prob: float
    entropy: float
    entropy_fraction: float


@dataclass(frozen=True)
class Measurement:
    """Everything ``recon`` reports for one model on one image set."""

    tau: float
    images: int
    soft: Scores
    hard: Scores
    argmax: Scores
    discreteness: Discreteness
    mse_64: float  # soft decoding, both images bilinearly upsampled to 64 x 64 (a proxy of the authors' metric)


@dataclass(frozen=True)
class _Batch:
    """One batch's images, the logits of each latent layer and the codes handed to the decoder(s)."""

    model: CategoricalVAE
    x: torch.Tensor
    logits: tuple[torch.Tensor, ...]
    codes: tuple[torch.Tensor, ...]

    @torch.no_grad()
    def reconstruction(self, part: str) -> torch.Tensor:
        """The model's output (``both``), or for the paper's model decoder 1 on z1 or decoder 2 on z2."""
        if part == "both":
            return self.model.decode(self.codes)
        if not isinstance(self.model, DualGSVAE):
            raise UserError(f"latent part '{part}' needs the paper's dual-latent model (task option model=dual-conv)")
        layer = PARTS.index(part) - 1
        return (self.model.decoder1, self.model.decoder2)[layer](self.codes[layer].flatten(1))


def unit_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (as the data sets hold them) as floats on [0, 1]; float images are returned as they are."""
    return x.float().div(255.0) if x.dtype == torch.uint8 else x


def codes(logits: torch.Tensor, tau: float, decoding: str, uniforms: torch.Tensor) -> torch.Tensor:
    """The code the decoder gets for ``logits`` (batch, N, K): see the module docstring."""
    if decoding == "argmax":
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    return gumbel_softmax(logits, tau, uniforms, hard=decoding == "hard")


def _check(tau: float, decoding: str, part: str) -> None:
    if decoding not in DECODINGS:
        raise UserError(f"unknown decoding '{decoding}' (known: {', '.join(DECODINGS)})")
    if part not in PARTS:
        raise UserError(f"unknown latent part '{part}' (known: {', '.join(PARTS)})")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise UserError(f"the temperature must be a positive number, got {tau!r}")


@torch.no_grad()
def _batches(model: CategoricalVAE, x: torch.Tensor, tau: float, decoding: str,
             noise_seed: int) -> Iterator[_Batch]:
    """The model's passes over ``x`` with ``decoding``, noise drawn as the model's ``forward`` draws it."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(noise_seed)
    for i in range(0, len(x), BATCH):
        xb = unit_images(x[i:i + BATCH]).to(device)
        logits = model.encode(xb)
        uniforms = model.draw_noise(len(xb), generator, device, hard=True)  # one draw per logit, as a sample
        yield _Batch(model, xb, logits, tuple(codes(lg, tau, decoding, u[0])
                                              for lg, u in zip(logits, uniforms, strict=True)))


def reconstruct(model: CategoricalVAE, x: torch.Tensor, tau: float, decoding: str = "soft", part: str = "both",
                noise_seed: int = DEFAULT_NOISE_SEED) -> torch.Tensor:
    """Reconstructions of ``x`` (CPU, N x C x H x W on [0, 1]) from one decoding and latent part."""
    _check(tau, decoding, part)
    return torch.cat([b.reconstruction(part).cpu() for b in _batches(model, x, tau, decoding, noise_seed)])


def _errors(batch: _Batch, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image MSE and -ELBO of one batch (float64, CPU)."""
    x_hat = batch.reconstruction(part)
    mse = ((x_hat - batch.x) ** 2).flatten(1).mean(dim=1)
    elbo = negative_elbo(x_hat, batch.x, *batch.logits)
    return mse.double().cpu(), elbo.double().cpu()


def score(model: CategoricalVAE, x: torch.Tensor, tau: float, decoding: str = "soft", part: str = "both",
          noise_seed: int = DEFAULT_NOISE_SEED, draws: int = 1) -> Scores:
    """MSE and -ELBO of one decoding over all of ``x``; ``draws`` noise draws averaged (``argmax`` needs one)."""
    _check(tau, decoding, part)
    if len(x) == 0:
        raise UserError("no images to measure")
    if not (isinstance(draws, int) and draws >= 1):
        raise UserError(f"the number of noise draws must be a positive integer, got {draws!r}")
    draws = 1 if decoding == "argmax" else draws
    mse = torch.zeros(len(x), dtype=torch.float64)
    elbo = torch.zeros(len(x), dtype=torch.float64)
    for j in range(draws):
        parts = [_errors(b, part) for b in _batches(model, x, tau, decoding, noise_seed + j)]
        mse += torch.cat([m for m, _ in parts])
        elbo += torch.cat([e for _, e in parts])
    mse, elbo = mse / draws, elbo / draws
    return Scores(decoding, part, draws, float(mse.mean()), float(elbo.mean()), mse, elbo)


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each categorical variable of q(z|x), in nats (batch, N)."""
    log_q = F.log_softmax(logits, dim=-1)
    return -(log_q.exp() * log_q).sum(dim=-1)


def discreteness(model: CategoricalVAE, x: torch.Tensor, tau: float,
                 noise_seed: int = DEFAULT_NOISE_SEED) -> Discreteness:
    """Mean max-probability of the soft samples and mean entropy of q(z|x), over every variable of every layer."""
    _check(tau, "soft", "both")
    max_prob = entropy = fraction = 0.0
    variables = 0
    for b in _batches(model, x, tau, "soft", noise_seed):
        for code, logits in zip(b.codes, b.logits, strict=True):
            h = _entropy(logits)
            max_prob += float(code.max(dim=-1).values.double().sum())
            entropy += float(h.double().sum())
            fraction += float(h.double().sum()) / math.log(logits.shape[-1])
            variables += h.numel()
    return Discreteness(max_prob / variables, entropy / variables, fraction / variables)


def upsampled_mse(model: CategoricalVAE, x: torch.Tensor, tau: float, decoding: str = "soft",
                  noise_seed: int = DEFAULT_NOISE_SEED, size: int = AUTHORS_SIZE) -> float:
    """MSE after resizing both the images and their reconstructions to ``size`` x ``size`` (bilinear).

    Only for comparison with the authors' stored numbers: smoothing by the resize lowers the error,
    so it is not comparable with the MSE at the data's own resolution.
    """
    _check(tau, decoding, "both")
    total, count = 0.0, 0
    for b in _batches(model, x, tau, decoding, noise_seed):
        big = [F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
               for t in (b.x, b.reconstruction("both"))]
        total += float(((big[1] - big[0]) ** 2).double().sum())
        count += big[0].numel()
    return total / count


def measure(model: CategoricalVAE, x: torch.Tensor, tau: float, noise_seed: int = DEFAULT_NOISE_SEED,
            hard_draws: int = 5) -> Measurement:
    """Every figure of the ``recon`` table for one model on ``x`` at temperature ``tau``."""
    return Measurement(
        tau=float(tau), images=len(x),
        soft=score(model, x, tau, "soft", noise_seed=noise_seed),
        hard=score(model, x, tau, "hard", noise_seed=noise_seed, draws=hard_draws),
        argmax=score(model, x, tau, "argmax", noise_seed=noise_seed),
        discreteness=discreteness(model, x, tau, noise_seed),
        mse_64=upsampled_mse(model, x, tau, noise_seed=noise_seed),
    )
