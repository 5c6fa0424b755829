"""A run spec: what a user, a tune trial, a baseline or a replay asks for, apart from its resolution.

A spec is a base mapping (a TOML file's, or one built in code) and dotted overrides applied on top, in
order. Editing a run means editing its spec (``with_overrides``) and resolving it again, never changing a
resolved ``RunConfig``: the preset's values, each part's declared defaults and every check then apply to
the edited run exactly as to one typed on the command line (a trial that changes ``members`` gets the
preset's strategies for that many members, not the base's list). ``RunSpec.resolve`` is the one entry
point that builds a configuration; a run directory keeps both, ``spec.json`` (what was asked) beside
``config.toml`` (what it resolved to), and a resume whose spec would now resolve to another configuration
(a preset's defaults changed since) is refused (``resume``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tempsched import rundir as rd
from tempsched.config import PartRegistry, RunConfig, layer, load_toml
from tempsched.errors import UserError

SPEC = rd.SPEC
SPEC_FORMAT = "tempsched-spec-1"


@dataclass(frozen=True)
class RunSpec:
    """A base configuration mapping and dotted overrides (later ones win); resolve it to get a run's
    configuration. Plain data, so it can be saved, compared and sent to other processes."""

    base: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path | None, overrides: Mapping[str, Any] | None = None) -> RunSpec:
        """A spec on a TOML file (``--config``; None: no file) with the command line's dotted overrides."""
        return cls(load_toml(path) if path is not None else {}, dict(overrides or {}))

    def with_overrides(self, values: Mapping[str, Any]) -> RunSpec:
        """This spec with ``values`` (dotted keys) applied after its own overrides."""
        kept = {key: value for key, value in self.overrides.items() if key not in values}
        return RunSpec(self.base, {**kept, **values})

    def resolve(self, registry: PartRegistry) -> RunConfig:
        """The complete, checked configuration: defaults <- base <- overrides, the preset filling the rest."""
        return layer(registry, self.base, self.overrides)

    def to_json(self) -> str:
        return json.dumps({"format": SPEC_FORMAT, "base": self.base, "overrides": self.overrides}, indent=2,
                          default=_path_text) + "\n"

    @classmethod
    def load(cls, path: Path) -> RunSpec:
        """A saved spec; a damaged file is one line."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            valid = (data.get("format") == SPEC_FORMAT and isinstance(data.get("base"), dict)
                     and isinstance(data.get("overrides"), dict))
        except (OSError, ValueError, AttributeError):
            valid = False
        if not valid:
            raise UserError(f"{path} is damaged: {rd.RUN_REMEDY}")
        return cls(data["base"], data["overrides"])


def saved_config(run_dir: Path, registry: PartRegistry, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The resolved configuration saved in a run directory, with ``overrides`` (dotted keys that may change
    on resume, such as ``epochs``) applied; for evaluations and ``--resume``."""
    path = Path(run_dir) / rd.CONFIG
    if not Path(run_dir).is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    if not path.is_file():
        raise UserError(f"{run_dir} has no {rd.CONFIG}: not a tempsched run directory")
    return layer(registry, load_toml(path), overrides)


def saved_spec(run_dir: Path) -> RunSpec:
    """The spec a run was started from; a run made before specs were saved has its resolved configuration
    as its spec (complete, so no preset default can change under it)."""
    path = Path(run_dir) / SPEC
    return RunSpec.load(path) if path.is_file() else RunSpec(load_toml(Path(run_dir) / rd.CONFIG))


def resume(run_dir: Path, registry: PartRegistry, overrides: Mapping[str, Any]) -> tuple[RunSpec, RunConfig]:
    """The spec and configuration to resume ``run_dir`` with (``overrides``: what a resume may change).

    The configuration is the saved one, so a resume trains exactly what was started; but when the saved
    spec now resolves to another run (a preset's or a part's defaults changed since), the two would
    disagree about what the run is, and the resume is refused with one line."""
    config = saved_config(run_dir, registry, overrides)
    spec = saved_spec(run_dir).with_overrides(overrides)
    now = rd.fingerprint(spec.resolve(registry).to_dict())
    if now != rd.fingerprint(config.to_dict()):
        raise UserError(f"the defaults of preset '{config.plugin}' or its parts changed since {run_dir} started: "
                        f"its spec ({SPEC}) now resolves to another run than its {rd.CONFIG}; start a new run, "
                        f"or run {rd.CONFIG} as it is with --config")
    return spec, config


def _path_text(value: Any) -> str:
    """A path option (``--data-dir``) as the text it resolves from; anything else JSON cannot hold is a bug."""
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"a run spec holds a {type(value).__name__}, which JSON cannot: {value!r}")
