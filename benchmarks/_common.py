"""Helpers shared by the benchmark scripts: machine description and appending to docs/benchmarks.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
SHARED_DATA = ROOT.parent / "shared" / "datasets"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")


def command() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])


def append_section(title: str, body: str) -> None:
    """Append a dated section (title, command, machine, body) to docs/benchmarks.md."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"\n## {title}\n\n- date: {stamp}\n- command: `{command()}`\n- machine: {machine()}\n\n"
            f"{body.rstrip()}\n")
    with DOC.open("a", encoding="utf-8") as fh:
        fh.write(text)
    print(text)
