"""Adversarial examples from the Adversarial Robustness Toolbox (ART), under an L-infinity budget on [0, 1].

ART does FGSM (``FastGradientMethod``) and PGD (``ProjectedGradientDescent``, random start, ``steps``
iterations of step 2.5 * eps / steps, so that the iterates can reach every corner of the ball). APGD with the
cross-entropy and the difference-of-logits-ratio losses, the gradient attacks of AutoAttack, comes from
torchattacks (``APGD``, a port of AutoAttack's own code): it keeps, per image, the last iterate the attacked
model calls wrong, where ART's ``AutoProjectedGradientDescent`` looks at the final iterate only and returns the
clean image when one prediction calls it right, which on a pipeline with fresh noise made it weaker than PGD.
This module only says *what* is attacked: an ``nn.Module`` wrapped as an ART classifier (the CNN alone, or the
whole pipeline of ``purify``), or as an ART regressor whose output is a purifier's reconstruction error (the
authors' MNIST variant), or, for APGD, the module itself. Against a pipeline with fresh noise the caller hands
APGD ``purify.ExpectedPipeline``: each call averages the class probabilities over fresh draws, so every
gradient is an average over draws (EOT, about 20 as in AutoAttack's "rand" version) and every success APGD
counts is judged on that averaged prediction over its own draws, never on one noisy draw. The grey-image
attack needs no library: at eps >= 0.5 every image on [0, 1] may be moved to the uniform grey image 0.5,
after which no classifier can beat the share of the class it calls grey.

ART draws its random starts from numpy's global generator, torchattacks from torch's (which it seeds itself);
``craft`` seeds both for the call and restores them afterwards, so a run is repeatable and the caller's random
state is left alone.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

GREY = 0.5
METHODS = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "grey")
APGD_LOSSES = {"apgd-ce": "ce", "apgd-dlr": "dlr"}  # torchattacks' names of the two APGD losses
# What crafts APGD's images, part of an attack result's cache key: results of ART's APGD, which older caches
# hold under the same method names, are never read as this one's.
APGD_IMPLEMENTATION = "torchattacks 3.5 APGD, one restart, success on the attacked module's (EOT-averaged) output"
BATCH = 250  # images per library call
# APGD's images per call: torchattacks sends a whole call through the model at once, and under EOT over 20
# draws that is as many images per pass as EOT-PGD's 10 draws of ART's batches.
APGD_BATCH = BATCH // 2


@dataclass(frozen=True)
class Budget:
    """How hard the iterative attacks try."""

    pgd_steps: int = 40
    apgd_steps: int = 100


def _device_type(module: nn.Module) -> str:
    return "gpu" if next(module.parameters()).device.type == "cuda" else "cpu"


def as_classifier(model: nn.Module, input_shape: tuple[int, ...], classes: int) -> object:
    """``model`` (images -> logits) as an ART classifier on [0, 1] with the cross-entropy loss."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=input_shape, nb_classes=classes,
                             clip_values=(0.0, 1.0), device_type=_device_type(model))


def as_regressor(model: nn.Module, input_shape: tuple[int, ...]) -> object:
    """``model`` (images -> one non-negative number each) as an ART regressor whose loss, the squared
    distance to a target of 0, grows with that number: attacking it maximises the number."""
    from art.estimators.regression import PyTorchRegressor

    return PyTorchRegressor(model=model, loss=nn.MSELoss(), input_shape=input_shape, clip_values=(0.0, 1.0),
                            device_type=_device_type(model))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """numpy's and torch's global generators (CUDA's too: torchattacks seeds them) seeded inside, as they were
    outside."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
            torch.manual_seed(seed)
            yield
    finally:
        np.random.set_state(state)


def _attack(method: str, estimator: object, eps: float, budget: Budget, regression: bool,
            seed: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``generate(images, targets)`` of ``method``'s attack on ``estimator``, on numpy batches."""
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    if method in APGD_LOSSES:
        return _apgd(method, estimator, eps, budget, seed)
    if method == "fgsm":
        return FastGradientMethod(estimator, norm=np.inf, eps=eps, batch_size=BATCH).generate
    if method == "pgd":
        # ART starts a regressor's PGD at the image itself (its random start is for classifiers only)
        return ProjectedGradientDescent(estimator, norm=np.inf, eps=eps, eps_step=2.5 * eps / budget.pgd_steps,
                                        max_iter=budget.pgd_steps, num_random_init=0 if regression else 1,
                                        batch_size=BATCH, verbose=False).generate
    raise ValueError(f"no library attack for {method!r}")


def _apgd(method: str, model: object, eps: float, budget: Budget,
          seed: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """torchattacks' APGD on ``model`` (an ``nn.Module``: images -> logits or log-probabilities).

    ``eot_iter`` stays 1: torchattacks judges success on the last of its EOT calls, one noisy draw; the draws
    live inside ``model`` instead (``ExpectedPipeline``), so the gradient, the step-size control and the
    success check all see the prediction averaged over the attack's own draws."""
    from torchattacks import APGD

    if not isinstance(model, nn.Module):
        raise TypeError("APGD attacks a torch module, not an ART estimator")
    attack = APGD(model, norm="Linf", eps=eps, steps=budget.apgd_steps, n_restarts=1, seed=seed,
                  loss=APGD_LOSSES[method], eot_iter=1)
    device = next(model.parameters()).device

    def generate(xb: np.ndarray, yb: np.ndarray) -> np.ndarray:
        adversarial = attack(torch.from_numpy(xb).to(device), torch.from_numpy(yb).to(device))
        return adversarial.detach().cpu().numpy()

    return generate


def craft(method: str, estimator: object | None, x: torch.Tensor, y: torch.Tensor | None, eps: float,
          budget: Budget = Budget(), seed: int = 0, regression: bool = False,
          progress: Callable[[int], None] = lambda advance: None) -> torch.Tensor:
    """Adversarial versions of ``x`` (N x C x H x W on [0, 1], CPU) within ``eps`` of it in L-infinity.

    ``estimator``: an ART estimator (``as_classifier``, ``as_regressor``) for FGSM and PGD, the attacked torch
    module itself for APGD, None for the grey image. ``y`` are the true labels (classifiers; None for a
    regressor). At ``eps`` 0 the ball is the image
    itself: FGSM runs (a step of size 0), the iterative attacks return the images unchanged (ART refuses
    a step size of 0). ``grey`` needs ``eps`` >= 0.5.
    """
    if method not in METHODS:
        raise ValueError(f"unknown attack method {method!r}")
    if method == "grey":
        if eps < GREY:
            raise ValueError(f"the grey image lies outside an L-infinity ball of radius {eps} < {GREY}")
        progress(len(x))
        return torch.full_like(x, GREY)
    if eps == 0 and method != "fgsm":
        progress(len(x))
        return x.clone()
    generate = _attack(method, estimator, eps, budget, regression, seed)
    out = []
    with seeded(seed):
        batch = APGD_BATCH if method in APGD_LOSSES else BATCH
        for i in range(0, len(x), batch):
            xb = x[i:i + batch].numpy().astype(np.float32)
            target = np.zeros(len(xb), dtype=np.float32) if regression else y[i:i + batch].numpy()
            out.append(torch.from_numpy(generate(xb, target)))
            progress(len(xb))
    adversarial = torch.cat(out)
    # the budget as a hard guarantee: float rounding in a library must not widen the ball
    return torch.minimum(torch.maximum(adversarial, x - eps), x + eps).clamp_(0.0, 1.0)
