"""Algorithm 2: each strategy's formula in both rate modes, the member assignment and clamping."""

from __future__ import annotations

import pytest

from tempsched import EpochContext, UserError
from tempsched.engine import clamp
from tempsched_plugins.paper_default import STRATEGIES, paper_assignment

RATES = {"l_inc": 0.3, "l_dec": 0.2, "r_inc": 1.5, "r_dec": 1.25}


def ctx(member: int) -> EpochContext:
    return EpochContext(member=member, epoch=0, epochs=10, tau_initial=1.0, tau_min=0.5, tau_max=300.0)


def strategy(name: str, index_scaled: bool = False, **rates: float):
    """Strategy ``name`` built from its declared parameters, as the engine builds it."""
    cls = STRATEGIES[name]
    values = {k: p.default for k, p in cls.params.items()}
    values.update({k: v for k, v in {**RATES, **rates}.items() if k in values})
    if "index_scaled" in values:
        values["index_scaled"] = index_scaled
    return cls(**values)


def test_assignment_follows_algorithm_2() -> None:
    assert paper_assignment(5) == ["fixed", "linear-up", "linear-down", "exp-up", "exp-down"]
    # "For n > 5, the repeated strategies start from linear increase" (i mod 4).
    assert paper_assignment(8)[5:] == ["linear-up", "linear-down", "exp-up"]
    assert paper_assignment(1) == ["fixed"]


def test_each_strategy_declares_only_its_own_rate() -> None:
    assert {name: set(cls.params) for name, cls in STRATEGIES.items()} == {
        "fixed": set(), "linear-up": {"l_inc", "index_scaled"}, "linear-down": {"l_dec", "index_scaled"},
        "exp-up": {"r_inc", "index_scaled"}, "exp-down": {"r_dec", "index_scaled"}}


@pytest.mark.parametrize("name,expected", [
    ("fixed", 2.0), ("linear-up", 2.0 + 0.3), ("linear-down", 2.0 - 0.2),
    ("exp-up", 2.0 * 1.5), ("exp-down", 2.0 / 1.25),
])
def test_constant_rates(name: str, expected: float) -> None:
    for member in (2, 7):  # constant mode ignores the member index
        assert strategy(name).on_epoch(2.0, ctx(member)) == pytest.approx(expected)


@pytest.mark.parametrize("name,member,expected", [
    ("linear-up", 6, 2.0 + 5 * 0.3), ("linear-down", 3, 2.0 - 2 * 0.2),
    ("exp-up", 4, 2.0 * (3 * 1.05)), ("exp-down", 5, 2.0 / (4 * 0.99)), ("fixed", 1, 2.0),
])
def test_index_scaled_rates_as_printed(name: str, member: int, expected: float) -> None:
    s = strategy(name, index_scaled=True, r_inc=1.05, r_dec=0.99)
    assert s.on_epoch(2.0, ctx(member)) == pytest.approx(expected)


def test_default_rates_move_every_strategy_gently() -> None:
    for name in ("linear-up", "linear-down", "exp-up", "exp-down"):
        cls = STRATEGIES[name]
        nxt = cls(**{k: p.default for k, p in cls.params.items()}).on_epoch(1.0, ctx(5))
        assert 0.0 < abs(nxt - 1.0) <= 0.1 + 1e-9, name
    exp_down = STRATEGIES["exp-down"]
    assert exp_down(**{k: p.default for k, p in exp_down.params.items()}).on_epoch(1.0, ctx(5)) < 1.0


def test_index_scaled_exp_needs_member_two_or_later() -> None:
    with pytest.raises(UserError, match="member 1 cannot follow 'exp-up'"):
        strategy("exp-up", index_scaled=True).on_epoch(1.0, ctx(1))


def test_clamp() -> None:
    assert clamp(0.1, 0.5, 3.0) == 0.5
    assert clamp(9.0, 0.5, 3.0) == 3.0
    assert clamp(1.5, 0.5, 3.0) == 1.5
