"""The search space of ``tempsched tune``: which knobs a study samples, their ranges, and their constraints.

It starts from the run's parts: every parameter a part declares with a ``tune`` range, plus the
preset's own ``tune`` entries (the tau bounds, say). Plugins may change it through the
``tempsched_search_space`` hook; the user then fixes a parameter
(``--fix patience=5``) or moves a range (``--range feedback_lr=1e-5:1``, or a TOML file). Every
distribution is fixed for the whole study (no range depends on another sampled value), which is what
CMA-ES, GP and multivariate TPE need; order constraints such as ``tau_min < tau_max`` are therefore
enforced on the ranges themselves (``below``), so that no sample can break them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from tempsched.config import RunConfig, PartRegistry, preset_parts
from tempsched.errors import UserError
from tempsched.parts import Preset

Number = float | int


@dataclass(frozen=True)
class Dim:
    """One tuned parameter: its range, where its value goes in the run configuration, and why.

    ``target`` is a dotted key of the run configuration (``params.patience``, ``tau.min``).
    ``minimum`` is the smallest value the run accepts at all (patience >= 1, say), so a range that
    reaches below it is refused before any trial runs. ``fixed`` replaces sampling with one value.
    """

    name: str
    target: str
    low: Number
    high: Number
    log: bool = False
    integer: bool = False
    help: str = ""
    minimum: Number | None = None
    fixed: Number | None = None

    def bounds(self) -> tuple[Number, Number]:
        """The smallest and largest value a trial can get."""
        return (self.fixed, self.fixed) if self.fixed is not None else (self.low, self.high)


class SearchSpace:
    """The parameters a study samples, keyed by name, with the order constraints between them."""

    def __init__(self) -> None:
        self.dims: dict[str, Dim] = {}
        self.below: list[tuple[str, str]] = []

    @classmethod
    def for_run(cls, config: RunConfig, registry: PartRegistry) -> SearchSpace:
        """The space the parts of ``config`` (resolved) and its preset declare.

        A parameter declared by one part is named NAME and targets ``params.PART.NAME``; one declared by
        several parts of the preset is one dimension for all of them (``params.NAME``). Preset entries
        are named by their key with dots as underscores (``tau.min`` -> ``tau_min``) and replace a part's
        range for the same key.
        """
        space = cls()
        parts = preset_parts(config, registry)
        declared: dict[str, list[str]] = {}
        for part, part_cls in parts.items():
            for name, param in part_cls.params.items():
                if param.tune is not None:
                    declared.setdefault(name, []).append(part)
        for name, owners in declared.items():
            param = parts[owners[0]].params[name]
            assert param.tune is not None
            target = f"params.{owners[0]}.{name}" if len(owners) == 1 else f"params.{name}"
            space.add(Dim(name, target, param.tune.low, param.tune.high, log=param.tune.log,
                          integer=isinstance(param.default, int) and not isinstance(param.default, bool),
                          help=param.help, minimum=param.low))
        preset: Preset = registry.get("presets", config.plugin)
        for key, rng in preset.tune.items():
            same = [d.name for d in space.dims.values() if key in (d.target, f"params.{d.name}")]
            if same:
                space.replace(same[0], low=rng.low, high=rng.high, log=rng.log)
            else:
                space.add(Dim(key.replace(".", "_"), key, rng.low, rng.high, log=rng.log,
                              integer=isinstance(rng.low, int) and isinstance(rng.high, int)))
        if "tau_min" in space.dims and "tau_max" in space.dims:
            space.require_below("tau_min", "tau_max")
        return space

    def add(self, dim: Dim) -> None:
        """Add a parameter; a plugin that wants to change one another plugin added uses ``replace``."""
        if dim.name in self.dims:
            raise UserError(f"search space parameter '{dim.name}' is added twice (use replace to change it)")
        self.dims[dim.name] = dim

    def replace(self, name: str, **changes: Any) -> None:
        """Change fields of a parameter already in the space (its range, say)."""
        self.dims[self._known(name)] = dataclasses.replace(self.dims[name], **changes)

    def require_below(self, lower: str, upper: str) -> None:
        """Declare that every sample must keep ``lower < upper`` (checked on the ranges)."""
        self.below.append((lower, upper))

    def _known(self, name: str) -> str:
        if name not in self.dims:
            known = ", ".join(sorted(self.dims)) or "none"
            raise UserError(f"the search space has no parameter '{name}' (its parameters: {known})")
        return name

    def fix(self, name: str, value: Number) -> None:
        """Use ``value`` in every trial instead of sampling ``name``."""
        dim = self.dims[self._known(name)]
        if dim.integer and (isinstance(value, float) and not value.is_integer()):
            raise UserError(f"'{name}' is an integer parameter, got {value}")
        self.replace(name, fixed=int(value) if dim.integer else float(value))

    def set_range(self, name: str, low: Number, high: Number) -> None:
        """Sample ``name`` from [low, high] (and stop fixing it)."""
        dim = self.dims[self._known(name)]
        if dim.integer:
            if not (float(low).is_integer() and float(high).is_integer()):
                raise UserError(f"'{name}' is an integer parameter: its range needs whole numbers, got {low}:{high}")
            low, high = int(low), int(high)
        self.replace(name, low=low, high=high, fixed=None)

    def apply_overrides(self, ranges: Mapping[str, tuple[Number, Number]], fixed: Mapping[str, Number]) -> None:
        """Apply the user's ranges, then the user's fixed values."""
        for name, (low, high) in ranges.items():
            self.set_range(name, low, high)
        for name, value in fixed.items():
            self.fix(name, value)

    def validate(self) -> None:
        """Refuse empty ranges, log ranges through zero, values the run rejects and constraints that can break."""
        if not self.dims:
            raise UserError("the search space is empty: no plugin adds parameters for this preset")
        for d in self.dims.values():
            low, high = d.bounds()
            if not all(math.isfinite(v) for v in (low, high)):
                raise UserError(f"'{d.name}' needs finite bounds, got {low}:{high}")
            if d.fixed is None and low >= high:
                raise UserError(f"empty range for '{d.name}': low {low} must be below high {high}")
            if d.log and low <= 0:
                raise UserError(f"'{d.name}' is sampled log-uniformly: its range must be above 0, got {low}:{high}")
            if d.minimum is not None and low < d.minimum:
                raise UserError(f"'{d.name}' must be at least {d.minimum}, but its range starts at {low}")
        for lower, upper in self.below:
            top, bottom = self.dims[self._known(lower)].bounds()[1], self.dims[self._known(upper)].bounds()[0]
            if top >= bottom:
                raise UserError(f"{lower} < {upper} cannot hold for every trial: {lower} may reach {top} but "
                                f"{upper} may go down to {bottom}; keep {lower}'s range below {upper}'s")

    def suggest(self, trial: Any) -> dict[str, Number]:
        """Sample every parameter from an Optuna trial (fixed ones are returned as they are)."""
        values: dict[str, Number] = {}
        for d in self.dims.values():
            if d.fixed is not None:
                values[d.name] = d.fixed
            elif d.integer:
                values[d.name] = trial.suggest_int(d.name, int(d.low), int(d.high), log=d.log)
            else:
                values[d.name] = trial.suggest_float(d.name, float(d.low), float(d.high), log=d.log)
        return values

    def targets(self, values: Mapping[str, Number]) -> dict[str, Number]:
        """Each sampled value keyed by its dotted configuration key (for ``config.replace_keys``)."""
        return {self.dims[self._known(name)].target: value for name, value in values.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (stored with the study, so a resumed study can check it is the same one)."""
        return {"dims": {n: dataclasses.asdict(d) for n, d in self.dims.items()},
                "below": [list(pair) for pair in self.below]}


def parse_assignment(text: str, option: str) -> tuple[str, str]:
    """Split ``name=value`` as given to ``--fix`` or ``--range``."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise UserError(f"{option} takes NAME=VALUE, got '{text}'")
    return name.strip(), value.strip()


def parse_number(text: str, what: str) -> Number:
    """A CLI number: an int when it is written as one, else a float."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{what} must be a number, got '{text}'") from None


def parse_overrides(fix: list[str], ranges: list[str], table: Mapping[str, Any]
                    ) -> tuple[dict[str, tuple[Number, Number]], dict[str, Number]]:
    """Ranges and fixed values from a ``--space`` TOML table, then ``--range`` and ``--fix`` (which win).

    The TOML file has one table per parameter with ``low`` and ``high``, or ``fix``.
    """
    out_ranges: dict[str, tuple[Number, Number]] = {}
    out_fixed: dict[str, Number] = {}
    for name, entry in table.items():
        if not isinstance(entry, dict) or not (set(entry) <= {"low", "high", "fix"}) or not entry:
            raise UserError(f"space file: [{name}] must hold 'low' and 'high', or 'fix'")
        for key, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"space file: {name}.{key} must be a number, got {value!r}")
        if "fix" in entry:
            out_fixed[name] = entry["fix"]
        if "low" in entry or "high" in entry:
            if not {"low", "high"} <= set(entry):
                raise UserError(f"space file: [{name}] needs both 'low' and 'high'")
            out_ranges[name] = (entry["low"], entry["high"])
    for text in ranges:
        name, value = parse_assignment(text, "--range")
        low, sep, high = value.partition(":")
        if not sep:
            raise UserError(f"--range takes NAME=LOW:HIGH, got '{text}'")
        out_ranges[name] = (parse_number(low, f"--range {name} low"), parse_number(high, f"--range {name} high"))
    for text in fix:
        name, value = parse_assignment(text, "--fix")
        out_fixed[name] = parse_number(value, f"--fix {name}")
    return out_ranges, out_fixed
