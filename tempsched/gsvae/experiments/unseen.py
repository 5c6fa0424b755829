"""``unseen`` (the paper's Fig. 7-8): reconstructing classes the models never saw.

The paper trains its population and a standard GS-VAE without MNIST's 2s and 3s (and without CIFAR-10's
automobiles) and shows, in pictures, that only the population reconstructs them. This evaluation trains
both without the held-out classes (the population from the run options, the baseline
``standard-annealing`` with the same data, seed and epochs), and measures each on the held-out classes
and on the seen classes of the full test set: a model that reconstructs everything a little better would
look better on unseen classes too, so only the gap between the two sets says something about them.
"""

from __future__ import annotations


import torch

from tempsched import LoadedRun, RunConfig
from tempsched.errors import UserError
from tempsched.evaluation import Cell, EvalContext, Evaluation
from tempsched.gsvae.experiments.common import GRID_IMAGES, HARD_DRAWS, noise_seed, soft_and_hard
from tempsched.gsvae.experiments.compared import baseline_spec
from tempsched.gsvae.measure import reconstruct, unit_images
from tempsched.parts import Param

BASELINE = "standard-annealing"
# The paper's choices (Fig. 7-8): MNIST without 2s and 3s, CIFAR-10 without automobiles (class 1); the
# embedded sample is MNIST, Fashion-MNIST takes MNIST's. CelebA has no classes, so no default.
DEFAULT_HELD_OUT = {"sample": [2, 3], "mnist": [2, 3], "fashion-mnist": [2, 3], "cifar10": [1], "cifar10-jpeg": [1],
                    "cifar10-exact": [1]}


def held_out_classes(option: list[int], base: RunConfig) -> list[int]:
    """The classes to hold out: the evaluation's option, else the run options' ``--exclude-classes``, else
    the data set's default; given both ways and different, or with no default, it is one line."""
    given = sorted(set(base.task_options.get("exclude_classes") or []))
    dataset = base.task_options["dataset"]
    if option and given and sorted(set(option)) != given:
        raise UserError(f"the held-out classes are given twice and differ: exclude_classes={sorted(set(option))} "
                        f"and --exclude-classes {','.join(map(str, given))}")
    classes = sorted(set(option)) or given or DEFAULT_HELD_OUT.get(dataset, [])
    if not classes:
        raise UserError(f"data set '{dataset}' has no default classes to hold out: give --exclude-classes")
    return classes


class Unseen(Evaluation):
    """Fig. 7-8: population and baseline trained without some classes; MSE on held-out and seen classes."""

    name = "unseen"
    task = "gsvae"
    title = "Classes never seen in training (the paper's Fig. 7-8)"
    needs_runs = 0
    params = {
        "exclude_classes": Param([], "classes held out of training; empty: --exclude-classes, else by data set "
                                 "(MNIST, Fashion-MNIST, sample: 2, 3; CIFAR-10: 1, automobile)"),
        "images": GRID_IMAGES,
        "hard_draws": HARD_DRAWS,
    }

    def __init__(self, exclude_classes: list[int], images: int, hard_draws: int) -> None:
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in exclude_classes):
            raise UserError(f"evaluation option 'exclude_classes' must be a list of class numbers, "
                            f"got {exclude_classes!r}")
        self.exclude_classes = exclude_classes
        self.images = images
        self.hard_draws = hard_draws

    def run(self, ctx: EvalContext) -> None:
        if ctx.runs:
            raise UserError("unseen trains its own runs from the run options; it takes no run directory")
        classes = held_out_classes(self.exclude_classes, ctx.base)
        ours_spec = ctx.derive({"task_options.exclude_classes": classes})
        ours = ctx.resolve(ours_spec)
        task = ctx.build_task(ours)  # loads the data: an unknown class is refused before any training
        y_test = task.data.y_test
        held = torch.isin(y_test, torch.tensor(classes))
        missing = [c for c in classes if not bool((y_test == c).any())]
        if missing or bool(held.all()):
            raise UserError(f"the test set of '{ours.task_options['dataset']}' ({len(y_test)} images) has "
                            + (f"no image of class(es) {missing}" if missing else "no image of the other classes")
                            + f" (its classes: {sorted(set(y_test.tolist()))})")
        specs = [("population", ours_spec), ("baseline", baseline_spec(ours, BASELINE, ctx.base))]
        advance = ctx.progress("unseen: train (or reuse) and measure each model", len(specs))
        models: list[tuple[str, RunConfig, LoadedRun]] = []
        for label, spec in specs:
            models.append((label, ctx.resolve(spec), ctx.load_run(ctx.train(spec), task)))
            advance(1)
        self._report(ctx, classes, held, models)

    def _report(self, ctx: EvalContext, classes: list[int], held: torch.Tensor,
                models: list[tuple[str, RunConfig, LoadedRun]]) -> None:
        x = models[0][2].task.data.x_test
        x_held, x_seen = x[held], x[~held]
        rows: list[list[Cell]] = []
        for label, config, run in models:
            on_held = soft_and_hard(run, x_held, run.tau, self.hard_draws)
            on_seen = soft_and_hard(run, x_seen, run.tau, self.hard_draws)
            assert config.members is not None
            rows.append([label, config.plugin, config.members, config.epochs, run.tau, on_held.soft.mse,
                         on_held.hard.mse, on_seen.soft.mse, on_seen.hard.mse, on_held.hard.mse / on_seen.hard.mse,
                         config.members * config.epochs, str(run.run_dir)])
        k, report = self.hard_draws, ctx.report
        report.text(
            f"Both models were trained and validated without classes {classes}; the test set keeps them: "
            f"{len(x_held)} held-out and {len(x_seen)} seen test images. **soft**: a Gumbel-softmax sample at "
            f"the run's tau (its eval_noise_seed); **hard**: exact one-hot samples, {k} noise draws. Soft figures "
            "at different tau are not comparable on their own; **held-out / seen** (hard) is how much worse the "
            "unseen classes are than the seen ones, independent of how well the model reconstructs overall. "
            "The population trained members x epochs (member-epochs) of compute, the baseline epochs.")
        report.table("unseen", ["model", "preset", "members", "epochs", "tau", "held-out soft MSE",
                                f"held-out hard MSE ({k} draws)", "seen soft MSE", f"seen hard MSE ({k} draws)",
                                "held-out / seen (hard)", "member-epochs", "run"], rows)
        report.result("held_out_classes", classes)
        shown = x_held[:self.images]
        grid = [unit_images(shown)] + [reconstruct(run.model, shown, run.tau, "soft", noise_seed=noise_seed(run))
                                       for _, _, run in models]
        report.image("unseen_grid", torch.cat(grid), nrow=len(shown), caption=(
            f"Held-out test images (classes {classes}), as the paper's Fig. 7-8: originals, the population, "
            f"the {BASELINE} baseline (top to bottom), soft decoding at each model's tau."))
