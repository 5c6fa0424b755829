"""A cached run's name says what trained it: two trainings of one configuration on different devices or
torch versions never share a folder, and a cache from before such names is renamed, not retrained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tempsched import hardware, runs
from tempsched.plugins import PluginManager


def _on_gpu(monkeypatch: pytest.MonkeyPatch, name: str = "NVIDIA H200") -> None:
    """Pretend this machine has a CUDA device called ``name`` (only its name is asked for)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)


def test_runs_differing_only_in_device_get_different_names(manager: PluginManager, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import tiny_gsvae

    on_cpu = runs.cached_run_dir(tiny_gsvae(manager, device="cpu"), tmp_path)
    _on_gpu(monkeypatch)
    on_gpu = runs.cached_run_dir(tiny_gsvae(manager, device="cuda"), tmp_path)
    assert on_cpu != on_gpu
    assert on_gpu.name.endswith(f"-cuda-nvidia-h200-torch{hardware._slug(torch.__version__)}")
    assert on_cpu.name.split("-cpu-")[0] == on_gpu.name.split("-cuda-")[0]  # the same configuration


def test_runs_differing_only_in_torch_version_or_cpu_get_different_names(manager: PluginManager, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import tiny_gsvae

    config = tiny_gsvae(manager)
    monkeypatch.setattr(hardware, "cpu_model_and_flags", lambda: ("AMD EPYC", frozenset({"avx2", "avx512f"})))
    monkeypatch.setattr(torch, "__version__", "2.14.1+cu130")
    pinned = runs.cached_run_dir(config, tmp_path)
    monkeypatch.setattr(torch, "__version__", "2.11.0+cu130")
    older = runs.cached_run_dir(config, tmp_path)
    monkeypatch.setattr(hardware, "cpu_model_and_flags", lambda: ("AMD EPYC", frozenset({"avx2"})))
    narrower = runs.cached_run_dir(config, tmp_path)
    assert pinned.name.endswith("-cpu-amd-epyc-avx512-torch2.14.1-cu130")
    assert len({pinned, older, narrower}) == 3


def _fabricate(root: Path, name: str, hardware_line: str | None, device: str) -> Path:
    """A finished run as the cache held it before names carried the hardware: its small files only."""
    run = root / name
    run.mkdir(parents=True)
    summary = {"run_dir": f"../repro-runs/{name}", "best_tau": 1.9, "test_metrics": {"test_mse": 0.0118}}
    if hardware_line is not None:
        summary["hardware"] = hardware_line
    (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (run / "config.toml").write_text(f'plugin = "paper-default"\ndevice = "{device}"\n')
    return run


def test_an_old_cache_is_renamed_from_its_summaries_and_its_reports_follow(tmp_path: Path) -> None:
    cache = tmp_path / "repro-runs"
    _fabricate(cache, "paper-default-e10-285332c61885", None, "cpu")
    _fabricate(cache, "paper-default-e5-285332c61885", "NVIDIA H200 (CUDA, torch 2.11.0+cu130)", "cuda")
    _fabricate(cache, "standard-annealing-e80-39df2ccc6850", "AMD EPYC, 1 torch thread (torch 2.14.1+cu130)", "cpu")
    (cache / "paper-default-e3-0123456789ab").mkdir()  # cut off: no summary says what trained it
    report = cache / "reports" / "mnist-seeds" / "recon"
    report.mkdir(parents=True)
    (report / "config.toml").write_text('runs = [\n    "paper-default-e5-285332c61885",\n]\n')
    (report / "results.json").write_text('{"recon": [{"run": "../repro-runs/paper-default-e5-285332c61885"}]}\n')

    renamed = runs.rename_cached_runs(cache)

    assert renamed == {
        "paper-default-e10-285332c61885": "paper-default-e10-285332c61885-cpu-unrecorded",
        "paper-default-e5-285332c61885": "paper-default-e5-285332c61885-cuda-nvidia-h200-torch2.11.0-cu130",
        "standard-annealing-e80-39df2ccc6850": "standard-annealing-e80-39df2ccc6850-cpu-amd-epyc-torch2.14.1-cu130"}
    assert sorted(p.name for p in cache.iterdir()) == sorted([*renamed.values(), "paper-default-e3-0123456789ab",
                                                              "reports"])
    gpu_run = renamed["paper-default-e5-285332c61885"]
    assert json.loads((cache / gpu_run / "summary.json").read_text())["run_dir"] == f"../repro-runs/{gpu_run}"
    assert f'"{gpu_run}"' in (report / "config.toml").read_text()
    assert f"../repro-runs/{gpu_run}\"" in (report / "results.json").read_text()
    assert runs.unrenamed_runs(cache) == []
    assert runs.rename_cached_runs(cache) == {}


def test_a_rename_that_would_overwrite_a_run_moves_nothing(tmp_path: Path) -> None:
    from tempsched.errors import UserError

    _fabricate(tmp_path, "paper-default-e5-285332c61885", "NVIDIA H200 (CUDA, torch 2.11.0+cu130)", "cuda")
    (tmp_path / "paper-default-e5-285332c61885-cuda-nvidia-h200-torch2.11.0-cu130").mkdir()
    with pytest.raises(UserError, match="exists already"):
        runs.rename_cached_runs(tmp_path)
    assert (tmp_path / "paper-default-e5-285332c61885" / "summary.json").is_file()


def test_a_run_another_machine_finished_is_reused_not_trained(manager: PluginManager, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import tiny_gsvae_spec

    spec = tiny_gsvae_spec()
    config = spec.resolve(manager.registry)
    here = runs.cached_run_dir(config, tmp_path)
    elsewhere = _fabricate(tmp_path, here.name.split("-cpu-")[0] + "-cuda-nvidia-h200-torch2.11.0-cu130",
                           "NVIDIA H200 (CUDA, torch 2.11.0+cu130)", "cuda")
    monkeypatch.setattr(runs, "execute", lambda *a, **k: pytest.fail("trained a run the cache holds"))
    assert runs.ensure_run(spec, manager, tmp_path) == elsewhere


def test_reproduce_refuses_an_old_cache_until_renamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from reproduce_script import load

    reproduce = load()
    monkeypatch.chdir(tmp_path)  # main() moves to the repository; come back after the test
    monkeypatch.setattr(reproduce.signal, "signal", lambda *a: None)  # and leaves pytest's SIGTERM alone
    _fabricate(tmp_path, "paper-default-e5-285332c61885", "NVIDIA H200 (CUDA, torch 2.11.0+cu130)", "cuda")
    monkeypatch.setattr(reproduce, "run_cell", lambda *a: pytest.fail("ran a cell on an unrenamed cache"))
    assert reproduce.main(["--cache", str(tmp_path), "--cells", "mnist-seeds"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--rename-cache" in err
    assert reproduce.main(["--cache", str(tmp_path), "--rename-cache"]) == 0
    assert "renamed 1 run(s)" in capsys.readouterr().out
    assert runs.unrenamed_runs(tmp_path) == []


def test_a_run_prints_and_keeps_what_trained_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tempsched.cli import main

    (tmp_path / "tiny.toml").write_text('[task_options]\nz1 = [8, 4]\nz2 = [4, 4]\nchannels = [8, 16]\n')
    try:
        main(["run", "--plugin", "paper-default", "--config", str(tmp_path / "tiny.toml"), "--epochs", "1",
              "--members", "2", "--train-size", "320", "--val-size", "64", "--test-size", "64", "--batch-size", "64",
              "--threads", "1", "--out", str(tmp_path / "run")])
    except SystemExit as exc:
        assert exc.code in (0, None)
    stdout = capsys.readouterr().out
    assert "trained on" in stdout and f"(torch {torch.__version__})" in stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["platform"] == hardware.platform_tag("cpu") and summary["platform"].startswith("cpu-")
