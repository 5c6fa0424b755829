"""Evaluations: named experiments on run directories, each writing a report folder.

An evaluation is a part (``tempsched.Evaluation``) that a plugin registers through
``tempsched_register_evaluations``; ``tempsched eval NAME RUN_DIR...`` runs it. It gets an ``EvalContext``:
the run directories it was given, a base run configuration (from the run options on the command line,
for evaluations that train their own runs), a way to train or reuse a run (``ctx.train``), a progress
callback, and a ``Report`` it fills with tables, figures and numbers. The report folder holds
``report.md`` (tables and the PNG figures it embeds), ``results.json`` (every number in the tables) and
``config.toml`` (the evaluation's parameters and the base configuration); every file is written
atomically. The engine knows nothing of what an evaluation measures.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import tomli_w

from tempsched import rundir as rd
from tempsched.config import RunConfig
from tempsched.errors import UserError
from tempsched.parts import Part

Cell = str | float | int | None


class Report:
    """What an evaluation found: markdown blocks, tables, figures and the numbers behind them."""

    def __init__(self, out: Path, title: str) -> None:
        self.out = Path(out)
        self.title = title
        self.blocks: list[str] = []
        self.results: dict[str, Any] = {}

    def text(self, markdown: str) -> None:
        """A paragraph (or any markdown) in the report, in order."""
        self.blocks.append(markdown.strip())

    def heading(self, text: str) -> None:
        self.blocks.append(f"## {text}")

    def table(self, key: str, headers: Sequence[str], rows: Iterable[Sequence[Cell]], caption: str = "",
              digits: int = 5) -> None:
        """A table in report.md; its rows also go to results.json under ``key`` (one dict per row)."""
        rows = [list(r) for r in rows]
        self.blocks.append(markdown_table(headers, rows, digits) + (f"\n\n{caption}" if caption else ""))
        self.results[key] = [dict(zip(headers, row)) for row in rows]

    def result(self, key: str, value: Any) -> None:
        """A number (or any JSON value) for results.json that no table shows."""
        self.results[key] = value

    def figure(self, name: str, figure: Any, caption: str = "") -> Path:
        """Save a matplotlib figure as ``name``.png in the report folder and embed it."""
        import matplotlib.pyplot as plt

        path = self.out / f"{name}.png"
        with rd.atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        self.blocks.append(f"![{caption or name}]({path.name})" + (f"\n\n{caption}" if caption else ""))
        return path

    def image(self, name: str, images: Any, nrow: int, caption: str = "") -> Path:
        """Save an image grid (a tensor N x C x H x W in [0, 1]) as ``name``.png and embed it."""
        from torchvision.utils import save_image

        path = self.out / f"{name}.png"
        with rd.atomic_path(path) as tmp:
            save_image(images, tmp, nrow=nrow, format="png")
        self.blocks.append(f"![{caption or name}]({path.name})" + (f"\n\n{caption}" if caption else ""))
        return path

    def write(self, config: Mapping[str, Any]) -> None:
        """report.md, results.json and config.toml, each atomically; config.toml last, so that a folder
        holding it holds a whole report (``written_for``)."""
        self.out.mkdir(parents=True, exist_ok=True)
        rd.write_text(self.out / "report.md", f"# {self.title}\n\n" + "\n\n".join(self.blocks) + "\n")
        rd.write_text(self.out / "results.json", json.dumps(_jsonable(self.results), indent=2) + "\n")
        rd.write_text(self.out / "config.toml", _config_text(config))

    def written_for(self, config: Mapping[str, Any]) -> bool:
        """Whether the folder already holds a whole report written for exactly ``config``: a script that
        runs many evaluations (the reproduction) skips those that are done instead of redoing hours of work.
        It cannot see a change in the evaluation's code: delete the folder to run it again."""
        path = self.out / "config.toml"
        return (self.out / "report.md").is_file() and path.is_file() and \
            path.read_text(encoding="utf-8") == _config_text(config)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], digits: int = 5) -> str:
    """A Markdown table, numbers to ``digits`` significant digits and ``None`` as '-' (not measured)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(_cell(v, digits) for v in row) + " |" for row in rows])


def _cell(value: Cell, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def _config_text(config: Mapping[str, Any]) -> str:
    return tomli_w.dumps(_jsonable(dict(config)))


def _jsonable(value: Any) -> Any:
    """Paths as text, non-finite floats as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


Progress = Callable[[str, int], Callable[[int], None]]


def quiet_progress(description: str, total: int) -> Callable[[int], None]:
    """A progress callback that shows nothing (tests, scripts)."""
    return lambda advance: None


@dataclass
class EvalContext:
    """What an evaluation gets: its inputs, a way to train runs, progress and the report to fill."""

    runs: list[Path]
    base: RunConfig
    report: Report
    train: Callable[[RunConfig], Path]  # train (or reuse, or resume) a run of this config; its directory
    progress: Progress = quiet_progress
    manager: Any = None  # the plugin manager of the command (a fresh one when not given)
    cache: Path = Path("runs/eval")  # where ``train`` keeps runs; evaluations keep other reusable work here too

    def __post_init__(self) -> None:
        if self.manager is None:
            from tempsched.plugins import PluginManager  # plugins imports this module: import when needed

            self.manager = PluginManager()

    def need_runs(self, at_least: int = 1) -> list[Path]:
        """The run directories given, refusing too few with one line."""
        if len(self.runs) < at_least:
            raise UserError(f"this evaluation needs at least {at_least} run director{'y' if at_least == 1 else 'ies'}")
        return self.runs


class Evaluation(Part):
    """A named experiment. Declare options in ``params`` (set with ``--param NAME=VALUE``); ``run``
    fills ``ctx.report``. ``needs_runs`` says how many run directories the command line must give."""

    needs_runs: ClassVar[int] = 1
    title: ClassVar[str] = ""

    def run(self, ctx: EvalContext) -> None:
        raise NotImplementedError
