"""The GS-VAE models: the dual-latent conv VAE of the paper's Figure 2 and the ReinMax benchmark's MLP VAE.

``DualGSVAE``: a conv encoder feeds two separate linear heads, z1 and z2, each a set of N categorical
variables with K classes; each latent layer has its own decoder (a mirror of the encoder) and the two
sigmoid reconstructions are averaged. ``MLPVAE``: the VAE of the ReinMax benchmark (Liu et al. 2023), an
MLP encoder 784-512-256 to one latent layer of L variables with C categories, and a decoder
L*C-256-512-784 with a sigmoid output. Both turn logits into codes with the ``Estimator`` they are built
with (``tempsched.gsvae.estimators``), on noise drawn from the member's own generator.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from tempsched.gsvae.estimators import ESTIMATORS, Estimator, categorical_sample, relaxed


# Where Gumbel noise comes from: a generator to draw from, or uniforms drawn beforehand (shaped as the logits).
Noise = torch.Generator | torch.Tensor | None
Shape = tuple[int, int]  # a latent layer: (variables, classes per variable)


def gumbel_softmax(logits: torch.Tensor, tau: float | torch.Tensor, noise: Noise,
                   hard: bool = False) -> torch.Tensor:
    """Relaxed one-hot samples of eq. 7 over the last axis; ``hard`` gives the argmax of eq. 6.

    The noise is drawn from a generator so that each member's noise stream is its own and a resumed
    run draws the same numbers. It may also come as uniforms drawn beforehand from that generator (the
    same numbers): ``torch.func.vmap`` cannot draw from per-member generators inside the mapped call.
    """
    if isinstance(noise, torch.Tensor):
        u = noise
    else:
        u = torch.rand(logits.shape, generator=noise, device=logits.device, dtype=logits.dtype)
    if hard:
        return categorical_sample(logits, u)
    return relaxed(logits, tau, u[None])


class CategoricalVAE(nn.Module):
    """What both models share: categorical latent layers ``latents``, coded by the model's estimator.

    A subclass gives ``encode`` (images -> one logits tensor (batch, N, K) per latent layer) and
    ``decode`` (one code per layer -> images on [0, 1]).
    """

    def __init__(self, latents: Sequence[Shape], estimator: Estimator) -> None:
        super().__init__()
        self.latents = tuple(latents)
        self.estimator = estimator

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def decode(self, codes: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def draw_noise(self, batch: int, generator: torch.Generator | None, device: torch.device,
                   hard: bool = False) -> tuple[torch.Tensor, ...]:
        """The uniforms ``forward`` would draw from ``generator`` for ``batch`` images, in the same order:
        per latent layer, ``estimator.draws`` uniforms per logit (one for a ``hard`` pass, which samples
        only), shaped (draws, batch, N, K)."""
        draws = 1 if hard else self.estimator.draws
        return tuple(torch.rand((draws, batch, *shape), generator=generator, device=device)
                     for shape in self.latents)

    def forward(self, x: torch.Tensor, tau: float | torch.Tensor,
                noise: torch.Generator | tuple[torch.Tensor, ...] | None = None,
                hard: bool = False) -> tuple[torch.Tensor, ...]:
        """Reconstruction and the logits of each latent layer.

        ``noise`` is a generator to draw the noise from, or what ``draw_noise`` returns. ``hard`` decodes
        a one-hot sample of q = softmax(logits) whatever the estimator (the discrete model itself).
        """
        logits = self.encode(x)
        uniforms = noise if isinstance(noise, tuple) else self.draw_noise(len(x), noise, x.device, hard)
        codes = [categorical_sample(lg, u[0]) if hard else self.estimator(lg, tau, u)
                 for lg, u in zip(logits, uniforms, strict=True)]
        return (self.decode(codes), *logits)


class Decoder(nn.Module):
    """Latent vector -> image, mirroring the encoder with transposed convolutions."""

    def __init__(self, latent: int, channels: list[int], out_channels: int, base: int) -> None:
        super().__init__()
        self.shape = (channels[-1], base, base)
        self.fc = nn.Linear(latent, channels[-1] * base * base)
        layers: list[nn.Module] = []
        rev = list(reversed(channels))
        for c_in, c_out in zip(rev, rev[1:] + [out_channels]):
            layers += [nn.ReLU(), nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], *self.shape)
        return torch.sigmoid(self.deconv(h))


class DualGSVAE(CategoricalVAE):
    """Encoder, two categorical latent layers (z1, z2) with their own decoders, averaged output."""

    def __init__(self, in_channels: int, size: int, channels: list[int], z1: Shape, z2: Shape,
                 estimator: Estimator = ESTIMATORS["relaxed"]) -> None:
        super().__init__((z1, z2), estimator)
        if size % (2 ** len(channels)):
            raise ValueError(f"image size {size} is not divisible by 2**{len(channels)}")
        base = size // 2 ** len(channels)
        layers: list[nn.Module] = []
        for c_in, c_out in zip([in_channels] + channels[:-1], channels):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        features = channels[-1] * base * base
        self.z1, self.z2 = z1, z2
        self.head1 = nn.Linear(features, z1[0] * z1[1])
        self.head2 = nn.Linear(features, z2[0] * z2[1])
        self.decoder1 = Decoder(z1[0] * z1[1], channels, in_channels, base)
        self.decoder2 = Decoder(z2[0] * z2[1], channels, in_channels, base)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of both latent layers, shaped (batch, N, K)."""
        h = self.encoder(x)
        return self.head1(h).view(-1, *self.z1), self.head2(h).view(-1, *self.z2)

    def decode(self, codes: Sequence[torch.Tensor]) -> torch.Tensor:
        """The mean of both decoders' images."""
        code1, code2 = codes
        return 0.5 * (self.decoder1(code1.flatten(1)) + self.decoder2(code2.flatten(1)))


class MLPVAE(CategoricalVAE):
    """The ReinMax benchmark's VAE: one latent layer of ``latent`` = (L variables, C categories).

    ReLU between the layers, a sigmoid on the output; the widths are the benchmark's (512, 256).
    """

    def __init__(self, image_shape: Sequence[int], latent: Shape, estimator: Estimator,
                 hidden: tuple[int, int] = (512, 256)) -> None:
        super().__init__((latent,), estimator)
        self.image_shape = tuple(image_shape)
        pixels, units = math.prod(self.image_shape), latent[0] * latent[1]
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden[0]), nn.ReLU(),
                                     nn.Linear(hidden[0], hidden[1]), nn.ReLU(), nn.Linear(hidden[1], units))
        self.decoder = nn.Sequential(nn.Linear(units, hidden[1]), nn.ReLU(), nn.Linear(hidden[1], hidden[0]),
                                     nn.ReLU(), nn.Linear(hidden[0], pixels), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.encoder(x).view(-1, *self.latents[0]),)

    def decode(self, codes: Sequence[torch.Tensor]) -> torch.Tensor:
        (code,) = codes
        return self.decoder(code.flatten(1)).view(-1, *self.image_shape)
