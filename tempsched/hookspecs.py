"""Every hook a tempsched plugin can implement, documented where it is declared.

A plugin is any module or object with functions marked ``@tempsched.hookimpl`` whose names match the
specs below. Registration hooks receive a ``register`` callback and call it once per thing they add,
so one plugin can add several schedules, rules or presets (the shape simonw/llm uses). Lifecycle hooks
receive plain data and return nothing; loggers and reporters implement them.

Plugins are found through the ``tempsched`` entry-point group; the plugins tempsched ships are
registered by the same manager through the same hooks (see ``tempsched.plugins``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only
    from tempsched.parts import Preset
    from tempsched.records import EpochReport, RunInfo, RunSummary
    from tempsched.space import SearchSpace

PROJECT = "tempsched"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_schedules(register: Callable[..., None]) -> None:
    """Add temperature schedules.

    Call ``register(name, factory)`` where ``factory(member_index, params) -> Schedule`` builds the
    schedule of one member. ``member_index`` is 1-based, as in the paper's Algorithm 2, and
    ``params`` is the resolved parameter mapping of the run (the preset's defaults overridden by the
    user). Called once when the plugin manager builds its registry.
    """


@hookspec
def register_feedback_rules(register: Callable[..., None]) -> None:
    """Add feedback rules: ``register(name, factory)`` with ``factory(params) -> FeedbackRule``.

    A feedback rule turns a member's selection loss and the best member's loss into a temperature
    change added on top of the member's own schedule step (Algorithm 3 of the paper is one).
    """


@hookspec
def register_selection_policies(register: Callable[..., None]) -> None:
    """Add selection policies: ``register(name, factory)`` with ``factory(params) -> SelectionPolicy``.

    A selection policy names the member whose weights every other member takes after an epoch.
    """


@hookspec
def register_tasks(register: Callable[..., None]) -> None:
    """Add tasks: ``register(name, factory)`` with ``factory(config) -> Task``.

    A task is what the population trains (the GS-VAE is one); the engine only talks to it through
    the ``tempsched.task.Task`` protocol.
    """


@hookspec
def register_presets(register: Callable[..., None]) -> None:
    """Add presets: ``register(preset)`` with a ``tempsched.parts.Preset``.

    A preset is a complete, named recipe (``--plugin NAME`` picks one): the task, which schedule each
    member follows, the feedback rule, the selection policy and the default parameters.
    """


@hookspec
def tempsched_search_space(preset: Preset, space: SearchSpace) -> None:
    """Add or change the parameters ``tempsched tune`` samples for runs of ``preset``.

    Call ``space.add(Dim(...))`` for a parameter the preset reads (``target`` says where its value
    goes in the run configuration: ``params.NAME`` or ``tau.min``), ``space.replace(name, ...)`` to
    change one another plugin added, and ``space.require_below(a, b)`` for an order that every sample
    must keep. Implementations run in registration order (the shipped plugins first), so an
    installed plugin sees, and may change, what they added. Leave ``space`` alone for presets the
    plugin does not know.
    """


@hookspec
def tempsched_run_start(info: RunInfo) -> None:
    """Called once before the first epoch of a run (or of a resumed run)."""


@hookspec
def tempsched_epoch_end(report: EpochReport) -> None:
    """Called after every epoch, once the population state is saved.

    ``report`` holds the epoch's per-member rows (the same rows as ``metrics.jsonl``) and the best
    member. Implementations must not change it.
    """


@hookspec
def tempsched_run_end(summary: RunSummary) -> None:
    """Called once when a run finishes, with the best member's figures and the run directory."""

