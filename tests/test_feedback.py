"""Algorithm 3 on a scripted loss sequence: the counter, the threshold and the size of delta tau."""

from __future__ import annotations

import pytest

from tempsched.config import layer
from tempsched.errors import UserError
from tempsched_plugins.paper_default import MinLoss, PatienceFeedback


def test_patience_counter_threshold_and_delta() -> None:
    rule = PatienceFeedback(feedback_lr=0.1, patience=3)
    state: dict = {}
    best = 100.0
    script = [  # (loss, expected counter, expected delta)
        (110.0, 1, 0.0),
        (105.0, 2, 0.0),
        (120.0, 3, 2.0),  # reaches the threshold: 0.1 * (120 - 100)
        (101.0, 4, 0.1),  # stays past it: feedback every epoch, no reset after firing
        (100.0, 0, 0.0),  # not behind the best: reset
        (130.0, 1, 0.0),
    ]
    for loss, counter, delta in script:
        assert rule.delta(state, loss, best) == pytest.approx(delta)
        assert state["patience"] == counter


def test_best_member_resets() -> None:
    rule = PatienceFeedback(feedback_lr=0.5, patience=1)
    state = {"patience": 7}
    assert rule.delta(state, 50.0, 50.0) == 0.0
    assert state["patience"] == 0


@pytest.mark.parametrize("lr,patience,needle", [
    (0.1, 0, "'patience.patience' must be >= 1"), (0.1, -2, "'patience.patience' must be >= 1"),
    (-0.1, 3, "'patience.feedback_lr' must be >= 0"), (0.1, 2.5, "'patience.patience' must be int"),
])
def test_bad_parameters_are_refused_naming_part_and_key(manager, lr: float, patience: object, needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        layer(manager.registry, {"params": {"patience": {"feedback_lr": lr, "patience": patience}}})


def test_min_loss_selection_breaks_ties_by_index() -> None:
    assert MinLoss().choose([3.0, 1.0, 2.0]) == 1
    assert MinLoss().choose([1.0, 1.0, 0.5, 0.5]) == 2
