"""Does the decoding temperature decide how much a purifier helps an adaptive attacker?

On MNIST (cell mnist-robustness of the reproduction) the population's purifier, decoding at its tau 1.9, left
the CNN less robust under adaptive PGD than the standard GS-VAE's, decoding at 0.89. That could come from the
weights or from the temperature. This script holds the weights fixed and moves only tau: each model of the
cell decodes at each tau given, the same basic CNN behind it, and single-draw adaptive PGD (the attack of the
cell's "PGD (adaptive)" rows, same budget and seeds scheme) runs at each eps on the same 1,000 test images.
It reads the cell's runs and CNN from the reproduction cache; run the cell first.

    python benchmarks/purifier_tau.py --threads 2
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, append_section, header  # noqa: E402

from tempsched.evaluation import markdown_table  # noqa: E402
from tempsched.gsvae.adversarial import Budget, as_classifier, craft  # noqa: E402
from tempsched.gsvae.classifier import ClassifierSpec, ensure_classifier, predict  # noqa: E402
from tempsched.gsvae.experiments.attacks import Attacks  # noqa: E402
from tempsched.gsvae.measure import unit_images  # noqa: E402
from tempsched.gsvae.purify import Pipeline, Purifier  # noqa: E402
from tempsched.plugins import PluginManager  # noqa: E402
from tempsched.runs import load_best  # noqa: E402

# The cell's two runs (named in docs/reproduction/mnist-robustness) and the attacks evaluation's defaults,
# which the cell ran with: the same CNN (reused from the cache), images and PGD budget.
RUNS = ("paper-default-e10-285332c61885", "standard-annealing-e10-39df2ccc6850")
_DEFAULT = {name: param.default for name, param in Attacks.params.items()}
CNN = {"train_epochs": _DEFAULT["cnn_epochs"], "widths": tuple(_DEFAULT["cnn_widths"]),
       "hidden": tuple(_DEFAULT["cnn_hidden"])}
SUBSET, SEED, PGD_STEPS = _DEFAULT["subset"], _DEFAULT["seed"], _DEFAULT["pgd_steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=ROOT.parent / "repro-runs")
    parser.add_argument("--taus", default="0.5,0.89,1.9,4.0", help="decoding temperatures, comma-separated")
    parser.add_argument("--eps", default="0.05,0.1", help="L-infinity budgets, comma-separated")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    taus = [float(t) for t in args.taus.split(",")]
    eps_list = [float(e) for e in args.eps.split(",")]
    missing = [r for r in RUNS if not (args.cache / r).is_dir()]
    if missing:
        sys.exit(f"not in {args.cache}: {', '.join(missing)}; run `python benchmarks/reproduce.py "
                 f"--cells mnist-robustness` first")
    header()
    manager = PluginManager()
    models = [load_best(args.cache / r, manager, device="cpu") for r in RUNS]
    data = models[0].task.data
    spec = ClassifierSpec("mnist", data.describe(), seed=SEED, **CNN)
    cnn = ensure_classifier(spec, data, args.cache / "classifiers", torch.device("cpu"))
    x_test, y_test = unit_images(data.x_test), data.y_test
    picked = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(SEED))[:SUBSET].sort().values
    xs, ys = x_test[picked], y_test[picked]
    eval_seed = int(models[0].config.task_options["eval_noise_seed"])
    shape, classes = tuple(xs.shape[1:]), cnn.model.head[-1].out_features

    def accuracy(pipeline: Pipeline, x: torch.Tensor) -> float:
        pipeline.reseed(eval_seed)  # judged with the evaluation's draws, never the attacker's
        return 100 * float((predict(pipeline, x) == ys).double().mean())

    rows = []
    for loaded, name in zip(models, ("population", "standard GS-VAE")):
        for tau in taus:
            pipeline = Pipeline(cnn.model, Purifier(loaded.model, tau, "soft"))
            row: list[str | float] = [name, f"{loaded.tau:.3g}", tau, accuracy(pipeline, xs)]
            for eps in eps_list:
                seed = zlib.crc32(f"purifier-tau/{name}/{tau}/{eps}".encode())
                pipeline.reseed(seed)
                x_adv = craft("pgd", as_classifier(pipeline, shape, classes), xs, ys, eps,
                              Budget(PGD_STEPS, _DEFAULT["apgd_steps"]), seed)
                row.append(accuracy(pipeline, x_adv))
            print(row, flush=True)
            rows.append(row)
    headers = ["model", "trained tau", "decoding tau", "clean"] + [f"adaptive PGD eps {e}" for e in eps_list]
    append_section(
        "Purifier robustness vs decoding temperature (MNIST, mnist-robustness's runs)",
        f"Accuracy (%) of the basic CNN behind each model's purifier decoding soft at each tau, on the cell's "
        f"{SUBSET} attacked test images; single-draw adaptive PGD, {PGD_STEPS} steps of 2.5 * eps / "
        f"{PGD_STEPS}, random start. Runs: {', '.join('../repro-runs/' + r for r in RUNS)}.\n\n"
        + markdown_table(headers, rows, 4))


if __name__ == "__main__":
    main()
