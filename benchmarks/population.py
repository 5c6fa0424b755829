"""Population throughput: member-epochs/s for n = 1, 2, 4, 8, engine overhead, peak memory, speed options.

Every run is paper-default on the same MNIST subset, seed and epochs, each in a fresh process. Figures
per epoch are those of the fastest epoch after the first (warm-up) one. Engine overhead is everything but
the members' own training steps and selection-loss passes: batch preparation, selection, feedback, weight and Adam
copies, metrics, checkpoint and best-model writes. ``time(n)`` is the wall time of one epoch of n members.
Usage: python benchmarks/population.py [--quick] [--train-size 6000] [--epochs 3] [--threads N]
"""

from __future__ import annotations

import json

from _common import append_section, bf16_verdict
from _population import command_line, emit, epoch_figures, in_subprocess, mnist_config, timed_run

from tempsched.plugins import PluginManager

SIZES = (1, 2, 4, 8)
# Speed options, each against the default (loop, fp32, NCHW, torch's threads) at the same n. bf16 runs
# at n = 1 only: precision does not depend on n, and on a CPU without bf16 instructions it can run many times
# slower than fp32 (the report states this CPU's measured ratio and detected flags).
VARIANTS = {"channels_last": (8, {"channels_last": True}), "vmap backend": (8, {"backend": "vmap"}),
            "bf16 autocast": (1, {"precision": "bf16"})}


def worker(spec: str) -> None:
    args = json.loads(spec)
    manager = PluginManager()
    config = mnist_config(manager, args["members"], args["epochs"], args["train_size"], **args["performance"])
    result = timed_run(config, manager)
    emit({**result, **epoch_figures(result)})


def measure(members: int, epochs: int, train_size: int, threads: int, **performance: object) -> dict:
    spec = {"members": members, "epochs": epochs, "train_size": train_size,
            "performance": {"threads": threads, **performance}}
    result = in_subprocess(__file__, json.dumps(spec))
    print(f"n={members} {performance}: {result['epoch_seconds']:.2f} s/epoch, "
          f"overhead {100 * result['overhead_share']:.2f}%, peak {result['peak_rss_mb']:.0f} MB", flush=True)
    return result


def scaling_table(results: dict[int, dict]) -> list[str]:
    t1 = results[1]["epoch_seconds"]
    lines = ["| n | s/epoch | member-epochs/s | time(n)/(n·time(1)) | engine overhead | peak RSS |",
             "|---|---|---|---|---|---|"]
    for n, r in results.items():
        t = r["epoch_seconds"]
        lines.append(f"| {n} | {t:.2f} | {n / t:.3f} | {t / (n * t1):.3f} | {100 * r['overhead_share']:.2f}% | "
                     f"{r['peak_rss_mb']:.0f} MB |")
    return lines


def variants_table(results: dict[int, dict], variants: dict[str, dict]) -> list[str]:
    lines = ["| option | n | s/epoch | speed vs default at this n | final val -ELBO | vs default |",
             "|---|---|---|---|---|---|"]
    for name, r in variants.items():
        n = VARIANTS[name][0]
        base = results[n]
        lines.append(f"| {name} | {n} | {r['epoch_seconds']:.2f} | {base['epoch_seconds'] / r['epoch_seconds']:.2f}x | "
                     f"{r['final_loss']:.2f} | {100 * (r['final_loss'] / base['final_loss'] - 1):+.2f}% |")
    return lines


def main() -> None:
    parsed = command_line(__doc__, worker, quick="2 epochs on 2000 images, no full-MNIST memory run")
    if parsed is None:
        return
    args, epochs, size = parsed
    results = {n: measure(n, epochs, size, args.threads) for n in SIZES}
    variants = {name: measure(n, epochs, size, args.threads, **perf) for name, (n, perf) in VARIANTS.items()}
    single = {threads: measure(1, epochs, size, threads) for threads in (1, 2)}
    full = None if args.quick else measure(8, 1, 0, args.threads)

    r8, ratio = results[8], results[8]["epoch_seconds"] / (8 * results[1]["epoch_seconds"])
    two_procs = 2 * single[2]["epoch_seconds"] / single[1]["epoch_seconds"]
    lines = scaling_table(results) + [""] + variants_table(results, variants) + [
        "",
        f"- engine overhead at n = 8: {100 * r8['overhead_share']:.2f}% of the epoch wall time "
        f"(target <= 3%: {'met' if r8['overhead_share'] <= 0.03 else 'MISSED'}).",
        f"- time(8)/(8·time(1)) = {ratio:.3f} (CPU target <= 1.0: "
        f"{'met' if ratio <= 1.0 else f'MISSED by {100 * (ratio - 1):.1f}%'}).",
        f"- one member with 1 thread runs {single[1]['epoch_seconds']:.2f} s/epoch, with 2 threads "
        f"{single[2]['epoch_seconds']:.2f} s/epoch: two 1-thread worker processes would at best reach "
        f"{two_procs:.2f}x the member throughput of one 2-thread process.",
        "- " + bf16_verdict(1 / variants["bf16 autocast"]["epoch_seconds"], 1 / results[1]["epoch_seconds"],
                            "training with bf16 autocast (n = 1, epochs per second)"),
    ]
    if full is not None:
        lines.append(f"- peak resident memory, n = 8 on the full MNIST (1 epoch): {full['peak_rss_mb']:.0f} MB "
                     f"(target <= 2048 MB: {'met' if full['peak_rss_mb'] <= 2048 else 'MISSED'}).")
    lines.append(f"\nData: first {size} MNIST training images (10% carved for validation), {epochs} epochs, "
                 f"seed 0, batch 128, paper-default preset, torch threads {args.threads or 'default'}. Ratios come "
                 "from one run; the machine line gives the load average around it.")
    append_section(f"Population throughput{' (quick)' if args.quick else ''}", "\n".join(lines))


if __name__ == "__main__":
    main()
