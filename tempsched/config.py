"""Typed run configuration: TOML in and out, every user mistake reported as one ``UserError``.

A configuration is resolved in layers: the dataclass defaults, then the preset's defaults (members,
tau bounds, parameters), then a TOML file, then command-line options. The resolved configuration is
complete (no missing value), is what ``config.toml`` in a run directory holds, and loads back with
``--config`` to the same run.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import tomli_w

from tempsched.errors import UserError
from tempsched.parts import Preset


@dataclass
class TauConfig:
    """Initial temperature and the bounds every update is clamped into (None: the preset's)."""

    initial: float | None = None
    min: float | None = None
    max: float | None = None


@dataclass
class DataConfig:
    """Which data the task trains on and how it is split."""

    dataset: str = "sample"
    data_dir: str | None = None
    exclude_classes: list[int] = field(default_factory=list)
    batch_size: int = 128
    # Held-out validation images carved from the training set (0: min(10% of train, 5000)).
    val_size: int = 0
    # Use only the first N training / test images (0: all of them).
    train_size: int = 0
    test_size: int = 0


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
    """Everything a run needs; ``resolve`` fills the values a preset supplies."""

    plugin: str = "paper-default"
    task: str | None = None
    members: int | None = None
    epochs: int = 10
    seed: int = 0
    select_on: str = "val"
    device: str = "cpu"
    learning_rate: float = 1e-3
    schedules: list[str] | None = None
    feedback: str | None = None
    selection: str | None = None
    tau: TauConfig = field(default_factory=TauConfig)
    data: DataConfig = field(default_factory=DataConfig)
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    task_options: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict without None values (TOML has no null)."""
        return _drop_none(dataclasses.asdict(self))

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


SELECT_ON = ("val", "train")
DEVICES = ("cpu", "cuda", "auto")
BACKENDS = ("auto", "loop", "vmap")
PRECISIONS = ("fp32", "bf16")


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
            continue
        if not _type_ok(value, hint):
            raise UserError(f"'{where}{key}' must be {_type_name(hint)}, got {value!r}")
        kwargs[key] = float(value) if hint in (float, float | None) and value is not None else value
    return cls(**kwargs)


def from_dict(data: Mapping[str, Any]) -> RunConfig:
    """A RunConfig from a parsed TOML mapping (unresolved: preset values may still be missing)."""
    return _build(RunConfig, data, "")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML configuration file, with a one-line error for a missing or broken file."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"config file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read config file {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {p} is not valid TOML: {exc}") from None


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two config mappings; ``override`` wins, tables merge key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve(config: RunConfig, preset: Preset) -> RunConfig:
    """Fill preset defaults, then check every value; returns a new, complete configuration."""
    c = dataclasses.replace(
        config,
        task=config.task or preset.task,
        members=config.members if config.members is not None else preset.members,
        feedback=config.feedback or preset.feedback,
        selection=config.selection or preset.selection,
        tau=TauConfig(
            initial=config.tau.initial if config.tau.initial is not None else preset.tau_initial,
            min=config.tau.min if config.tau.min is not None else preset.tau_min,
            max=config.tau.max if config.tau.max is not None else preset.tau_max,
        ),
        data=dataclasses.replace(config.data, exclude_classes=list(config.data.exclude_classes)),
        performance=dataclasses.replace(config.performance),
        params=_resolve_params(config.params, preset),
    )
    assert c.members is not None
    if c.schedules is None:
        c.schedules = preset.assign(c.members)
    _validate(c)
    return c


def _resolve_params(given: Mapping[str, Any], preset: Preset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key not in preset.params:
            known = ", ".join(sorted(preset.params)) or "none"
            raise UserError(f"preset '{preset.name}' has no parameter '{key}' (its parameters: {known})")
        default = preset.params[key].default
        if not _type_ok(value, type(default)):
            raise UserError(f"parameter '{key}' must be {type(default).__name__}, got {value!r}")
        out[key] = float(value) if isinstance(default, float) else value
    return {key: out.get(key, p.default) for key, p in preset.params.items()}


def _validate(c: RunConfig) -> None:
    assert c.members is not None and c.tau.min is not None and c.tau.max is not None
    assert c.tau.initial is not None
    positive = {"members": c.members, "epochs": c.epochs, "data.batch_size": c.data.batch_size}
    for name, value in positive.items():
        if value <= 0:
            raise UserError(f"{name} must be a positive integer, got {value}")
    for name, value in {"data.val_size": c.data.val_size, "data.train_size": c.data.train_size,
                        "data.test_size": c.data.test_size}.items():
        if value < 0:
            raise UserError(f"{name} must be >= 0, got {value}")
    for name, value in {"tau.min": c.tau.min, "tau.max": c.tau.max, "tau.initial": c.tau.initial,
                        "learning_rate": c.learning_rate}.items():
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"{name} must be a positive number, got {value}")
    if c.tau.min >= c.tau.max:
        raise UserError(f"tau.min ({c.tau.min}) must be smaller than tau.max ({c.tau.max})")
    if c.select_on not in SELECT_ON:
        raise UserError(f"select_on must be one of {', '.join(SELECT_ON)}, got '{c.select_on}'")
    if c.device not in DEVICES:
        raise UserError(f"device must be one of {', '.join(DEVICES)}, got '{c.device}'")
    perf = c.performance
    if perf.backend not in BACKENDS:
        raise UserError(f"performance.backend must be one of {', '.join(BACKENDS)}, got '{perf.backend}'")
    if perf.precision not in PRECISIONS:
        raise UserError(f"performance.precision must be one of {', '.join(PRECISIONS)}, got '{perf.precision}'")
    if perf.threads < 0:
        raise UserError(f"performance.threads must be >= 0, got {perf.threads}")
    if c.schedules is not None and len(c.schedules) != c.members:
        raise UserError(f"schedules lists {len(c.schedules)} names for {c.members} members")
    for key, value in c.params.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(value):
            raise UserError(f"parameter '{key}' must be finite, got {value}")
