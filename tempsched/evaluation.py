"""Evaluations: named experiments on run directories, each writing a report folder.

An evaluation is a part (``tempsched.Evaluation``, declared in ``parts``) that a plugin registers through
``tempsched_register_evaluations``; ``tempsched eval NAME RUN_DIR...`` runs it. It gets an ``EvalContext``:
the run directories it was given, a base run configuration (from the run options on the command line,
for evaluations that train their own runs), a way to train or reuse a run (``ctx.train``), a progress
callback, and a ``Report`` it fills with tables, figures and numbers. The report folder holds
``report.md`` (tables and the PNG figures it embeds), ``results.json`` (every number in the tables),
``config.toml`` (the evaluation's parameters and the base configuration) and ``.manifest.json`` (the
files the report wrote, and whether it is complete); every file is written atomically. The engine knows
nothing of what an evaluation measures.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import tomli_w

from tempsched import rundir as rd
from tempsched.config import RunConfig
from tempsched.errors import UserError, describe_exception
from tempsched.parts import Evaluation
from tempsched.plugins import PluginManager

Cell = str | float | int | None
MANIFEST = ".manifest.json"  # hidden: a copy of a report's figures and tables (reproduce.py) leaves it out
MANIFEST_FORMAT = "tempsched-report-1"


class Report:
    """What an evaluation found: markdown blocks, tables, figures and the numbers behind them."""

    def __init__(self, out: Path, title: str) -> None:
        self.out = Path(out)
        self.title = title
        self.blocks: list[str] = []
        self.results: dict[str, Any] = {}
        self.files: list[str] = []  # what this report has written into its folder, in order

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

        path = self._own(f"{name}.png")
        with rd.atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        self.blocks.append(f"![{caption or name}]({path.name})" + (f"\n\n{caption}" if caption else ""))
        return path

    def image(self, name: str, images: Any, nrow: int, caption: str = "") -> Path:
        """Save an image grid (a tensor N x C x H x W in [0, 1]) as ``name``.png and embed it."""
        from torchvision.utils import save_image

        path = self._own(f"{name}.png")
        with rd.atomic_path(path) as tmp:
            save_image(images, tmp, nrow=nrow, format="png")
        self.blocks.append(f"![{caption or name}]({path.name})" + (f"\n\n{caption}" if caption else ""))
        return path

    def claim(self) -> None:
        """Make the folder this report's, before the evaluation does any work (``check``); the files of
        an earlier report there are removed, so that the folder never mixes two reports."""
        earlier = self.check()
        if earlier:
            self._write_manifest(earlier, complete=False)  # from here on the old report is not whole
            for name in earlier:
                (self.out / name).unlink(missing_ok=True)

    def check(self) -> list[str]:
        """Refuse, in one line, a folder that must not hold this report: a file, a run directory, or a
        folder holding anything an earlier report did not write (its manifest says what that is); the
        names the earlier report wrote. A missing or empty folder is fine; nothing is changed."""
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"{self.out} is a file: a report needs a folder (choose another --out)")
        if not self.out.is_dir():
            return []
        manifest = self._manifest()
        earlier = list(manifest["files"]) if manifest else []
        owned = {Path(name).parts[0] for name in earlier} | {MANIFEST}
        foreign = sorted(p.name for p in self.out.iterdir() if p.name not in owned and not _temporary(p.name))
        if set(foreign) & {*rd.RUN_FILES, rd.LOCK}:
            raise UserError(f"{self.out} holds a run: a report needs a folder of its own (choose another --out)")
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise UserError(f"{self.out} holds files no report wrote there ({shown}): choose another --out "
                            "or an empty folder")
        return earlier

    def write(self, config: Mapping[str, Any]) -> None:
        """results.json, report.md and config.toml, each atomically, then the manifest that says the
        report is complete. Everything is serialised before the first file is written, so a result JSON
        cannot hold leaves no half report; until the manifest says complete, the folder is not a finished
        report (``written_for``), whatever else it holds."""
        texts = {"results.json": json.dumps(_jsonable(self.results), indent=2, allow_nan=False) + "\n",
                 "report.md": f"# {self.title}\n\n" + "\n\n".join(self.blocks) + "\n",
                 "config.toml": _config_text(config)}
        for name, text in texts.items():
            rd.write_text(self._own(name), text)
        self._write_manifest(self.files, complete=True)

    def written_for(self, config: Mapping[str, Any]) -> bool:
        """Whether the folder already holds a whole report written for exactly ``config``: a script that
        runs many evaluations (the reproduction) skips those that are done instead of redoing hours of work.
        It cannot see a change in the evaluation's code: delete the folder to run it again. A folder
        without a manifest (written before reports kept one) counts when it holds all three files, as
        those reports wrote config.toml last."""
        path = self.out / "config.toml"
        manifest = self._manifest()
        listed = manifest["files"] if manifest else ["report.md", "results.json"]
        whole = (not manifest or manifest.get("complete") is True) and all((self.out / n).is_file() for n in listed)
        return whole and path.is_file() and path.read_text(encoding="utf-8") == _config_text(config)

    def _own(self, name: str) -> Path:
        """The path of a file the report is about to write, listed in the manifest first, so that a
        report cut off at any point leaves a folder whose every file it can replace."""
        if name not in self.files:
            self.files.append(name)
            self._write_manifest(self.files, complete=False)
        return self.out / name

    def _write_manifest(self, files: list[str], complete: bool) -> None:
        rd.write_text(self.out / MANIFEST, json.dumps(
            {"format": MANIFEST_FORMAT, "complete": complete, "files": files}, indent=2) + "\n")

    def _manifest(self) -> dict[str, Any] | None:
        """The folder's manifest, None when there is none, a one-line error when it is not one."""
        path = self.out / MANIFEST
        if not path.exists():
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            valid = manifest.get("format") == MANIFEST_FORMAT and isinstance(manifest.get("files"), list)
        except (ValueError, AttributeError):
            valid = False
        if not valid:
            raise UserError(f"{path} is damaged: delete the folder {self.out} or choose another --out")
        return manifest


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], digits: int = 5) -> str:
    """A Markdown table, numbers to ``digits`` significant digits and ``None`` as '-' (not measured)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(_cell(v, digits) for v in row) + " |" for row in rows])


def _cell(value: Cell, digits: int) -> str:
    value = _plain(value)
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def _config_text(config: Mapping[str, Any]) -> str:
    return tomli_w.dumps(_jsonable(dict(config), "config"))


def _temporary(name: str) -> bool:
    """A temporary file ``rd.atomic_path`` leaves when the process is killed mid-write."""
    return name.startswith(".") and name.endswith(".tmp")


def _plain(value: Any) -> Any:
    """A one-element number (a 0-d tensor or array, a numpy scalar) as the Python number it holds: what an
    evaluation computes with torch or numpy goes into a table as it is."""
    if getattr(value, "shape", None) == () and callable(getattr(value, "item", None)):
        return value.item()
    return value


def _jsonable(value: Any, where: str = "results") -> Any:
    """Paths as text, one-element numbers as numbers, non-finite floats as None (JSON has no NaN);
    anything else JSON cannot hold is refused, naming where it is."""
    value = _plain(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise TypeError(f"{where} is a {type(value).__name__}, which a report cannot write (give a number, "
                    "text, list or dict)")


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
    manager: PluginManager | None = None  # the plugin manager of the command (a fresh one when not given)
    cache: Path = Path("runs/eval")  # where ``train`` keeps runs; evaluations keep other reusable work here too

    def __post_init__(self) -> None:
        if self.manager is None:
            self.manager = PluginManager()

    def need_runs(self, at_least: int = 1) -> list[Path]:
        """The run directories given, refusing too few with one line."""
        if len(self.runs) < at_least:
            raise UserError(f"this evaluation needs at least {at_least} run director{'y' if at_least == 1 else 'ies'}")
        return self.runs


def run_evaluation(evaluation: Evaluation, ctx: EvalContext, config: Mapping[str, Any]) -> None:
    """Run ``evaluation`` and write its report folder (claimed first: ``Report.claim``) with ``config``.

    What the evaluation's code raises, other than a user's mistake (``UserError``, one line already),
    becomes one line naming the evaluation and the plugin that registered it, as a failing part does:
    the user learns whom to ask, not where in that plugin it broke."""
    ctx.report.claim()
    try:
        evaluation.run(ctx)
        ctx.report.write(config)
    except UserError:
        raise
    except Exception as exc:
        owner = ctx.manager.registry.owner_of(type(evaluation))
        raise UserError(f"evaluation '{evaluation.name}' (plugin '{owner}') failed: "
                        f"{describe_exception(exc)}") from exc
