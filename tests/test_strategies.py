"""Algorithm 2: each strategy's formula in both rate modes, the member assignment and clamping."""

from __future__ import annotations

import pytest

from tempsched.engine import clamp
from tempsched.errors import UserError
from tempsched.parts import EpochContext
from tempsched_plugins.paper_default import PARAMS, PaperStrategy, paper_assignment

DEFAULTS = {k: p.default for k, p in PARAMS.items()}
CTX = EpochContext(member=1, epoch=0)


def test_assignment_follows_algorithm_2() -> None:
    assert paper_assignment(5) == ["fixed", "linear-up", "linear-down", "exp-up", "exp-down"]
    # "For n > 5, the repeated strategies start from linear increase" (i mod 4).
    assert paper_assignment(8)[5:] == ["linear-up", "linear-down", "exp-up"]
    assert paper_assignment(1) == ["fixed"]


@pytest.mark.parametrize("name,expected", [
    ("fixed", 2.0), ("linear-up", 2.0 + 0.3), ("linear-down", 2.0 - 0.2),
    ("exp-up", 2.0 * 1.5), ("exp-down", 2.0 / 1.25),
])
def test_constant_rates(name: str, expected: float) -> None:
    params = {**DEFAULTS, "l_inc": 0.3, "l_dec": 0.2, "r_inc": 1.5, "r_dec": 1.25, "index_scaled": False}
    for member in (2, 7):  # constant mode ignores the member index
        assert PaperStrategy(name, member, params).on_epoch(2.0, CTX) == pytest.approx(expected)


@pytest.mark.parametrize("name,member,expected", [
    ("linear-up", 6, 2.0 + 5 * 0.3), ("linear-down", 3, 2.0 - 2 * 0.2),
    ("exp-up", 4, 2.0 * (3 * 1.05)), ("exp-down", 5, 2.0 / (4 * 0.99)), ("fixed", 1, 2.0),
])
def test_index_scaled_rates_as_printed(name: str, member: int, expected: float) -> None:
    params = {**DEFAULTS, "l_inc": 0.3, "l_dec": 0.2, "r_inc": 1.05, "r_dec": 0.99, "index_scaled": True}
    assert PaperStrategy(name, member, params).on_epoch(2.0, CTX) == pytest.approx(expected)


def test_default_rates_move_every_strategy_gently() -> None:
    for name in ("linear-up", "linear-down", "exp-up", "exp-down"):
        nxt = PaperStrategy(name, 5, DEFAULTS).on_epoch(1.0, CTX)
        assert 0.0 < abs(nxt - 1.0) <= 0.1 + 1e-9, name
    assert PaperStrategy("exp-down", 5, DEFAULTS).on_epoch(1.0, CTX) < 1.0  # a decrease, unlike r_dec 0.99


def test_index_scaled_exp_needs_member_two_or_later() -> None:
    with pytest.raises(UserError):
        PaperStrategy("exp-up", 1, {**DEFAULTS, "index_scaled": True})


def test_clamp() -> None:
    assert clamp(0.1, 0.5, 3.0) == 0.5
    assert clamp(9.0, 0.5, 3.0) == 3.0
    assert clamp(1.5, 0.5, 3.0) == 1.5
