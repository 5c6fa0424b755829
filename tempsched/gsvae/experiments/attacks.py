"""``attacks``: a GS-VAE as a purifier in front of the paper's basic CNN, under FGSM and PGD (Tables 2-3).

Rows: the CNN alone, then the CNN behind each compared model's reconstruction (the population's best model
and a standard GS-VAE). Three protocols, each named in the report:

* **non-adaptive** (the paper's): the attacker differentiates the CNN alone and never sees the purifier;
  the same adversarial images go to every row.
* **authors' variant**: the attacker maximises the purifier's own reconstruction error, as the authors'
  MNIST code did (``../shared/paper/authors-code-facts.md``).
* **adaptive**: the attacker differentiates the whole pipeline as deployed (``tempsched.gsvae.purify``: same
  decoding, fresh noise, straight-through only where a one-hot code blocks the gradient), with PGD under
  EOT at three eps, APGD-CE and APGD-DLR under EOT (AutoAttack's "rand" version) at the eps the report's
  robust comparisons cite, and the grey image wherever eps >= 0.5. The bare CNN meets the same attacks: for a
  pipeline without noise, the non-adaptive, adaptive and EOT versions of an attack are one attack.

A pipeline with fresh noise is judged on ``heldout_draws`` noise draws per image from the run's evaluation
seed, never one of an attacker's draws; a pipeline without noise on its one answer. Robust accuracy is per
image and held-out draw: draw j counts an image only if, with that draw, every attack run on the image at
this eps or a smaller one (every ball it lies in), and the clean image itself, leave its prediction right;
the figure is the mean over images and draws, the expected robust accuracy of one deployed query. Clean
accuracies use the full test set; attacks a fixed random subset. Every attack's per-image result is cached,
so a run cut off mid-way continues where it stopped.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from tempsched import rundir as rd
from tempsched.errors import UserError
from tempsched.evaluation import Cell, EvalContext, Evaluation
from tempsched.gsvae.adversarial import (APGD_IMPLEMENTATION, APGD_LOSSES, GREY, Budget, as_classifier, as_regressor,
                                         craft)
from tempsched.gsvae.classifier import ClassifierSpec, TrainedClassifier, ensure_classifier, predict
from tempsched.gsvae.data import ImageData, load
from tempsched.gsvae.experiments.compared import Compared, compared_models
from tempsched.gsvae.measure import DECODINGS, unit_images
from tempsched.gsvae.purify import ExpectedPipeline, Pipeline, Purifier, ReconstructionError
from tempsched.intervals import wilson
from tempsched.parts import Param

RESULT_FORMAT = "tempsched-attack-result-1"
NON_ADAPTIVE, AUTHORS, ADAPTIVE = "non-adaptive", "authors' variant", "adaptive"

# The paper's eps lists (Tables 2-3); EOT at three eps per data set; APGD at the usual benchmark radius (0.3
# MNIST, 0.1 Fashion-MNIST, 8/255 ~ 0.03 CIFAR-10) and wherever docs/reproduction.md compares a purified
# pipeline's robust accuracy with the bare CNN's below it (MNIST 0.1; robust accuracy counts every smaller
# ball, so APGD at 0.1 stands behind Fashion-MNIST's figures from 0.1 up, at 0.03 behind CIFAR-10's above it).
EPS: dict[str, dict[str, list[float]]] = {
    "MNIST": {"fgsm": [0.5, 0.3, 0.09, 0.05, 0.01, 0.0], "pgd": [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
              "eot": [0.3, 0.2, 0.1], "apgd": [0.3, 0.1]},
    "Fashion-MNIST": {"fgsm": [0.5, 0.3, 0.1, 0.05, 0.01, 0.0], "pgd": [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
                      "eot": [0.3, 0.2, 0.1], "apgd": [0.1]},
    "CIFAR-10": {"fgsm": [0.5, 0.3, 0.1, 0.05, 0.01, 0.0], "pgd": [0.05, 0.04, 0.03, 0.02, 0.01, 0.0],
                 "eot": [0.05, 0.03, 0.01], "apgd": [0.03]},
}
# The paper's Tables 2-3 as printed (accuracy in percent; rows "Our model", "CNN + GS-VAE" and, for CIFAR-10
# only, "CNN"), one value per eps of EPS's fgsm / pgd list. Its protocol: the attacker never sees the purifier,
# its own CNN and budgets (see ../shared/paper/authors-code-facts.md), so they sit beside ours, not in our tables.
PAPER_TABLES: dict[str, dict[str, dict[str, list[float]]]] = {
    "MNIST": {"fgsm": {"our model": [87.28, 91.41, 96.54, 98.17, 99.02, 99.19],
                       "CNN + GS-VAE": [11.40, 25.39, 61.32, 84.66, 94.26, 95.82]},
              "pgd": {"our model": [95.31, 96.05, 96.48, 97.02, 97.38, 99.19],
                      "CNN + GS-VAE": [30.54, 33.79, 39.65, 41.52, 43.78, 95.82]}},
    "Fashion-MNIST": {"fgsm": {"our model": [88.44, 88.97, 89.59, 90.12, 90.53, 92.07],
                               "CNN + GS-VAE": [7.51, 8.30, 60.75, 72.02, 80.21, 89.54]},
                      "pgd": {"our model": [87.63, 88.45, 89.34, 90.01, 90.75, 92.07],
                              "CNN + GS-VAE": [29.69, 33.77, 36.24, 38.55, 39.73, 89.54]}},
    "CIFAR-10": {"fgsm": {"our model": [28.12, 29.69, 60.94, 62.50, 70.31, 79.84],
                          "CNN + GS-VAE": [18.26, 20.55, 36.29, 44.85, 53.97, 76.31],
                          "CNN": [2.19, 5.77, 6.92, 25.08, 55.29, 86.51]},
                 "pgd": {"our model": [59.38, 64.06, 67.19, 70.31, 71.88, 79.84],
                         "CNN + GS-VAE": [12.36, 19.39, 32.18, 47.28, 55.11, 76.31],
                         "CNN": [0.00, 0.14, 0.15, 1.36, 1.72, 87.30]}},
}
PAPER = "paper, {table} (printed)"
FAMILY = {"sample": "MNIST", "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
          "cifar10-jpeg": "CIFAR-10", "cifar10-exact": "CIFAR-10"}


def paper_table(family: str, method: str) -> tuple[list[str], list[list[Cell]]]:
    """Headers and rows of the paper's printed Table 2 (``fgsm``) or 3 (``pgd``) for ``family``."""
    table = "Table 2" if method == "fgsm" else "Table 3"
    headers = ["pipeline"] + [f"eps {e:g}" for e in EPS[family][method]]
    return headers, [[f"{PAPER.format(table=table)}: {row}", *values]
                     for row, values in PAPER_TABLES[family][method].items()]


@dataclass(frozen=True)
class Attack:
    """One attack kind: what it computes (``method``), under which protocol, with how many EOT draws."""

    method: str  # fgsm | pgd | apgd-ce | apgd-dlr | grey
    protocol: str
    draws: int = 1

    def label(self) -> str:
        name = {"fgsm": "FGSM", "pgd": "PGD", "apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR",
                "grey": "grey image"}[self.method]
        eot = f", EOT {self.draws}" if self.draws > 1 else ""
        return f"{name} ({self.protocol}{eot})"


@dataclass
class Row:
    """One deployed pipeline and what happened to each image of the attacked subset."""

    label: str
    pipeline: Pipeline
    identity: dict[str, Any]  # what decides its predictions (the cache key's part)
    clean_accuracy: float = 0.0
    clean_correct: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))
    correct: dict[tuple[Attack, float], torch.Tensor] = field(default_factory=dict)

    def accuracy(self, attack: Attack, eps: float) -> float | None:
        """Percent right, over the attacked images and their held-out draws."""
        hit = self.correct.get((attack, eps))
        return None if hit is None else 100 * float(hit.double().mean())

    def robust(self, eps: float) -> torch.Tensor:
        """Per image and held-out draw: right on the clean image and under every attack at eps or below."""
        ok = self.clean_correct.clone()
        for (_, at), hit in self.correct.items():
            if at <= eps:
                ok &= hit
        return ok


@dataclass(frozen=True)
class Target:
    """What every attack on these images shares: their shape, the classes, the device, the evaluation seed."""

    shape: tuple[int, ...]
    classes: int
    device: torch.device
    eval_seed: int  # the run's eval_noise_seed: the draws the pipelines are judged with
    heldout_draws: int  # how many, per image, for a pipeline with fresh noise

    def classifier(self, model: torch.nn.Module) -> object:
        return as_classifier(model, self.shape, self.classes)

    def predict(self, row: Row, x: torch.Tensor) -> torch.Tensor:
        """The deployed pipeline's classes (N x draws): ``heldout_draws`` noise draws per image from the
        evaluation seed for a pipeline with fresh noise (the first is the single draw older reports judged
        with), its one answer (N x 1) for one without. Clean and attacked images are judged alike, and the
        attacker (other seeds) never sees these draws."""
        row.pipeline.reseed(self.eval_seed)
        draws = self.heldout_draws if row.pipeline.random else 1
        return torch.stack([predict(row.pipeline, x) for _ in range(draws)], dim=1)

    def correct(self, row: Row, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per image and held-out draw: whether the pipeline answers ``y``."""
        return self.predict(row, x) == y[:, None]


def apgd_check(rows: Sequence[Row], apgd_eps: Sequence[float], images: int) -> list[dict[str, Any]]:
    """Per purified pipeline and eps where APGD and a PGD reference both ran: whether APGD (the worst of its
    two losses, per image and held-out draw) is at least as strong as the reference, within the reference's
    95% interval, or weaker beyond it."""
    out = []
    for row in rows:
        if row.pipeline.purifier is None:
            continue
        for eps in sorted(set(apgd_eps)):
            apgd = [hit for (a, at), hit in row.correct.items() if at == eps and a.method in APGD_LOSSES]
            references = [a for a, at in row.correct if at == eps and a.method == "pgd" and a.protocol == ADAPTIVE]
            if len(apgd) < len(APGD_LOSSES) or not references:
                continue
            reference = max(references, key=lambda a: a.draws)  # EOT-PGD where it ran
            ours = 100 * float((apgd[0] & apgd[1]).double().mean())
            theirs = row.accuracy(reference, eps)
            assert theirs is not None
            high = 100 * wilson(round(theirs / 100 * images), images)[1]
            verdict = ("at least as strong" if ours <= theirs else "within the reference's 95% interval"
                       if ours <= high else "weaker beyond the reference's 95% interval")
            out.append({"pipeline": row.label, "eps": eps, "apgd": ours, "reference": reference.label(),
                        "reference_accuracy": theirs, "reference_high": high, "verdict": verdict,
                        "sentence": f"{row.label}, eps {eps:g}: APGD {ours:.1f}% vs {reference.label()} "
                                    f"{theirs:.1f}% (95% interval up to {high:.1f}%): {verdict}."})
    return out


def _float_list(value: list[Any], key: str) -> list[float]:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in value):
        raise UserError(f"evaluation option '{key}' takes a list of eps on [0, 1], got {value!r}")
    return sorted({float(v) for v in value}, reverse=True)


class Attacks(Evaluation):
    """Tables 2-3 under the paper's protocol, the authors' variant and adaptive attacks, with robust accuracy."""

    name = "attacks"
    task = "gsvae"
    title = "Purification against FGSM and PGD (the paper's Tables 2-3), non-adaptive and adaptive"
    params = {
        "fgsm_eps": Param([], "FGSM eps (empty: the paper's list for the data set)"),
        "pgd_eps": Param([], "PGD eps (empty: the paper's list for the data set)"),
        "eot_eps": Param([], "eps of the adaptive EOT-PGD rows (empty: three per data set)"),
        "apgd_eps": Param([], "eps of APGD-CE and APGD-DLR (empty: those the reproduction report cites)"),
        "subset": Param(1000, "test images attacked (a fixed random subset; clean figures use all)", low=1),
        "pgd_steps": Param(40, "PGD iterations; step 2.5 * eps / steps", low=40),
        "apgd_steps": Param(100, "APGD iterations", low=10),
        "eot_draws": Param(10, "noise draws averaged per EOT-PGD gradient", low=10),
        "apgd_draws": Param(20, "noise draws averaged per APGD-EOT call, as AutoAttack's rand version", low=10),
        "heldout_draws": Param(5, "noise draws each image is judged with, none an attacker's (a pipeline with "
                               "fresh noise)", low=1),
        "authors_variant": Param(True, "also attack each purifier's reconstruction error (the authors' MNIST code)"),
        "decoding": Param("soft", "how a purifier decodes (soft: at tau with fresh noise, as the authors' code)",
                          choices=DECODINGS),
        "baseline": Param("standard-annealing", "preset of the standard GS-VAE trained to compare when only one "
                          "run directory is given (empty: none)"),
        "cnn_epochs": Param(5, "epochs of the basic CNN's training", low=1),
        "cnn_widths": Param([32, 64], "the CNN's two convolution widths"),
        "cnn_hidden": Param([128, 64], "the CNN's two hidden fully connected widths"),
        "seed": Param(0, "seed of the subset, the CNN's training and the attacks' random starts", low=0),
    }

    def __init__(self, fgsm_eps: list[Any], pgd_eps: list[Any], eot_eps: list[Any], apgd_eps: list[Any],
                 subset: int, pgd_steps: int, apgd_steps: int, eot_draws: int, apgd_draws: int,
                 heldout_draws: int, authors_variant: bool, decoding: str, baseline: str, cnn_epochs: int,
                 cnn_widths: list[Any], cnn_hidden: list[Any], seed: int) -> None:
        self.given = {"fgsm": _float_list(fgsm_eps, "fgsm_eps"), "pgd": _float_list(pgd_eps, "pgd_eps"),
                      "eot": _float_list(eot_eps, "eot_eps"), "apgd": _float_list(apgd_eps, "apgd_eps")}
        for key, widths in (("cnn_widths", cnn_widths), ("cnn_hidden", cnn_hidden)):
            positive = all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)
            if len(widths) != 2 or not positive:
                raise UserError(f"evaluation option '{key}' takes two positive integers, got {widths!r}")
        self.subset, self.budget, self.eot_draws = subset, Budget(pgd_steps, apgd_steps), eot_draws
        self.apgd_draws, self.heldout_draws = apgd_draws, heldout_draws
        self.authors_variant, self.decoding, self.baseline = authors_variant, decoding, baseline
        self.cnn = {"train_epochs": cnn_epochs, "widths": tuple(cnn_widths), "hidden": tuple(cnn_hidden)}
        self.seed = seed

    # -- what runs -------------------------------------------------------------------------------------------

    def eps_lists(self, dataset: str) -> dict[str, list[float]]:
        """The eps of each attack group: the options where given, else the paper's lists for ``dataset``."""
        if dataset not in FAMILY:
            raise UserError(f"the attacks need a labelled data set (MNIST, Fashion-MNIST or CIFAR-10), "
                            f"got '{dataset}'")
        defaults = EPS[FAMILY[dataset]]
        return {key: self.given[key] or defaults[key] for key in defaults}

    def plan(self, row: Row, eps: float, lists: dict[str, list[float]]) -> list[Attack]:
        """Every attack ``row`` meets at ``eps``. FGSM runs at the FGSM eps and PGD at the PGD eps of the
        paper's tables; adaptive PGD at every eps, so that every robust figure has the strongest single-draw
        attack behind it; EOT-PGD and APGD at their eps on every row (EOT where the pipeline draws noise)."""
        purified = row.pipeline.purifier is not None
        methods = [m for m in ("fgsm", "pgd") if eps in lists[m]]
        plan = [Attack(m, NON_ADAPTIVE) for m in methods]
        if purified and self.authors_variant:
            plan += [Attack(m, AUTHORS) for m in methods]
        if purified:
            if "fgsm" in methods:
                plan.append(Attack("fgsm", ADAPTIVE))
            plan.append(Attack("pgd", ADAPTIVE))
        elif "pgd" not in methods:
            plan.append(Attack("pgd", NON_ADAPTIVE))  # the CNN alone: its own PGD is the adaptive one
        if row.pipeline.random and eps in lists["eot"]:
            plan.append(Attack("pgd", ADAPTIVE, self.eot_draws))
        if eps in lists["apgd"]:
            draws = self.apgd_draws if row.pipeline.random else 1
            plan += [Attack("apgd-ce", ADAPTIVE, draws), Attack("apgd-dlr", ADAPTIVE, draws)]
        if eps >= GREY:
            plan.append(Attack("grey", ADAPTIVE))
        return plan

    # -- the evaluation ----------------------------------------------------------------------------------------

    def run(self, ctx: EvalContext) -> None:
        models = compared_models(ctx, self.baseline)
        first = models[0].loaded
        lists = self.eps_lists(first.config.task_options["dataset"])
        eps_all = sorted({e for values in lists.values() for e in values}, reverse=True)
        data = self._classifier_data(models[0])
        spec = ClassifierSpec(first.config.task_options["dataset"], data.describe(), seed=self.seed, **self.cnn)
        cnn = ensure_classifier(spec, data, ctx.cache / "classifiers", first.task.device,
                                ctx.progress("attacks: training the basic CNN", spec.train_epochs))
        x_test, y_test = unit_images(data.x_test), data.y_test
        target = Target(tuple(x_test.shape[1:]), cnn.model.head[-1].out_features, first.task.device,
                        int(first.config.task_options["eval_noise_seed"]), self.heldout_draws)
        rows = self._rows(cnn, models)
        picked = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(self.seed))
        picked = picked[:self.subset].sort().values
        xs, ys = x_test[picked], y_test[picked]
        for row in rows:
            row.clean_accuracy = 100 * float(target.correct(row, x_test, y_test).double().mean())
            row.clean_correct = target.correct(row, xs, ys)
        work = [(row, eps, attack) for eps in eps_all for row in rows for attack in self.plan(row, eps, lists)]
        advance = ctx.progress(f"attacks: {len(work)} attack runs on {len(xs)} images", len(work))
        shared: dict[tuple[Attack, float], torch.Tensor] = {}  # non-adaptive images, crafted once for every row

        def settle(row: Row, eps: float, attack: Attack, path: Path) -> None:
            if not path.is_file():
                x_adv = self._craft(rows[0], row, attack, eps, xs, ys, target, shared)
                rd.save_torch(path, {"format": RESULT_FORMAT, "correct": target.correct(row, x_adv, ys),
                                     "what": {"row": row.label, "attack": attack.label(), "eps": eps,
                                              **row.identity}})
            saved = rd.load_torch(path, RESULT_FORMAT, remedy="delete it to run the attack again")
            row.correct[(attack, eps)] = saved["correct"].reshape(len(ys), -1)  # older results: one draw, N
            advance(1)

        # Processes running this evaluation on one cache split the attacks: each crafts those no other is
        # crafting (a lock beside each result), then waits for the others' results.
        elsewhere = []
        for row, eps, attack in work:
            path = ctx.cache / "attacks" / f"{self._key(row, attack, eps, picked)}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            with rd.lock_if_free(path.with_suffix(".lock")) as mine:
                if mine or path.is_file():
                    settle(row, eps, attack, path)
                else:
                    elsewhere.append((row, eps, attack, path))
        for row, eps, attack, path in elsewhere:
            with rd.exclusive_lock(path.with_suffix(".lock"), wait=lambda pid: None):
                settle(row, eps, attack, path)  # crafted here if the process on it died
        for row in rows:  # the tables' order: the plan's, whichever results came first
            row.correct = {(attack, eps): row.correct[(attack, eps)] for r, eps, attack in work if r is row}
        self._report(ctx, cnn, rows, lists, eps_all, xs, ys, picked, target,
                     FAMILY[first.config.task_options["dataset"]])

    def _classifier_data(self, model: Compared) -> ImageData:
        """The images the CNN learns from: the run's data set with every class (the run may leave some out)."""
        options = model.loaded.config.task_options
        if not options["exclude_classes"]:
            return model.loaded.task.data
        return load(options["dataset"], options["data_dir"] or None, (), options["val_size"],
                    options["train_size"], options["test_size"])

    def _rows(self, cnn: TrainedClassifier, models: Sequence[Compared]) -> list[Row]:
        base = {"classifier": cnn.path.name, "decoding": self.decoding, "subset": self.subset, "seed": self.seed,
                "budget": [self.budget.pgd_steps, self.budget.apgd_steps, self.eot_draws]}
        rows = [Row("CNN", Pipeline(cnn.model), base)]
        for m in models:
            best = m.loaded.best
            purifier = Purifier(m.loaded.model, m.loaded.tau, self.decoding)
            identity = {**base, "purifier": [best.fingerprint, best.epoch, best.member]}
            rows.append(Row(f"CNN + {m.label}", Pipeline(cnn.model, purifier), identity))
        return rows

    def _key(self, row: Row, attack: Attack, eps: float, picked: torch.Tensor) -> str:
        """The result's name. What older caches hold keeps its name where it means the same: the bare CNN's
        FGSM and PGD, and any result judged on one held-out draw; APGD (torchattacks' now, ART's before) and
        results judged on several draws get new ones."""
        what: dict[str, Any] = {"row": row.identity, "attack": [attack.method, attack.protocol, attack.draws],
                                "eps": eps, "images": picked.tolist()}
        if attack.method in APGD_LOSSES:
            what["implementation"] = APGD_IMPLEMENTATION
        if row.pipeline.random and self.heldout_draws > 1:
            what["heldout_draws"] = self.heldout_draws
        return rd.fingerprint(what)[:24]

    def _craft(self, cnn_row: Row, row: Row, attack: Attack, eps: float, xs: torch.Tensor, ys: torch.Tensor,
               target: Target, shared: dict[tuple[Attack, float], torch.Tensor]) -> torch.Tensor:
        """Adversarial images of ``attack`` against ``row``; non-adaptive ones against the CNN, once for all rows."""
        if attack.protocol == NON_ADAPTIVE:
            if (attack, eps) not in shared:
                seed = zlib.crc32(f"{self.seed}/{cnn_row.label}/{attack.label()}/{eps}".encode())
                shared[(attack, eps)] = craft(attack.method, target.classifier(cnn_row.pipeline), xs, ys, eps,
                                              self.budget, seed)
            return shared[(attack, eps)]
        seed = zlib.crc32(f"{self.seed}/{row.label}/{attack.label()}/{eps}".encode())
        row.pipeline.reseed(seed)  # the attacker's noise draws: never the evaluation's
        if attack.protocol == AUTHORS:
            assert row.pipeline.purifier is not None
            error = as_regressor(ReconstructionError(row.pipeline.purifier), target.shape)
            return craft(attack.method, error, xs, None, eps, self.budget, seed, regression=True)
        model = ExpectedPipeline(row.pipeline, attack.draws) if attack.draws > 1 else row.pipeline
        estimator = (None if attack.method == "grey" else model if attack.method in APGD_LOSSES
                     else target.classifier(model))
        return craft(attack.method, estimator, xs, ys, eps, self.budget, seed)

    # -- the report --------------------------------------------------------------------------------------------

    def _report(self, ctx: EvalContext, cnn: TrainedClassifier, rows: Sequence[Row], lists: dict[str, list[float]],
                eps_all: Sequence[float], xs: torch.Tensor, ys: torch.Tensor, picked: torch.Tensor,
                target: Target, family: str) -> None:
        report = ctx.report
        share = 100 * float(torch.bincount(ys).max()) / len(ys)
        report.text(
            f"Basic CNN ({cnn.path}): {cnn.val_accuracy * 100:.2f}% on the validation split, "
            f"{cnn.test_accuracy * 100:.2f}% on the full test set; trained on clean [0, 1] images, the scale of "
            f"the attacked and the purified images. Purifiers decode **{self.decoding}** at their run's tau"
            f"{', with fresh Gumbel noise at every call' if self.decoding != 'argmax' else ''}. Accuracies in "
            f"percent. Attacks: a fixed random subset of {len(ys)} test images (seed {self.seed}); L-infinity on "
            f"[0, 1]; PGD with a random start, {self.budget.pgd_steps} steps of 2.5 * eps / "
            f"{self.budget.pgd_steps}; EOT-PGD averages the class probabilities of {self.eot_draws} fresh noise "
            f"draws per step; APGD-CE and APGD-DLR {self.budget.apgd_steps} steps, one restart (torchattacks' "
            f"APGD, AutoAttack's code), against a pipeline with fresh noise under EOT over {self.apgd_draws} fresh "
            "draws per step, with success judged on that averaged prediction, as AutoAttack's rand version. "
            f"A pipeline with fresh noise is judged on {self.heldout_draws} held-out noise draws per image from its "
            "run's evaluation seed (never an attacker's draws), one without on its one answer: every accuracy is "
            "the mean over images and held-out draws, and robust accuracy counts an image under a draw only if "
            "that draw leaves the clean image and every attack at this eps or below right, i.e. the expected "
            "robust accuracy of one deployed query.")
        report.table("clean", ["pipeline", "clean accuracy (full test set)", "clean accuracy (attacked subset)"],
                     [[r.label, r.clean_accuracy, 100 * float(r.clean_correct.double().mean())] for r in rows],
                     digits=4)
        report.result("classifier", {"path": cnn.path, "val_accuracy": cnn.val_accuracy,
                                     "test_accuracy": cnn.test_accuracy})
        for key, method, name in (("table2_fgsm", "fgsm", "Table 2: FGSM"), ("table3_pgd", "pgd", "Table 3: PGD")):
            report.heading(f"{name}, non-adaptive (the paper's protocol)")
            attack = Attack(method, NON_ADAPTIVE)
            report.table(key, ["pipeline"] + [f"eps {e:g}" for e in lists[method]],
                         [[r.label] + [r.accuracy(attack, e) for e in lists[method]] for r in rows], digits=4,
                         caption="The attacker differentiates the CNN alone and never sees the purifier.")
            report.table(f"paper_{key}", *paper_table(family, method), digits=4,
                         caption=f"The paper's {name.split(':')[0]} for {family} as printed, for comparison with "
                                 "the non-adaptive rows above (the authors' own CNN, budgets and attack code).")
        if self.authors_variant:
            report.heading("The authors' variant: attacks on the purifier's reconstruction error")
            cols = [("fgsm", e) for e in lists["fgsm"]] + [("pgd", e) for e in lists["pgd"]]
            report.table("authors_variant", ["pipeline"] + [f"{m.upper()} eps {e:g}" for m, e in cols],
                         [[r.label] + [r.accuracy(Attack(m, AUTHORS), e) for m, e in cols]
                          for r in rows if r.pipeline.purifier is not None], digits=4,
                         caption="FGSM and PGD that maximise the purifier's per-image MSE, as the authors' MNIST "
                                 "code did (ART starts a regressor's PGD at the image: no random start here).")
        report.heading("Every attack, and robust accuracy")
        table: list[list[Cell]] = []
        for r in rows:
            kinds = list(dict.fromkeys(a for a, _ in r.correct))
            table += [[r.label, a.label()] + [r.accuracy(a, e) for e in eps_all] for a in kinds]
            table.append([r.label, "robust (worst case per image)"] + [self._robust(r, e) for e in eps_all])
        report.table("all_attacks", ["pipeline", "attack"] + [f"eps {e:g}" for e in eps_all], table, digits=4,
                     caption="'-': not run at that eps. Robust: an image counts (under each held-out draw) only if "
                             "the clean image and every attack at that eps or below leave its prediction right.")
        report.heading("Robust accuracy: the worst case over every attack, per image")
        report.table("robust", ["pipeline"] + [f"eps {e:g}" for e in eps_all],
                     [[r.label] + [self._robust(r, e) for e in eps_all] for r in rows], digits=4)
        check = apgd_check(rows, lists["apgd"], len(ys))
        if check:
            report.heading("Is APGD-EOT at least as strong as PGD-EOT?")
            report.text("On each purified pipeline, at each eps where both ran: APGD's accuracy (an image and "
                        "held-out draw count only if both APGD-CE and APGD-DLR leave it right) against the "
                        "PGD reference (EOT-PGD where the pipeline draws noise, else adaptive PGD) and the upper "
                        f"end of that reference's 95% Wilson interval over the {len(ys)} attacked images. A "
                        "maintained APGD above that end is weaker than a plain PGD here, and its figures should "
                        "not be read as the strongest attack's.\n\n"
                        + "\n".join(f"- {c['sentence']}" for c in check))
            report.result("apgd_check", check)
        report.result("largest_class_share", share)
        report.text(
            f"Sanity bound: at eps >= 0.5 every image on [0, 1] can be moved to the uniform grey image 0.5, so no "
            f"pipeline keeps more than the largest class's share of the attacked subset ({share:.2f}%) against an "
            "attacker who knows it (for a pipeline with fresh noise, in expectation over its draws). The paper's "
            "87.28% at eps 0.5 (MNIST FGSM) is a non-adaptive figure.")
        report.figure("accuracy_vs_eps", self._figure(rows, eps_all),
                      caption="Dashed: non-adaptive PGD (the paper's protocol); solid: robust accuracy, worst case "
                              "over every attack.")
        self._examples(report, rows, lists["fgsm"][0], xs, ys, target)
        report.result("attacked_images", picked.tolist())

    @staticmethod
    def _robust(row: Row, eps: float) -> float:
        return 100 * float(row.robust(eps).double().mean())

    def _figure(self, rows: Sequence[Row], eps_all: Sequence[float]) -> Any:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        pgd = Attack("pgd", NON_ADAPTIVE)
        for r, colour in zip(rows, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
            points = [(e, r.accuracy(pgd, e)) for e in eps_all if r.accuracy(pgd, e) is not None]
            ax.plot(*zip(*points), linestyle="--", marker=".", color=colour)
            ax.plot(eps_all, [self._robust(r, e) for e in eps_all], marker="o", color=colour, label=r.label)
        ax.set(xlabel="eps (L-infinity, images on [0, 1])", ylabel="accuracy (%)", ylim=(0, 101))
        ax.legend(fontsize=8)
        return fig

    def _examples(self, report: Any, rows: Sequence[Row], eps: float, xs: torch.Tensor, ys: torch.Tensor,
                  target: "Target") -> None:
        """The paper's Fig. 10: FGSM images (non-adaptive, the largest FGSM eps) and each purifier's output."""
        x, y = xs[:8], ys[:8]
        x_adv = craft("fgsm", target.classifier(rows[0].pipeline), x, y, eps, self.budget, self.seed)
        grid = [x, x_adv]
        for r in rows:
            if r.pipeline.purifier is not None:
                r.pipeline.reseed(target.eval_seed)
                with torch.no_grad():
                    grid.append(r.pipeline.purifier(x_adv.to(target.device)).cpu())
        report.image("fgsm_examples", torch.cat(grid), nrow=len(x), caption=(
            f"Rows: clean test images; FGSM at eps {eps:g} against the CNN; then each purifier's reconstruction of "
            f"the attacked images ({', '.join(r.label for r in rows if r.pipeline.purifier is not None)})."))
