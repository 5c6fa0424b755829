"""The live view: a progress bar within the epoch on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from tempsched import BatchProgress, EpochRecord, RunInfo
from tempsched.cli.live import RichReporter

INFO = RunInfo(run_dir=Path("runs/x"), preset="paper-default", members=2, epochs=3, start_epoch=0, data="toy",
               strategies=["fixed", "linear-up"], config={}, batches_per_epoch=4)
ROWS = [{"member": m, "strategy": s, "tau": 1.0, "train_loss": 9.0, "loss": 8.0 + m, "best": m == 1,
         "feedback": {"patience": 0}, "delta_tau": 0.0, "tau_next": 1.0} for m, s in ((1, "fixed"), (2, "linear-up"))]
RECORD = EpochRecord(epoch=0, epochs=3, best=0, rows=ROWS, train_seconds=1.0, eval_seconds=0.1, engine_seconds=0.1)


def _drive(terminal: bool) -> str:
    out = io.StringIO()
    reporter = RichReporter(Console(file=out, force_terminal=terminal, width=120))
    reporter.tempsched_run_start(INFO)
    for batch in range(1, 5):
        reporter.tempsched_batch_end(BatchProgress(epoch=0, epochs=3, batch=batch, batches=4,
                                                   examples_per_epoch=512))
    reporter.tempsched_epoch_end(RECORD)
    reporter.close()
    return out.getvalue()


def test_a_terminal_sees_progress_within_the_epoch() -> None:
    text = _drive(terminal=True)
    assert "epoch 1/3" in text and "4/4" in text and "img/s per member" in text and "4/12" in text


def test_a_log_gets_one_plain_line_per_epoch() -> None:
    text = _drive(terminal=False)
    assert "img/s" not in text and "\x1b[" not in text
    assert "epoch 1/3: best member 1 (fixed) tau 1 loss 9.000" in text
