"""Adversarial examples from the Adversarial Robustness Toolbox (ART), under an L-infinity budget on [0, 1].

ART does the attacking: FGSM (``FastGradientMethod``), PGD (``ProjectedGradientDescent``, random start,
``steps`` iterations of step 2.5 * eps / steps, so that the iterates can reach every corner of the ball) and
APGD (``AutoProjectedGradientDescent`` with the cross-entropy and the difference-of-logits-ratio losses, the
gradient attacks of AutoAttack). This module only says *what* is attacked: an ``nn.Module`` wrapped as an
ART classifier (the CNN alone, or the whole pipeline of ``purify``), or as an ART regressor whose output is a
purifier's reconstruction error (the authors' MNIST variant). The grey-image attack needs no library: at
eps >= 0.5 every image on [0, 1] may be moved to the uniform grey image 0.5, after which no classifier can
beat the share of the class it calls grey.

ART draws its random starts from numpy's global generator; ``craft`` seeds it (and torch's) for the call
and restores both afterwards, so a run is repeatable and the caller's random state is left alone.
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
BATCH = 250  # images per ART call


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
    """numpy's and torch's global generators seeded inside, as they were outside."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        np.random.set_state(state)


def _attack(method: str, estimator: object, eps: float, budget: Budget, regression: bool) -> object:
    from art.attacks.evasion import AutoProjectedGradientDescent, FastGradientMethod, ProjectedGradientDescent

    if method == "fgsm":
        return FastGradientMethod(estimator, norm=np.inf, eps=eps, batch_size=BATCH)
    if method == "pgd":
        # ART starts a regressor's PGD at the image itself (its random start is for classifiers only)
        return ProjectedGradientDescent(estimator, norm=np.inf, eps=eps, eps_step=2.5 * eps / budget.pgd_steps,
                                        max_iter=budget.pgd_steps, num_random_init=0 if regression else 1,
                                        batch_size=BATCH, verbose=False)
    loss = {"apgd-ce": "cross_entropy", "apgd-dlr": "difference_logits_ratio"}[method]
    return AutoProjectedGradientDescent(estimator, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=budget.apgd_steps,
                                        nb_random_init=1, batch_size=BATCH, loss_type=loss, verbose=False)


def craft(method: str, estimator: object | None, x: torch.Tensor, y: torch.Tensor | None, eps: float,
          budget: Budget = Budget(), seed: int = 0, regression: bool = False,
          progress: Callable[[int], None] = lambda advance: None) -> torch.Tensor:
    """Adversarial versions of ``x`` (N x C x H x W on [0, 1], CPU) within ``eps`` of it in L-infinity.

    ``y`` are the true labels (classifiers; None for a regressor). At ``eps`` 0 the ball is the image
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
    attack = _attack(method, estimator, eps, budget, regression)
    out = []
    with seeded(seed):
        for i in range(0, len(x), BATCH):
            xb = x[i:i + BATCH].numpy().astype(np.float32)
            target = np.zeros(len(xb), dtype=np.float32) if regression else y[i:i + BATCH].numpy()
            out.append(torch.from_numpy(attack.generate(xb, target)))
            progress(len(xb))
    adversarial = torch.cat(out)
    # the budget as a hard guarantee: float rounding in a library must not widen the ball
    return torch.minimum(torch.maximum(adversarial, x - eps), x + eps).clamp_(0.0, 1.0)
