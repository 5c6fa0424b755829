"""benchmarks/estimators_anchor.py: a cell measures each stop once, resumes where it was cut off with the
same numbers, refuses another budget in one line; verdicts and the doc's tables come from the results alone."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tempsched.errors import UserError
from tempsched.plugins import PluginManager

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("estimators_anchor", ROOT / "benchmarks" / "estimators_anchor.py")
assert _spec is not None and _spec.loader is not None
anchor = importlib.util.module_from_spec(_spec)
sys.modules["estimators_anchor"] = anchor  # before it runs: its dataclasses look their module up
_spec.loader.exec_module(anchor)

BUDGET = anchor.Budget(6, 0, 0)  # stops at 5 and 6; the mnist fixture's folder is small
CELL = anchor.Cell("st-gs", 0)


def _run_cell(tmp_path: Path, mnist: Path, name: str) -> dict:
    anchor.run_cell(PluginManager(), CELL, BUDGET, tmp_path / name, tmp_path / f"{name}-runs", 1, mnist)
    result = anchor.load_result(tmp_path / name, CELL, BUDGET)
    assert result is not None
    return result


def test_a_cell_measures_each_stop_once_and_a_cut_off_cell_resumes_with_the_same_numbers(tmp_path: Path,
                                                                                        mnist: Path) -> None:
    whole = _run_cell(tmp_path, mnist, "whole")
    assert set(whole["points"]) == {"5", "6"}
    metrics = tmp_path / "whole-runs" / CELL.name / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(6))
    assert whole["points"]["6"]["train"] == rows[-1]["train_loss"]  # the running mean over the last epoch
    before = metrics.read_bytes()
    assert _run_cell(tmp_path, mnist, "whole") == whole  # done: nothing trained again
    assert metrics.read_bytes() == before

    # Cut off after training to its first stop, before measuring it: it measures, then resumes to the next
    # (a new run in that folder would be refused, so equal numbers here mean a bit-exact resume).
    anchor._train_to(PluginManager(), CELL, BUDGET, 5, tmp_path / "cut-runs" / CELL.name, 1, mnist)
    cut = _run_cell(tmp_path, mnist, "cut")
    assert _figures(cut) == _figures(whole)


def _figures(result: dict) -> dict:
    """A result's measured points without their timings."""
    return {stop: {k: v for k, v in point.items() if k != "train_seconds"} for stop, point in result["points"].items()}


def test_a_cell_measured_on_another_budget_is_one_line(tmp_path: Path, mnist: Path) -> None:
    _run_cell(tmp_path, mnist, "out")
    with pytest.raises(UserError, match="was measured with budget"):
        anchor.load_result(tmp_path / "out", CELL, anchor.Budget(160, 0, 0))


def test_verdicts_say_met_or_the_size_of_the_miss() -> None:
    assert anchor.verdict([], 99.8, 0.34) == "not run"
    assert anchor.verdict([100.5, 100.7], 99.8, 0.34).startswith("met: +0.80 nats (tolerance 1.00")
    assert anchor.verdict([101.0], 99.8, 0.34).startswith("not met: +1.20 nats")
    assert anchor.verdict([97.0], 98.5, 0.8).startswith("met: -1.50 nats (tolerance 1.60")


def test_the_doc_tables_come_from_full_length_results_only(tmp_path: Path) -> None:
    assert anchor.render(tmp_path).count("not run") == 2 * 4 + 4 * 2  # four in each final row, the curve's eight
    full = {"epochs": 160, "train_size": 0, "test_size": 0}
    points = {str(e): {"train": 100.0 + e / 1000, "test": 102.0, "test_hard": 102.0, "train_seconds": 3600.0}
              for e in (5, 10, 20, 40, 160)}
    for seed, budget in ((0, full), (1, full), (2, {**full, "epochs": 6})):  # seed 2: a smoke test's budget
        (tmp_path / f"reinmax-seed{seed}.json").write_text(json.dumps(
            {"estimator": "reinmax", "seed": seed, "tau": 1.3, "budget": budget, "points": points}))
    text = anchor.render(tmp_path)
    assert "| reinmax (1.3) | 2 of 3 | 100.16 ± 0.00 | 98.50 ± 0.41 | not met: +1.66 nats" in text
    assert "| 5 | 145.8 | not run | 102.00 ± 0.00 (2 seeds) |" in text


def test_anchor_main_refuses_bad_input_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert anchor.main(["--cells", "st-gs-seed0,nope", "--list"]) == 2
    assert anchor.main(["--epochs", "0", "--list"]) == 2
    assert anchor.main(["--threads", "0", "--list"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.startswith("error: ") for line in err] == [True] * 3
    assert "unknown cell(s) nope (cells: st-gs-seed0," in err[0]
