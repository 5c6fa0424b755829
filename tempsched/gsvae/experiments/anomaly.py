"""``anomaly``: can a GS-VAE's reconstruction error tell patched images from clean ones (the paper's Fig. 9)?

The authors chose the threshold on the same labelled batch they scored, for one patch per data set
(``../shared/paper/authors-code-facts.md``). Here:

* the images: the run's validation split (carved from the training images, never trained on) and its full
  test split, each cut at random into a clean half and a patched half, so every test set is balanced and
  chance is 50%;
* the patches: square, disc and cross shapes of uniform noise at random positions, from 16 pixels down to
  one (``tempsched.gsvae.patches``), plus the paper's own two cases (a white pixel at (10, 10); a 4 x 4
  Gaussian patch);
* the score: per-image MSE (the paper's) and -ELBO, from ``tempsched.gsvae.measure``;
* the figures: AUROC on the test halves (threshold-free, the primary figure); accuracy on the test halves
  at the threshold that is best on the validation halves (the honest accuracy); and, labelled as the
  authors' protocol, the accuracy at the threshold that is best on the test halves themselves (an upper
  bound no deployed detector reaches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from tempsched.errors import UserError
from tempsched.evaluation import Cell, EvalContext, Evaluation
from tempsched.gsvae.experiments.compared import Compared, compared_models
from tempsched.gsvae.measure import DECODINGS, score, unit_images
from tempsched.gsvae.patches import SHAPES, Patch, apply_patch, scaled_size, shape_mask
from tempsched.parts import Param

SCORES = {"mse": "MSE", "neg_elbo": "-ELBO"}
# The paper's single cases: Fashion-MNIST's white pixel at (10, 10), CIFAR-10's 4 x 4 Gaussian patch.
PAPER_CASES = (Patch("square", 1, "white", at=(10, 10)), Patch("square", 4, "gaussian"))


def auroc(negatives: torch.Tensor, positives: torch.Tensor) -> float:
    """Area under the ROC curve of "score > t means positive": the chance that a random positive scores
    above a random negative, ties counting half (the Mann-Whitney U statistic over n_pos * n_neg)."""
    if len(negatives) == 0 or len(positives) == 0:
        raise UserError("AUROC needs at least one clean and one patched image")
    from scipy.stats import rankdata  # seconds to import, and every command that loads the plugins imports this module

    ranks = rankdata(np.concatenate([negatives.numpy(), positives.numpy()]))
    n_neg, n_pos = len(negatives), len(positives)
    return float((ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def balanced_accuracy(threshold: float, clean: torch.Tensor, patched: torch.Tensor) -> float:
    """Mean of the share of clean images at or below ``threshold`` and of patched images above it."""
    return 0.5 * (float((clean <= threshold).double().mean()) + float((patched > threshold).double().mean()))


def fit_threshold(clean: torch.Tensor, patched: torch.Tensor) -> float:
    """The threshold with the best balanced accuracy on these scores: halfway between the best cut's
    score and the next higher one, so that images scoring between them are split evenly."""
    values = torch.unique(torch.cat([clean, patched]))  # sorted
    below_clean = torch.searchsorted(clean.sort().values, values, right=True).double() / len(clean)
    above_patched = 1 - torch.searchsorted(patched.sort().values, values, right=True).double() / len(patched)
    # a cut below every score (all images called patched) is also a candidate
    candidates = torch.cat([torch.tensor([0.5]), 0.5 * (below_clean + above_patched)])
    best = int(candidates.argmax())
    if best == 0:
        return float(values[0]) - 1.0
    if best == len(values):
        return float(values[-1])
    return float(0.5 * (values[best - 1] + values[best]))


@dataclass(frozen=True)
class Detection:
    """One detector (a model and a score) on one patch."""

    auroc: float
    threshold: float  # fitted on the validation halves only
    accuracy: float  # on the test halves at that threshold
    oracle_accuracy: float  # on the test halves at the threshold best on the test halves (authors' protocol)


def detect(val_clean: torch.Tensor, val_patched: torch.Tensor, test_clean: torch.Tensor,
           test_patched: torch.Tensor) -> Detection:
    """AUROC and accuracies of one score; the threshold sees the validation scores and nothing else."""
    threshold = fit_threshold(val_clean, val_patched)
    oracle = fit_threshold(test_clean, test_patched)
    return Detection(auroc(test_clean, test_patched), threshold,
                     balanced_accuracy(threshold, test_clean, test_patched),
                     balanced_accuracy(oracle, test_clean, test_patched))


@dataclass(frozen=True)
class Split:
    """Indices of the clean and patched halves of one image set (into that set)."""

    clean: torch.Tensor
    patched: torch.Tensor

    @staticmethod
    def halves(n: int, generator: torch.Generator) -> "Split":
        if n < 2:
            raise UserError(f"the anomaly experiment needs at least 2 images per split, got {n}")
        perm = torch.randperm(n, generator=generator)
        return Split(perm[: n // 2].sort().values, perm[n // 2:].sort().values)

    def as_dict(self) -> dict[str, list[int]]:
        return {"clean": self.clean.tolist(), "patched": self.patched.tolist()}


def _scores(model: Compared, x: torch.Tensor, decoding: str) -> dict[str, torch.Tensor]:
    loaded = model.loaded
    s = score(loaded.model, x, loaded.tau, decoding, noise_seed=int(loaded.config.task_options["eval_noise_seed"]))
    return {"mse": s.per_image_mse, "neg_elbo": s.per_image_neg_elbo}


class Anomaly(Evaluation):
    """Fig. 9: AUROC and held-out-threshold accuracy of patch detection by reconstruction error."""

    name = "anomaly"
    task = "gsvae"
    title = "Patch-anomaly detection by reconstruction error (the paper's Fig. 9)"
    params = {
        "shapes": Param(list(SHAPES), f"patch shapes ({', '.join(SHAPES)})"),
        "sizes": Param([1, 2, 4, 6, 8, 12, 16], "patch sizes in pixels on 28 x 28 images (scaled to the image size)"),
        "paper_cases": Param(True, "also the paper's single cases: a white pixel at (10, 10), a 4 x 4 Gaussian patch"),
        "decoding": Param("soft", "how the models decode (soft: at tau with noise, as trained)", choices=DECODINGS),
        "baseline": Param("standard-annealing", "preset of the standard GS-VAE trained to compare when only one "
                          "run directory is given (empty: none)"),
        "seed": Param(0, "seed of the clean/patched halves, patch positions and noise", low=0),
    }

    def __init__(self, shapes: list[Any], sizes: list[Any], paper_cases: bool, decoding: str, baseline: str,
                 seed: int) -> None:
        unknown = [s for s in shapes if s not in SHAPES]
        if unknown or not shapes:
            raise UserError(f"evaluation option 'shapes' takes a list of {', '.join(SHAPES)}, got {shapes!r}")
        if not sizes or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
            raise UserError(f"evaluation option 'sizes' takes a list of positive pixel counts, got {sizes!r}")
        self.shapes, self.sizes = list(shapes), sorted(set(sizes))
        self.paper_cases, self.decoding, self.baseline, self.seed = paper_cases, decoding, baseline, seed

    def run(self, ctx: EvalContext) -> None:
        models = compared_models(ctx, self.baseline)
        data = models[0].loaded.task.data
        x_val, x_test = unit_images(data.x_val), unit_images(data.x_test)
        size = x_test.shape[-1]
        g = torch.Generator().manual_seed(self.seed)
        val, test = Split.halves(len(x_val), g), Split.halves(len(x_test), g)
        sweep = [Patch(shape, scaled_size(s, size)) for shape in self.shapes for s in self.sizes]
        if sweep[-1].size > size:
            raise UserError(f"a {sweep[-1].size}-pixel patch does not fit into {size} x {size} images")
        cases = sweep + (list(PAPER_CASES) if self.paper_cases else [])
        advance = ctx.progress("anomaly: patches x models", len(cases) * len(models))
        clean = [(_scores(m, x_val[val.clean], self.decoding), _scores(m, x_test[test.clean], self.decoding))
                 for m in models]
        found: list[list[dict[str, Detection]]] = []  # [case][model] -> score -> detection
        examples = []
        for i, patch in enumerate(cases):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i + 1)  # the same images for every model
            val_patched, _ = apply_patch(x_val[val.patched], patch, gen)
            test_patched, _ = apply_patch(x_test[test.patched], patch, gen)
            examples.append(test_patched[0])
            row = []
            for model, (val_clean, test_clean) in zip(models, clean):
                vp, tp = _scores(model, val_patched, self.decoding), _scores(model, test_patched, self.decoding)
                row.append({k: detect(val_clean[k], vp[k], test_clean[k], tp[k]) for k in SCORES})
                advance(1)
            found.append(row)
        self._report(ctx, models, cases, found, val, test, torch.stack(examples[:len(sweep)]), size)

    def _report(self, ctx: EvalContext, models: Sequence[Compared], cases: Sequence[Patch],
                found: Sequence[Sequence[dict[str, Detection]]], val: Split, test: Split, examples: torch.Tensor,
                size: int) -> None:
        report, labels = ctx.report, [m.label for m in models]
        report.text(
            f"Models: {'; '.join(f'**{m.label}** ({m.loaded.run_dir}, tau {m.loaded.tau:.4g})' for m in models)}. "
            f"Decoding: {self.decoding}. Images: the validation split ({len(val.clean)} clean + {len(val.patched)} "
            f"patched; the threshold is fitted here) and the full test split ({len(test.clean)} clean + "
            f"{len(test.patched)} patched; every figure is measured here), each image used once, so chance is "
            "50%. Patch sizes are stated for 28 x 28 images and scaled to "
            f"{size} x {size}. **AUROC** is threshold-free (the primary figure); **accuracy** uses the threshold "
            "best on the validation images; **oracle accuracy** uses the threshold best on the test images "
            "themselves, the authors' protocol, an upper bound no deployed detector reaches. An accuracy below "
            "50% (the paper's 'below 40%' for the standard GS-VAE) is worse than chance on a balanced set.")
        n_sweep = len(self.shapes) * len(self.sizes)
        for key, name in SCORES.items():
            headers = ["patch", "shape", "size (px)", "pixels"]
            for label in labels:
                headers += [f"AUROC {label}", f"accuracy {label}", f"oracle accuracy {label}"]
            rows: list[list[Cell]] = []
            for patch, row in zip(cases, found):
                pixels = int(shape_mask(patch.shape, patch.size).sum())
                cells: list[Cell] = [patch.label(), patch.shape, patch.size, pixels]
                for detection in row:
                    d = detection[key]
                    cells += [d.auroc, d.accuracy, d.oracle_accuracy]
                rows.append(cells)
            report.heading(f"Score: per-image {name}")
            report.table(f"anomaly_{key}", headers, rows[:n_sweep], digits=3,
                         caption=f"Shaped patches of uniform noise at random positions; score {name}.")
            if len(rows) > n_sweep:
                report.table(f"paper_cases_{key}", headers, rows[n_sweep:], digits=3,
                             caption="The paper's single cases (Fashion-MNIST: a white pixel at (10, 10); CIFAR-10: "
                                     "a 4 x 4 patch of N(0, 1) draws clipped to [0, 1], at a random position), "
                                     "on this run's data set.")
        report.figure("fig9", self._figure(labels, cases[:n_sweep], found[:n_sweep]),
                      caption="AUROC and held-out-threshold accuracy vs patch size (MSE score); solid: the first "
                              "model, dotted: the others; dashed grey: chance.")
        report.image("patched_examples", examples, nrow=len(self.sizes),
                     caption=f"One patched test image per shape (rows: {', '.join(self.shapes)}) and size (columns).")
        report.result("splits", {"seed": self.seed, "validation (threshold fitted)": val.as_dict(),
                                 "test (measured)": test.as_dict()})
        report.result("thresholds", {label: {cases[i].label(): {k: found[i][j][k].threshold for k in SCORES}
                                             for i in range(len(cases))} for j, label in enumerate(labels)})

    def _figure(self, labels: Sequence[str], cases: Sequence[Patch],
                found: Sequence[Sequence[dict[str, Detection]]]) -> Any:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
        colours = dict(zip(self.shapes, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
        for ax, what, title in ((axes[0], "auroc", "AUROC"), (axes[1], "accuracy", "accuracy (held-out threshold)")):
            for j, label in enumerate(labels):
                for shape in self.shapes:
                    points = [(p.size, getattr(row[j]["mse"], what)) for p, row in zip(cases, found)
                              if p.shape == shape]
                    ax.plot(*zip(*points), marker="o", linestyle="-" if j == 0 else ":", color=colours[shape],
                            label=f"{shape}, {label}")
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
            ax.set(title=title, xlabel="patch size (px)", ylim=(0.0, 1.02))
        axes[1].legend(fontsize=7, loc="lower right")
        return fig
