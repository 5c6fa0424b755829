"""Members spread over processes on one CPU machine: against one process, the compute roof and the paper-style loop.

n = 8 paper-default members on the full MNIST, every setting in fresh processes and at equal total threads T
(the CPUs this process may use): one process with T threads; K processes with T/K threads each, for K = 2, 4,
... up to T and n; the most processes with channels_last, plus bf16 autocast where the CPU has bf16 units (the
best settings); and the paper-style loop of benchmarks/vs_naive.py with T threads. Per setting: the epoch's wall
time (the fastest epoch after the first, when there are several), process 0's engine overhead (batch
preparation, selection, feedback, the gather of losses, the broadcast of the best member's weights and Adam
state, waiting for the other processes, file writes), member steps per second, and the FLOP/s they make
against the roof measured here (benchmarks/roofline.py's matrix product, in the precision that ran).
Targets (issue 9): 2 processes >= 1.3x one process at equal total threads; the best settings >= 45% of the roof
of their precision and >= 2x faster than the paper-style loop.
The full setting trains 8 members for --epochs on 55,000 images per setting (on a 2-core machine about an
hour for the defaults): run it on a quiet machine. --quick: 4 members, 640 images, 2 epochs, to check the script.
Usage: python benchmarks/distributed.py [--quick] [--epochs 1] [--train-size 0] [--write-docs]
"""

from __future__ import annotations

import argparse
import functools
import json
from typing import Any
from unittest import mock

import _population
import torch
from _common import SHARED_DATA, append_section, cpu, header
from _population import emit, epoch_figures, in_subprocess, mnist_config, timed_run, verdict
from gpu_check import section
from roofline import roofs, training
from vs_naive import paper_style

from tempsched import distributed
from tempsched.gsvae.data import load
from tempsched.plugins import PluginManager
from tempsched.session import execute, follow

BATCH = 128  # mnist_config's batch size (the task's default)
TARGET_PROCS, TARGET_ROOF, TARGET_PAPER = 1.3, 0.45, 2.0


def timed(spec: dict[str, Any], group: distributed.Group | None) -> dict[str, Any]:
    """``_population.timed_run`` of ``spec``'s configuration; with ``group``, as process 0 of several."""
    manager = PluginManager()
    config = mnist_config(manager, spec["members"], spec["epochs"], spec["train_size"], threads=spec["threads"],
                          **spec["performance"])
    if group is None:
        return timed_run(config, manager)
    with mock.patch.object(_population, "execute", functools.partial(execute, group=group)):
        return timed_run(config, manager)


def rank_main(argv: list[str]) -> None:
    """Each process of a multi-process setting (``distributed.launch``'s entry): process 0 times and reports."""
    spec = json.loads(argv[0])
    with distributed.joined() as group:
        assert group is not None
        if group.leads:
            result = timed(spec, group)
            emit({**result, **epoch_figures(result)})
            return
        manager = PluginManager()
        follow(mnist_config(manager, spec["members"], spec["epochs"], spec["train_size"], threads=spec["threads"],
                            **spec["performance"]), manager, group, resume=False)


def worker(text: str) -> None:
    """One setting, in a fresh interpreter (``_population.in_subprocess``)."""
    spec = json.loads(text)
    if spec["side"] == "paper":
        emit(paper_style(spec["members"], spec["epochs"], spec["train_size"], spec["threads"]))
    elif spec["procs"] == 1:
        result = timed(spec, None)
        emit({**result, **epoch_figures(result)})
    else:
        code = distributed.launch(rank_main, [text], spec["procs"], distributed.DEFAULT_TIMEOUT)
        if code:
            raise SystemExit(code)


def settings(members: int, epochs: int, size: int, threads: int) -> dict[str, dict[str, Any]]:
    """The settings to measure, by name, all at ``threads`` threads in total."""
    base = {"side": "tempsched", "members": members, "epochs": epochs, "train_size": size, "performance": {}}
    procs = [k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k <= min(threads, members) and threads % k == 0]
    out = {f"{k} process{'es' if k > 1 else ''} x {threads // k} thread{'s' if threads // k > 1 else ''}":
           {**base, "procs": k, "threads": threads // k} for k in procs}
    best = procs[-1]
    options = {"channels_last": True, **({"precision": "bf16"} if cpu().has_bf16 else {})}
    out[f"best: {best} x {threads // best}, {', '.join(options)}"] = {**base, "procs": best,
                                                                      "threads": threads // best,
                                                                      "performance": options}
    out[f"paper-style loop, {threads} threads"] = {**base, "side": "paper", "threads": threads}
    return out


def measure(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    result = in_subprocess(__file__, json.dumps(spec))
    seconds = result.get("epoch_seconds", result["wall"])
    print(f"{name}: {seconds:.2f} s{'/epoch' if 'epoch_seconds' in result else ' wall'}, "
          f"run {result['wall']:.1f} s, final val -ELBO {result['final_loss']:.2f}", flush=True)
    return result


def report(results: dict[str, dict[str, Any]], specs: dict[str, dict[str, Any]], step_flops: float,
           roof: dict[str, float], batches: int, threads: int) -> list[str]:
    """The section's table and the verdicts against the targets."""
    ours = {name: r for name, r in results.items() if specs[name]["side"] == "tempsched"}
    one = next(iter(ours.values()))
    lines = ["| setting | s/epoch | vs 1 process | member steps/s | GFLOP/s | of the roof (precision) | "
             "engine overhead | final val -ELBO | run wall |", "|---|---|---|---|---|---|---|---|---|"]
    share: dict[str, float] = {}
    for name, r in ours.items():
        precision = specs[name]["performance"].get("precision", "fp32")
        rate = specs[name]["members"] * batches / r["epoch_seconds"]
        share[name] = step_flops * rate / roof[precision]
        lines.append(f"| {name} | {r['epoch_seconds']:.2f} | {one['epoch_seconds'] / r['epoch_seconds']:.2f}x | "
                     f"{rate:.1f} | {step_flops * rate / 1e9:.1f} | {100 * share[name]:.1f}% ({precision}) | "
                     f"{100 * r['overhead_share']:.2f}% | {r['final_loss']:.2f} | {r['wall']:.1f} s |")
    paper_name = next(name for name in results if specs[name]["side"] == "paper")
    paper = results[paper_name]
    lines.append(f"| {paper_name} | | | | | | | {paper['final_loss']:.2f} | {paper['wall']:.1f} s |")
    lines += ["", f"Roof measured here with {threads} threads (1024x1024 matrix product): "
              f"fp32 {roof['fp32'] / 1e9:.1f} GFLOP/s, bf16 {roof['bf16'] / 1e9:.1f} GFLOP/s. "
              f"One member step (batch {BATCH}, forward and backward, counted): {step_flops / 1e6:.0f} MFLOP.", ""]
    two = next((name for name in ours if specs[name]["procs"] == 2 and not specs[name]["performance"]), None)
    if two is None:
        lines.append(f"- 2 processes vs 1 at equal total threads: not measured ({threads} usable CPU(s)).")
    else:
        ratio = one["epoch_seconds"] / ours[two]["epoch_seconds"]
        lines.append(f"- {two} runs {ratio:.2f}x the speed of 1 process x {threads} threads (target >= "
                     f"{TARGET_PROCS}x: {'met' if ratio >= TARGET_PROCS else 'MISSED'}).")
    best = next(name for name in ours if name.startswith("best"))
    lines.append(f"- {best}: {100 * share[best]:.1f}% of the roof of its precision (target >= "
                 f"{100 * TARGET_ROOF:.0f}%: {'met' if share[best] >= TARGET_ROOF else 'MISSED'}).")
    lines.append(f"- best settings against the paper-style loop: {verdict(ours[best], paper, TARGET_PAPER)[2:]}")
    lines.append(f"- engine overhead of the best settings on process 0, the broadcasts included: "
                 f"{100 * ours[best]['overhead_share']:.2f}% of the epoch.")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="4 members, 640 images, 2 epochs: checks the script")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per setting (default 1: one epoch is long)")
    ap.add_argument("--train-size", type=int, default=0, help="first N MNIST training images (0: all)")
    ap.add_argument("--write-docs", action="store_true", help="append the section to docs/benchmarks.md")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return
    threads = cpu().usable
    torch.set_num_threads(threads)  # the roof, and what the machine line reports
    members, epochs, size = (4, 2, 640) if args.quick else (8, args.epochs, args.train_size)
    header()
    specs = settings(members, epochs, size, threads)
    results = {name: measure(name, spec) for name, spec in specs.items()}
    measured = roofs(0.5 if args.quick else 5.0)
    roof = {"fp32": measured["matmul 1024x1024 fp32"], "bf16": measured["matmul 1024x1024 bf16"]}
    step_flops = training(1, 3)[0]
    images = len(load("mnist", str(SHARED_DATA), train_size=size).x_train)
    lines = report(results, specs, step_flops, roof, -(-images // BATCH), threads)
    lines.append(f"\n{members} members, {epochs} epoch(s), {images} MNIST training images (the rest of the first "
                 f"{size or 'all'} held out for selection), seed 0, batch {BATCH}, paper-default preset, "
                 f"{threads} threads in total per setting. Settings ran one after the other; the machine line "
                 "gives the load average around them.")
    title = f"Populations over processes{' (quick)' if args.quick else ''}"
    if args.write_docs:
        append_section(title, "\n".join(lines))
    else:
        print(section(title, "\n".join(lines)))


if __name__ == "__main__":
    main()
