"""Configuration: layering, TOML round trip, typed keys."""

from __future__ import annotations

import pytest

from tempsched.config import from_dict, merge
from tempsched.errors import UserError
from tempsched.training import resolve_config


def test_preset_defaults_fill_and_user_values_win(manager) -> None:
    c = resolve_config(from_dict({"plugin": "paper-default", "tau": {"max": 10.0}, "params": {"patience": 2}}),
                       manager)
    assert c.members == 8 and c.tau.initial == 1.0 and c.tau.min == 0.5 and c.tau.max == 10.0
    assert c.params["patience"] == 2 and c.params["feedback_lr"] == 0.01
    assert c.schedules == ["fixed", "linear-up", "linear-down", "exp-up", "exp-down", "linear-up", "linear-down",
                           "exp-up"]
    assert c.feedback == "patience" and c.selection == "min-loss" and c.task == "gsvae"


def test_round_trip_through_toml(manager) -> None:
    import tomllib

    c = resolve_config(from_dict({"plugin": "standard-annealing", "data": {"exclude_classes": [2, 3]}}), manager)
    again = resolve_config(from_dict(tomllib.loads(c.to_toml())), manager)
    assert again == c


def test_merge_is_deep() -> None:
    assert merge({"a": 1, "t": {"x": 1, "y": 2}}, {"t": {"y": 3}}) == {"a": 1, "t": {"x": 1, "y": 3}}


def test_schedule_count_must_match_members(manager) -> None:
    with pytest.raises(UserError, match="schedules lists 2 names for 3 members"):
        resolve_config(from_dict({"members": 3, "schedules": ["fixed", "fixed"]}), manager)


def test_int_accepted_for_float_but_bool_is_not_int() -> None:
    assert from_dict({"tau": {"min": 1}}).tau.min == 1.0
    with pytest.raises(UserError):
        from_dict({"members": True})
