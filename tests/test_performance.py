"""Speed options keep results: defaults unchanged, vmap = loop, channels_last and bf16 near fp32."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_gsvae
from tempsched.build import build
from tempsched.config import layer
from tempsched.errors import UserError
from tempsched.session import execute
from tempsched.steppers import LoopStepper, VmapStepper, choose_stepper

# (train_loss, val loss) of every row of tiny_gsvae's metrics.jsonl, recorded before the speed work
# (commit 864885c); the default path must still compute exactly these numbers.
REFERENCE_ROWS = [(500.9554443359375, 497.9371337890625), (514.9330596923828, 511.14190673828125),
                  (529.2259063720703, 525.62939453125), (495.88087463378906, 493.57275390625),
                  (495.86614990234375, 493.5858459472656), (495.8848190307617, 493.56719970703125)]


def _rows(manager, tmp_path: Path, name: str, **performance: object) -> list[tuple[float, float]]:
    config = tiny_gsvae(manager, performance=performance)
    execute(config, manager, tmp_path / name)
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [(r["train_loss"], r["loss"]) for r in rows]


# CPUs of this machine kind round differently (AVX2 vs AVX-512 kernels): the same run differed by about
# 1.2e-7 relative between two of them. 1e-5 absorbs that, while a real change of the computation does not
# fit inside it (see the test below).
RECORDED_REL = 1e-5


def _assert_recorded(rows: list[tuple[float, float]]) -> None:
    assert len(rows) == len(REFERENCE_ROWS)
    for got, want in zip(rows, REFERENCE_ROWS):
        assert got == pytest.approx(want, rel=RECORDED_REL, abs=0.0)


def test_default_settings_compute_the_recorded_numbers(manager, tmp_path: Path) -> None:
    _assert_recorded(_rows(manager, tmp_path, "default"))


def test_a_real_change_falls_outside_the_recorded_tolerance(manager, tmp_path: Path) -> None:
    """The tolerance is no blanket: a learning rate 1% off the default is caught."""
    config = tiny_gsvae(manager, learning_rate=1e-3 * 1.01)
    execute(config, manager, tmp_path / "lr")
    rows = [json.loads(line) for line in (tmp_path / "lr" / "metrics.jsonl").read_text().splitlines()]
    with pytest.raises(AssertionError):
        _assert_recorded([(r["train_loss"], r["loss"]) for r in rows])


def test_vmap_backend_matches_the_loop_within_1e_4(manager) -> None:
    """Same noise, same steps: the vectorised convolutions only round differently (rel. 1e-4 after 5 steps)."""
    loop, vec = build(tiny_gsvae(manager), manager), build(tiny_gsvae(manager), manager)
    batches = list(loop.task.batches(0))
    for m in loop.population.members + vec.population.members:
        m.tau = 0.5 + m.index / 4  # different temperatures per member, as in a real population
        vec.task.evaluate(m.model, m.tau)  # leaves the model in eval mode, as selection does each epoch
    for batch in batches:
        loop_losses = LoopStepper(loop.task)(loop.population.members, batch)
        vec_losses = VmapStepper(vec.task)(vec.population.members, batch)
        assert vec_losses == pytest.approx(loop_losses, rel=1e-4)
    for a, b in zip(loop.population.members, vec.population.members):
        for pa, pb in zip(a.model.parameters(), b.model.parameters()):
            torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5)
        assert torch.equal(a.generator.get_state(), b.generator.get_state())


@pytest.mark.parametrize("performance, rel", [
    ({"channels_last": True}, 1e-4),  # other convolution kernels: rounding only
    ({"precision": "bf16"}, 0.02),  # 8-bit mantissa in the forward pass
])
def test_speed_options_stay_within_tolerance_of_fp32(manager, tmp_path: Path, performance: dict,
                                                     rel: float) -> None:
    rows = _rows(manager, tmp_path, "fast", backend="loop", **performance)
    assert [r[1] for r in rows] == pytest.approx([r[1] for r in REFERENCE_ROWS], rel=rel)


def test_auto_backend_loops_on_the_cpu_and_vmap_needs_a_vectorisable_task(manager) -> None:
    gsvae = build(tiny_gsvae(manager), manager)
    assert isinstance(gsvae.population.stepper, LoopStepper)
    assert isinstance(choose_stepper("vmap", gsvae.task), VmapStepper)
    toy = build(layer(manager.registry, {"plugin": "toy-paper", "members": 2}), manager)
    with pytest.raises(UserError, match="vmap"):
        choose_stepper("vmap", toy.task)


@pytest.mark.parametrize("performance, message", [
    ({"backend": "gpu"}, "performance.backend"),
    ({"precision": "fp16"}, "performance.precision"),
    ({"threads": -1}, "performance.threads"),
    ({"channels_last": "yes"}, "performance.channels_last"),
])
def test_bad_performance_settings_are_user_errors(manager, performance: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        tiny_gsvae(manager, performance=performance)


def test_cli_speed_flags_reach_the_saved_configuration(tmp_path: Path, capsys) -> None:
    from test_cli import TINY, cli

    config = tmp_path / "tiny.toml"
    config.write_text('[task_options]\nz1 = [8, 4]\nz2 = [4, 4]\nchannels = [8, 16]\n')
    out = tmp_path / "run"
    threads = str(torch.get_num_threads())  # the run sets it process-wide: keep the test process as it was
    code, _, stderr = cli("run", "--config", str(config), "--epochs", "1", "--out", str(out), *TINY, "--device", "cpu",
                          "--backend", "vmap", "--channels-last", "--threads", threads, capsys=capsys)
    assert code == 0, stderr
    saved = (out / "config.toml").read_text()
    assert 'backend = "vmap"' in saved and "channels_last = true" in saved and f"threads = {threads}" in saved
    code, _, stderr = cli("run", "--precision", "fp16", *TINY, capsys=capsys)
    assert code == 2 and stderr.strip().splitlines() == ["error: performance.precision must be one of fp32, bf16, "
                                                          "got 'fp16'"]
