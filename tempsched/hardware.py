"""What a run or a benchmark ran on, as detected on this machine: never assumed, so a recorded figure
names the CPU or GPU that produced it."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch


@functools.cache
def cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """The CPU's model name and instruction-set flags from /proc/cpuinfo (the platform's name where absent)."""
    model, flags = "", frozenset[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key == "flags" and not flags:
                flags = frozenset(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown CPU", flags


def describe(device: str) -> str:
    """One line: the GPU's name for a CUDA device (``cuda`` or ``cuda:K``, as a task's resolved device
    prints), else the CPU's model and torch's thread count."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA, torch {torch.__version__})"
    threads = torch.get_num_threads()
    return f"{cpu_model_and_flags()[0]}, {threads} torch thread{'s' * (threads != 1)} (torch {torch.__version__})"
