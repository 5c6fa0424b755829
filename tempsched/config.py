"""Typed run configuration and the one path that builds it: defaults <- TOML <- command line.

Every key has one dotted name, shared by the command line, TOML files and the tune search space:
``members``, ``tau.min``, ``performance.threads``, ``task_options.dataset``, and for the parameters the
parts declare ``params.PART.NAME`` (one part) or ``params.NAME`` (every part of the preset that takes
NAME). ``layer`` turns a TOML mapping and a mapping of dotted overrides into a resolved configuration:
the preset fills what the user left out, every part parameter and task option is checked against its
declaration, and the result is complete. ``replace_keys`` changes keys of a resolved configuration
without a round trip through dicts (``tempsched tune`` builds each trial with it).

A part may take a parameter of its own name (the feedback rule ``patience`` takes ``patience``), so
``params.patience`` (flat) and ``params.patience.feedback_lr`` (the part's table) must not share one
slot: until resolved, flat values live in their own table, ``params[EVERY_PART]``, and a later value
wins over an earlier one whichever way either was written. A resolved configuration holds part tables
only, so config.toml files keep their layout.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import tomli_w

from tempsched.errors import UserError
from tempsched.parts import Param, Preset

SELECT_ON_TRAIN = "train"  # the mean training loss; every other choice is one of the task's held-out losses
DEVICES = ("cpu", "cuda", "auto")
BACKENDS = ("auto", "loop", "vmap")
PRECISIONS = ("fp32", "bf16")
MAX_SEED = 2**32 - 1  # the seed is mixed into per-member and per-epoch seeds that torch takes as 64-bit
MAX_THREADS = 1024  # more intra-op threads help no machine, and a huge count crashes torch's thread pool
ANY_PART = "*"  # [params."*"]: values for whichever parts of the preset take them; ignored elsewhere
EVERY_PART = ""  # params.NAME, kept as [params.""] until resolved: every part that takes NAME (an error if none)


@dataclass
class TauConfig:
    """Initial temperature and the bounds every update is clamped into (None: the preset's).

    ``members``: each member's own initial temperature, inside the bounds (PBT and halving start members
    apart); None starts every member at ``initial``, which the per-step contexts keep reporting.
    """

    initial: float | None = None
    min: float | None = None
    max: float | None = None
    members: list[float] | None = None


@dataclass
class PerformanceConfig:
    """How fast the members train; none of these changes what a run computes beyond a stated tolerance.

    ``backend``: 'loop' (members one after another, the reference), 'vmap' (vectorised with torch.func)
    or 'auto' (vmap on a GPU, loop on a CPU, as measured in docs/performance.md). ``precision``: 'fp32'
    or 'bf16' (autocast for the forward pass; fast only where the hardware has bf16 units).
    ``channels_last``: NHWC memory layout for convolutions. ``threads``: torch's intra-op threads
    (0: torch's default, one per core).
    """

    backend: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    threads: int = 0


@dataclass
class RunConfig:
    """Everything a run needs. Once resolved, ``params`` maps each part of the preset to its parameter
    values and ``task_options`` holds every option of the task."""

    plugin: str = "paper-default"
    task: str | None = None
    members: int | None = None
    epochs: int = 10
    seed: int = 0
    select_on: str | None = None  # None: the preset's, else the task's default for its options
    # Member k seeds its weights and noise as member k + member_offset of a population would: a single run
    # that starts exactly as one member of a population (benchmarks/pbt_vs_grid.py pairs grid runs so).
    # None (0) is left out of config.toml, so runs from before keep their fingerprint.
    member_offset: int | None = None
    device: str = "cpu"
    schedules: list[str] | None = None
    feedback: str | None = None
    selection: str | None = None
    tau: TauConfig = field(default_factory=TauConfig)
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    task_options: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict without None values (TOML has no null)."""
        return _drop_none(dataclasses.asdict(self))

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def part_params(self, part: str) -> dict[str, Any]:
        """The resolved parameter values of one part of the preset."""
        return dict(self.params.get(part, {}))


class PartRegistry(Protocol):
    """What ``layer`` needs of the plugin registry (``tempsched.plugins.Registry``)."""

    def get(self, kind: str, name: str) -> Any: ...


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _typed(value: Any, hint: Any, key: str) -> Any:
    if not _type_ok(value, hint):
        raise UserError(f"'{key}' must be {_type_name(hint)}, got {value!r}")
    return float(value) if hint in (float, float | None) and value is not None else value


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and ill-typed values."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise UserError(f"unknown key '{where}{key}' in the configuration (known: {known})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise UserError(f"'{where}{key}' must be a table")
            kwargs[key] = _build(hint, value, f"{where}{key}.")
        else:
            kwargs[key] = _typed(value, hint, f"{where}{key}")
    return cls(**kwargs)


def from_dict(data: Mapping[str, Any]) -> RunConfig:
    """A RunConfig from a parsed TOML mapping (unresolved: preset values may still be missing).

    Files written before version 0.2 kept the data settings in ``[data]`` and the learning rate at the
    top level; both are task options now and are read from where they were.
    """
    data = dict(data)
    old_data = data.pop("data", None)
    moved = {key: data.pop(key) for key in ("learning_rate",) if key in data}
    if old_data is not None or moved:
        options = data.get("task_options", {})
        if not isinstance(old_data or {}, dict) or not isinstance(options, dict):
            raise UserError("'data' and 'task_options' must be tables")
        data["task_options"] = {**(old_data or {}), **moved, **options}
        # 0.1 wrote every parameter of the preset flat, also those of strategies a small population does
        # not use: they apply where a part takes them and are dropped elsewhere.
        params = data.get("params", {})
        if isinstance(params, dict):
            flat = {k: v for k, v in params.items() if not isinstance(v, dict)}
            data["params"] = {**{k: v for k, v in params.items() if isinstance(v, dict)},
                              **({ANY_PART: flat} if flat else {})}
    return _build(RunConfig, data, "")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML configuration file, with a one-line error for a missing or broken file."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"config file not found: {p}") from None
    except IsADirectoryError:
        raise UserError(f"config file {p} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read config file {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {p} is not valid TOML: {exc}") from None


def replace_keys(config: RunConfig, values: Mapping[str, Any]) -> RunConfig:
    """A copy of ``config`` with each dotted key set to its value (typed fields are type-checked).

    ``params.NAME`` sets NAME in every part table that has it and is kept for parts not resolved yet;
    ``params.PART.NAME`` sets one part's; ``task_options.NAME`` one task option. Resolve the result
    again (``layer``) to check the values against the parts' declarations.
    """
    out = dataclasses.replace(config, tau=dataclasses.replace(config.tau),
                              performance=dataclasses.replace(config.performance),
                              task_options=dict(config.task_options), params=_param_tables(config.params))
    for key, value in values.items():
        head, _, rest = key.partition(".")
        if head == "params" and rest:
            part, _, name = rest.rpartition(".")  # part EVERY_PART: a flat params.NAME
            if part == EVERY_PART:  # later than any value NAME has in a part's table, so it replaces those
                for table in out.params.values():
                    if name in table:
                        table[name] = value
            out.params.setdefault(part, {})[name] = value
        elif head == "task_options" and rest and "." not in rest:
            out.task_options[rest] = value
        else:
            _set_field(out, key, value)
    return out


def _param_tables(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A copy of ``params`` with its flat values (``[params] NAME = value`` in TOML) moved into the
    ``EVERY_PART`` table, so that each part's table and the flat values are separate entries."""
    tables = {part: dict(table) for part, table in params.items() if isinstance(table, dict)}
    flat = {name: value for name, value in params.items() if not isinstance(value, dict)}
    if flat:
        tables[EVERY_PART] = {**tables.get(EVERY_PART, {}), **flat}
    return tables


def _set_field(config: RunConfig, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node: Any = config
    for name in parents:
        if not dataclasses.is_dataclass(node) or not hasattr(node, name):
            raise UserError(f"unknown configuration key '{key}'")
        node = getattr(node, name)
    hints = typing.get_type_hints(type(node)) if dataclasses.is_dataclass(node) else {}
    if leaf not in hints or dataclasses.is_dataclass(hints[leaf]) or leaf in ("params", "task_options"):
        raise UserError(f"unknown configuration key '{key}'")
    setattr(node, leaf, _typed(value, hints[leaf], key))


def layer(registry: PartRegistry, toml: Mapping[str, Any] | None = None,
          overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The one path to a run configuration: defaults, then ``toml``, then dotted ``overrides``, resolved."""
    config = from_dict(toml or {})
    if overrides:
        config = replace_keys(config, overrides)
    return resolve(config, registry)


def resolve(config: RunConfig, registry: PartRegistry) -> RunConfig:
    """Fill the preset's values and every declared default, check every value; a new, complete config."""
    preset: Preset = registry.get("presets", config.plugin)
    members = config.members if config.members is not None else preset.members
    if not _type_ok(members, int) or members <= 0:
        raise UserError(f"members must be a positive integer, got {members}")
    c = dataclasses.replace(
        config,
        task=config.task or preset.task,
        members=members,
        feedback=config.feedback or preset.feedback,
        selection=config.selection or preset.selection,
        schedules=list(config.schedules) if config.schedules is not None else preset.assign(members),
        tau=TauConfig(
            initial=config.tau.initial if config.tau.initial is not None else preset.tau_initial,
            min=config.tau.min if config.tau.min is not None else preset.tau_min,
            max=config.tau.max if config.tau.max is not None else preset.tau_max,
            members=config.tau.members,
        ),
        performance=dataclasses.replace(config.performance),
    )
    if c.tau.members is None and preset.tau_members is not None:
        assert c.tau.min is not None and c.tau.max is not None
        c.tau.members = preset.tau_members(members, c.tau.min, c.tau.max)
    _validate(c)
    parts = preset_parts(c, registry)
    c.params = _resolve_params(preset, parts, config.params)
    task_cls = registry.get("tasks", c.task)
    options = _resolve_task_options(preset, c.task, task_cls.params, config.task_options)
    c.task_options = {name: value for name, value in options.items()
                      if not (task_cls.params[name].omitted_at_default and value == task_cls.params[name].default)}
    c.select_on = _resolve_select_on(config.select_on or preset.select_on, task_cls.selection_losses(options))
    return c


def task_options(config: RunConfig, task_cls: Any) -> dict[str, Any]:
    """Every option of a resolved configuration's task: its ``task_options`` and the defaults they omit."""
    return {**{name: p.default for name, p in task_cls.params.items()}, **config.task_options}


def _resolve_select_on(given: str | None, held_out: Sequence[str]) -> str:
    """The loss members are judged on: ``given``, else the task's first held-out loss; checked against them."""
    choices = (*held_out, SELECT_ON_TRAIN)
    select_on = given or choices[0]
    if select_on not in choices:
        raise UserError(f"select_on must be one of {', '.join(choices)}, got '{select_on}'")
    return select_on


def preset_parts(config: RunConfig, registry: PartRegistry) -> dict[str, type]:
    """The part classes a (filled) configuration uses, by name: its schedules, feedback rule, selection."""
    assert config.schedules is not None and config.feedback is not None and config.selection is not None
    parts: dict[str, type] = {}
    named = [("schedules", s) for s in dict.fromkeys(config.schedules)]
    for kind, name in named + [("feedback_rules", config.feedback), ("selection_policies", config.selection)]:
        cls = registry.get(kind, name)
        if name in parts and parts[name] is not cls:
            raise UserError(f"two parts of this run are both named '{name}': parameters could not tell them apart")
        parts[name] = cls
    return parts


def _describe_parts(parts: Mapping[str, type]) -> str:
    return "; ".join(f"{name}: {', '.join(cls.params) or '-'}" for name, cls in parts.items())


def _resolve_params(preset: Preset, parts: Mapping[str, type], given: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, dict[str, Any]] = {name: {k: p.default for k, p in cls.params.items()}
                                         for name, cls in parts.items()}
    where = f"preset '{preset.name}'"

    def set_flat(name: str, value: Any, source: str) -> None:
        takers = [part for part, cls in parts.items() if name in cls.params]
        if not takers:
            raise UserError(f"{where} has no part that takes parameter '{name}' ({source}); its parts take: "
                            f"{_describe_parts(parts)}")
        for part in takers:
            values[part][name] = value

    def set_part(part: str, name: str, value: Any, source: str) -> None:
        if part not in parts:
            raise UserError(f"{where} has no part '{part}' ({source}); its parts: {', '.join(parts)}")
        if name not in parts[part].params:
            raise UserError(f"part '{part}' has no parameter '{name}' ({source}); it takes: "
                            f"{', '.join(parts[part].params) or 'none'}")
        values[part][name] = value

    for key, value in preset.defaults.items():
        if key.startswith("task_options."):
            continue
        part, _, name = key.rpartition(".")
        set_part(part, name, value, "preset default") if part else set_flat(name, value, "preset default")
    tables = _param_tables(given)
    for name, value in tables.pop(EVERY_PART, {}).items():
        set_flat(name, value, "given")
    for name, value in tables.pop(ANY_PART, {}).items():
        for part, cls in parts.items():
            if name in cls.params:
                values[part][name] = value
    for part, table in tables.items():
        for name, value in table.items():
            set_part(part, name, value, "given")
    return {part: {name: parts[part].params[name].check(value, f"parameter '{part}.{name}'")
                   for name, value in table.items()}
            for part, table in values.items() if table}


def _resolve_task_options(preset: Preset, task: str, declared: Mapping[str, Param],
                          given: Mapping[str, Any]) -> dict[str, Any]:
    values = {k: p.default for k, p in declared.items()}
    preset_values = {k.partition(".")[2]: v for k, v in preset.defaults.items() if k.startswith("task_options.")}
    for name, value in {**preset_values, **given}.items():
        if name not in declared:
            raise UserError(f"task '{task}' has no option '{name}' (its options: {', '.join(declared) or 'none'})")
        values[name] = value
    return {name: declared[name].check(value, f"task option '{name}'") for name, value in values.items()}


def _validate(c: RunConfig) -> None:
    assert c.members is not None and c.tau.min is not None and c.tau.max is not None
    assert c.tau.initial is not None and c.schedules is not None
    if c.epochs <= 0:
        raise UserError(f"epochs must be a positive integer, got {c.epochs}")
    if not 0 <= c.seed <= MAX_SEED:
        raise UserError(f"seed must be between 0 and {MAX_SEED}, got {c.seed}")
    if c.member_offset is not None and not 0 <= c.member_offset <= MAX_SEED:
        raise UserError(f"member_offset must be between 0 and {MAX_SEED}, got {c.member_offset}")
    for name, value in {"tau.min": c.tau.min, "tau.max": c.tau.max, "tau.initial": c.tau.initial}.items():
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"{name} must be a positive number, got {value}")
    if c.tau.min >= c.tau.max:
        raise UserError(f"tau.min ({c.tau.min}) must be smaller than tau.max ({c.tau.max})")
    if c.tau.members is not None:
        if len(c.tau.members) != c.members:
            raise UserError(f"tau.members lists {len(c.tau.members)} temperatures for {c.members} members")
        c.tau.members = [float(t) for t in c.tau.members]
        outside = [(i, t) for i, t in enumerate(c.tau.members, start=1) if not c.tau.min <= t <= c.tau.max]
        if outside:
            raise UserError(f"tau.members gives member {outside[0][0]} tau {outside[0][1]}, outside "
                            f"[tau.min, tau.max] = [{c.tau.min}, {c.tau.max}]")
    if c.device not in DEVICES:
        raise UserError(f"device must be one of {', '.join(DEVICES)}, got '{c.device}'")
    perf = c.performance
    if perf.backend not in BACKENDS:
        raise UserError(f"performance.backend must be one of {', '.join(BACKENDS)}, got '{perf.backend}'")
    if perf.precision not in PRECISIONS:
        raise UserError(f"performance.precision must be one of {', '.join(PRECISIONS)}, got '{perf.precision}'")
    if not 0 <= perf.threads <= MAX_THREADS:
        raise UserError(f"performance.threads must be between 0 and {MAX_THREADS}, got {perf.threads}")
    if len(c.schedules) != c.members:
        raise UserError(f"schedules lists {len(c.schedules)} names for {c.members} members")
