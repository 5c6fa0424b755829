"""Gates: a test holds another process at a known point of a run, acts, then lets it go on.

The held process arrives at gate NAME in FOLDER by creating ``FOLDER/NAME.arrived`` and waits until the
test creates ``FOLDER/NAME.open``. So "after epoch 1" or "in the middle of epoch 2" means that on a
machine of any speed, where a sleep before acting would guess how far a run got.

Loaded as the plugin ``test-gate`` (``plugin_env`` makes a ``tempsched`` subprocess load it through
its entry point, like an installed package), this module holds the process that calls the lifecycle
hooks (process 0 of a run spread over processes) at the middle batch of the epochs it is told, and
writes how long each epoch took as the engine measured it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from conftest import python_path, wait_for

from tempsched import BatchProgress, EpochRecord, hookimpl

TESTS = Path(__file__).parent
ENV_FOLDER = "TEMPSCHED_TEST_GATES"
ENV_EPOCHS = "TEMPSCHED_TEST_GATE_EPOCHS"


class Gate:
    """One gate, ``name`` in ``folder``: its two files are all the held process and the test share."""

    def __init__(self, folder: Path, name: str) -> None:
        self.arrived = folder / f"{name}.arrived"
        self.opened = folder / f"{name}.open"

    def hold(self) -> None:
        """In the held process: say it is here, and wait until the test opens the gate."""
        self.arrived.touch()
        wait_for(self.opened.exists, f"the test to open {self.opened}")

    def reached(self, process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> bool:
        """In the test: wait until ``process`` is held here or has ended; whether it is held here."""
        wait_for(lambda: self.arrived.exists() or process.poll() is not None, f"a process at {self.arrived}")
        return self.arrived.exists()

    def open(self) -> None:
        """In the test: let the held process go on (a process that has not arrived yet passes without a stop)."""
        self.opened.touch()


def epoch_gate(folder: Path, epoch: int) -> Gate:
    """The gate in the middle of ``epoch`` (0-based)."""
    return Gate(folder, f"epoch-{epoch}")


def epoch_seconds(folder: Path, epoch: int) -> float:
    """How long epoch ``epoch`` (0-based) of the held run took: training, selection and the engine's own work,
    which includes the time it was held and waited for the other processes."""
    return float((folder / f"epoch-{epoch}.seconds").read_text())


def plugin_env(folder: Path, epochs: Iterable[int]) -> dict[str, str]:
    """Environment variables under which a ``tempsched`` subprocess loads this module as plugin ``test-gate``
    (and no other entry point), held in the middle of ``epochs``: a distribution's metadata in ``folder``
    declares the entry point, and PYTHONPATH finds it as it finds an installed package's."""
    dist = folder / "tempsched_test_gate-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tempsched-test-gate\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[tempsched]\ntest-gate = {__name__}\n")
    return {"PYTHONPATH": python_path(folder, TESTS), "TEMPSCHED_PLUGINS": "test-gate", ENV_FOLDER: str(folder),
            ENV_EPOCHS: ",".join(map(str, epochs))}


@hookimpl
def tempsched_batch_end(progress: BatchProgress) -> None:
    if progress.batch == max(1, progress.batches // 2) and str(progress.epoch) in os.environ[ENV_EPOCHS].split(","):
        epoch_gate(Path(os.environ[ENV_FOLDER]), progress.epoch).hold()


@hookimpl
def tempsched_epoch_end(record: EpochRecord) -> None:
    seconds = record.train_seconds + record.eval_seconds + record.engine_seconds
    (Path(os.environ[ENV_FOLDER]) / f"epoch-{record.epoch}.seconds").write_text(repr(seconds))
