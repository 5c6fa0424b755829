"""paper-default (n = 8) against standard-annealing on the full MNIST: test MSE, -ELBO and wall time.

Both runs use the same epochs, seed, batch size and model; the population does n times the training
compute of the single baseline model, which the report states beside the figures. Each run lives in
``--out/<preset>`` and is resumed if it is there already, so an interrupted benchmark continues where it
stopped; ``--epochs`` smaller than what a run has done just reports it.
Usage: python benchmarks/mnist_paper_vs_annealing.py [--epochs 10] [--quick] [--presets a,b] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TEMPSCHED_PLUGINS", "")

from _common import SHARED_DATA, append_section, header  # noqa: E402

from tempsched.plugins import PluginManager  # noqa: E402
from tempsched.rundir import RunDir  # noqa: E402
from tempsched.session import execute  # noqa: E402
from tempsched.spec import RunSpec, resume  # noqa: E402

PRESETS = ("paper-default", "standard-annealing")


def run(preset: str, epochs: int, train_size: int, data_dir: Path, out: Path) -> tuple[Any, int]:
    """Train (or continue) one preset's run; returns its summary and member count."""
    manager = PluginManager()
    if (out / "state.pt").is_file():
        spec, config = resume(out, manager.registry, {"epochs": epochs})
        return execute(config, manager, out, resume=True, spec=spec), config.members or 1
    spec = RunSpec({
        "plugin": preset, "epochs": epochs, "seed": 0,
        "data": {"dataset": "mnist", "data_dir": str(data_dir), "train_size": train_size},
    })
    config = spec.resolve(manager.registry)
    return execute(config, manager, out, spec=spec), config.members or 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "runs" / "bench-mnist")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--quick", action="store_true", help="2 epochs on 6000 images (a smoke run)")
    args = ap.parse_args()
    epochs, train_size = (2, 6000) if args.quick else (args.epochs, 0)
    presets = [p for p in args.presets.split(",") if p]
    header()
    lines = ["| preset | members | epochs | best member (strategy), epoch | best tau | val -ELBO | test -ELBO | "
             "test MSE | test MSE (argmax z) | training wall time |", "|---|---|---|---|---|---|---|---|---|---|"]
    walls, curves = {}, {}
    for preset in presets:
        t0 = time.perf_counter()
        s, members = run(preset, epochs, train_size, args.data_dir, args.out / preset)
        walls[preset] = s.wall_seconds
        rows = RunDir(args.out / preset).read_metrics()
        done = 1 + max(r["epoch"] for r in rows)
        curves[preset] = [min(r["loss"] for r in rows if r["epoch"] == e) for e in range(done)]
        m = s.test_metrics
        print(f"{preset}: {time.perf_counter() - t0:.0f} s in this call")
        lines.append(f"| {preset} | {members} | {done} | {s.best_member} ({s.best_strategy}), {s.best_epoch + 1} | "
                     f"{s.best_tau:.4g} | {s.best_loss:.2f} | {m['test_neg_elbo']:.2f} | {m['test_mse']:.5f} | "
                     f"{m['test_mse_hard']:.5f} | {s.wall_seconds:.0f} s |")
        data = s.data
    body = "\n".join(lines) + (
        f"\n\nData: {data}; seed 0, batch 128, Adam 1e-3, fp32. MSE is per pixel on the [0, 1] scale over the "
        "whole test set, at the best member's tau with fixed Gumbel noise; 'argmax z' decodes one-hot latents. "
        "The population trains 8 models, so it spends about 8x the baseline's training compute.")
    if len(walls) == 2:
        body += f" Wall-time ratio paper-default / standard-annealing: {walls[PRESETS[0]] / walls[PRESETS[1]]:.2f}."
    longest = max(len(c) for c in curves.values())
    body += ("\n\nBest validation -ELBO after each epoch:\n\n| epoch | " + " | ".join(curves) + " |\n|---|"
             + "---|" * len(curves) + "\n")
    for e in range(longest):
        body += f"| {e + 1} | " + " | ".join(f"{c[e]:.2f}" if e < len(c) else "-" for c in curves.values()) + " |\n"
    append_section(f"MNIST: {' vs '.join(presets)} ({epochs} epochs{', quick' if args.quick else ''})", body)


if __name__ == "__main__":
    main()
