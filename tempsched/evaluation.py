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

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import tomli_w

from tempsched import rundir as rd
from tempsched.build import build_part, build_task
from tempsched.config import RunConfig
from tempsched.errors import UserError, describe_exception
from tempsched.parts import Evaluation
from tempsched.plugins import PluginManager
from tempsched.runs import LoadedRun, ensure_run, load_best
from tempsched.spec import RunSpec, saved_config, saved_spec
from tempsched.task import Task

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
    """What an evaluation gets: the run directories given, the run spec of the command line (``spec``; ``base``
    is its resolution), the report to fill, progress, and what evaluations need from the engine: load a run,
    its configuration or model (``run_config``, ``load_run``), derive a spec with overrides (``derive``),
    resolve one (``resolve``), train or reuse one (``train``), build a configuration's task (``build_task``).
    Evaluations use these and import nothing else of the engine."""

    runs: list[Path]
    spec: RunSpec
    report: Report
    manager: PluginManager
    cache: Path = Path("runs/eval")  # where ``train`` keeps runs; evaluations keep other reusable work here too
    progress: Progress = quiet_progress
    base: RunConfig = field(init=False)

    def __post_init__(self) -> None:
        self.base = self.spec.resolve(self.manager.registry)

    def need_runs(self, at_least: int = 1) -> list[Path]:
        """The run directories given, refusing too few with one line."""
        if len(self.runs) < at_least:
            raise UserError(f"this evaluation needs at least {at_least} run director{'y' if at_least == 1 else 'ies'}")
        return self.runs

    def derive(self, overrides: Mapping[str, Any], spec: RunSpec | None = None) -> RunSpec:
        """``spec`` (default: the command line's) with ``overrides`` (dotted keys) applied."""
        return (spec or self.spec).with_overrides(overrides)

    def resolve(self, spec: RunSpec) -> RunConfig:
        """The complete configuration ``spec`` resolves to (checked: a mistake is one line)."""
        return spec.resolve(self.manager.registry)

    def train(self, spec: RunSpec | RunConfig) -> Path:
        """The directory of a finished run of ``spec``: reused, resumed or trained in ``cache``.

        A resolved ``RunConfig`` (what ``train`` took before specs) still works, with a DeprecationWarning:
        it is its own spec, complete, so it trains the same run under the same name."""
        if isinstance(spec, RunConfig):
            warnings.warn("EvalContext.train takes a RunSpec (ctx.derive(...)); a RunConfig is deprecated",
                          DeprecationWarning, stacklevel=2)
            spec = RunSpec(spec.to_dict())
        return ensure_run(spec, self.manager, self.cache)

    def run_config(self, run_dir: Path) -> RunConfig:
        """The resolved configuration a run directory holds."""
        return saved_config(run_dir, self.manager.registry)

    def run_spec(self, run_dir: Path) -> RunSpec:
        """The spec a run was started from, with the device and speed settings of the command line."""
        return self.with_local_settings(saved_spec(run_dir))

    def with_local_settings(self, spec: RunSpec) -> RunSpec:
        """``spec`` trained where and as fast as the command line says (device, threads, backend, precision):
        those settings enter neither a run's fingerprint nor its figures' meaning."""
        speed = {f"performance.{key}": value for key, value in dataclasses.asdict(self.base.performance).items()}
        return spec.with_overrides({"device": self.base.device, **speed})

    def load_run(self, run_dir: Path, task: Task | None = None) -> LoadedRun:
        """A finished run's best model with its configuration and task, on the command line's device;
        ``task`` reuses one already built (its images already in memory)."""
        return load_best(Path(run_dir), self.manager, task, self.base.device)

    def build_task(self, config: RunConfig) -> Task:
        """The task of ``config``, its data loaded (a data set a run cannot use fails here, in one line)."""
        return build_task(config, self.manager)


def evaluation_options(manager: PluginManager, name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of evaluation ``name``: its declared defaults with ``settings`` over them, each checked by
    its ``Param`` as a part's parameters are."""
    cls = manager.registry.get("evaluations", name)
    values = {key: param.default for key, param in cls.params.items()}
    for key, value in settings.items():
        if key not in cls.params:
            raise UserError(f"evaluation '{name}' has no option '{key}' (its options: {', '.join(cls.params) or 'none'})")
        values[key] = value
    return {key: cls.params[key].check(value, f"evaluation option '{key}'") for key, value in values.items()}


def recorded_options(manager: PluginManager, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as a report's config.toml records them: ``options`` (all of them, checked) less those
    added after reports existed and left at the default that computes what those reports computed
    (``Param.omitted_at_default``), so those reports still count as written for them."""
    params = manager.registry.get("evaluations", name).params
    return {key: value for key, value in options.items()
            if not (params[key].omitted_at_default and value == params[key].default)}


def evaluate(name: str, runs: Sequence[Path], out: Path, *, manager: PluginManager, spec: RunSpec | None = None,
             options: Mapping[str, Any] | None = None, cache: Path = Path("runs/eval"),
             progress: Progress = quiet_progress, skip_done: bool = False, title: str | None = None,
             run_names: Sequence[str] | None = None) -> Report:
    """Run evaluation ``name`` on ``runs`` into the report folder ``out``: the one way to run an evaluation
    (``tempsched eval``, the reproduction script and the tests call it).

    Everything a user can get wrong is refused in one line before any work: an unknown evaluation or
    option, a folder that cannot hold the report, a path that is not a run directory, too few runs, a run
    of a task the evaluation does not measure. ``spec``: the run options (default: the default preset), for
    evaluations that train runs. ``skip_done``: a folder holding a whole report written for exactly these
    inputs is kept as it is (``Report.written_for``). ``title``: the report's (default: the evaluation's);
    ``run_names``: how the report's config.toml names the runs (default: their paths), so that a script whose
    cache may move (the reproduction names runs by their folder's name) still finds the reports it wrote."""
    chosen = evaluation_options(manager, name, options or {})
    cls = manager.registry.get("evaluations", name)
    report = Report(out, title or cls.title or name)
    report.check()  # a file, a run or a stranger's folder is refused now, not after the evaluation's work
    evaluation = build_part(manager, "evaluations", name, chosen)
    ctx = EvalContext(runs=[Path(r) for r in runs], spec=spec or RunSpec(), report=report, manager=manager,
                      cache=Path(cache), progress=progress)
    for run_dir in ctx.runs:
        task = ctx.run_config(run_dir).task  # not a run directory: one line, before any work
        if cls.task is not None and task != cls.task:
            raise UserError(f"{run_dir} is a run of task '{task}': evaluation '{name}' measures "
                            f"'{cls.task}' runs only")
    if len(ctx.runs) < cls.needs_runs:
        raise UserError(f"evaluation '{name}' needs {cls.needs_runs} run director"
                        f"{'y' if cls.needs_runs == 1 else 'ies'}, got {len(ctx.runs)}")
    if not ctx.runs and cls.task is not None and ctx.base.task != cls.task:
        raise UserError(f"evaluation '{name}' trains '{cls.task}' runs, but the configuration's task is "
                        f"'{ctx.base.task}'")
    names = list(run_names) if run_names is not None else [str(r) for r in ctx.runs]
    config = {"evaluation": name, "options": recorded_options(manager, name, chosen), "runs": names,
              "base": ctx.base.to_dict()}
    if skip_done and report.written_for(config):
        return report
    run_evaluation(evaluation, ctx, config)
    return report


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
