"""Worker processes of a study: spawned, and dying with the process that spawned them.

A worker left behind by a killed ``tempsched tune`` would go on training trials that nobody waits
for. On Linux each worker asks the kernel for SIGTERM when its parent dies (``orphans.die_with_parent``).
The kernel ties the request to the spawning *thread*: start workers from a thread that lives as long
as they should.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.process import BaseProcess
from typing import Any, Callable

from tempsched.orphans import die_with_parent


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
