"""What the sweep, latent and unseen-class evaluations share: loading GS-VAE runs, scoring a model's soft
and hard decodings the way ``recon`` does, checking list options, and the figures' canvas.

The soft figures use the run's own ``eval_noise_seed`` (as ``recon`` and the task's ``test_metrics``), so a
soft MSE here equals ``recon``'s for the same run, images and tau. A soft figure alone cannot tell a good
discrete code from a temperature that made the code continuous, so every table beside it shows the hard one
(exact one-hot samples, averaged over ``hard_draws`` noise draws).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from tempsched import LoadedRun
from tempsched.errors import UserError
from tempsched.evaluation import EvalContext
from tempsched.gsvae.measure import Scores, score
from tempsched.parts import Param

if TYPE_CHECKING:  # pragma: no cover - an annotation only (matplotlib is imported where a figure is drawn)
    from matplotlib.figure import Figure

HARD_DRAWS = Param(5, "noise draws the hard decoding's figures are averaged over (as recon)", low=1)
GRID_IMAGES = Param(8, "test images per row of the image grid", low=1, high=64)


@dataclass(frozen=True)
class SoftHard:
    """One model's soft (at ``tau``) and hard scores on one set of images, from one latent part."""

    tau: float
    soft: Scores
    hard: Scores


def noise_seed(run: LoadedRun) -> int:
    """The seed of the run's evaluation noise, so that soft figures match the run's own and ``recon``'s."""
    return int(run.config.task_options["eval_noise_seed"])


def soft_and_hard(run: LoadedRun, x: torch.Tensor, tau: float, hard_draws: int, part: str = "both") -> SoftHard:
    """Soft and hard scores of ``run``'s best model on images ``x`` (uint8 or [0, 1])."""
    seed = noise_seed(run)
    return SoftHard(tau, score(run.model, x, tau, "soft", part, seed),
                    score(run.model, x, tau, "hard", part, seed, draws=hard_draws))


def load_gsvae_runs(ctx: EvalContext) -> list[LoadedRun]:
    """The best model of every run given, on the command line's device (``evaluate`` has checked that each
    is a GS-VAE run: the evaluations that call this declare ``task = "gsvae"``)."""
    return [ctx.load_run(run_dir) for run_dir in ctx.need_runs()]


def positive_list(values: list[Any], option: str, integers: bool = False) -> list[Any]:
    """An evaluation's list option, sorted and without repeats; empty, non-numeric or <= 0 is one line."""
    kind = "integer" if integers else "number"
    if not values:
        raise UserError(f"evaluation option '{option}' needs at least one value")
    for value in values:
        numeric = isinstance(value, int if integers else (int, float)) and not isinstance(value, bool)
        if not (numeric and math.isfinite(value) and value > 0):
            raise UserError(f"evaluation option '{option}': every value must be a positive {kind}, got {value!r}")
    return sorted({int(v) if integers else float(v) for v in values})


def canvas(width: float = 6.0, height: float = 3.6) -> tuple[Figure, Any]:
    """A figure with one axes, drawn without pyplot (the Agg renderer, no display needed)."""
    from matplotlib.figure import Figure  # seconds to import: only an evaluation that draws needs it

    figure = Figure(figsize=(width, height))
    return figure, figure.add_subplot()

