"""Worker processes of a study: spawned, and dying with the process that spawned them.

A worker left behind by a killed ``tempsched tune`` would go on training trials that nobody waits
for. On Linux each worker asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``)
and then checks that the parent is still the one that spawned it (it may have died before the
request). The kernel ties the request to the spawning *thread*: start workers from a thread that
lives as long as they should.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from multiprocessing.process import BaseProcess
from typing import Any, Callable

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def start(target: Callable[..., None], args: tuple[Any, ...], name: str) -> BaseProcess:
    """Start ``target(*args)`` in a new process that ends when this one does.

    ``spawn``, not ``fork``: forking after torch's threads have started is unsafe; so ``target`` and
    ``args`` must be picklable (``target`` a module-level function).
    """
    process = multiprocessing.get_context("spawn").Process(target=_main, args=(os.getpid(), target, args), name=name)
    process.start()
    return process


def _main(parent: int, target: Callable[..., None], args: tuple[Any, ...]) -> None:
    die_with_parent(parent)
    target(*args)


def die_with_parent(parent: int) -> None:
    """Have the kernel end this process with SIGTERM once ``parent`` is gone (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)
