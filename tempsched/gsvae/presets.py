"""Presets that run the ReinMax benchmark's setting in one command, one per estimator at its tuned tau.

The benchmark (Liu et al., NeurIPS 2023; LiyuanLucasLiu/reinmax_examples) trains one VAE per run: MNIST
as grey levels, the MLP 784-512-256 with one latent layer of 30 variables of 10 categories ("10x30",
C x L), BCE summed over the pixels + KL(q || uniform), batch 100, RAdam with learning rate 5e-4, a fixed
tau, 160 epochs on all training images, judged on the training -ELBO. Here that is one member with the
``fixed`` schedule and no feedback, selected on its training loss; tau is the one the benchmark's grid
chose on 10x30 for each estimator. docs/estimators.md says how close our numbers come to theirs.

What differs: the task always keeps a validation split (``tempsched.gsvae.data.validation_size``), so
the presets validate on one image and train on the other 59,999 (the same 600 updates per epoch).
The epochs and the data folder are the command line's: ``--epochs 160 --data-dir ../shared/datasets``.
"""

from __future__ import annotations

from tempsched.parts import Preset

BENCH_TAU = {"st-gs": 0.5, "gst-1.0": 0.5, "gumbel-rao": 1.0, "reinmax": 1.3}  # the benchmark's tuned tau, 10x30
BENCH_OPTIONS = {
    "task_options.dataset": "mnist", "task_options.model": "mlp", "task_options.latent": [30, 10],
    "task_options.optimizer": "radam", "task_options.learning_rate": 5e-4, "task_options.batch_size": 100,
    "task_options.val_size": 1,
}


def reinmax_bench(estimator: str) -> Preset:
    """The benchmark's 10x30 setting for ``estimator``, at its tuned tau."""
    tau = BENCH_TAU[estimator]
    return Preset(
        name=f"reinmax-bench-{estimator}",
        description=f"The ReinMax benchmark's MNIST 10x30 VAE with {estimator} at tau {tau:g} (one member, "
                    "RAdam 5e-4, batch 100, selected on the training loss); add --epochs 160 --data-dir DIR.",
        task="gsvae", members=1, assign=lambda n: ["fixed"] * n, feedback="none", selection="min-loss",
        tau_initial=tau, tau_min=0.1, tau_max=10.0,
        defaults={**BENCH_OPTIONS, "task_options.estimator": estimator}, select_on="train",
    )


PRESETS = [reinmax_bench(estimator) for estimator in BENCH_TAU]
