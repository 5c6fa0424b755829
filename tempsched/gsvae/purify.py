"""The purification pipeline as deployed, written so that an attacker can differentiate through it.

``Purifier`` is a trained GS-VAE used as a pre-processor: image -> reconstruction. Like the authors' code it
samples the latent code at the model's temperature and draws fresh Gumbel noise at every call (``soft``), or
uses the exact categorical sample (``hard``) or the noise-free argmax (``argmax``). ``Pipeline`` puts it in
front of the classifier. An attack on ``Pipeline`` is an attack on what is deployed:

* ``soft``: gradients are exact; the soft sample is differentiable in the logits.
* ``hard``, ``argmax``: the one-hot code has no gradient, so the backward pass uses the straight-through
  estimator (forward: the one-hot code; backward: the soft sample's gradient at the same noise). This is
  BPDA applied to the argmax alone; every other layer keeps its exact gradient.
* fresh noise (``soft``, ``hard``): one call sees one noise draw, so ``ExpectedPipeline`` averages the
  class probabilities over ``draws`` fresh draws (Expectation over Transformation, EOT); autograd then
  averages the gradients of those draws.

The noise comes from the purifier's own generator. ``reseed`` restarts it, which makes an evaluation
repeatable without letting the attacker know the draws it is evaluated with (attacks run on other seeds).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tempsched.errors import UserError
from tempsched.gsvae.measure import DECODINGS, codes
from tempsched.gsvae.model import DualGSVAE, gumbel_softmax

RANDOM_DECODINGS = ("soft", "hard")  # the decodings that draw fresh noise per call


class Purifier(nn.Module):
    """A GS-VAE's reconstruction of its input, decoded as ``decoding`` at temperature ``tau``."""

    def __init__(self, vae: DualGSVAE, tau: float, decoding: str = "soft", seed: int = 0) -> None:
        super().__init__()
        if decoding not in DECODINGS:
            raise UserError(f"unknown decoding '{decoding}' (known: {', '.join(DECODINGS)})")
        self.vae, self.tau, self.decoding = vae.eval(), float(tau), decoding
        self.vae.requires_grad_(False)
        self.generator = torch.Generator(device=next(vae.parameters()).device)
        self.reseed(seed)

    @property
    def random(self) -> bool:
        """Whether two calls on the same image may give two reconstructions (EOT needed)."""
        return self.decoding in RANDOM_DECODINGS

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def _code(self, logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """The decoder's input; straight-through where the forward value is a one-hot code."""
        code = codes(logits, self.tau, self.decoding, uniforms)
        if self.decoding == "soft":
            return code
        surrogate = (gumbel_softmax(logits, self.tau, uniforms) if self.decoding == "hard"
                     else F.softmax(logits / self.tau, dim=-1))
        return code + surrogate - surrogate.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits1, logits2 = self.vae.encode(x)
        u1, u2 = (u[0] for u in self.vae.draw_noise(len(x), self.generator, x.device, hard=True))
        code1, code2 = self._code(logits1, u1), self._code(logits2, u2)
        return 0.5 * (self.vae.decoder1(code1.flatten(1)) + self.vae.decoder2(code2.flatten(1)))


class Pipeline(nn.Module):
    """Classifier logits of the purified image (or of the image itself when there is no purifier)."""

    def __init__(self, classifier: nn.Module, purifier: Purifier | None = None) -> None:
        super().__init__()
        self.classifier, self.purifier = classifier.eval(), purifier
        self.classifier.requires_grad_(False)

    @property
    def random(self) -> bool:
        return self.purifier is not None and self.purifier.random

    def reseed(self, seed: int) -> None:
        if self.purifier is not None:
            self.purifier.reseed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.purifier(x) if self.purifier is not None else x)


class ExpectedPipeline(nn.Module):
    """EOT: the log of the pipeline's class probabilities averaged over ``draws`` fresh noise draws."""

    def __init__(self, pipeline: Pipeline, draws: int) -> None:
        super().__init__()
        self.pipeline, self.draws = pipeline, draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        log_p = F.log_softmax(self.pipeline(x.repeat(self.draws, *([1] * (x.dim() - 1)))), dim=1)
        return torch.logsumexp(log_p.view(self.draws, n, -1), dim=0) - math.log(self.draws)


class ReconstructionError(nn.Module):
    """Per-image MSE between an image and its purified reconstruction: what the authors' MNIST attacks
    maximised instead of the classifier's loss."""

    def __init__(self, purifier: Purifier) -> None:
        super().__init__()
        self.purifier = purifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.purifier(x) - x) ** 2).flatten(1).mean(dim=1)
