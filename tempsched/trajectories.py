"""What a run's temperatures did: its policy (``policy.json``) and a picture of it (``trajectories.png``).

The policy is the temperature each epoch's best member trained at, with that member and its strategy:
the schedule the population discovered. The ``replay`` schedule plays it back on a single model, which
separates "the right temperatures" from "selection among members". Both files are rebuilt from
metrics.jsonl, so after a resume they cover the whole run, never an epoch the state does not include.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from tempsched import rundir as rd
from tempsched.errors import UserError

POLICY, TRAJECTORIES = "policy.json", "trajectories.png"
POLICY_FORMAT = "tempsched-policy-1"


def policy_from_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per epoch, in order: the best member's training temperature, index and strategy."""
    best = sorted((r for r in rows if r.get("best")), key=lambda r: r["epoch"])
    return [{"epoch": r["epoch"], "tau": r["tau"], "member": r["member"], "strategy": r["strategy"]} for r in best]


def write_policy(run_dir: Path, rows: Sequence[dict[str, Any]]) -> None:
    """policy.json from the run's metrics rows, atomically (JSON floats read back bit for bit)."""
    text = json.dumps({"format": POLICY_FORMAT, "epochs": policy_from_rows(rows)}, indent=1)
    rd.write_text(Path(run_dir) / POLICY, text + "\n")


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
    """trajectories.png: each member's tau and selection loss per epoch, the best member marked; its name."""
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
    for ax, key in ((ax_tau, "tau"), (ax_loss, "loss")):
        ax.plot([r["epoch"] for r in best], [r[key] for r in best], linestyle="none", marker="*",
                markersize=11, color="black", label="best member" if key == "tau" else None)
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

