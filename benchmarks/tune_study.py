"""`tempsched tune` on a small MNIST subset: does the best configuration beat paper-default's defaults,
how many trials an hour do 1 and 2 workers finish, and does a study killed with kill -9 resume?

Every step runs the real command line in a subprocess, as a user would:
1. `tempsched tune --preset paper-default --trials 20` (TPE, median pruner), timed;
2. `tempsched run` with paper-default's defaults and the same data, members, epochs and seed, and both the
   defaults and the exported best.toml again with another seed (does the gain outlive the tuned seed?);
3. the same number of unpruned random-sampler trials with `--workers 1` and `--workers 2` (trials/hour);
4. a study killed with SIGKILL while a trial is in flight, then the same command again.
Usage: python benchmarks/tune_study.py [--trials 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TEMPSCHED_PLUGINS", "")

from _common import SHARED_DATA, append_section, cpu, header, load_summary, relative  # noqa: E402

import optuna  # noqa: E402

from tempsched.tune import open_existing  # noqa: E402

TEMPSCHED = [sys.executable, "-c", "from tempsched.cli import main; main()"]


def data_args(data_dir: Path, train: int, members: int, epochs: int) -> list[str]:
    return ["--preset", "paper-default", "--dataset", "mnist", "--data-dir", str(data_dir), "--train-size", str(train),
            "--test-size", str(train), "--members", str(members), "--epochs", str(epochs), "--seed", "0"]


def timed(args: list[str]) -> float:
    """Run a tempsched command to completion (output to a log beside it); its wall time in seconds."""
    t0 = time.perf_counter()
    subprocess.run(TEMPSCHED + args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def study_of(out: Path) -> optuna.Study:
    return open_existing(out, out.name)


def kill_and_resume(args: list[str], out: Path) -> str:
    """Kill a 3-trial study with SIGKILL while trial 1 trains, rerun the command; say what the study holds."""
    cmd = TEMPSCHED + args + ["--trials", "3", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    in_flight = out / "trials" / "1" / "metrics.jsonl"  # written after trial 1's first epoch
    while not in_flight.exists() and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.number: t.state.name for t in study_of(out).trials}
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    after = {t.number: t.state.name for t in study_of(out).trials}
    return f"states after the kill: {before}; after re-running the same command: {after}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--throughput-trials", type=int, default=8)
    ap.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    ap.add_argument("--quick", action="store_true", help="3 trials of 1 epoch on 400 images (a smoke run, no doc)")
    args = ap.parse_args()
    train, members, epochs = (400, 2, 1) if args.quick else (2000, 4, 3)
    trials, n_tp = (3, 2) if args.quick else (args.trials, args.throughput_trials)
    common = data_args(args.data_dir, train, members, epochs)
    header()
    work = Path(tempfile.mkdtemp(prefix="tempsched-tune-bench-"))
    try:
        tune_args = ["tune", *common, "--trials", str(trials), "--out", str(work / "study")]
        tune_wall = timed(tune_args)
        default_wall = timed(["run", *common, "--out", str(work / "default")])
        study = study_of(work / "study")
        best = study.best_trial
        default = json.loads((work / "default" / "summary.json").read_text())
        pruned = sum(t.state.name == "PRUNED" for t in study.trials)
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        ties = sum(t.value == default["best_loss"] for t in complete)
        seconds = sorted((t.datetime_complete - t.datetime_start).total_seconds() for t in complete)
        other_seed = {}
        for name, config in (("defaults", []), ("best", ["--config", str(work / "study" / "best.toml")])):
            timed(["run", *common, *config, "--seed", "1", "--out", str(work / f"seed1-{name}")])
            other_seed[name] = json.loads((work / f"seed1-{name}" / "summary.json").read_text())
        rates = {}
        for k in (1, 2):
            wall = timed(["tune", *common, "--trials", str(n_tp), "--workers", str(k), "--sampler", "random",
                          "--pruner", "none", "--out", str(work / f"throughput-{k}")])
            rates[k] = (wall, n_tp / wall * 3600)
        kill = kill_and_resume(["tune", *data_args(args.data_dir, 400, 2, 2)], work / "killed")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    d = default["test_metrics"]
    b = best.user_attrs
    params = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in best.params.items())
    body = (
        f"Study: `tempsched tune {' '.join(tune_args[1:-2])}` (TPE, median pruner); each trial {members} members x "
        f"{epochs} epochs on the first {train} MNIST training images (10% of them held out for selection), "
        f"test metrics on the first {train} test images.\n\n"
        "| configuration | val -ELBO (selection, tuned on) | test -ELBO (held out) | test MSE (held out) |\n"
        "|---|---|---|---|\n"
        f"| paper-default defaults | {default['best_loss']:.2f} | {d['test_neg_elbo']:.2f} | {d['test_mse']:.5f} |\n"
        f"| best of {trials} trials (trial {best.number}) | {best.value:.2f} | {b['test_neg_elbo']:.2f} | "
        f"{b['test_mse']:.5f} |\n"
        f"| seed 1 (not tuned on): defaults | {other_seed['defaults']['best_loss']:.2f} | "
        f"{other_seed['defaults']['test_metrics']['test_neg_elbo']:.2f} | "
        f"{other_seed['defaults']['test_metrics']['test_mse']:.5f} |\n"
        f"| seed 1 (not tuned on): best.toml | {other_seed['best']['best_loss']:.2f} | "
        f"{other_seed['best']['test_metrics']['test_neg_elbo']:.2f} | "
        f"{other_seed['best']['test_metrics']['test_mse']:.5f} |\n\n"
        f"Best parameters: {params}. {ties} of the {len(complete)} complete trials ended on exactly the defaults' "
        f"selection loss (in {epochs} epochs most knob settings do not change which member wins). "
        f"Study wall time {tune_wall:.0f} s for {trials} trials ({pruned} pruned); a complete trial took "
        f"{seconds[len(seconds) // 2]:.0f} s (median); one default run {default_wall:.0f} s.\n\n"
        f"Throughput ({n_tp} unpruned random-sampler trials each, wall time of the whole command including "
        f"start-up): 1 worker {rates[1][0]:.0f} s = "
        f"{rates[1][1]:.0f} trials/hour; 2 workers {rates[2][0]:.0f} s = {rates[2][1]:.0f} trials/hour "
        f"(ratio {rates[2][1] / rates[1][1]:.2f}). This machine has {cpu().cpus} logical CPUs; with 2 workers "
        f"each process gets {max(1, cpu().cpus // 2)} torch thread(s).\n\n"
        f"kill -9 (3-trial study, 2 members x 2 epochs on 400 images, killed while trial 1 trained): {kill}.")
    if args.quick:
        print(relative(body) + f"\n\n({load_summary()})")
    else:
        append_section(f"tempsched tune: {trials} trials on MNIST ({train} images)", body)


if __name__ == "__main__":
    main()
