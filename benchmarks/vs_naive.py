"""tempsched against the population loop the paper's code runs, for the same work.

The paper-style loop trains n independent models one after another, each through its own DataLoader
over PIL images (torchvision's ``ToTensor``), selects on the mean training loss, and hands the best
model on with deep copies of its state dicts. Both sides start from the same weights (same seed, same
members, same schedules and feedback rule), train the same epochs on the same images, and are scored on
the same validation images with the same fixed noise. tempsched runs with its defaults, so it also
evaluates every member on the validation split each epoch and writes its checkpoints: more work, not less.
Usage: python benchmarks/vs_naive.py [--quick] [--members 8] [--epochs 3] [--train-size 6000] [--threads N]
"""

from __future__ import annotations

import copy
import json
import time

import torch
from _common import append_section
from _population import command_line, emit, in_subprocess, mnist_config, peak_rss_mb, tempsched_side, verdict
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from tempsched.build import build
from tempsched.engine import clamp
from tempsched.gsvae.loss import negative_elbo
from tempsched.parts import EpochContext
from tempsched.plugins import PluginManager


class PILImages(Dataset):
    """MNIST digits as PIL images turned into tensors one at a time, as torchvision's MNIST class serves them."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images[:, 0].numpy()
        self.transform = transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(Image.fromarray(self.images[i], mode="L"))


def paper_style(members: int, epochs: int, train_size: int, threads: int, seed: int = 0) -> dict:
    """The paper-style population; returns wall time and the validation loss of the member it picks."""
    if threads:
        torch.set_num_threads(threads)
    manager = PluginManager()
    built = build(mnist_config(manager, members, epochs, train_size, seed), manager)
    task, pop = built.task, built.population
    dataset = PILImages(task.data.x_train)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        train_losses = []
        for m in pop.members:
            loader = DataLoader(dataset, batch_size=task.batch_size, shuffle=True,
                                generator=torch.Generator().manual_seed(seed * 1000 + epoch * members + m.index))
            m.model.train()
            total = 0.0
            for x in loader:
                x_hat, l1, l2 = m.model(x, m.tau, m.generator)
                loss = negative_elbo(x_hat, x, l1, l2).mean()
                m.optimizer.zero_grad()
                loss.backward()
                m.optimizer.step()
                total += loss.item()
            train_losses.append(total / len(loader))
        best = pop.selection.choose(train_losses)
        for k, m in enumerate(pop.members):
            delta = pop.feedback.delta(m.feedback_state, train_losses[k], train_losses[best])
            ctx = EpochContext(m.index, epoch, epochs, pop.tau.initial, pop.tau.min, pop.tau.max)
            tau_strategy = clamp(m.schedule.on_epoch(m.tau, ctx), pop.tau.min, pop.tau.max)
            m.tau = clamp(tau_strategy + delta, pop.tau.min, pop.tau.max)
        if epoch == epochs - 1:
            break  # the paper's loop ends with the best member, scored below
        model_state = copy.deepcopy(pop.members[best].model.state_dict())
        optimizer_state = copy.deepcopy(pop.members[best].optimizer.state_dict())
        for k, m in enumerate(pop.members):
            if k != best:
                m.model.load_state_dict(copy.deepcopy(model_state))
                m.optimizer.load_state_dict(copy.deepcopy(optimizer_state))
    wall = time.perf_counter() - t0
    winner = pop.members[best]
    return {"wall": wall, "final_loss": task.evaluate(winner.model, winner.tau), "peak_rss_mb": peak_rss_mb()}


def worker(spec: str) -> None:
    args = json.loads(spec)
    side = paper_style if args["side"] == "paper" else tempsched_side
    emit(side(args["members"], args["epochs"], args["train_size"], args["threads"]))


def main() -> None:
    parsed = command_line(__doc__, worker, members=True)
    if parsed is None:
        return
    args, epochs, size = parsed
    spec = {"members": args.members, "epochs": epochs, "train_size": size, "threads": args.threads}
    ours = in_subprocess(__file__, json.dumps({**spec, "side": "tempsched"}))
    paper = in_subprocess(__file__, json.dumps({**spec, "side": "paper"}))
    body = "\n".join([
        "| implementation | wall time | final val -ELBO | peak RSS |", "|---|---|---|---|",
        f"| tempsched (defaults) | {ours['wall']:.1f} s | {ours['final_loss']:.2f} | {ours['peak_rss_mb']:.0f} MB |",
        f"| paper-style loop | {paper['wall']:.1f} s | {paper['final_loss']:.2f} | {paper['peak_rss_mb']:.0f} MB |",
        "",
        verdict(ours, paper, 2.0),
        f"\n{args.members} members, {epochs} epochs, first {size} MNIST training images, seed 0, batch 128, "
        f"torch threads {args.threads or 'default'}. "
        "tempsched's time includes its per-epoch validation of every member and its checkpoint writes; the "
        "paper-style time is its training loop only. Both sides ran one after the other; the machine line gives "
        "the load average around them.",
    ])
    append_section(f"tempsched vs the paper-style loop{' (quick)' if args.quick else ''}", body)


if __name__ == "__main__":
    main()
