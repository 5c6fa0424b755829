"""On a CUDA machine: does a population of 8 cost less than 8 members one by one, and how much of the card does it use?

One process; the loop and vmap steppers in fp32, and vmap with bf16 autocast; n = 1 and n = 8 paper-default members
on the embedded MNIST sample (always there, also on a machine with nothing else; --dataset/--data-dir for more),
batch 128. Per setting: the fastest of --epochs epochs after a warm-up one (``Population.run_epoch``: every
member's steps, the selection passes, the copies of the best state), time(8)/(8·time(1)), member steps per
second, and the FLOP/s they make against the card's roof measured here (8192x8192 matrix products in fp32,
TF32, which cuDNN's convolutions use by default, and bf16). Target (issue 9): time(8)/(8·time(1)) <= 0.3.
About two minutes on one H100; prints a self-contained result; --out FILE also writes it there (a device
machine sends back only files), --write-docs appends it to docs/benchmarks.md.
--device cpu runs the same code on the CPU with a tiny setting, to check the script where no GPU is.
Usage: python benchmarks/gpu_check.py [--epochs 3] [--out FILE] [--write-docs] [--device cpu]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import Any

import torch
from _common import append_section, command, machine
from roofline import flops_per_second
from torch.utils.flop_counter import FlopCounterMode

from tempsched.build import Built, build
from tempsched.errors import describe_exception
from tempsched.plugins import PluginManager
from tempsched.spec import RunSpec

TARGET = 0.3
SETTINGS = [("loop", "fp32"), ("vmap", "fp32"), ("vmap", "bf16")]


def population(members: int, backend: str, precision: str, args: argparse.Namespace) -> Built:
    manager = PluginManager()
    config = RunSpec({
        "plugin": "paper-default", "members": members, "epochs": 1000, "seed": 0, "device": args.device,
        "task_options": {"dataset": args.dataset, "data_dir": args.data_dir, "train_size": args.train_size},
        "performance": {"backend": backend, "precision": precision},
    }).resolve(manager.registry)
    return build(config, manager)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_seconds(built: Built, epochs: int) -> float:
    """The fastest of ``epochs`` epochs after a warm-up one (kernels chosen, memory allocated)."""
    pop, device = built.population, built.task.device
    pop.run_epoch()
    times = []
    for _ in range(epochs):
        sync(device)
        t0 = time.perf_counter()
        pop.run_epoch()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def step_flops(built: Built) -> float:
    """FLOPs of one member's training step (forward and backward), counted."""
    task, m = built.task, built.population.members[0]
    with FlopCounterMode(display=False) as counter:
        task.train_step(m.model, m.optimizer, next(iter(task.batches(0))), m.tau, m.generator)
    return float(counter.get_total_flops())


def roofs(device: torch.device, n: int, seconds: float) -> dict[str, float]:
    """The card's matrix-product FLOP/s in fp32 (no TF32), TF32 and bf16."""
    out = {}
    for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                              ("bf16", torch.bfloat16, False)):
        a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            out[name] = flops_per_second(lambda: (a @ b, sync(device)), 2 * n ** 3, seconds)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
    return out


def section(title: str, body: str) -> str:
    """A section as ``_common.append_section`` writes it (title, date, command, machine, body), for printing."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"\n## {title}\n\n- date: {stamp}\n- command: `{command()}`\n- machine: {machine()}\n\n{body}"


def measure(args: argparse.Namespace) -> tuple[dict[tuple[str, str, int], dict[str, Any]], float]:
    """Each setting's epoch time (or why it failed: one failure must not cost the others) and a step's FLOPs."""
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    flops = 0.0
    for backend, precision in SETTINGS:
        for members in (1, 8):
            try:
                built = population(members, backend, precision, args)
                flops = flops or step_flops(built)
                rows[backend, precision, members] = {"seconds": epoch_seconds(built, args.epochs),
                                                     "batches": built.task.batch_count()}
                del built
            except Exception as exc:  # reported in the table
                rows[backend, precision, members] = {"error": describe_exception(exc)}
            print(f"{backend} {precision} n={members}: {rows[backend, precision, members]}", flush=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return rows, flops


def table(rows: dict[tuple[str, str, int], dict[str, Any]], flops: float,
          roof: dict[str, float]) -> tuple[list[str], dict[tuple[str, str], float]]:
    """The result table and time(8)/(8·time(1)) of each stepper and precision that ran at both sizes."""
    lines = ["| stepper | precision | n | s/epoch | time(n)/(n·time(1)) | member steps/s | TFLOP/s | "
             "of fp32 / TF32 / bf16 roof |", "|---|---|---|---|---|---|---|---|"]
    ratios = {}
    for (backend, precision, members), r in rows.items():
        if "error" in r:
            lines.append(f"| {backend} | {precision} | {members} | failed: {r['error']} | | | | |")
            continue
        one = rows[backend, precision, 1]
        ratio = r["seconds"] / (members * one["seconds"]) if "seconds" in one else float("nan")
        if members > 1 and "seconds" in one:
            ratios[backend, precision] = ratio
        rate = members * r["batches"] / r["seconds"]
        shares = " / ".join(f"{100 * flops * rate / roof[p]:.1f}%" for p in ("fp32", "tf32", "bf16"))
        lines.append(f"| {backend} | {precision} | {members} | {r['seconds']:.3f} | {ratio:.3f} | {rate:.0f} | "
                     f"{flops * rate / 1e12:.2f} | {shares} |")
    return lines, ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per setting, after one warm-up epoch")
    ap.add_argument("--dataset", default="sample")
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--train-size", type=int, default=0)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--out", type=Path, help="also write the result to this file")
    ap.add_argument("--write-docs", action="store_true", help="append the result to docs/benchmarks.md")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: torch sees no CUDA device here: run this on a GPU machine (--device cpu checks "
                         "the script on the CPU)")
    smoke = args.device == "cpu"
    if smoke:
        args.epochs, args.train_size = 1, 256
    print(f"machine: {machine(load=False)}", flush=True)
    rows, flops = measure(args)
    size = 512 if smoke else 8192
    roof = roofs(torch.device(args.device), size, 0.2 if smoke else 2.0)
    lines, ratios = table(rows, flops, roof)
    lines += ["", f"Roof ({size}x{size} matrix products): fp32 {roof['fp32'] / 1e12:.1f}, TF32 {roof['tf32'] / 1e12:.1f}, "
              f"bf16 {roof['bf16'] / 1e12:.1f} TFLOP/s. One member step: {flops / 1e6:.0f} MFLOP (batch 128, "
              "forward and backward, counted).", ""]
    if ratios:
        best = min(ratios, key=ratios.__getitem__)
        lines.append("- time(8)/(8·time(1)): " + ", ".join(f"{b} {p} {v:.3f}" for (b, p), v in ratios.items()) +
                     f"; best {best[0]} {best[1]} {ratios[best]:.3f} (target <= {TARGET}: "
                     f"{'met' if ratios[best] <= TARGET else 'MISSED'}).")
    else:
        lines.append(f"- time(8)/(8·time(1)): no setting ran at both sizes (target <= {TARGET}: not measured).")
    batches = next((r["batches"] for r in rows.values() if "batches" in r), 0)
    lines.append(f"\n{args.dataset} data ({batches} batches of 128 per epoch), one process, fastest of "
                 f"{args.epochs} epoch(s) after a warm-up one, paper-default preset, seed 0.")
    title = "GPU check: n = 8 in one process" + (" (CPU smoke run)" if smoke else "")
    text = section(title, "\n".join(lines))
    if args.write_docs:
        append_section(title, "\n".join(lines))
    else:
        print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
