"""A run in a process of its own, for the concurrency tests in test_rundir.py.

usage: python rundir_worker.py RUN_DIR EPOCHS PAUSE_AFTER

Trains the tiny GS-VAE of ``conftest.tiny_gsvae`` (2 members, 1 thread) into RUN_DIR. After epoch
PAUSE_AFTER (1-based) is saved it waits at the gate named like RUN_DIR beside it (``gate.Gate``), so a
test can act while the run holds its directory; then it trains to EPOCHS.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).parent))

from conftest import tiny_gsvae  # noqa: E402
from gate import Gate  # noqa: E402

from tempsched.plugins import PluginManager  # noqa: E402
from tempsched.session import execute  # noqa: E402


def pause_after(epoch: int, run_dir: Path) -> Callable[[Any], None]:
    """An ``on_epoch`` callback that holds the run after ``epoch`` until the test says go."""
    gate = Gate(run_dir.parent, run_dir.name)

    def on_epoch(record: Any) -> None:
        if record.epoch + 1 == epoch:
            gate.hold()

    return on_epoch


def main(run_dir: Path, epochs: int, pause: int) -> None:
    manager = PluginManager()
    config = tiny_gsvae(manager, members=2, epochs=epochs, performance={"threads": 1})
    execute(config, manager, run_dir, on_epoch=pause_after(pause, run_dir))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
