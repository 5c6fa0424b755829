"""The dual-latent Gumbel-Softmax VAE of the paper's Figure 2.

A conv encoder feeds two separate linear heads, z1 and z2, each a set of N categorical variables with
K classes; each latent layer has its own decoder (a mirror of the encoder) and the two sigmoid
reconstructions are averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# Where Gumbel noise comes from: a generator to draw from, or uniforms drawn beforehand (shaped as the logits).
Noise = torch.Generator | torch.Tensor | None


def gumbel_softmax(logits: torch.Tensor, tau: float | torch.Tensor, noise: Noise,
                   hard: bool = False) -> torch.Tensor:
    """Relaxed one-hot samples of eq. 7 over the last axis; ``hard`` gives the argmax of eq. 6.

    The noise is drawn from a generator so that each member's noise stream is its own and a resumed
    run draws the same numbers. It may also come as uniforms drawn beforehand from that generator (the
    same numbers): ``torch.func.vmap`` cannot draw from per-member generators inside the mapped call.
    """
    log_pi = F.log_softmax(logits, dim=-1)
    if isinstance(noise, torch.Tensor):
        u = noise
    else:
        u = torch.rand(logits.shape, generator=noise, device=logits.device, dtype=logits.dtype)
    neg_log_u = -torch.log(u.clamp_min(1e-10))
    gumbel = -torch.log(neg_log_u.clamp_min(1e-10))
    scores = log_pi + gumbel
    if hard:
        return F.one_hot(scores.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    return F.softmax(scores / tau, dim=-1)


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


class DualGSVAE(nn.Module):
    """Encoder, two categorical latent layers (z1, z2) with their own decoders, averaged output."""

    def __init__(self, in_channels: int, size: int, channels: list[int], z1: tuple[int, int],
                 z2: tuple[int, int]) -> None:
        super().__init__()
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

    def draw_noise(self, batch: int, generator: torch.Generator,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The uniforms ``forward`` would draw from ``generator`` for ``batch`` images, in the same order."""
        return (torch.rand((batch, *self.z1), generator=generator, device=device),
                torch.rand((batch, *self.z2), generator=generator, device=device))

    def forward(self, x: torch.Tensor, tau: float | torch.Tensor,
                noise: torch.Generator | tuple[torch.Tensor, torch.Tensor] | None = None,
                hard: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction (mean of both decoders) and the logits of z1 and z2.

        ``noise`` is a generator to draw the Gumbel noise from, or the pair ``draw_noise`` returns.
        """
        logits1, logits2 = self.encode(x)
        u1, u2 = noise if isinstance(noise, tuple) else (noise, noise)
        s1 = gumbel_softmax(logits1, tau, u1, hard).flatten(1)
        s2 = gumbel_softmax(logits2, tau, u2, hard).flatten(1)
        x_hat = 0.5 * (self.decoder1(s1) + self.decoder2(s2))
        return x_hat, logits1, logits2
