"""What a run or a benchmark ran on, as detected on this machine: never assumed, so a recorded figure
names the CPU or GPU that produced it."""

from __future__ import annotations

import functools
import platform
import re
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


# The widest vector instruction set a CPU offers, first match wins: torch's CPU kernels (oneDNN, MKL, its own
# vectorised loops) pick their code path by it, and with it the order of a sum's additions, so two CPUs that
# differ here round a run's figures differently.
_ISA_LEVELS = (("amx_tile", "amx"), ("avx512f", "avx512"), ("avx2", "avx2"), ("sse4_2", "sse4"), ("asimd", "neon"))


def _slug(text: str) -> str:
    """Lower-case letters, digits, dots and single dashes: a piece of a folder name."""
    text = re.sub(r"\((r|tm)\)|@.*$", "", text.lower())
    return re.sub(r"[^a-z0-9.]+", "-", text).strip("-")[:40].strip("-")


def isa_level(flags: frozenset[str]) -> str:
    """The widest instruction set of ``_ISA_LEVELS`` among ``flags`` ("" when none is known)."""
    return next((name for flag, name in _ISA_LEVELS if flag in flags), "")


def _cuda(device: str) -> bool:
    """Whether ``device`` (``cpu``, ``cuda``, ``cuda:K`` or ``auto``) trains on a GPU on this machine."""
    return (device.startswith("cuda") or device == "auto") and torch.cuda.is_available()


def platform_tag(device: str) -> str:
    """What decides a run's rounding besides its configuration, as a folder-name suffix: the device kind
    (the GPU's name, or the CPU's model and instruction set) and torch's version, e.g.
    ``cuda-nvidia-h200-torch2.11.0-cu130`` or ``cpu-amd-epyc-avx512-torch2.14.1-cu130``. Cached runs carry
    it in their names, so a run trained elsewhere never shares a name with one trained here."""
    if _cuda(device):
        kind = f"cuda-{_slug(torch.cuda.get_device_name(torch.device('cuda' if device == 'auto' else device)))}"
    else:
        model, flags = cpu_model_and_flags()
        kind = "-".join(filter(None, ("cpu", _slug(model), isa_level(flags))))
    return f"{kind}-torch{_slug(torch.__version__)}"


def tag_from_description(hardware: str, device: str) -> str:
    """``platform_tag`` of a run from the line ``describe`` wrote into its summary (before summaries kept
    the tag itself). Such a line names no instruction set, so a CPU tag has none; a summary without the
    line gives ``<device>-unrecorded``."""
    gpu = re.fullmatch(r"(.+) \(CUDA, torch ([^)]+)\)", hardware)
    cpu = re.fullmatch(r"(.+), \d+ torch threads? \(torch ([^)]+)\)", hardware)
    if gpu:
        return f"cuda-{_slug(gpu[1])}-torch{_slug(gpu[2])}"
    if cpu:
        return f"cpu-{_slug(cpu[1])}-torch{_slug(cpu[2])}"
    return f"{_slug(device)}-unrecorded"
