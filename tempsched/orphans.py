"""Processes that end when the process that started them dies, also by kill -9, which runs no clean-up.

On Linux a process asks the kernel for a signal when its parent dies (``PR_SET_PDEATHSIG``), then checks
that its parent is still the one that started it (it may have died before the request). The kernel ties
the request to the parent's *thread* that started the process, and signals again as the parent's process
passes its children on, so start such processes from a thread that lives as long as they should, and let
a handler act on the first signal only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent: int, sig: signal.Signals = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process once ``parent`` is gone (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request was made
        os.kill(os.getpid(), sig)
