"""unseen: both models train without the held-out classes, their figures on held-out and seen test images
recomputed by hand, the defaults by data set, and every bad input one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import tiny_gsvae
from tempsched.build import build_task
from tempsched.errors import UserError
from tempsched.evaluation import EvalContext, Report
from tempsched.gsvae.experiments.unseen import Unseen, held_out_classes
from tempsched.plugins import PluginManager
from tempsched.runs import load_best
from tempsched.spec import RunSpec, saved_config
from test_cli import TINY, _one_line_error, cli
from test_sweeps import TASK, evaluate

HELD_OUT = [2, 3]  # the sample is MNIST: the paper's digits


@pytest.fixture(scope="module")
def unseen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The evaluation on a one-member population and its baseline, 1 epoch each (classes by default)."""
    base = tiny_gsvae(PluginManager(), members=1, epochs=1, task_options=TASK)
    root = tmp_path_factory.mktemp("unseen")
    return evaluate(Unseen(exclude_classes=[], images=4, hard_draws=1), [], base, root / "report", root / "cache")


def test_training_data_holds_no_excluded_class(unseen: dict[str, Any]) -> None:
    assert unseen["held_out_classes"] == HELD_OUT
    manager = PluginManager()
    rows = {row["model"]: row for row in unseen["unseen"]}
    assert (rows["population"]["preset"], rows["baseline"]["preset"]) == ("paper-default", "standard-annealing")
    assert rows["population"]["epochs"] == rows["baseline"]["epochs"] == 1
    for row in rows.values():
        config = saved_config(Path(row["run"]), manager.registry)
        assert config.task_options["exclude_classes"] == HELD_OUT
        data = build_task(config, manager).data
        for labels in (data.y_train, data.y_val):
            assert len(labels) and not torch.isin(labels, torch.tensor(HELD_OUT)).any()
        assert torch.isin(data.y_test, torch.tensor(HELD_OUT)).any()  # the test set keeps them


def test_figures_match_a_computation_by_hand(unseen: dict[str, Any]) -> None:
    for row in unseen["unseen"]:
        run = load_best(Path(row["run"]), PluginManager())
        x, y = run.task.data.x_test.float() / 255.0, run.task.data.y_test
        held = torch.isin(y, torch.tensor(HELD_OUT))
        for subset, key in ((held, "held-out soft MSE"), (~held, "seen soft MSE")):
            generator = torch.Generator().manual_seed(run.config.task_options["eval_noise_seed"])
            with torch.no_grad():
                x_hat = run.model(x[subset], run.tau, generator)[0]
            assert row[key] == pytest.approx(float(((x_hat - x[subset]) ** 2).mean()), rel=1e-5)
        assert row["held-out / seen (hard)"] == pytest.approx(row["held-out hard MSE (1 draws)"]
                                                              / row["seen hard MSE (1 draws)"])


def test_held_out_classes_come_from_the_option_the_run_options_or_the_data_set() -> None:
    manager = PluginManager()
    base = tiny_gsvae(manager, members=1)
    assert held_out_classes([], base) == [2, 3]
    assert held_out_classes([5, 4, 5], base) == [4, 5]
    given = tiny_gsvae(manager, members=1, task_options={"exclude_classes": [7]})
    assert held_out_classes([], given) == held_out_classes([7], given) == [7]
    assert held_out_classes([], tiny_gsvae(manager, task_options={"dataset": "cifar10-jpeg"})) == [1]  # automobile
    with pytest.raises(UserError, match="given twice and differ"):
        held_out_classes([8], given)
    with pytest.raises(UserError, match="'celeba' has no default classes"):
        held_out_classes([], tiny_gsvae(manager, task_options={"dataset": "celeba"}))


def test_bad_input_is_refused_before_training(tmp_path: Path, capsys) -> None:
    base = tiny_gsvae(PluginManager(), members=1, epochs=1)

    def run(classes: Any, runs: tuple[Path, ...] = ()) -> None:
        Unseen(exclude_classes=classes, images=4, hard_draws=1).run(EvalContext(
            runs=list(runs), spec=RunSpec(base.to_dict()), report=Report(tmp_path, "x"), manager=PluginManager()))

    with pytest.raises(UserError, match=r"has no image of class\(es\) \[11\]"):
        run([2, 11])
    with pytest.raises(UserError, match="has 0 training image"):
        run(list(range(10)))
    with pytest.raises(UserError, match="it takes no run directory"):
        run([2], [tmp_path])
    with pytest.raises(UserError, match="must be a list of class numbers"):
        run(["two"])
    code, _, stderr = cli("eval", "unseen", "--set", "exclude_classes=[12]", *TINY, "--out", str(tmp_path / "r"),
                          capsys=capsys)
    _one_line_error(code, stderr, "no image of class(es) [12]")
