"""Finished runs for evaluations and scripts: the run cache (reuse, resume or train a run) and loading a
run's best model.

A cached run is named by its preset, epochs and fingerprint, then the hardware that trained it, so a cache
that gathers runs from several machines never holds two trainings under one name; ``ensure_run`` trains a
run once, however many processes ask for it.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from tempsched import rundir as rd
from tempsched.build import build_task
from tempsched.checkpoints import BestModel
from tempsched.config import RunConfig, load_toml
from tempsched.errors import UserError
from tempsched.hardware import platform_tag, tag_from_description
from tempsched.plugins import PluginManager
from tempsched.session import execute
from tempsched.spec import RunSpec, saved_config
from tempsched.task import Task

def _cached_stem(config: RunConfig) -> str:
    """The part of a cached run's name that the configuration decides: preset, epochs and fingerprint."""
    return f"{config.plugin}-e{config.epochs}-{rd.fingerprint(config.to_dict())[:12]}"


def cached_run_dir(config: RunConfig, root: Path) -> Path:
    """Where ``ensure_run`` trains the run of ``config`` on this machine: named by its preset, epochs and
    fingerprint, then the device kind and torch version (``hardware.platform_tag``). The fingerprint leaves
    the device out (a resume may move a run), but the figures depend on it, so a cache that gathers runs
    from several machines keeps one folder per machine kind instead of one name for two trainings."""
    return Path(root) / f"{_cached_stem(config)}-{platform_tag(config.device)}"


def finished_run(config: RunConfig, root: Path) -> Path | None:
    """A finished run of ``config`` in ``root``: this machine's kind's if there is one, else the first by
    name that other hardware trained (a lent GPU, another torch), else None."""
    own = cached_run_dir(config, root)
    if (own / rd.SUMMARY).is_file():
        return own
    runs = sorted(p.parent for p in Path(root).glob(f"{_cached_stem(config)}-*/{rd.SUMMARY}"))
    return runs[0] if runs else None


def ensure_run(spec: RunSpec, manager: PluginManager, root: Path) -> Path:
    """A finished run of ``spec`` under ``root``: reused when it finished, resumed when it was cut off,
    trained otherwise. Evaluations and the reproduction script call this, so their work survives a
    session that ends mid-way and is never done twice."""
    config = spec.resolve(manager.registry)
    # A run of the same configuration that a lent GPU (or another torch) finished is reused rather than
    # trained again; its name says what trained it, so every figure built on it can say so too.
    finished = finished_run(config, root)
    if finished is not None:
        return finished
    run_dir = cached_run_dir(config, root)
    # Two processes sharing a cache (two reproduction cells that need the same baseline, side by side)
    # train a run once: the second waits for the first, then reuses its run. The lock lies beside the run
    # directory, whose own lock the training takes.
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with rd.exclusive_lock(run_dir.parent / f"{run_dir.name}.lock", wait=lambda pid: print(
            f"waiting for process {pid}, which trains {run_dir.name}", file=sys.stderr, flush=True)):
        # Decided under the lock: another process may have finished (or half-trained) it meanwhile.
        if (run_dir / rd.SUMMARY).is_file():
            return run_dir
        resume = (run_dir / rd.STATE).is_file()
        if not resume and run_dir.is_dir():
            rd.RunDir(run_dir).discard_unstarted()
        execute(config, manager, run_dir, resume=resume, spec=spec)
    return run_dir


def unrenamed_runs(root: Path) -> list[Path]:
    """The finished runs in ``root`` named before names carried the hardware: ``<preset>-e<epochs>-<fingerprint>``."""
    return sorted(p.parent for p in Path(root).glob(f"*/{rd.SUMMARY}")
                  if re.fullmatch(r".+-e\d+-[0-9a-f]{12}", p.parent.name))


def rename_cached_runs(root: Path) -> dict[str, str]:
    """Give each finished run in ``root`` named before names carried the hardware (``<preset>-e<epochs>-
    <fingerprint>``) its ``cached_run_dir`` name, the hardware read from its summary.json rather than
    trained again; its summary and the evaluation reports under ``root/reports`` are rewritten to the new
    names, so they are reused too. Returns the renames (old name: new name); a second call finds nothing.

    A cut-off run of the old kind has no summary to say what trained it: it stays and is not resumed."""
    plan: dict[Path, Path] = {}
    for old in unrenamed_runs(root):
        summary = json.loads((old / rd.SUMMARY).read_text(encoding="utf-8"))
        device = load_toml(old / rd.CONFIG).get("device", "cpu")
        tag = summary.get("platform") or tag_from_description(summary.get("hardware") or "", device)
        plan[old] = old.with_name(f"{old.name}-{tag}")
    clash = next((new for new in plan.values() if new.exists()), None)
    if clash is not None:  # checked before anything moves, so a refusal leaves the cache as it was
        raise UserError(f"cannot rename a cached run to {clash}: that folder exists already")
    for old, new in plan.items():
        old.rename(new)
    renamed = {old.name: new.name for old, new in plan.items()}
    for path in [new / rd.SUMMARY for new in plan.values()] + sorted(Path(root).glob("reports/*/*/*")):
        if path.name in (rd.SUMMARY, "config.toml", "results.json"):
            text = original = path.read_text(encoding="utf-8")
            for old_name, new_name in renamed.items():
                text = re.sub(rf"(?<![\w-]){re.escape(old_name)}(?=[\"/])", new_name, text)
            if text != original:
                rd.write_text(path, text)
    return renamed


@dataclass
class LoadedRun:
    """A finished run's configuration, its task (data loaded) and its best model, ready to evaluate."""

    run_dir: Path
    config: RunConfig
    task: Task
    model: torch.nn.Module
    tau: float
    best: BestModel


def load_best(run_dir: Path, manager: PluginManager, task: Task | None = None,
              device: str | None = None) -> LoadedRun:
    """Load the best model of a finished run (weights only), with its task; ``task`` reuses one already built.

    ``device`` evaluates it there rather than where it trained: a run trained on a GPU is evaluated on a
    machine without one, and the device enters neither the run's fingerprint nor its figures' meaning."""
    config = saved_config(run_dir, manager.registry, {"device": device} if device else None)
    path = Path(run_dir) / rd.BEST
    best = BestModel.load(path)
    task = task or build_task(config, manager)
    model = task.build_model()
    return LoadedRun(Path(run_dir), config, task, model, best.load_into(model, path), best)
