"""Inputs too small to split: every command that trains either trains with finite losses or says one line.

The rule (``tempsched.gsvae.data.validation_size``): the validation split is ``--val-size`` images, else
max(1, min(10%, 5000)) of the training images left after ``--train-size`` and ``--exclude-classes``, and at
least one image must stay to train on. ``run``, ``tune`` and the evaluations that train all load their data
through it, so each is checked here from its command line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from test_cli import cli

TINY_MODEL = ["--members", "2", "--epochs", "1", "--threads", "1", "--batch-size", "64",
              "--option", "z1=[8,4]", "--option", "z2=[4,4]", "--option", "channels=[8,16]"]
ALL_BUT_NINES = ["--exclude-classes", "0,1,2,3,4,5,6,7,8"]
# The sample's first 11 training images hold one 9, its first 30 more than one.
ONE_NINE, SOME_NINES = ["--train-size", "11", *ALL_BUT_NINES], ["--train-size", "30", *ALL_BUT_NINES]

# command, its own arguments, the data options; None: it trains, else the one error line holds this text
CASES = [
    ("run", [], ["--train-size", "2"], None),
    ("run", [], ["--train-size", "5"], None),
    ("run", [], ["--train-size", "9"], None),
    ("run", [], SOME_NINES, None),
    ("run", [], ["--train-size", "5", "--select-on", "train"], None),
    ("run", [], ["--train-size", "20", "--val-size", "0", "--select-on", "val"], None),
    ("run", [], ["--train-size", "5", "--test-size", "0"], None),
    ("run", [], ["--train-size", "20", "--val-size", "19"], None),
    ("run", [], ["--train-size", "1"], "has 1 training image(s), but a run needs at least 2"),
    ("run", [], ["--train-size", "1", "--select-on", "train"], "has 1 training image(s), but a run needs at least 2"),
    ("run", [], ONE_NINE, "without classes [0, 1, 2, 3, 4, 5, 6, 7, 8] has 1 training image(s)"),
    ("run", [], ["--exclude-classes", "0,1,2,3,4,5,6,7,8,9"], "has 0 training image(s)"),
    ("run", [], ["--train-size", "20", "--val-size", "20"], "val_size 20 leaves no training images"),
    ("tune", ["--trials", "1"], ["--train-size", "5"], None),
    ("tune", ["--trials", "1"], ["--train-size", "1"], "has 1 training image(s), but a run needs at least 2"),
    ("tune", ["--trials", "1"], ONE_NINE, "has 1 training image(s), but a run needs at least 2"),
    ("eval", ["n-sweep", "--set", "members=[1]"], ["--train-size", "9"], None),
    ("eval", ["n-sweep", "--set", "members=[1]"], ["--train-size", "1"], "has 1 training image(s)"),
    ("eval", ["unseen"], ["--train-size", "1"], "without classes [2, 3] has 1 training image(s)"),
]


def _trained_rows(command: str, out: Path, cache: Path) -> list[dict]:
    """The metrics rows of every run the command trained (an evaluation trains into its cache)."""
    files = sorted((cache if command == "eval" else out).rglob("metrics.jsonl"))
    rows = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    assert rows, f"{command} trained nothing"
    return rows


@pytest.mark.parametrize("command,own,data,error", CASES,
                         ids=[" ".join([c, *(o[:1] if c == "eval" else []), *d]) for c, o, d, _ in CASES])
def test_an_input_too_small_to_split_trains_or_is_one_line(command: str, own: list[str], data: list[str],
                                                           error: str | None, tmp_path: Path, capsys) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    where = ["--cache", str(cache)] if command == "eval" else []
    code, stdout, stderr = cli(command, *own, *TINY_MODEL, *data, *where, "--out", str(out), capsys=capsys)
    if error is None:
        assert code == 0, stderr
        rows = _trained_rows(command, out, cache)
        assert all(isinstance(r[k], float) and math.isfinite(r[k]) for r in rows for k in ("loss", "train_loss"))
        return
    lines = [ln for ln in (stdout + stderr).splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and error in lines[0], stdout + stderr
    assert "Traceback" not in stderr
    assert not out.exists()
