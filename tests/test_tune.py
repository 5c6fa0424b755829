"""tempsched tune: the search space, pruning, resume, stale trials, workers on file and PostgreSQL storage."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
import uuid
from pathlib import Path
from typing import Callable

import optuna
import pytest
from optuna.trial import TrialState

from conftest import python_path, wait_for
from test_cli import cli
from toy import toy_manager, toy_settings

from tempsched import hookimpl, tune
from tempsched.config import layer, load_toml
from tempsched.errors import UserError
from tempsched.parts import Preset
from tempsched.plugins import PluginManager
from tempsched.space import Dim, SearchSpace, parse_overrides

TESTS = Path(__file__).parent
POSTGRES_ENV = "TEMPSCHED_TEST_POSTGRES_URL"


def space_of(manager: PluginManager, preset: str = "paper-default") -> SearchSpace:
    base = layer(manager.registry, {"plugin": preset})
    return manager.search_space(manager.registry.presets[preset], SearchSpace.for_run(base, manager.registry))


def paper_space() -> SearchSpace:
    return space_of(PluginManager())


@pytest.mark.parametrize("sampler", ["random", "tpe", "cmaes"])
def test_space_keeps_tau_min_below_tau_max(sampler: str) -> None:
    space = paper_space()
    space.validate()
    study = optuna.create_study(sampler=tune.make_sampler(sampler, 0))
    for i in range(200):
        trial = study.ask()
        v = space.suggest(trial)
        assert 0.05 <= v["tau_min"] <= 1.0 < 2.0 <= v["tau_max"] <= 500.0
        assert v["tau_min"] < v["tau_max"]
        assert isinstance(v["patience"], int) and 1 <= v["patience"] <= 10
        assert 1e-4 <= v["feedback_lr"] <= 1.0
        study.tell(trial, v["tau_max"] / v["tau_min"] + v["patience"])  # any value: samplers must learn something
    # Every sample lands where the run configuration expects it: the parts declare the first two.
    assert space.targets(v) == {"params.patience.feedback_lr": v["feedback_lr"],
                                "params.patience.patience": v["patience"],
                                "tau.min": v["tau_min"], "tau.max": v["tau_max"]}


class WiderPatience:
    """An installed plugin that changes a shipped parameter and adds one of its own."""

    @hookimpl
    def tempsched_search_space(self, preset: Preset, space: SearchSpace) -> None:
        if preset.name == "paper-default":
            space.replace("patience", high=20)
            space.add(Dim("l_inc", "params.linear-up.l_inc", 0.01, 1.0, log=True))


def test_an_installed_plugin_changes_and_extends_the_space() -> None:
    manager = PluginManager()
    manager.register(WiderPatience(), name="wider")
    space = space_of(manager)
    assert space.dims["patience"].high == 20 and space.dims["patience"].low == 1
    assert list(space.dims) == ["feedback_lr", "patience", "tau_min", "tau_max", "l_inc"]
    assert space_of(manager, "standard-annealing").dims == {}


def test_a_preset_gets_the_space_of_the_parts_it_uses(manager) -> None:
    """toy-paper reuses the patience rule: its tune ranges come with it, nothing is re-declared."""
    space = space_of(manager, "toy-paper")
    assert space.dims["patience"].target == "params.patience.patience" and space.dims["patience"].high == 10
    assert (space.dims["tau_min"].low, space.dims["tau_max"].high) == (0.5, 8.0)  # the preset's own tau ranges


def test_fix_and_ranges_from_cli_and_file() -> None:
    space = paper_space()
    ranges, fixed = parse_overrides(["patience=5"], ["feedback_lr=1e-5:2"],
                                    {"tau_max": {"low": 10, "high": 1000}, "tau_min": {"fix": 0.7}})
    space.apply_overrides(ranges, fixed)
    space.validate()
    trial = optuna.create_study().ask()
    v = space.suggest(trial)
    assert v["patience"] == 5 and v["tau_min"] == 0.7 and 10 <= v["tau_max"] <= 1000
    assert set(trial.params) == {"feedback_lr", "tau_max"}  # fixed values are not sampled
    assert space.dims["feedback_lr"].low == 1e-5 and space.dims["feedback_lr"].high == 2


@pytest.mark.parametrize("fix, ranges, table, needle", [
    ([], ["patience=4:4"], {}, "empty range for 'patience'"),
    ([], ["feedback_lr=0:1"], {}, "log-uniformly"),
    ([], ["patience=0:3"], {}, "'patience' must be at least 1"),
    ([], ["patience=1.5:3"], {}, "whole numbers"),
    (["tau_min=2.5"], [], {}, "tau_min < tau_max cannot hold"),
    ([], ["tau_min=0.1:3", "tau_max=2:10"], {}, "tau_min < tau_max cannot hold"),
    (["nope=1"], [], {}, "has no parameter 'nope'"),
    (["patience=five"], [], {}, "must be a number"),
    (["patience"], [], {}, "NAME=VALUE"),
    ([], ["patience=3"], {}, "NAME=LOW:HIGH"),
    ([], [], {"patience": {"low": 1}}, "needs both 'low' and 'high'"),
    ([], [], {"patience": {"lo": 1, "high": 3}}, "must hold 'low' and 'high', or 'fix'"),
])
def test_bad_space_input_is_a_user_error(fix: list[str], ranges: list[str], table: dict, needle: str) -> None:
    space = paper_space()
    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        space.apply_overrides(*parse_overrides(fix, ranges, table))
        space.validate()


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=tune.FINISHED)


def test_pruning_stops_a_scripted_bad_trial(tmp_path: Path) -> None:
    settings = toy_settings(tmp_path / "study", trials=6, sampler="random")
    study = tune.load_study(settings, tune.open_storage(None, settings.study_dir))
    good = {"feedback_lr": 0.01, "patience": 2, "tau_min": 1.9, "tau_max": 3.6}
    for _ in range(5):
        study.enqueue_trial(good)
    study.enqueue_trial({**good, "tau_min": 3.5, "tau_max": 8.0})  # every tau >= 3.5: loss >= 2.25
    result = tune.run_study(settings)
    assert result.counts["complete"] == 5 and result.counts["pruned"] == 1
    bad = study.trials[5]
    assert bad.state == TrialState.PRUNED and bad.params["tau_min"] == 3.5
    assert bad.user_attrs["pruned_after_epoch"] == 2  # median pruner: never in epoch 1, at once in epoch 2
    assert sorted(bad.intermediate_values) == [0, 1]
    assert all(len(t.intermediate_values) == 4 for t in study.trials[:5])
    assert not (settings.study_dir / "trials" / "5" / "summary.json").exists()
    assert bad.intermediate_values[1] > max(t.intermediate_values[1] for t in study.trials[:5]) + 2


def test_resume_adds_trials_to_the_same_study_and_best_toml_reproduces_it(tmp_path: Path) -> None:
    settings = toy_settings(tmp_path / "study", trials=3)
    first = tune.run_study(settings)
    assert first.counts["complete"] == 3 and first.new_trials == 3
    settings.trials = 5
    second = tune.run_study(settings)
    assert second.new_trials == 2
    storage = tune.open_storage(None, settings.study_dir)
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["toy"]
    study = optuna.load_study(study_name="toy", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 5  # a resume samples anew
    assert sorted(p.name for p in (settings.study_dir / "trials").iterdir()) == ["0", "1", "2", "3", "4"]
    # Re-running a finished study runs nothing more.
    assert tune.run_study(settings).new_trials == 0
    # best.toml is the best trial's complete configuration, and `run --config` accepts it as it is.
    best = study.best_trial
    saved = tomllib.loads((settings.study_dir / "trials" / str(best.number) / "config.toml").read_text())
    exported = load_toml(settings.study_dir / "best.toml")
    assert exported == saved
    assert layer(toy_manager().registry, exported).to_dict() == saved
    assert saved["tau"]["min"] == best.params["tau_min"]
    assert saved["params"]["patience"]["patience"] == best.params["patience"]


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    tune.run_study(toy_settings(tmp_path / "study", trials=1))
    settings = toy_settings(tmp_path / "study", trials=2)
    other = dataclasses.replace(settings, spec=settings.spec.with_overrides({"epochs": 3}))
    with pytest.raises(UserError, match=r"other settings \(epochs differ\)"):
        tune.run_study(other)


def test_stale_running_trials_are_failed(tmp_path: Path) -> None:
    settings = toy_settings(tmp_path / "study", trials=1)
    storage = tune.open_storage(None, settings.study_dir)
    study = tune.load_study(settings, storage)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    gone, silent, alive, fresh = (study.ask() for _ in range(4))
    gone.set_user_attr("worker", f"{tune.machine()}:{dead_pid}:abcd")  # its process has exited
    silent.set_user_attr("worker", "other-host/boot:1:abcd")  # another machine, silent for an hour
    silent.set_user_attr("heartbeat", time.time() - 3600)
    alive.set_user_attr("worker", tune.worker_id())
    fresh.set_user_attr("worker", "other-host/boot:1:abcd")
    fresh.set_user_attr("heartbeat", time.time())
    assert sorted(tune.fail_stale_trials(study, storage)) == [gone.number, silent.number]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING]


def test_kill_9_loses_only_the_trial_in_flight(tmp_path: Path) -> None:
    study_dir, marker = tmp_path / "study", tmp_path / "hanging"
    script = textwrap.dedent(f"""
        from pathlib import Path
        import toy
        from tempsched import hookimpl, tune
        tune.run_study(toy.toy_settings(Path({str(study_dir)!r}), trials=4, manager_factory=toy.hanging_manager))
    """)
    env = {**os.environ, "PYTHONPATH": python_path(TESTS), "TOY_HANG_TRIAL": "2", "TOY_HANG_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        # trial 2 is in flight once the child writes the marker (then it hangs)
        wait_for(lambda: marker.exists() or proc.poll() is not None, "trial 2 to start")
        assert marker.exists(), "trial 2 never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    settings = toy_settings(study_dir, trials=4)
    result = tune.run_study(settings)  # the same study, resumed
    study = tune.open_existing(study_dir, "toy")
    states = {t.number: t.state for t in study.trials}
    assert states == {0: TrialState.COMPLETE, 1: TrialState.COMPLETE, 2: TrialState.FAIL,
                      3: TrialState.COMPLETE, 4: TrialState.COMPLETE}
    assert result.failed_stale == [2] and result.counts["complete"] == 4


def two_workers(settings: tune.TuneSettings) -> None:
    result = tune.run_study(settings)
    study = tune.open_existing(settings.study_dir, settings.study_name, settings.storage)
    trials = study.get_trials()
    assert result.counts["complete"] + result.counts["pruned"] == 8
    assert sorted(t.number for t in trials) == list(range(8))  # none lost, none doubled
    assert all(t.state in tune.FINISHED for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2 and tune.worker_id() in workers  # this process and one spawned worker
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert (settings.study_dir / "trials" / str(t.number) / "summary.json").is_file()
    assert sorted(p.name for p in (settings.study_dir / "trials").iterdir()) == [str(n) for n in range(8)]


def test_two_workers_share_a_journal_file(tmp_path: Path) -> None:
    two_workers(toy_settings(tmp_path / "study", trials=8, workers=2))


def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set: .ci/run must start PostgreSQL for this test")
        pytest.skip(f"set {POSTGRES_ENV} (see .ci/postgres) to test against PostgreSQL")
    return url


def test_two_workers_share_a_postgresql_database(tmp_path: Path) -> None:
    url = postgres_url()
    name = f"test-{uuid.uuid4().hex[:12]}"
    settings = toy_settings(tmp_path / "study", trials=8, workers=2, storage=url, study_name=name)
    try:
        two_workers(settings)
    finally:
        with contextlib.suppress(KeyError):  # the study may not exist if the test failed early
            optuna.delete_study(study_name=name, storage=tune.database_url(url))


TINY = ["--members", "2", "--epochs", "1", "--train-size", "320", "--val-size", "64", "--test-size", "64",
        "--batch-size", "64"]


def tiny_config(tmp_path: Path) -> Path:
    """A GS-VAE small enough for an epoch in well under a second."""
    config = tmp_path / "tiny.toml"
    config.write_text('[task_options]\nz1 = [8, 4]\nz2 = [4, 4]\nchannels = [8, 16]\n')
    return config


def test_cli_tune_and_report(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path)
    out = tmp_path / "study"
    code, stdout, stderr = cli("tune", "--plugin", "paper-default", "--config", str(config), *TINY, "--trials", "2",
                               "--pruner", "none", "--fix", "patience=1", "--out", str(out), capsys=capsys)
    assert code == 0, stderr
    assert "best trials" in stdout and "2 complete, 0 pruned" in stdout and "test mse" in stdout
    assert load_toml(out / "best.toml")["params"]["patience"]["patience"] == 1
    code, stdout, stderr = cli("tune", "report", str(out), capsys=capsys)
    assert code == 0, stderr
    for name in tune.REPORT_PLOTS:
        assert 'src="plotly.min.js"></script>' in (out / "report" / f"{name}.html").read_text(), name
    assert (out / "report" / "plotly.min.js").stat().st_size > 100_000


@pytest.mark.parametrize("args, needle", [
    (["--sampler", "sobol"], "unknown sampler 'sobol'"),
    (["--pruner", "fast"], "unknown pruner 'fast'"),
    (["--range", "patience=3:3"], "empty range for 'patience'"),
    (["--fix", "tau_min=5"], "tau_min < tau_max cannot hold"),
    (["--trials", "0"], "--trials must be a positive integer"),
    (["--storage", "postgresql+psycopg2://u:secret@127.0.0.1:9/none"], "cannot use storage"),
    (["--storage", "postgresql://u:secret@127.0.0.1:9/none"], "cannot use storage"),  # not "needs psycopg"
    (["--plugin", "nope"], "unknown preset 'nope'"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args: list[str], needle: str, tmp_path: Path, capsys) -> None:
    code, _, stderr = cli("tune", *args, "--out", str(tmp_path / "s"), capsys=capsys)
    assert code == 2 and stderr.startswith("error: ") and needle in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and "secret" not in stderr


def test_report_of_a_missing_study(tmp_path: Path, capsys) -> None:
    code, _, stderr = cli("tune", "report", str(tmp_path / "none"), capsys=capsys)
    assert code == 2 and "holds no study" in stderr


def test_importing_tune_reads_no_system_files() -> None:
    code = textwrap.dedent("""
        import sys
        opened = []
        sys.addaudithook(lambda event, args: event == "open" and "boot_id" in str(args[0]) and opened.append(args[0]))
        import tempsched.tune
        assert not opened, opened
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_bare_postgresql_url_gets_the_installed_driver() -> None:
    assert tune.database_url("postgresql://u:pw@db:5432/optuna") == "postgresql+psycopg2://u:pw@db:5432/optuna"
    for url in ("postgresql+psycopg2://u@db/x", "postgresql+asyncpg://u@db/x", "sqlite:///s.db", "mysql://u@db/x"):
        assert tune.database_url(url) == url


# The journal: a torn last line is what a writer killed in mid-record leaves; anything else is damage.
TORN = b'{"op_code": 5, "tri'


def test_a_torn_last_line_is_cut_and_the_study_goes_on(tmp_path: Path, caplog) -> None:
    settings = toy_settings(tmp_path / "study", trials=2)
    tune.run_study(settings)
    journal = settings.study_dir / tune.JOURNAL
    before = [(t.number, t.state, t.params) for t in tune.open_existing(settings.study_dir, "toy").trials]
    whole = journal.read_bytes()
    with journal.open("ab") as f:
        f.write(TORN)
    settings.trials = 4
    with caplog.at_level(logging.WARNING, logger="tempsched.tune.journal"):
        result = tune.run_study(settings)
    assert result.new_trials == 2 and result.counts["complete"] == 4
    repaired = [r.getMessage() for r in caplog.records]
    assert len(repaired) == 1 and f"ended in a record cut short ({len(TORN)} bytes" in repaired[0]
    data = journal.read_bytes()
    assert data.startswith(whole) and TORN not in data and data.endswith(b"\n")
    study = tune.open_existing(settings.study_dir, "toy")
    assert [(t.number, t.state, t.params) for t in study.trials[:2]] == before


@pytest.fixture(scope="module")
def whole_journal(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The journal of a finished one-trial toy study."""
    study_dir = tmp_path_factory.mktemp("whole") / "study"
    tune.run_study(toy_settings(study_dir, trials=1))
    return (study_dir / tune.JOURNAL).read_bytes()


def glued_at_line_3(data: bytes) -> bytes:
    """What Optuna's own writer makes of a torn line: the next record glued to it, mid-file."""
    lines = data.splitlines(keepends=True)
    return b"".join(lines[:2]) + TORN + b"".join(lines[2:])


@pytest.mark.parametrize("damage, needle", [
    (glued_at_line_3, "is damaged at line 3 (not valid JSON); to keep the 2 lines before it, cut the file there: "
                      "head -n 2 "),
    (lambda data: data + TORN + b"\n", "(not valid JSON)"),  # Optuna's own reader skips a bad last line
    (lambda data: data + b"[1, 2]\n", "(JSON, but no Optuna journal record)"),
    (lambda data: b"name,loss\nx,1\n", "is not an Optuna study journal (line 1 is not valid JSON)"),
    (lambda data: b"\x89PNG\x00\x01", "is not an Optuna study journal (line 1 is an unfinished line"),
], ids=["mid-file", "last-line", "not-a-record", "csv-file", "binary-file"])
def test_a_damaged_journal_is_one_line_and_left_as_it_is(damage: Callable[[bytes], bytes], needle: str,
                                                         whole_journal: bytes, tmp_path: Path, capsys) -> None:
    settings = toy_settings(tmp_path / "study", trials=2)
    journal = settings.study_dir / tune.JOURNAL
    journal.parent.mkdir()
    journal.write_bytes(damage(whole_journal))
    damaged = journal.read_bytes()
    with pytest.raises(UserError) as refused:
        tune.run_study(settings)
    assert needle in str(refused.value) and len(str(refused.value).splitlines()) == 1, refused.value
    code, _, stderr = cli("tune", "report", str(settings.study_dir), "--study-name", "toy", capsys=capsys)
    assert code == 2 and needle in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert journal.read_bytes() == damaged
    assert sorted(p.name for p in settings.study_dir.iterdir()) == [tune.JOURNAL]  # no lock, nothing else


def test_the_cut_the_error_suggests_keeps_the_records_before_the_damage(whole_journal: bytes, tmp_path: Path) -> None:
    settings = toy_settings(tmp_path / "study", trials=2)
    journal = settings.study_dir / tune.JOURNAL
    journal.parent.mkdir()
    journal.write_bytes(whole_journal + TORN + whole_journal)  # a torn record with records glued after it
    with pytest.raises(UserError, match=r"head -n \d+ ") as refused:
        tune.run_study(settings)
    command = str(refused.value).split("cut the file there: ")[1]
    subprocess.run(command, shell=True, check=True)
    assert journal.read_bytes() == whole_journal
    result = tune.run_study(settings)
    assert result.new_trials == 1 and result.counts["complete"] == 2


def test_a_renamed_study_directory_continues_its_own_study(tmp_path: Path) -> None:
    first = tmp_path / "a"
    tune.run_study(toy_settings(first, trials=2, study_name=tune.default_study_name(first)))
    moved = first.rename(tmp_path / "b")
    kept = {p: p.read_bytes() for p in moved.rglob("*") if p.is_file() and "trials" in p.parts}
    assert tune.default_study_name(moved) == "a"
    result = tune.run_study(toy_settings(moved, trials=3, study_name=tune.default_study_name(moved)))
    assert result.new_trials == 1 and result.counts["complete"] == 3
    assert sorted(p.name for p in (moved / "trials").iterdir()) == ["0", "1", "2"]
    assert all(p.read_bytes() == data for p, data in kept.items())
    with pytest.raises(UserError, match=r"belongs to study 'a' .*or use another --out for study 'other'"):
        tune.run_study(toy_settings(moved, trials=3, study_name="other"))


def test_trial_directories_of_another_study_are_refused(tmp_path: Path) -> None:
    study_dir = tmp_path / "s"
    tune.run_study(toy_settings(study_dir, trials=1, study_name="old"))
    (study_dir / tune.NAME_FILE).unlink()  # as a directory made before directories recorded their study
    journal = (study_dir / tune.JOURNAL).read_bytes()
    with pytest.raises(UserError, match=r"trials/0 is no trial of study 'new' \(it has 0 trial\(s\) in .*; studies "
                                        r"there: old\): it belongs to another study"):
        tune.run_study(toy_settings(study_dir, trials=1, study_name="new"))
    assert (study_dir / tune.JOURNAL).read_bytes() == journal  # the refused study was not created
    assert not (study_dir / tune.NAME_FILE).exists()


class FailRuns:
    """Makes the runs into directories named in ``names`` raise as they start."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    @hookimpl
    def tempsched_run_start(self, info) -> None:
        if Path(info.run_dir).name in self.names:
            raise RuntimeError(f"boom in run {Path(info.run_dir).name}")


def failing_manager(*names: str) -> Callable[[], PluginManager]:
    def factory() -> PluginManager:
        m = toy_manager()
        m.register(FailRuns(names), name="fail")
        return m
    return factory


def failure_lines(capfd) -> list[str]:
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if " failed: " in line]


def test_a_failed_trial_is_one_line_and_the_study_goes_on(tmp_path: Path, capfd) -> None:
    result = tune.run_study(toy_settings(tmp_path / "study", trials=3, manager_factory=failing_manager("1")))
    assert result.counts["complete"] == 3 and result.counts["fail"] == 1
    lines = failure_lines(capfd)
    assert len(lines) == 1 and lines[0].startswith("trial 1 failed: ") and "boom in run 1" in lines[0], lines


def test_a_study_whose_trials_keep_failing_stops_with_one_line(tmp_path: Path, capfd) -> None:
    settings = toy_settings(tmp_path / "study", trials=5, manager_factory=failing_manager(*"01234"))
    with pytest.raises(UserError, match=rf"{tune.FAILURES_IN_A_ROW} trials in a row failed \(the last, trial 2: "):
        tune.run_study(settings)
    assert [line.split(":")[0] for line in failure_lines(capfd)] == ["trial 0 failed", "trial 1 failed",
                                                                     "trial 2 failed"]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, waiting to be reaped by whoever adopted it) is gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def running_workers(study_dir: Path, name: str) -> list[int]:
    """The pids of the workers that have started a trial of the study so far."""
    with contextlib.suppress(UserError, KeyError):
        study = optuna.load_study(study_name=name, storage=tune.open_storage(None, study_dir))
        return [int(str(t.user_attrs["worker"]).split(":")[1]) for t in study.trials if "worker" in t.user_attrs]
    return []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with their parent on Linux")
def test_workers_die_with_a_killed_tune(tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["tune", "--plugin", "paper-default", "--config", str(tiny_config(tmp_path)), *TINY, "--epochs", "1000",
            "--trials", "2", "--workers", "2", "--pruner", "none", "--study-name", "orphans", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", "from tempsched.cli import main; main()", *args],
                            stdout=subprocess.DEVNULL)
    pids: list[int] = []
    try:
        wait_for(lambda: len(running_workers(out, "orphans")) == 2 or proc.poll() is not None,
                 "two workers to start a trial")
        pids = running_workers(out, "orphans")
        assert len(pids) == 2 and proc.pid in pids, f"the two workers never both started a trial: {pids}"
        proc.kill()  # kill -9: no chance to stop its workers itself
        proc.wait()
        wait_for(lambda: not any(map(pid_alive, pids)), "the workers of the killed tune to end", timeout=60)
    finally:
        proc.kill()
        proc.wait()
        for pid in pids:
            if pid != proc.pid and pid_alive(pid):  # an orphan this test made
                os.kill(pid, signal.SIGKILL)
