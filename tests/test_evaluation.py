"""The evaluation core: a plugin's evaluation runs through `tempsched eval`, writes its report folder, and
every bad input is one line."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tempsched import EvalContext, Evaluation, Param, UserError, hookimpl
from tempsched.evaluation import MANIFEST, Report
from tempsched.plugins import PluginManager
from test_cli import TINY, _one_line_error, cli


class Count(Evaluation):
    """Counts the metric rows of each run it is given and trains one more run of the base config."""

    name = "count"
    title = "Row counts"
    params = {"scale": Param(1.0, "multiplies every count", low=0.0), "train": Param(False, "also train one run")}

    def __init__(self, scale: float, train: bool) -> None:
        self.scale, self.train = scale, train

    def run(self, ctx: EvalContext) -> None:
        rows = [[str(r), self.scale * len((r / "metrics.jsonl").read_text().splitlines())] for r in ctx.need_runs()]
        ctx.report.table("counts", ["run", "rows"], rows)
        if self.train:
            ctx.report.result("trained", str(ctx.train(ctx.spec)))


class Probe(Evaluation):
    """Does what a test asks of a third-party evaluation: marks that it ran, fills its table with a cell of
    some kind, draws an image, raises."""

    name = "probe"
    needs_runs = 0
    params = {"cell": Param("number", "its table's cell", choices=("number", "tensor", "object")),
              "image": Param(False, "also draw an image"),
              "fail": Param("", "raise this kind of error", choices=("", "bug", "user")),
              "mark": Param("", "a file it creates when it starts")}

    def __init__(self, cell: str, image: bool, fail: str, mark: str) -> None:
        self.cell, self.image, self.fail, self.mark = cell, image, fail, mark

    def run(self, ctx: EvalContext) -> None:
        import torch

        if self.mark:
            Path(self.mark).touch()
        if self.image:
            ctx.report.image("grid", torch.zeros(2, 1, 4, 4), nrow=2)
        if self.fail == "bug":
            raise RuntimeError("missing\nsecond line of the message")
        if self.fail == "user":
            raise UserError("give the probe a better input")
        cell = {"number": 0.25, "tensor": torch.tensor(0.25), "object": object()}[self.cell]
        ctx.report.table("cells", ["what", "value"], [[self.cell, cell]])


class _Plugin:
    @hookimpl
    def tempsched_register_evaluations(self, register: Any) -> None:
        register(Count)
        register(Probe)


@pytest.fixture
def with_count(monkeypatch) -> None:
    original = PluginManager.__init__

    def init(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.register(_Plugin(), name="count-plugin")

    monkeypatch.setattr(PluginManager, "__init__", init)


@pytest.fixture
def tiny_run(tmp_path: Path, capsys) -> Path:
    out = tmp_path / "run"
    code, _, err = cli("run", "--epochs", "1", *TINY, "--option", "z1=[8, 4]", "--option", "z2=[4, 4]",
                       "--option", "channels=[8, 16]", "--out", str(out), capsys=capsys)
    assert code == 0, err
    return out


def test_an_evaluation_writes_its_report_folder(with_count, tiny_run: Path, tmp_path: Path, capsys) -> None:
    report = tmp_path / "report"
    code, out, err = cli("eval", "count", str(tiny_run), "--set", "scale=2", "--out", str(report), capsys=capsys)
    assert code == 0, err
    assert "| run | rows |" in (report / "report.md").read_text()
    assert json.loads((report / "results.json").read_text())["counts"] == [{"run": str(tiny_run), "rows": 6.0}]
    assert tomllib.loads((report / "config.toml").read_text())["evaluation"] == "count"
    assert not list(report.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_an_evaluation_trains_through_the_cache_and_reuses_it(with_count, tiny_run: Path, tmp_path: Path,
                                                               capsys) -> None:
    args = ["eval", "count", str(tiny_run), "--set", "train=true", "--epochs", "1", "--members", "2",
            "--train-size", "320", "--val-size", "64", "--test-size", "64", "--batch-size", "64",
            "--option", "z1=[8, 4]", "--option", "z2=[4, 4]", "--option", "channels=[8, 16]",
            "--cache", str(tmp_path / "cache")]
    assert cli(*args, "--out", str(tmp_path / "a"), capsys=capsys)[0] == 0
    first = json.loads((tmp_path / "a" / "results.json").read_text())["trained"]
    stamp = (Path(first) / "summary.json").stat().st_mtime_ns
    assert cli(*args, "--out", str(tmp_path / "b"), capsys=capsys)[0] == 0
    assert json.loads((tmp_path / "b" / "results.json").read_text())["trained"] == first
    assert (Path(first) / "summary.json").stat().st_mtime_ns == stamp  # reused, not trained again


@pytest.mark.parametrize("args,needle", [
    (["nope"], "unknown evaluation 'nope'"),
    (["count"], "needs 1 run directory, got 0"),
    (["count", "RUN", "--set", "scale=-1"], "evaluation option 'scale' must be >= 0.0"),
    (["count", "RUN", "--set", "colour=1"], "evaluation 'count' has no option 'colour'"),
    (["count", "RUN", "--set", "scale"], "--set takes NAME=VALUE"),
    (["count", "NOT_A_RUN"], "run directory not found"),
])
def test_bad_input_is_one_line(with_count, tiny_run: Path, tmp_path: Path, args: list[str], needle: str,
                               capsys) -> None:
    args = [str(tiny_run) if a == "RUN" else str(tmp_path / "missing") if a == "NOT_A_RUN" else a for a in args]
    code, _, stderr = cli("eval", *args, "--out", str(tmp_path / "report"), capsys=capsys)
    _one_line_error(code, stderr, needle)
    assert not (tmp_path / "report").exists()


def test_a_cached_run_that_died_before_its_first_checkpoint_is_trained_again(manager, tmp_path: Path) -> None:
    from conftest import tiny_gsvae_spec

    from tempsched import runs

    spec = tiny_gsvae_spec(epochs=1)
    config = spec.resolve(manager.registry)
    dead = runs.cached_run_dir(config, tmp_path)
    dead.mkdir(parents=True)
    (dead / "config.toml").write_text(config.to_toml())  # what a kill -9 in the first epoch leaves
    assert runs.ensure_run(spec, manager, tmp_path) == dead
    assert (dead / "summary.json").is_file()


def test_a_cached_run_another_process_is_training_is_waited_for_not_trained_twice(manager, tmp_path: Path,
                                                                                   capsys) -> None:
    import threading

    from conftest import tiny_gsvae_spec

    from tempsched import rundir, runs, session

    spec = tiny_gsvae_spec(epochs=1)
    config = spec.resolve(manager.registry)
    run_dir = runs.cached_run_dir(config, tmp_path)
    waiter = threading.Thread(target=runs.ensure_run, args=(spec, manager, tmp_path))
    with rundir.exclusive_lock(tmp_path / f"{run_dir.name}.lock"):  # the other process, training this run
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive() and not run_dir.exists()  # it waits rather than writing the same directory
        session.execute(config, manager, run_dir, resume=False)  # the other process finishes
        mtime = (run_dir / "summary.json").stat().st_mtime_ns
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    assert (run_dir / "summary.json").stat().st_mtime_ns == mtime  # reused, not trained again
    assert f"which trains {run_dir.name}" in capsys.readouterr().err


def test_a_report_knows_whether_it_was_written_for_a_configuration(tmp_path: Path) -> None:
    """The reproduction skips an evaluation whose report is done only if it was written for the same
    configuration; a half-written folder (no config.toml) or another configuration is run again."""
    config = {"evaluation": "count", "options": {"scale": 2.0, "sizes": [1, 2]}, "runs": ["a"]}
    report = Report(tmp_path / "r", "Row counts")
    assert not report.written_for(config)
    report.table("counts", ["run", "rows"], [["a", 1.0]])
    report.write(config)
    again = Report(tmp_path / "r", "Row counts")
    assert again.written_for(json.loads(json.dumps(config)))
    assert not again.written_for({**config, "options": {"scale": 2.0, "sizes": [1, 2, 4]}})
    assert not again.written_for({**config, "runs": ["b"]})
    (tmp_path / "r" / "report.md").unlink()
    assert not again.written_for(config)
    (tmp_path / "r" / MANIFEST).unlink()  # a report written before reports kept a manifest
    assert again.written_for(config) == (tmp_path / "r" / "report.md").is_file()


def _finished(folder: Path) -> bool:
    """Whether a report folder looks finished to a person (report.md, results.json) or to reproduce.py."""
    return any((folder / name).exists() for name in ("report.md", "results.json", "config.toml")) or \
        (folder / MANIFEST).is_file() and json.loads((folder / MANIFEST).read_text())["complete"]


def test_an_evaluation_that_raises_is_one_line_naming_it_and_its_plugin(with_count, tmp_path: Path,
                                                                         capsys) -> None:
    code, _, err = cli("eval", "probe", "--set", "fail=bug", "--out", str(tmp_path / "report"), capsys=capsys)
    _one_line_error(code, err, "evaluation 'probe' (plugin 'count-plugin') failed: RuntimeError: missing")
    assert "second line" not in err and not _finished(tmp_path / "report")
    code, _, err = cli("eval", "probe", "--set", "fail=user", "--out", str(tmp_path / "report"), capsys=capsys)
    _one_line_error(code, err, "error: give the probe a better input")  # the user's mistake, as it is


def test_a_cell_json_cannot_hold_is_one_line_and_leaves_no_finished_report(with_count, tmp_path: Path,
                                                                            capsys) -> None:
    report = tmp_path / "report"
    code, _, err = cli("eval", "probe", "--set", "cell=object", "--set", "image=true", "--out", str(report),
                       capsys=capsys)
    _one_line_error(code, err, "evaluation 'probe' (plugin 'count-plugin') failed: TypeError: "
                               "results['cells'][0]['value'] is a object")
    assert not _finished(report) and (report / "grid.png").is_file()
    assert cli("eval", "probe", "--out", str(report), capsys=capsys)[0] == 0  # the failed folder is its own
    assert _finished(report) and not (report / "grid.png").exists()  # the earlier attempt's image went with it


def test_one_element_tensors_are_written_as_numbers(with_count, tmp_path: Path, capsys) -> None:
    report = tmp_path / "report"
    code, _, err = cli("eval", "probe", "--set", "cell=tensor", "--out", str(report), capsys=capsys)
    assert code == 0, err
    assert json.loads((report / "results.json").read_text())["cells"] == [{"what": "tensor", "value": 0.25}]
    assert "| tensor | 0.25 |" in (report / "report.md").read_text()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("target,needle", [
    ("run", "holds a run: a report needs a folder of its own"),
    ("file", "is a file: a report needs a folder"),
    ("foreign", "holds files no report wrote there (notes.txt)"),
])
def test_out_that_is_a_run_a_file_or_a_strangers_folder_is_refused_before_any_work(
        with_count, tiny_run: Path, tmp_path: Path, target: str, needle: str, capsys) -> None:
    out = {"run": tiny_run, "file": tmp_path / "file.txt", "foreign": tmp_path / "mine"}[target]
    if target == "file":
        out.write_text("mine")
    elif target == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = _files(out) if out.is_dir() else out.read_bytes()
    mark = tmp_path / "ran"
    code, _, err = cli("eval", "probe", "--set", f"mark={mark}", "--out", str(out), capsys=capsys)
    _one_line_error(code, err, needle)
    assert not mark.exists()  # refused before the evaluation started
    assert (_files(out) if out.is_dir() else out.read_bytes()) == before


def test_an_evaluation_reruns_into_its_own_report_folder(with_count, tiny_run: Path, tmp_path: Path, capsys) -> None:
    report = tmp_path / "report"
    assert cli("eval", "probe", "--set", "image=true", "--out", str(report), capsys=capsys)[0] == 0
    assert (report / "grid.png").is_file()
    code, _, err = cli("eval", "count", str(tiny_run), "--out", str(report), capsys=capsys)
    assert code == 0, err
    assert sorted(_files(report)) == [MANIFEST, "config.toml", "report.md", "results.json"]  # no stale image
    config = tomllib.loads((report / "config.toml").read_text())
    assert Report(report, "Row counts").written_for(config)  # what reproduce.py reuses


def test_train_still_takes_a_resolved_configuration_with_a_warning(manager, tmp_path: Path) -> None:
    """Evaluations written before specs called ``ctx.train(config)``: the same run, a DeprecationWarning."""
    from conftest import tiny_gsvae_spec

    from tempsched.evaluation import EvalContext
    from tempsched.spec import RunSpec

    spec = tiny_gsvae_spec(epochs=1, members=1)
    ctx = EvalContext(runs=[], spec=RunSpec(), report=Report(tmp_path / "r", "x"), manager=manager,
                      cache=tmp_path / "cache")
    trained = ctx.train(spec)
    with pytest.warns(DeprecationWarning, match="takes a RunSpec"):
        assert ctx.train(ctx.resolve(spec)) == trained  # the same finished run, reused
