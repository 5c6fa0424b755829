"""tempsched against Ray Tune's PopulationBasedTraining for the same members, model, data and epochs.

Ray runs one trial per member (each member's temperature schedule, its initial weights as tempsched
builds them), synchronous PBT with a perturbation and a checkpoint every epoch, selection on the same
validation loss. Ray's exploit clones a top-quantile trial: its checkpoint and its whole configuration
(temperature and schedule), then explores by resampling or scaling the temperature; tempsched copies only
the weights and Adam state to every member, and each keeps its own temperature, schedule and feedback. That is as close as Ray's PBT allows. Each Ray trial gets
one CPU and one torch thread (Ray's unit of placement); tempsched runs in one process with torch's threads.
Needs the optional extra: pip install -e '.[bench]'.
Usage: python benchmarks/vs_ray_pbt.py [--quick] [--epochs 3] [--train-size 6000] [--threads N]
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import append_section
from _population import command_line, emit, in_subprocess, mnist_config, tempsched_side, verdict

from tempsched.build import build
from tempsched.engine import clamp
from tempsched.parts import EpochContext
from tempsched.plugins import PluginManager

MEMBERS = 8


def member_trainable(config: dict[str, Any]) -> None:
    """One PBT trial: member ``config['member']`` trains an epoch, reports its validation loss, checkpoints."""
    from ray import tune

    torch.set_num_threads(1)
    manager = PluginManager()
    built = build(mnist_config(manager, MEMBERS, config["epochs"], config["train_size"]), manager)
    task, pop = built.task, built.population
    m = pop.members[config["member"]]
    tau, start = float(config["tau"]), 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / "member.pt", weights_only=True)
        m.model.load_state_dict(state["model"])
        m.optimizer.load_state_dict(state["optimizer"])
        m.generator.set_state(state["generator"])
        start = state["epoch"] + 1
    for epoch in range(start, config["epochs"]):
        m.model.train()
        for batch in task.batches(epoch):
            task.train_step(m.model, m.optimizer, batch, tau, m.generator)
        loss = task.evaluate(m.model, tau)
        tau = clamp(m.schedule.on_epoch(tau, EpochContext(m.index, epoch)), pop.tau_min, pop.tau_max)
        with tempfile.TemporaryDirectory() as folder:
            torch.save({"model": m.model.state_dict(), "optimizer": m.optimizer.state_dict(),
                        "generator": m.generator.get_state(), "epoch": epoch}, Path(folder) / "member.pt")
            tune.report({"loss": loss, "tau": tau}, checkpoint=tune.Checkpoint.from_directory(folder))


def ray_pbt(epochs: int, train_size: int) -> dict[str, Any]:
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t0
    probe = mnist_config(PluginManager(), MEMBERS, epochs, train_size)
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=1, synch=True,
        hyperparam_mutations={"tau": tune.uniform(probe.tau.min, probe.tau.max)})
    storage = tempfile.mkdtemp(prefix="tempsched-ray-")
    tuner = tune.Tuner(
        tune.with_resources(member_trainable, {"cpu": 1}),
        param_space={"member": tune.grid_search(list(range(MEMBERS))), "tau": probe.tau.initial,
                     "epochs": epochs, "train_size": train_size},
        tune_config=tune.TuneConfig(scheduler=pbt, metric="loss", mode="min"),
        run_config=tune.RunConfig(stop={"training_iteration": epochs}, storage_path=storage, verbose=0,
                                  checkpoint_config=tune.CheckpointConfig()),
    )
    grid = tuner.fit()
    wall = time.perf_counter() - t0
    ray.shutdown()
    final = min(r.metrics["loss"] for r in grid if r.metrics and "loss" in r.metrics)
    return {"wall": wall, "init": t_init, "final_loss": final, "errors": len(grid.errors)}


def worker(spec: str) -> None:
    args = json.loads(spec)
    if args["side"] == "ray":
        emit(ray_pbt(args["epochs"], args["train_size"]))
    else:
        emit(tempsched_side(MEMBERS, args["epochs"], args["train_size"], args["threads"]))


def main() -> None:
    parsed = command_line(__doc__, worker)
    if parsed is None:
        return
    args, epochs, size = parsed
    spec = {"epochs": epochs, "train_size": size, "threads": args.threads}
    ours = in_subprocess(__file__, json.dumps({**spec, "side": "tempsched"}))
    ray = in_subprocess(__file__, json.dumps({**spec, "side": "ray"}))
    body = "\n".join([
        "| implementation | wall time | final val -ELBO (best member, last epoch) |", "|---|---|---|",
        f"| tempsched (defaults) | {ours['wall']:.1f} s | {ours['final_loss']:.2f} |",
        f"| Ray Tune PBT (synchronous, checkpoint every epoch) | {ray['wall']:.1f} s "
        f"(of which ray.init {ray['init']:.1f} s) | {ray['final_loss']:.2f} |",
        "",
        verdict(ours, ray, 3.0) + f" Ray trial errors: {ray['errors']}.",
        f"\n{MEMBERS} members, {epochs} epochs, first {size} MNIST training images, seed 0, batch 128, "
        f"tempsched with torch threads {args.threads or 'default'}, "
        "same model, initial weights, schedules and data for both. Both ran one after the other; the machine "
        "line gives the load average around them.",
    ])
    append_section(f"tempsched vs Ray Tune PBT{' (quick)' if args.quick else ''}", body)


if __name__ == "__main__":
    main()
