"""Helpers shared by the benchmark scripts: machine description, appending to docs/benchmarks.md, and the
command line and rendered doc section of the resumable cell scripts (estimators_anchor.py, pbt_vs_grid.py).

Whatever a benchmark says about the machine comes from here, and is detected or measured on the machine
it runs on: the CPU's model name, logical CPU count and instruction-set flags (``/proc/cpuinfo``, and what
torch itself detects), the load average around the run. Nothing is assumed about the CPU kind.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar

import torch

from tempsched import rundir as rd
from tempsched.build import Built, build
from tempsched.errors import UserError
from tempsched.hardware import cpu_model_and_flags
from tempsched.plugins import PluginManager
from tempsched.session import EpochCallback, execute
from tempsched.spec import RunSpec, resume, saved_config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
SHARED_DATA = ROOT.parent / "shared" / "datasets"

# The /proc/cpuinfo flags that decide how fast fp32 and bf16 matrix products can run.
VECTOR_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni")
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


LOAD_AT_START = _load()  # 1-minute load average when the benchmark started (this module's import)


@dataclass(frozen=True)
class CPU:
    """What was detected about this machine's CPU."""

    model: str
    cpus: int  # logical CPUs the OS reports
    usable: int  # logical CPUs this process may run on
    flags: frozenset[str]  # all /proc/cpuinfo flags (empty where there is no /proc/cpuinfo)
    capability: str  # the widest vector ISA torch's kernels use here (torch.backends.cpu.get_cpu_capability)
    onednn_bf16: bool | None  # torch.ops.mkldnn._is_mkldnn_bf16_supported(), None where torch lacks it

    def present(self, names: tuple[str, ...]) -> list[str]:
        return [f for f in names if f in self.flags]

    def absent(self, names: tuple[str, ...]) -> list[str]:
        return [f for f in names if f not in self.flags]

    @property
    def has_bf16(self) -> bool:
        """bf16 instructions detected, by a cpuinfo flag or by oneDNN (torch's CPU kernels for bf16)."""
        return bool(self.present(BF16_FLAGS)) or bool(self.onednn_bf16)

    def flag_summary(self) -> str:
        """The relevant flags present and absent, e.g. 'flags avx avx2 fma, not avx512f avx512_bf16 ...'."""
        if not self.flags:
            return "no /proc/cpuinfo flags"
        names = VECTOR_FLAGS + BF16_FLAGS
        have, lack = self.present(names), self.absent(("avx512f",) + BF16_FLAGS)
        return f"flags {' '.join(have) or '(none of ' + ' '.join(names) + ')'}" + (
            f", not {' '.join(lack)}" if lack else "")

    def bf16_summary(self) -> str:
        """bf16 support in words, from the flags and oneDNN's own check."""
        onednn = {True: "yes", False: "no", None: "unknown"}[self.onednn_bf16]
        bf16 = self.present(BF16_FLAGS)
        return (f"bf16 flags: {' '.join(bf16) if bf16 else 'none'}; oneDNN bf16: {onednn}; "
                f"torch CPU capability {self.capability}")

    def describe(self) -> str:
        cpus = f"{self.cpus} logical CPUs" + (f" ({self.usable} usable)" if self.usable != self.cpus else "")
        onednn = {True: "yes", False: "no", None: "unknown"}[self.onednn_bf16]
        return (f"{self.model}, {cpus}, {self.flag_summary()}; oneDNN bf16: {onednn}, "
                f"torch CPU capability {self.capability}")


@functools.lru_cache(maxsize=1)
def cpu() -> CPU:
    """Detect the CPU: model name, logical CPUs and flags from /proc/cpuinfo, bf16 support as torch sees it."""
    model, flags = cpu_model_and_flags()
    try:
        onednn_bf16: bool | None = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn_bf16 = None
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        capability = "unknown"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return CPU(model, os.cpu_count() or 1, usable, flags, capability, onednn_bf16)


def load_summary() -> str:
    """The 1-minute load average when the benchmark started and now, against the logical CPU count."""
    now = _load()
    if LOAD_AT_START is None or now is None:
        return "load average not available"
    return f"load average {LOAD_AT_START:.2f} at start, {now:.2f} at end, on {cpu().cpus} logical CPUs"


def bf16_verdict(bf16: float, fp32: float, what: str = "bf16 matmul") -> str:
    """A sentence on bf16 speed from a measured bf16/fp32 ratio and the detected flags, nothing assumed."""
    c, ratio = cpu(), bf16 / fp32
    facts = f"{what} ran {ratio:.2f}x fp32 on this CPU ({c.bf16_summary()})"
    if not c.flags and c.onednn_bf16 is None:
        return f"{facts}: whether it has bf16 instructions could not be detected."
    if c.has_bf16 and ratio >= 1:
        return f"{facts}: bf16 instructions were detected, and bf16 ran faster than fp32."
    if not c.has_bf16 and ratio < 1:
        return f"{facts}: no bf16 instructions were detected, and bf16 ran slower than fp32."
    if c.has_bf16:
        return f"{facts}: bf16 instructions are detected, yet bf16 ran slower than fp32 here."
    return f"{facts}: no bf16 instruction was detected, yet bf16 ran at least as fast as fp32 here."


def relative(text: str) -> str:
    """``text`` with every absolute path written relative to the repository root (e.g. ../shared/datasets)."""
    return re.sub(r"(?<![^\s=`'\"(])/[^\s`'\",:;)|]+",
                  lambda m: os.path.relpath(m.group(0), ROOT), text)


def machine(load: bool = True) -> str:
    """CPU (model, logical CPUs, flags, bf16 support), GPU, torch and its threads, Python, and the load average."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu().describe()}; {gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"Python {platform.python_version()}" + (f"; {load_summary()}" if load else ""))


def command() -> str:
    return relative("python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]))


def append_section(title: str, body: str) -> None:
    """Append a dated section (title, command, machine, body) to docs/benchmarks.md."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"\n## {title}\n\n- date: {stamp}\n- command: `{command()}`\n- machine: {machine()}\n\n"
            f"{relative(body.rstrip())}\n")
    with DOC.open("a", encoding="utf-8") as fh:
        fh.write(text)
    print(text)


def header() -> None:
    """Print the machine line first, so that a run's output says where it ran before any figure."""
    print(f"machine: {machine(load=False)}", flush=True)


def train_to(manager: PluginManager, run_dir: Path, new: Callable[[], RunSpec], overrides: Mapping[str, Any],
             on_epoch: EpochCallback | None = None) -> None:
    """Train the run in ``run_dir``: resumed from its checkpoint with ``overrides`` (dotted keys such as
    ``epochs`` and ``performance.threads``) where there is one, as ``tempsched run --resume`` does (its saved
    configuration; its spec moved along), else a new run of the spec ``new()``; a folder killed before its
    first checkpoint is cleared first. A benchmark cell killed anywhere goes on from here."""
    if (run_dir / rd.STATE).is_file():
        spec, config = resume(run_dir, manager.registry, dict(overrides))
        execute(config, manager, run_dir, resume=True, on_epoch=on_epoch, spec=spec)
        return
    if run_dir.is_dir():
        rd.RunDir(run_dir).discard_unstarted()
    spec = new()
    execute(spec.resolve(manager.registry), manager, run_dir, on_epoch=on_epoch, spec=spec)


def last_weights(manager: PluginManager, run_dir: Path) -> Built:
    """The run's population holding its last checkpoint's weights (state.pt, loaded through the population's
    own ``load_state_dict``), not best.pt's: what a benchmark measures at the end of its budget."""
    state = rd.load_torch(run_dir / rd.STATE, rd.STATE_FORMAT)
    built = build(saved_config(run_dir, manager.registry), manager)
    built.population.load_state_dict(state["population"])
    return built


def add_cell_arguments(parser: argparse.ArgumentParser, *, epochs: int, doc: str, results: Path, cache: Path) -> None:
    """The options every resumable cell script takes: which cells, list or render only, the budget (epochs,
    images), threads, where the data, the results and the cells' runs are."""
    parser.add_argument("--cells", default="", help="comma-separated cell names (default: every cell not done)")
    parser.add_argument("--list", action="store_true", help="list the cells, their budget and state")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite {doc} from the results")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"epochs per model (default {epochs})")
    parser.add_argument("--train-size", type=int, default=0, help="training images (default 0: all; a held-out split comes out of them)")
    parser.add_argument("--test-size", type=int, default=0, help="test images (default 0: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA, help="MNIST's folder (default ../shared/datasets)")
    parser.add_argument("--out", type=Path, default=results, help=f"results folder (default {relative(str(results))})")
    parser.add_argument("--cache", type=Path, default=cache, help=f"the cells' runs (default {relative(str(cache))})")


def check_cell_arguments(args: argparse.Namespace) -> None:
    """Refuse a budget or thread count that cannot train, in one line."""
    if args.epochs < 1 or args.train_size < 0 or args.test_size < 0 or args.threads < 1:
        raise UserError("--epochs and --threads must be positive, --train-size and --test-size 0 (all) or positive")


class _HasName(Protocol):
    @property
    def name(self) -> str: ...


Named = TypeVar("Named", bound=_HasName)


def pick_cells(names: str, cells: Sequence[Named]) -> list[Named]:
    """The cells a comma-separated ``--cells`` names, in its order (all of them for an empty string); an
    unknown name is refused in one line that lists the known ones."""
    by_name = {c.name: c for c in cells}
    wanted = [n for n in names.split(",") if n]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise UserError(f"unknown cell(s) {', '.join(unknown)} (cells: {', '.join(by_name)})")
    return [by_name[n] for n in wanted] or list(cells)


def replace_section(doc: Path, begin: str, end: str, section: str) -> None:
    """Replace the generated part of ``doc``, from the ``begin`` marker to the ``end`` marker (``section``
    starts and ends with them), leaving the hand-written text around it."""
    text = doc.read_text(encoding="utf-8")
    start, stop = text.index(begin), text.index(end) + len(end)
    rd.write_text(doc, text[:start] + section + text[stop:])
