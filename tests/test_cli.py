"""The command line end to end: a tiny run, its files, resume equality and every bad input."""

from __future__ import annotations

import gzip
import json
import tomllib
from pathlib import Path

import pytest
import torch

from conftest import MNIST_STEMS
from tempsched import Param, Schedule, hookimpl
from tempsched.cli import main, shortcuts
from tempsched.cli import run as run_command
from tempsched.config import RunConfig, from_dict
from tempsched.hardware import cpu_model_and_flags
from tempsched.plugins import PluginManager
from tempsched.session import execute
from tempsched.spec import saved_config

TINY = ["--members", "3", "--train-size", "320", "--val-size", "64", "--test-size", "64", "--batch-size", "64"]


def cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text('[task_options]\nz1 = [8, 4]\nz2 = [4, 4]\nchannels = [8, 16]\n')
    return path


def test_run_end_to_end(tmp_path: Path, tiny_config: Path, capsys) -> None:
    out = tmp_path / "run"
    code, stdout, stderr = cli("run", "--plugin", "paper-default", "--config", str(tiny_config), "--epochs", "2",
                               *TINY, "--out", str(out), capsys=capsys)
    assert code == 0, stderr
    assert "best member" in stdout and "test mse" in stdout and "MNIST sample (embedded" in stdout
    assert "images/s per member" in stdout
    for name in ("config.toml", "metrics.jsonl", "best.pt", "state.pt", "reconstructions.png", "summary.json"):
        assert (out / name).is_file(), name
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    for key in ("epoch", "member", "strategy", "tau", "train_loss", "loss", "best", "feedback", "delta_tau", "tau_next"):
        assert key in rows[0]
    assert sum(r["best"] for r in rows) == 2
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["strategy"] in {"fixed", "linear-up", "linear-down"} and best["tau"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_member"] == best["member"] and 0 < summary["test_metrics"]["test_mse"] < 0.3
    # The summary names what trained the run, as detected here (the CPU's model and torch's threads).
    assert summary["hardware"].startswith(cpu_model_and_flags()[0]) and "torch thread" in summary["hardware"]
    assert (out / "reconstructions.png").read_bytes()[:4] == b"\x89PNG"
    # config.toml is complete and loads back to the same configuration.
    saved = tomllib.loads((out / "config.toml").read_text())
    assert saved["members"] == 3 and saved["tau"]["max"] == 300.0 and saved["params"]["patience"]["patience"] == 5
    assert saved_config(out, PluginManager().registry).to_dict() == saved


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path, tiny_config: Path, capsys) -> None:
    common = ["--config", str(tiny_config), "--epochs", "3", *TINY, "--seed", "7", "--patience", "1"]
    assert cli("run", *common, "--out", str(tmp_path / "straight"), capsys=capsys)[0] == 0

    # Kill after the second epoch's files are written, and leave a half-written metrics line behind.
    manager = PluginManager()
    base = tomllib.loads((tmp_path / "straight" / "config.toml").read_text())
    config = from_dict(base)

    def kill(report) -> None:
        if report.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(config, manager, tmp_path / "killed", on_epoch=kill)
    with (tmp_path / "killed" / "metrics.jsonl").open("a") as fh:
        fh.write('{"epoch": 2, "member": 1, "tau"')
    code, stdout, stderr = cli("run", "--resume", str(tmp_path / "killed"), capsys=capsys)
    assert code == 0, stderr
    assert "resuming at epoch 3" in stdout

    straight = (tmp_path / "straight" / "metrics.jsonl").read_text()
    resumed = (tmp_path / "killed" / "metrics.jsonl").read_text()
    assert resumed == straight  # bit-exact on the CPU, every loss and tau
    a = torch.load(tmp_path / "straight" / "best.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_can_extend_epochs(tmp_path: Path, tiny_config: Path, capsys) -> None:
    out = tmp_path / "run"
    assert cli("run", "--config", str(tiny_config), "--epochs", "1", *TINY, "--out", str(out), capsys=capsys)[0] == 0
    assert cli("run", "--resume", str(out), "--epochs", "2", capsys=capsys)[0] == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 0, 0, 1, 1, 1]


def _one_line_error(code: int, stderr: str, needle: str) -> None:
    assert code == 2
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert "Traceback" not in stderr and needle in lines[0], stderr


@pytest.mark.parametrize("args,needle", [
    (["--tau-min", "2", "--tau-max", "1"], "smaller than tau.max"),
    (["--members", "0"], "members must be a positive"),
    (["--epochs", "0"], "epochs must be a positive"),
    (["--patience", "0"], "parameter 'patience.patience' must be >= 1"),
    (["--plugin", "nope"], "unknown preset 'nope'"),
    (["--dataset", "nope"], "task option 'dataset' must be one of sample, mnist"),
    (["--dataset", "mnist", "--data-dir", "/no/such/dir"], "data directory not found"),
    (["--select-on", "test"], "select_on must be one of"),
    (["--plugin", "standard-annealing", "--patience", "3"], "its parts take: jang-anneal: anneal_rate"),
    (["--param", "l_inc"], "--param takes NAME=VALUE"),
    (["--param", "linear-up.l_inc=-1"], "parameter 'linear-up.l_inc' must be >= 0.0"),
    (["--option", "z1=[8]"], "task option 'z1' must be [variables, classes]"),
    (["--members", "abc"], "Invalid value for '--members'"),
    (["--threads", "100000"], "performance.threads must be between 0 and 1024"),
    (["--seed", "9223372036854775807"], "seed must be between 0 and"),
    (["--exclude-classes", "two"], "task option 'exclude_classes' must be a list of class numbers, got ['two']"),
    (["--tau-min", "-1"], "tau.min must be a positive"),
])
def test_bad_options(args: list[str], needle: str, tmp_path: Path, capsys) -> None:
    code, _, stderr = cli("run", *args, "--out", str(tmp_path / "run"), capsys=capsys)
    _one_line_error(code, stderr, needle)
    assert not (tmp_path / "run").exists()


def test_missing_and_corrupt_data(tmp_path: Path, capsys) -> None:
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in MNIST_STEMS:
        (raw / f"{stem}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 20))
    code, _, stderr = cli("run", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"), capsys=capsys)
    _one_line_error(code, stderr, "corrupt data file")


@pytest.mark.parametrize("text,needle", [
    ("members = [", "not valid TOML"),
    ("memberz = 3", "unknown key 'memberz'"),
    ("members = 'three'", "'members' must be int"),
    ("[tau]\nmin = 'low'", "'tau.min' must be"),
    ("[data]\ncolour = 1", "task 'gsvae' has no option 'colour'"),
    ("[params]\nl_incc = 1.0", "has no part that takes parameter 'l_incc'"),
    ("[task_options]\nz3 = [1, 2]", "task 'gsvae' has no option 'z3'"),
])
def test_bad_config_files(text: str, needle: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, _, stderr = cli("run", "--config", str(path), "--out", str(tmp_path / "run"), capsys=capsys)
    _one_line_error(code, stderr, needle)


def test_missing_config_file(tmp_path: Path, capsys) -> None:
    code, _, stderr = cli("run", "--config", str(tmp_path / "none.toml"), capsys=capsys)
    _one_line_error(code, stderr, "config file not found")


@pytest.fixture
def finished_run(tmp_path: Path, tiny_config: Path, capsys) -> Path:
    out = tmp_path / "done"
    assert cli("run", "--config", str(tiny_config), "--epochs", "1", *TINY, "--out", str(out), capsys=capsys)[0] == 0
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_existing_run_dir_is_never_overwritten(finished_run: Path, capsys) -> None:
    before = _snapshot(finished_run)
    code, _, stderr = cli("run", "--out", str(finished_run), capsys=capsys)
    _one_line_error(code, stderr, "already holds a run")
    assert _snapshot(finished_run) == before


@pytest.mark.parametrize("content,needle", [
    (b"garbage, not a checkpoint", "corrupt or not a tempsched file"),
    (None, "not a tempsched checkpoint"),
])
def test_corrupt_or_foreign_checkpoint_on_resume(finished_run: Path, content: bytes | None, needle: str,
                                                  capsys) -> None:
    state = finished_run / "state.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, state)
    else:
        state.write_bytes(content)
    before = _snapshot(finished_run)
    code, _, stderr = cli("run", "--resume", str(finished_run), "--epochs", "2", capsys=capsys)
    _one_line_error(code, stderr, needle)
    assert _snapshot(finished_run) == before


def test_resume_rejects_other_options_and_non_run_dirs(finished_run: Path, tmp_path: Path, capsys) -> None:
    for option in (["--members", "5"], ["--patience", "3"]):  # run's own option, a plugin's shortcut
        code, _, stderr = cli("run", "--resume", str(finished_run), *option, capsys=capsys)
        _one_line_error(code, stderr, "only --epochs, --device, --backend, --threads may be given")
    code, _, stderr = cli("run", "--resume", str(tmp_path), capsys=capsys)
    _one_line_error(code, stderr, "not a tempsched run directory")
    code, _, stderr = cli("run", "--resume", str(tmp_path / "nothing"), capsys=capsys)
    _one_line_error(code, stderr, "run directory not found")


def test_version_and_help_panels(capsys) -> None:
    code, out, _ = cli("--version", capsys=capsys)
    assert code == 0 and out.strip() == f"tempsched {__import__('tempsched').__version__}"
    code, out, _ = cli("run", "--help", capsys=capsys)
    assert code == 0
    for panel in ("Data", "Population", "Temperature", "Speed", "Output"):
        assert f"─ {panel} " in out, panel


def _panels(help_text: str) -> dict[str, str]:
    """``run --help``'s panels by title, each the text inside its box."""
    panels: dict[str, str] = {}
    title = ""
    for line in help_text.splitlines():
        if line.startswith("╭─"):
            title = line.strip("╭─╮ ")
            panels[title] = ""
        elif title:
            panels[title] += line + "\n"
    return panels


def test_run_help_lists_the_declared_shortcuts_in_panels(capsys, monkeypatch) -> None:
    """The core CLI names no plugin's parameter: paper-default declares --patience and --feedback-lr, the
    GS-VAE task its data options, each shown in a panel with the declaration's help."""
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = cli("run", "--help", capsys=capsys)
    assert code == 0
    panels = _panels(out)
    assert "--patience" in panels["Population"] and "epochs behind the best before feedback starts" in out
    assert "--feedback-lr" in panels["Population"] and "declared by paper-default" in panels["Population"]
    for flag in ("--dataset", "--data-dir", "--exclude-classes", "--batch-size", "--train-size", "--val-size",
                 "--test-size", "--learning-rate"):
        assert flag in panels["Data"], flag
    assert "--preset" in panels["Population"]


def _resolved(monkeypatch, capsys, *args: str) -> RunConfig:
    """The configuration ``tempsched run ARGS`` would train (nothing is trained)."""
    seen: list[RunConfig] = []
    monkeypatch.setattr(run_command, "_train", lambda manager, asked, resolved, *rest: seen.append(resolved))
    code, _, stderr = cli("run", *args, capsys=capsys)
    assert code == 0 and len(seen) == 1, stderr
    return seen[0]


@pytest.mark.parametrize("shortcut,same", [
    (["--patience", "3"], ["--param", "patience=3"]),
    (["--feedback-lr", "0.2"], ["--param", "patience.feedback_lr=0.2"]),
    (["--exclude-classes", "2,3"], ["--option", "exclude_classes=[2,3]"]),
    (["--dataset", "sample", "--batch-size", "16"], ["--option", "dataset='sample'", "--option", "batch_size=16"]),
    (["--preset", "standard-annealing"], ["--plugin", "standard-annealing"]),  # --plugin: the old name
])
def test_a_shortcut_is_the_option_it_stands_for(shortcut: list[str], same: list[str], tmp_path: Path, monkeypatch,
                                                capsys) -> None:
    a = _resolved(monkeypatch, capsys, *shortcut, "--out", str(tmp_path / "a"))
    b = _resolved(monkeypatch, capsys, *same, "--out", str(tmp_path / "b"))
    assert a == b and a != _resolved(monkeypatch, capsys, "--out", str(tmp_path / "c"))


class _Waiting(Schedule):
    """A schedule whose parameter claims a shortcut (``--patience`` or another flag, set per test)."""

    name = "waiting"
    params = {"wait": Param(2, "epochs to wait", low=1, cli="--patience")}


class _Clash:
    """A plugin registering ``_Waiting`` with its shortcut renamed to ``flag``."""

    def __init__(self, flag: str) -> None:
        self.schedule = type("Waiting", (_Waiting,), {"params": {"wait": Param(2, "epochs to wait", cli=flag)}})

    @hookimpl
    def tempsched_register_schedules(self, register) -> None:
        register(self.schedule)


@pytest.mark.parametrize("flag,line", [
    ("--patience", "error: the option --patience is declared twice: by plugin 'clash' for params.wait and by "
                   "plugin 'paper-default' for params.patience"),
    ("--epochs", "error: plugin 'clash' declares the option --epochs, which the command has already"),
    ("-w", "error: plugin 'clash' declares the option '-w' for params.wait: a shortcut is written --lower-case-words"),
])
def test_a_shortcut_two_plugins_declare_is_one_line(flag: str, line: str, monkeypatch, capsys) -> None:
    def manager() -> PluginManager:
        manager = PluginManager()
        manager.register(_Clash(flag), name="clash")
        return manager

    monkeypatch.setattr(shortcuts, "PluginManager", manager)
    for args in (["run", "--help"], ["run", "--epochs", "1"], ["tune", "--help"]):
        code, _, stderr = cli(*args, capsys=capsys)
        assert code == 2 and stderr.strip().splitlines() == [line], stderr


def test_tune_takes_run_options_and_rejects_bad_ones_in_one_line(tmp_path: Path, capsys) -> None:
    code, out, _ = cli("tune", "--help", capsys=capsys)
    assert code == 0 and "--members" in out and "--dataset" in out and "--resume PATH" not in out
    code, _, stderr = cli("tune", "--trials", "abc", capsys=capsys)
    _one_line_error(code, stderr, "Invalid value for '--trials'")
    code, _, stderr = cli("tune", "--members", "abc", capsys=capsys)
    _one_line_error(code, stderr, "Invalid value for '--members'")
    code, _, stderr = cli("tune", "--plugin", "standard-annealing", "--patience", "2", "--out", str(tmp_path / "s"),
                          capsys=capsys)
    _one_line_error(code, stderr, "has no part that takes parameter 'patience'")


def test_a_population_that_cannot_fit_in_memory_is_refused(tmp_path: Path, tiny_config: Path, capsys) -> None:
    code, _, stderr = cli("run", "--config", str(tiny_config), "--members", "1000000", "--train-size", "320",
                          "--out", str(tmp_path / "run"), capsys=capsys)
    _one_line_error(code, stderr, "1000000 members need at least")
    assert not (tmp_path / "run").exists()


def test_out_that_is_a_file_is_one_line(tmp_path: Path, tiny_config: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, stderr = cli("run", "--config", str(tiny_config), *TINY, "--epochs", "1", "--out", str(blocker / "run"),
                          capsys=capsys)
    _one_line_error(code, stderr, "error:")
    assert blocker.read_text() == "not a folder"


def test_a_full_disk_is_one_line(tmp_path: Path, tiny_config: Path, monkeypatch, capsys) -> None:
    import errno

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "state.pt"))

    monkeypatch.setattr(torch, "save", no_space)
    code, _, stderr = cli("run", "--config", str(tiny_config), *TINY, "--epochs", "1", "--out", str(tmp_path / "run"),
                          capsys=capsys)
    _one_line_error(code, stderr, "No space left on device")


def test_tune_report_into_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    from toy import toy_settings

    from tempsched import tune

    settings = toy_settings(tmp_path / "study", trials=1)
    tune.run_study(settings)
    target = tmp_path / "taken"
    target.write_text("x")
    code, _, stderr = cli("tune", "report", str(tmp_path / "study"), "--out", str(target), capsys=capsys)
    _one_line_error(code, stderr, "error:")


class _Payload:
    """Pickles to a call that would create a file: what a malicious checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_checkpoint_is_refused_without_running_it(finished_run: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    torch.save({"format": "tempsched-state-1", "population": _Payload(marker)}, finished_run / "state.pt")
    code, _, stderr = cli("run", "--resume", str(finished_run), "--epochs", "2", capsys=capsys)
    _one_line_error(code, stderr, "corrupt or not a tempsched file")
    assert not marker.exists()
