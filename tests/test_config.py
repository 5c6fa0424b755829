"""Configuration: the one layering path, parameters that live on the parts, old files, typed keys."""

from __future__ import annotations

import tomllib

import pytest

from tempsched.cli.run import spec_from_options
from tempsched.config import from_dict, layer, replace_keys, resolve
from tempsched.errors import UserError


def test_preset_and_part_defaults_fill_and_user_values_win(manager) -> None:
    c = layer(manager.registry, {"plugin": "paper-default", "tau": {"max": 10.0}, "params": {"patience": 2}})
    assert c.members == 8 and c.tau.initial == 1.0 and c.tau.min == 0.5 and c.tau.max == 10.0
    assert c.params["patience"] == {"feedback_lr": 0.01, "patience": 2}
    assert c.params["linear-up"] == {"l_inc": 0.1, "index_scaled": False}
    assert c.schedules == ["fixed", "linear-up", "linear-down", "exp-up", "exp-down", "linear-up", "linear-down",
                           "exp-up"]
    assert c.feedback == "patience" and c.selection == "min-loss" and c.task == "gsvae"
    assert c.task_options["batch_size"] == 128 and c.task_options["learning_rate"] == 1e-3


def test_layers_defaults_then_toml_then_overrides(manager) -> None:
    toml = {"epochs": 3, "params": {"linear-up": {"l_inc": 0.2}}, "task_options": {"batch_size": 32}}
    c = layer(manager.registry, toml, {"epochs": 4, "params.index_scaled": True, "task_options.batch_size": 16})
    assert c.epochs == 4 and c.task_options["batch_size"] == 16
    assert c.params["linear-up"] == {"l_inc": 0.2, "index_scaled": True}  # one NAME reaches every part taking it
    assert all(c.params[s]["index_scaled"] for s in ("linear-up", "linear-down", "exp-up", "exp-down"))


def test_a_qualified_parameter_reaches_one_part(manager) -> None:
    c = layer(manager.registry, overrides={"params.index_scaled": True, "params.exp-up.index_scaled": False})
    assert c.params["linear-up"]["index_scaled"] and not c.params["exp-up"]["index_scaled"]


def test_round_trip_through_toml(manager) -> None:
    c = layer(manager.registry, {"plugin": "standard-annealing", "task_options": {"exclude_classes": [2, 3]}})
    assert layer(manager.registry, tomllib.loads(c.to_toml())) == c


def test_config_files_from_before_parameters_moved_still_load(manager) -> None:
    """0.1 wrote [data], a top-level learning_rate and a flat [params] table: all read as before."""
    old = {"plugin": "paper-default", "members": 3, "learning_rate": 0.002,
           "data": {"dataset": "sample", "batch_size": 64, "exclude_classes": [2]},
           "task_options": {"z1": [8, 4]},
           "params": {"l_inc": 0.1, "l_dec": 0.05, "r_inc": 1.05, "r_dec": 1.05, "index_scaled": False,
                      "feedback_lr": 0.02, "patience": 5}}
    c = layer(manager.registry, old)
    assert c.task_options["learning_rate"] == 0.002 and c.task_options["batch_size"] == 64
    assert c.task_options["exclude_classes"] == [2] and c.task_options["z1"] == [8, 4]
    assert c.params["patience"] == {"feedback_lr": 0.02, "patience": 5}


def test_replace_keys_changes_a_typed_config_without_touching_it(manager) -> None:
    base = layer(manager.registry)
    trial = layer(manager.registry, None, None)
    changed = replace_keys(base, {"tau.min": 0.3, "params.patience.patience": 3})
    assert base == trial and base.tau.min == 0.5 and base.params["patience"]["patience"] == 5
    assert changed.tau.min == 0.3 and changed.params["patience"]["patience"] == 3


@pytest.mark.parametrize("overrides,needle", [
    ({"params.patience": 3, "plugin": "standard-annealing"},
     "preset 'standard-annealing' has no part that takes parameter 'patience' (given); its parts take: "
     "jang-anneal: anneal_rate, anneal_every; none: -; min-loss: -"),
    ({"params.cosine.period": 3}, "preset 'paper-default' has no part 'cosine'"),
    ({"params.linear-up.r_inc": 3.0}, "part 'linear-up' has no parameter 'r_inc' (given); it takes: l_inc, "
                                      "index_scaled"),
    ({"task_options.colour": 1}, "task 'gsvae' has no option 'colour'"),
    ({"tau.mean": 1.0}, "unknown configuration key 'tau.mean'"),
    ({"members": "three"}, "'members' must be int"),
    ({"seed": 2**63 - 1}, "seed must be between 0 and"),
    ({"performance.threads": 100000}, "performance.threads must be between 0 and 1024"),
])
def test_mistakes_are_one_line_errors(manager, overrides: dict, needle: str) -> None:
    with pytest.raises(UserError) as info:
        layer(manager.registry, None, overrides)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_schedule_count_must_match_members(manager) -> None:
    with pytest.raises(UserError, match="schedules lists 2 names for 3 members"):
        layer(manager.registry, {"members": 3, "schedules": ["fixed", "fixed"]})


def test_int_accepted_for_float_but_bool_is_not_int() -> None:
    assert from_dict({"tau": {"min": 1}}).tau.min == 1.0
    with pytest.raises(UserError):
        from_dict({"members": True})


# The feedback rule 'patience' takes a parameter 'patience': the flat key params.patience (every part that takes
# it) and the part's table params.patience.NAME must both hold, whichever comes first.
BOTH = {"patience": 3, "feedback_lr": 0.05}


@pytest.mark.parametrize("toml,overrides", [
    ({"params": {"patience": {"feedback_lr": 0.05}}}, {"params.patience": 3}),  # TOML table, then CLI flat
    ({"params": {"patience": 3}}, {"params.patience.feedback_lr": 0.05}),  # TOML flat, then CLI dotted
    (None, {"params.patience": 3, "params.patience.feedback_lr": 0.05}),  # CLI flat, then dotted
    (None, {"params.patience.feedback_lr": 0.05, "params.patience": 3}),  # CLI dotted, then flat
], ids=["toml-table-then-flat", "toml-flat-then-dotted", "flat-then-dotted", "dotted-then-flat"])
def test_a_flat_parameter_and_a_part_of_its_name_never_overwrite_each_other(manager, toml, overrides) -> None:
    assert layer(manager.registry, toml, overrides).params["patience"] == BOTH


def test_a_run_directorys_config_keeps_its_part_table_under_a_flat_override(manager, tmp_path) -> None:
    """``--config RUN/config.toml --patience 3`` (and the other shortcut orders) on a saved, resolved config."""
    saved = layer(manager.registry, overrides={"params.patience.feedback_lr": 0.05})
    path = tmp_path / "config.toml"
    path.write_text(saved.to_toml())
    for params in ([], ["patience.feedback_lr=0.05"], ["patience=3"]):
        c = spec_from_options(path, {}, params, [], {"params.patience": 3}).resolve(manager.registry)
        assert c.params["patience"] == BOTH, params
    assert spec_from_options(path, {}, ["patience.feedback_lr=0.05", "patience=3"], []).resolve(manager.registry) == c
    # a later part value still wins over an earlier flat one, as any later value does
    c = spec_from_options(path, {}, ["patience.patience=4"], [], {"params.patience": 3}).resolve(manager.registry)
    assert c.params["patience"] == {"patience": 4, "feedback_lr": 0.05}


def test_flat_values_and_part_tables_survive_replace_keys_and_a_round_trip(manager) -> None:
    """``tempsched tune`` sets flat keys on a resolved config; an unresolved one may be written out and read back."""
    base = layer(manager.registry, overrides={"params.patience.feedback_lr": 0.05})
    assert resolve(replace_keys(base, {"params.patience": 3}), manager.registry).params["patience"] == BOTH
    unresolved = replace_keys(from_dict({}), {"params.patience": 3, "params.patience.feedback_lr": 0.05})
    assert layer(manager.registry, tomllib.loads(unresolved.to_toml())).params["patience"] == BOTH
