"""What a run's temperatures did: its policy (``policy.json``), its lineage (``lineage.json``) and a
picture of them (``trajectories.png``).

The lineage says, epoch by epoch, whose state each member went on from (``copied_from`` in the rows;
under Algorithm 1's plan, every member but the best went on from the best). The policy follows the last
epoch's best member back through it: for each epoch, the temperature its ancestor trained at, with that
member and its strategy: the schedule the population discovered. Under Algorithm 1 that ancestor is each
epoch's best member. The ``replay`` schedule plays it back on a single model, which separates "the right
temperatures" from "selection among members". The files are rebuilt from metrics.jsonl, so after a
resume they cover the whole run, never an epoch the state does not include.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Sequence

from tempsched import rundir as rd
from tempsched.config import RunConfig
from tempsched.errors import UserError
from tempsched.spec import RunSpec

POLICY, LINEAGE, TRAJECTORIES = "policy.json", "lineage.json", "trajectories.png"
POLICY_FORMAT, LINEAGE_FORMAT = "tempsched-policy-1", "tempsched-lineage-1"


def copied_from(row: dict[str, Any], best: int) -> int:
    """The member whose state the row's member went on from after the row's epoch (itself if it kept its
    own); ``best``: the epoch's best member, whom every other member copies under Algorithm 1's plan, the
    plan of every row without ``copied_from``."""
    if "copied_from" in row:
        return row["member"] if row["copied_from"] is None else row["copied_from"]
    return row["member"] if row["best"] else best


def _by_epoch(rows: Sequence[dict[str, Any]]) -> list[dict[int, dict[str, Any]]]:
    """The rows of each epoch in order, by member."""
    epochs: list[dict[int, dict[str, Any]]] = [{} for _ in range(1 + max((r["epoch"] for r in rows), default=-1))]
    for r in rows:
        epochs[r["epoch"]][r["member"]] = r
    return epochs


def _best_of(epoch: dict[int, dict[str, Any]]) -> int:
    return next(member for member, row in epoch.items() if row["best"])


def policy_from_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per epoch, in order: the temperature, index and strategy of the last epoch's best member's
    ancestor in that epoch (under Algorithm 1, that epoch's best member)."""
    epochs = _by_epoch(rows)
    if not epochs:
        return []
    member, out = _best_of(epochs[-1]), []
    for e in range(len(epochs) - 1, -1, -1):
        if e < len(epochs) - 1:
            member = copied_from(epochs[e][member], _best_of(epochs[e]))  # whose state it went on from
        r = epochs[e][member]
        out.append({"epoch": e, "tau": r["tau"], "member": member, "strategy": r["strategy"]})
    return out[::-1]


def lineage_from_rows(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """lineage.json's content: per epoch, whose state each member that did not keep its own took (``from``:
    member -> source) and who retired; and the final best member's ancestors (the policy's members)."""
    epochs = []
    for e, epoch in enumerate(_by_epoch(rows)):
        best = _best_of(epoch)
        moved = {str(m): copied_from(r, best) for m, r in epoch.items() if copied_from(r, best) != m}
        epochs.append({"epoch": e, "best": best, "from": moved,
                       "retired": [m for m, r in epoch.items() if r.get("retired")]})
    return {"format": LINEAGE_FORMAT, "epochs": epochs, "best_lineage": [p["member"] for p in policy_from_rows(rows)]}


def write_policy(run_dir: Path, rows: Sequence[dict[str, Any]]) -> None:
    """policy.json and lineage.json from the run's metrics rows, atomically (JSON floats read back bit for bit)."""
    text = json.dumps({"format": POLICY_FORMAT, "epochs": policy_from_rows(rows)}, indent=1)
    rd.write_text(Path(run_dir) / POLICY, text + "\n")
    rd.write_text(Path(run_dir) / LINEAGE, json.dumps(lineage_from_rows(rows), indent=1) + "\n")


def read_policy(path: Path) -> list[dict[str, Any]]:
    """The epochs of a policy (``path``: a run directory or its policy.json), checked; one-line errors."""
    path = Path(path)
    file = path / POLICY if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"no policy at {path}: give a run directory (with {POLICY}) or a {POLICY} file")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        epochs = data["epochs"] if data.get("format") == POLICY_FORMAT else None
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, KeyError, TypeError):
        epochs = None
    if not isinstance(epochs, list) or not epochs:
        raise UserError(f"{file} is not a tempsched policy (or holds no epoch)")
    for k, entry in enumerate(epochs):
        if not isinstance(entry, dict) or entry.get("epoch") != k:
            raise UserError(f"{file}: entry {k + 1} is not epoch {k}")
        tau = entry.get("tau")
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
            raise UserError(f"{file}: epoch {k}'s tau is {tau!r}, not a positive number")
    return epochs


def plot_trajectories(run_dir: Path, rows: Sequence[dict[str, Any]]) -> str:
    """trajectories.png: each member's tau and selection loss per epoch, the best member marked, and where
    a plan other than Algorithm 1's copied into a member (a triangle) or retired it (a cross); its name."""
    import matplotlib

    matplotlib.use("Agg")  # no display: runs go on servers and in tests
    import matplotlib.pyplot as plt

    fig, (ax_tau, ax_loss) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for member in sorted({r["member"] for r in rows}):
        mine = sorted((r for r in rows if r["member"] == member), key=lambda r: r["epoch"])
        label = f"{member}: {mine[0]['strategy']}"
        ax_tau.plot([r["epoch"] for r in mine], [r["tau"] for r in mine], marker=".", label=label)
        ax_loss.plot([r["epoch"] for r in mine], [r["loss"] for r in mine], marker=".")
    best = sorted((r for r in rows if r.get("best")), key=lambda r: r["epoch"])
    copies = [r for r in rows if r.get("copied_from") is not None]
    retired = [r for r in rows if r.get("retired")]
    for ax, key in ((ax_tau, "tau"), (ax_loss, "loss")):
        ax.plot([r["epoch"] for r in best], [r[key] for r in best], linestyle="none", marker="*",
                markersize=11, color="black", label="best member" if key == "tau" else None)
        for marked, marker, label in ((copies, "v", "copied another"), (retired, "x", "retired")):
            if marked:
                ax.plot([r["epoch"] for r in marked], [r[key] for r in marked], linestyle="none", marker=marker,
                        markersize=8, color="red", label=label if key == "tau" else None)
    taus = [r["tau"] for r in rows]
    if taus and min(taus) > 0 and max(taus) / min(taus) > 20:
        ax_tau.set_yscale("log")
    ax_tau.set_ylabel("tau trained at")
    ax_loss.set_ylabel("selection loss")
    ax_loss.set_xlabel("epoch")
    ax_tau.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    target = Path(run_dir) / TRAJECTORIES
    with rd.atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return TRAJECTORIES


def replay_spec(source_run_dir: Path, source: RunConfig) -> RunSpec:
    """The spec of a single model replaying the policy of ``source_run_dir`` (whose configuration is
    ``source``) with the shipped ``replay`` preset: the source's task and its options, epochs, seed,
    selection split, device and temperature bounds; tau.initial = the policy's first temperature."""
    source_run_dir = Path(source_run_dir).resolve()
    taus = [entry["tau"] for entry in read_policy(source_run_dir)]
    if len(taus) < source.epochs:
        raise UserError(f"{source_run_dir} has recorded {len(taus)} of its {source.epochs} epochs: finish it "
                        "(tempsched run --resume) before replaying it")
    return RunSpec({
        "plugin": "replay", "task": source.task, "epochs": source.epochs, "seed": source.seed,
        "select_on": source.select_on, "device": source.device,
        "performance": dataclasses.asdict(source.performance), "task_options": dict(source.task_options),
        "tau": {"initial": taus[0], "min": source.tau.min, "max": source.tau.max},
        "params": {"replay": {"policy": str(source_run_dir)}},
    })
