"""Shaped patches of noise at seeded random positions: the altered images of the anomaly experiment.

The paper's Fig. 9 follows McCoyd et al.'s shaped patches: noise in a shape (square, disc, cross) at a
position chosen at random, from large patches down to a single pixel. Sizes are given for 28 x 28 images
(MNIST's) and scaled to the image size, so a 16-pixel patch covers the same share of a 32 x 32 image.
Everything is drawn from a ``torch.Generator``, so the same seed gives every model the same altered images
and the comparison is between models, not between draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tempsched.errors import UserError

SHAPES = ("square", "disc", "cross")
CONTENTS = ("uniform", "white", "gaussian")
REFERENCE_SIZE = 28  # patch sizes are stated for images of this size


def shape_mask(shape: str, size: int) -> torch.Tensor:
    """The ``size`` x ``size`` boolean mask of ``shape``.

    ``square``: every pixel. ``disc``: pixels whose centres lie within the inscribed circle (radius
    size / 2). ``cross``: a plus sign, a horizontal and a vertical bar through the middle, each
    max(1, round(size / 4)) pixels thick, so a cross stays a cross at small sizes and is one pixel at size 1.
    """
    if shape not in SHAPES:
        raise UserError(f"unknown patch shape '{shape}' (known: {', '.join(SHAPES)})")
    if not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
        raise UserError(f"a patch size must be a positive integer, got {size!r}")
    if shape == "square":
        return torch.ones(size, size, dtype=torch.bool)
    centre = (torch.arange(size, dtype=torch.float64) + 0.5) - size / 2
    if shape == "disc":
        return centre[:, None] ** 2 + centre[None, :] ** 2 <= (size / 2) ** 2
    thick = max(1, round(size / 4))
    start = (size - thick) // 2
    band = torch.zeros(size, dtype=torch.bool)
    band[start:start + thick] = True
    return band[:, None] | band[None, :]


def scaled_size(size: int, image_size: int) -> int:
    """A patch size stated for 28 x 28 images, for images of ``image_size`` (at least one pixel)."""
    return max(1, round(size * image_size / REFERENCE_SIZE))


@dataclass(frozen=True)
class Patch:
    """What to paste: a shape of ``size`` pixels filled with ``content``, at ``at`` (row, column of its
    top-left corner) or, when ``at`` is None, at a random position drawn per image.

    ``content``: ``uniform`` noise on [0, 1] per pixel and channel (the sweep), ``white`` (1.0, the
    paper's Fashion-MNIST pixel), ``gaussian`` N(0, 1) draws clipped to the images' [0, 1] range (the
    paper's CIFAR-10 patch; the clipping is ours, since the models take images on [0, 1]).
    """

    shape: str
    size: int
    content: str = "uniform"
    at: tuple[int, int] | None = None

    def label(self) -> str:
        where = f" at {self.at}" if self.at is not None else ""
        return f"{self.content} {self.shape} {self.size}x{self.size}{where}"


def apply_patch(x: torch.Tensor, patch: Patch, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (N x C x H x W on [0, 1]) with ``patch`` pasted into every image, and the N x H x W masks
    of the pixels it replaced. ``x`` itself is not changed."""
    if patch.content not in CONTENTS:
        raise UserError(f"unknown patch content '{patch.content}' (known: {', '.join(CONTENTS)})")
    n, c, h, w = x.shape
    s = patch.size
    if s > min(h, w):
        raise UserError(f"a {s}-pixel patch does not fit into {h} x {w} images")
    mask = shape_mask(patch.shape, s)
    if patch.at is None:
        top = torch.randint(0, h - s + 1, (n,), generator=generator)
        left = torch.randint(0, w - s + 1, (n,), generator=generator)
    else:
        row, col = patch.at
        if not (0 <= row <= h - s and 0 <= col <= w - s):
            raise UserError(f"a {s}-pixel patch at {patch.at} does not fit into {h} x {w} images")
        top, left = torch.full((n,), row), torch.full((n,), col)
    offsets = torch.arange(s)
    rows = (top[:, None, None] + offsets[None, :, None]).expand(n, s, s)
    cols = (left[:, None, None] + offsets[None, None, :]).expand(n, s, s)
    images = torch.arange(n)[:, None, None].expand(n, s, s)
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    masks[images[:, mask], rows[:, mask], cols[:, mask]] = True
    if patch.content == "uniform":
        fill = torch.rand(x.shape, generator=generator, dtype=x.dtype)
    elif patch.content == "white":
        fill = torch.ones_like(x)
    else:
        fill = torch.randn(x.shape, generator=generator, dtype=x.dtype).clamp_(0.0, 1.0)
    patched = torch.where(masks[:, None].to(x.device), fill.to(x.device), x)
    return patched, masks
