"""``latents`` (the paper's Fig. 6): what each of the two latent layers reconstructs on its own.

The paper shows decoder 1 on z1, decoder 2 on z2 and their mean side by side and reads from the pictures
that the two layers capture different details. The model is trained only on the mean of the two
decoders, so neither decoder alone is asked to reproduce the image: its error says what its half
contributes, not how good a one-latent model would be. The MSE of each part is reported beside the grid
so that the claim rests on numbers as well as pictures.
"""

from __future__ import annotations

import torch

from tempsched.evaluation import Cell, EvalContext, Evaluation
from tempsched.gsvae.experiments.common import (GRID_IMAGES, HARD_DRAWS, load_gsvae_runs, noise_seed,
                                                soft_and_hard)
from tempsched.gsvae.measure import reconstruct, unit_images

PART_LABELS = {"z1": "decoder 1 on z1", "z2": "decoder 2 on z2", "both": "mean of both (the model's output)"}


class Latents(Evaluation):
    """Fig. 6: MSE (soft and hard) of decoder 1 on z1, decoder 2 on z2 and their mean; a grid of each."""

    name = "latents"
    task = "gsvae"
    title = "Dual latent layers: each decoder alone and their mean (the paper's Fig. 6)"
    params = {"images": GRID_IMAGES, "hard_draws": HARD_DRAWS}

    def __init__(self, images: int, hard_draws: int) -> None:
        self.images = images
        self.hard_draws = hard_draws

    def run(self, ctx: EvalContext) -> None:
        runs = load_gsvae_runs(ctx)
        report = ctx.report
        advance = ctx.progress("latents: measure each latent part", len(runs) * len(PART_LABELS))
        rows: list[list[Cell]] = []
        for run in runs:
            for part, label in PART_LABELS.items():
                m = soft_and_hard(run, run.task.data.x_test, run.tau, self.hard_draws, part)
                rows.append([str(run.run_dir), label, run.tau, m.soft.mse, m.hard.mse])
                advance(1)
        report.text(
            "Each run's best model (best.pt) on its full test set, at the run's tau. **soft**: a Gumbel-softmax "
            f"sample (the run's eval_noise_seed); **hard**: exact one-hot samples, {self.hard_draws} noise draws. "
            "The same noise feeds every row, so the mean's reconstruction is exactly the average of the two "
            "decoders' ones. Training only asks the mean to match the image: a decoder's error alone says what "
            "its half of the code carries, not how good a model with one latent layer would be.")
        report.table("latents", ["run", "reconstruction", "tau", "soft MSE", f"hard MSE ({self.hard_draws} draws)"],
                     rows)
        for i, run in enumerate(runs, start=1):
            x = run.task.data.x_test[:self.images]
            grid = [unit_images(x)] + [reconstruct(run.model, x, run.tau, "soft", part, noise_seed(run))
                                       for part in PART_LABELS]
            report.image(f"latents_grid_{i}", torch.cat(grid), nrow=self.images, caption=(
                f"{run.run_dir}, soft decoding at tau {run.tau:.4g}: originals, decoder 1 on z1, decoder 2 on z2, "
                "their mean (top to bottom), as the paper's Fig. 6."))
