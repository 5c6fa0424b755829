"""How close the training loop comes to this machine's compute roof.

The roof is measured, not taken from a data sheet: large fp32 and bf16 matrix products and
convolutions, timed. The training loop's FLOPs per member step (forward and backward) are counted with
``torch.utils.flop_counter.FlopCounterMode``; multiplied by the measured member steps per second they
give the achieved FLOP/s. A profile of the steps shows where the time goes when the efficiency is low.
Usage: python benchmarks/roofline.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torch.nn.functional as F
from _common import append_section, bf16_verdict, header
from _population import mnist_config
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from tempsched.build import build
from tempsched.plugins import PluginManager


def flops_per_second(fn: Callable[[], object], flops: float, seconds: float) -> float:
    """Best of repeated timings of ``fn`` over about ``seconds`` (the roof is the best the machine does)."""
    fn()  # warm-up: kernels chosen, memory allocated
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return flops / min(times)


def roofs(seconds: float) -> dict[str, float]:
    out = {}
    n = 1024
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        out[f"matmul {n}x{n} {name}"] = flops_per_second(lambda: a @ b, 2 * n ** 3, seconds)
        x, w = torch.randn(64, 64, 56, 56, dtype=dtype), torch.randn(64, 64, 3, 3, dtype=dtype)
        conv_flops = 2 * 64 * 64 * 56 * 56 * 64 * 9
        out[f"conv 3x3 64->64 ch, 56x56, batch 64 {name}"] = flops_per_second(
            lambda: F.conv2d(x, w, padding=1), conv_flops, seconds)
    return out


def layer_rates(model: torch.nn.Module, batch: torch.Tensor, tau: float, seconds: float) -> list[tuple[str, float, float]]:
    """(layer, MFLOP, GFLOP/s) of each conv and linear layer alone, forward and backward, at its shape in a step.

    The first layer's input needs no gradient, as in training; every other layer's input does.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    layers = {name: mod for name, mod in model.named_modules()
              if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))}
    def remember(name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            shapes[name] = tuple(args[0].shape)
        return hook

    hooks = [mod.register_forward_hook(remember(name)) for name, mod in layers.items()]
    with torch.no_grad():
        model(batch, tau, torch.Generator().manual_seed(0))
    for h in hooks:
        h.remove()
    out = []
    for name, mod in layers.items():
        x = torch.rand(shapes[name], requires_grad=name != next(iter(layers)))

        def step() -> None:
            mod(x).sum().backward()

        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
        out.append((f"{name} {type(mod).__name__} {tuple(shapes[name][1:])}", flops / 1e6,
                    flops_per_second(step, flops, seconds) / 1e9))
    return out


def training(members: int, steps: int) -> tuple[float, float, list[tuple[str, float]]]:
    """FLOPs per member step, member steps per second, and the top operators' share of step time."""
    manager = PluginManager()
    built = build(mnist_config(manager, members, 1, 6000, backend="loop"), manager)
    pop, task = built.population, built.task
    batches = list(task.batches(0))
    m = pop.members[0]
    with FlopCounterMode(display=False) as counter:
        task.train_step(m.model, m.optimizer, batches[0], m.tau, m.generator)
    step_flops = counter.get_total_flops()
    for batch in batches[:3]:
        pop.stepper(pop.members, batch)  # warm-up
    t0 = time.perf_counter()
    for i in range(steps):
        pop.stepper(pop.members, batches[i % len(batches)])
    rate = members * steps / (time.perf_counter() - t0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(min(steps, 10)):
            pop.stepper(pop.members, batches[i % len(batches)])
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return step_flops, rate, [(e.key, e.self_cpu_time_total / total) for e in top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="shorter timings")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seconds, steps = (1.0, 20) if args.quick else (5.0, 100)
    header()
    roof = roofs(seconds)
    step_flops, rate1, _ = training(1, steps)
    _, rate8, top = training(8, steps // 4)
    manager = PluginManager()
    built = build(mnist_config(manager, 1, 1, 2000), manager)
    layers = layer_rates(built.population.members[0].model, next(iter(built.task.batches(0))), 1.0, seconds / 5)
    matmul_roof = roof["matmul 1024x1024 fp32"]
    lines = ["| measured roof | GFLOP/s |", "|---|---|"]
    lines += [f"| {name} | {value / 1e9:.1f} |" for name, value in roof.items()]
    lines += ["", "| training loop (loop backend, fp32) | member steps/s | GFLOP/s | of fp32 matmul roof |",
              "|---|---|---|---|"]
    for n, rate in ((1, rate1), (8, rate8)):
        achieved = step_flops * rate
        lines.append(f"| n = {n} | {rate:.1f} | {achieved / 1e9:.2f} | {100 * achieved / matmul_roof:.1f}% |")
    efficiency = step_flops * rate8 / matmul_roof
    lines += ["", f"FLOPs per member step (batch 128, forward + backward, counted): {step_flops / 1e6:.0f} MFLOP.",
              f"Efficiency at n = 8: {100 * efficiency:.1f}% of the fp32 matmul roof (target >= 40%: "
              f"{'met' if efficiency >= 0.4 else f'MISSED by {100 * (0.4 - efficiency):.1f} points'}).",
              "", "Where a step's CPU time goes (n = 8, self time of the top operators):", "",
              "| operator | share |", "|---|---|"]
    lines += [f"| {name} | {100 * share:.1f}% |" for name, share in top]
    lines += ["", "Each conv and linear layer alone at its training shape (batch 128), forward and backward:", "",
              "| layer (input shape) | MFLOP | GFLOP/s | of fp32 matmul roof |", "|---|---|---|---|"]
    lines += [f"| {name} | {mflop:.1f} | {rate:.1f} | {100 * rate * 1e9 / matmul_roof:.0f}% |"
              for name, mflop, rate in layers]
    conv = "conv 3x3 64->64 ch, 56x56, batch 64"
    lines += ["", "- " + bf16_verdict(roof["matmul 1024x1024 bf16"], matmul_roof),
              "- " + bf16_verdict(roof[f"{conv} bf16"], roof[f"{conv} fp32"], "bf16 conv"),
              "", "Figures from one run; the machine line gives the load average around it."]
    append_section(f"Roofline{' (quick)' if args.quick else ''}", "\n".join(lines))


if __name__ == "__main__":
    main()
