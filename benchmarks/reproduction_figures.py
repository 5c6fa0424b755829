"""The numbers of docs/reproduction.md's hand-written text, and the intervals on its accuracies.

The commentary (``benchmarks/reproduction_notes.md``) types no measured number: it writes a placeholder,
``{{name:arg|arg|...}}``, and ``render`` replaces it with the figure computed from the results the cells kept
under ``docs/reproduction/`` (``<cell>/<evaluation>/results.json``, ``<cell>/run/summary.json``). A rerun that
changes a result changes the sentence with it, so the text and the tables under it cannot disagree. A
placeholder that names a missing table, row or column stops the doc writer with its text.

Placeholders (``SRC`` is ``<cell>/<evaluation>``, ``TABLE`` a key of its results.json; a ``ROW`` is matched
against the row's text values, exact before prefix, ``&`` joining parts that must all match, ``#N`` the N-th row):

- ``v:SRC|TABLE|ROW|COLUMN[|FORMAT]`` the value (``.4g`` unless FORMAT says otherwise);
- ``pct:SRC|TABLE|ROW|BASE|COLUMN`` ROW's relative change against BASE (``-22.0%``);
- ``times:SRC|TABLE|ROW|BASE|COLUMN[|BASE_COLUMN]`` ROW's COLUMN over BASE's (BASE_COLUMN) (``2.7``);
- ``span:SRC|TABLE|ROWS|COLUMNS[|FORMAT]`` the smallest and largest value over the rows whose text values,
  joined by `` | ``, the regular expression ROWS finds, and the columns COLUMNS matches whole (``2.0-5.9``);
- ``rows:SRC|TABLE`` how many rows the table has;
- ``argmin:SRC|TABLE|KEY|COLUMN[|FORMAT]`` KEY's value in the row with the smallest COLUMN (where a sweep's
  minimum lies: the decoding tau of the lowest soft MSE);
- ``diff:SRC|TABLE|COLUMN|BASE|max`` (or ``min``) the largest (smallest) COLUMN - BASE over the table's rows;
- ``acc:SRC|TABLE|ROW|COLUMN`` an accuracy of an attacks report with its 95% Wilson interval;
- ``seeds:CELL|LABEL|COLUMN`` mean ± sample sd over the seeds of a labelled group of runs;
- ``seedcmp:CELL|LABEL|BASE|COLUMN`` LABEL's mean against BASE's: relative change and the difference in
  standard errors (Welch), the measure the verdict scale uses;
- ``run:CELL|KEY[|FORMAT]`` a field of the cell's kept run summary (``best_tau``, ``wall_seconds``).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tempsched.intervals import wilson

PLACEHOLDER = re.compile(r"\{\{([a-z]+):([^{}]*)\}\}")


def interval_text(value: float, n: int, scale: float, digits: int | None = None, unit: str = "") -> str:
    """``value`` (a fraction of ``n`` images times ``scale``: 100 for percent, 1 for a fraction) with its
    Wilson interval, to ``digits`` decimals (default 1 for percent, 3 for a fraction)."""
    low, high = wilson(round(value / scale * n), n)
    digits = (1 if scale == 100 else 3) if digits is None else digits
    return f"{value:.{digits}f}{unit} ({low * scale:.{digits}f}-{high * scale:.{digits}f})"


# Columns the evaluations have renamed since some kept results were written: read under their new names.
RENAMED_COLUMNS = {"MSE@64x64 (authors' metric)": "MSE@64x64 proxy (upsampled)"}


@dataclass(frozen=True)
class Kept:
    """What the cells kept under ``root`` (docs/reproduction/); ``groups`` gives a cell's runs by label."""

    root: Path
    groups: Callable[[str], dict[str, list[dict[str, Any]]]]

    def results(self, source: str) -> dict[str, Any]:
        path = self.root / source / "results.json"
        if not path.is_file():
            raise ValueError(f"no results kept at {path}")
        return json.loads(path.read_text(encoding="utf-8"))

    def table(self, source: str, tables: str) -> list[dict[str, Any]]:
        """The rows of a table of ``source``'s results; ``a+b`` joins tables of the same columns."""
        rows: list[dict[str, Any]] = []
        for table in tables.split("+"):
            found = self.results(source).get(table)
            if not isinstance(found, list):
                raise ValueError(f"{source} has no table '{table}'")
            rows += [{RENAMED_COLUMNS.get(column, column): value for column, value in row.items()} for row in found]
        return rows

    def summary(self, cell: str) -> dict[str, Any]:
        return json.loads((self.root / cell / "run" / "summary.json").read_text(encoding="utf-8"))

    def sizes(self, cell: str) -> tuple[int, int]:
        """The validation and test split sizes of the cell's data, from its run summary's data line."""
        found = re.search(r"(\d+) val / (\d+) test images", self.summary(cell)["data"])
        if found is None:
            raise ValueError(f"{cell}: its run summary does not give the split sizes")
        return int(found[1]), int(found[2])


def _texts(row: dict[str, Any]) -> list[str]:
    return [v for v in row.values() if isinstance(v, str)]


def find_row(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The one row ``key`` names (see the module's docstring): every ``&`` part equals or begins one of the
    row's text values, and of several such rows the one with the most parts equal wins."""
    if key.startswith("#"):
        return rows[int(key[1:])]
    parts = key.split("&")
    scored = []
    for row in rows:
        texts = _texts(row)
        if all(any(t.startswith(part) for t in texts) for part in parts):
            scored.append((sum(part in texts for part in parts), row))
    best = [row for score, row in scored if score == max(s for s, _ in scored)] if scored else []
    if len(best) != 1:
        raise ValueError(f"row '{key}' " + ("is ambiguous" if best else "not found"))
    return best[0]


def _number(row: dict[str, Any], column: str) -> float:
    value = row.get(column)
    if not isinstance(value, (int, float)):
        raise ValueError(f"column '{column}' of row {_texts(row)[:1]} holds {value!r}, not a number")
    return float(value)


def _signed(change: float) -> str:
    return f"{change * 100:+.1f}%"


def _value(kept: Kept, source: str, table: str, row: str, column: str, fmt: str = ".4g") -> str:
    return format(_number(find_row(kept.table(source, table), row), column), fmt)


def _pct(kept: Kept, source: str, table: str, row: str, base: str, column: str) -> str:
    rows = kept.table(source, table)
    return _signed(_number(find_row(rows, row), column) / _number(find_row(rows, base), column) - 1)


def _times(kept: Kept, source: str, table: str, row: str, base: str, column: str, base_column: str = "") -> str:
    rows = kept.table(source, table)
    return f"{_number(find_row(rows, row), column) / _number(find_row(rows, base), base_column or column):.2g}"


def _span(kept: Kept, source: str, table: str, rows: str, columns: str, fmt: str = ".4g") -> str:
    values = [float(v) for r in kept.table(source, table) if re.search(rows, " | ".join(_texts(r)))
              for c, v in r.items() if re.fullmatch(columns, c) and isinstance(v, (int, float))]
    if not values:
        raise ValueError(f"no values in rows /{rows}/, columns /{columns}/")
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def _diff(kept: Kept, source: str, table: str, column: str, base: str, which: str) -> str:
    gaps = [_number(r, column) - _number(r, base) for r in kept.table(source, table)]
    return f"{(max if which == 'max' else min)(gaps):+.3f}"


def _argmin(kept: Kept, source: str, table: str, key: str, column: str, fmt: str = ".4g") -> str:
    rows = [r for r in kept.table(source, table) if isinstance(r.get(column), (int, float))]
    if not rows:
        raise ValueError(f"no numbers in column '{column}'")
    return format(_number(min(rows, key=lambda r: r[column]), key), fmt)


def _rows(kept: Kept, source: str, table: str) -> str:
    return str(len(kept.table(source, table)))


def _acc(kept: Kept, source: str, table: str, row: str, column: str) -> str:
    cell = source.split("/")[0]
    results = kept.results(source)
    n = kept.sizes(cell)[1] if "full test set" in column else len(results["attacked_images"])
    return interval_text(_number(find_row(kept.table(source, table), row), column), n, 100, unit="%")


def _group(kept: Kept, cell: str, label: str, column: str) -> list[float]:
    groups = kept.groups(cell)
    if label not in groups:
        raise ValueError(f"{cell} has no runs labelled '{label}'")
    return [_number(r, column) for r in groups[label]]


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` (sample sd), 4 and 2 significant digits."""
    return f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"


def _seeds(kept: Kept, cell: str, label: str, column: str) -> str:
    return mean_sd(_group(kept, cell, label, column))


def _seedcmp(kept: Kept, cell: str, label: str, base: str, column: str) -> str:
    a, b = _group(kept, cell, label, column), _group(kept, cell, base, column)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    gap = statistics.fmean(a) - statistics.fmean(b)
    return f"{_signed(gap / statistics.fmean(b))}, {abs(gap) / se:.1f} standard errors"


def _run(kept: Kept, cell: str, key: str, fmt: str = ".4g") -> str:
    value = kept.summary(cell).get(key)
    return value if isinstance(value, str) else format(value, fmt)


FIGURES: dict[str, Callable[..., str]] = {
    "v": _value, "pct": _pct, "times": _times, "span": _span, "diff": _diff, "acc": _acc, "seeds": _seeds,
    "seedcmp": _seedcmp, "run": _run, "rows": _rows, "argmin": _argmin}


def render(text: str, kept: Kept) -> str:
    """``text`` with every placeholder replaced by its figure; a bad placeholder raises ValueError naming it."""
    def one(match: re.Match[str]) -> str:
        name, args = match[1], match[2].split("|")
        if name not in FIGURES:
            raise ValueError(f"unknown figure '{name}' in {match[0]}")
        try:
            return FIGURES[name](kept, *args)
        except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, OSError) as exc:
            raise ValueError(f"{match[0]}: {exc}") from None

    return PLACEHOLDER.sub(one, text)


def with_intervals(body: str, n_for: Callable[[str], int | None], scale: float) -> str:
    """Every number in a report's table column that ``n_for`` gives an image count for, with its Wilson
    interval; rows the paper printed (first cell ``paper, ...``) are left as printed."""
    lines, header = body.split("\n"), None
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            header = None
            continue
        cells = line.strip("|").split(" | ")
        if header is None:
            header = [c.strip() for c in cells]
            continue
        if line.startswith("|---") or cells[0].strip().startswith("paper,"):
            continue
        for j, (column, value) in enumerate(zip(header, cells)):
            n = n_for(column)
            number = re.fullmatch(r"\s*-?\d+(\.(\d+))?\s*", value)
            if n and number:
                shown = len(number[2] or "") if scale == 100 else None  # a percent keeps its printed decimals
                cells[j] = interval_text(float(value), n, scale, max(shown, 1) if shown is not None else None)
        lines[i] = "| " + " | ".join(c.strip() for c in cells) + " |"
    return "\n".join(lines)
