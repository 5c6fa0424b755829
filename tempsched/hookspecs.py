"""Every hook a tempsched plugin can implement, documented where it is declared.

A plugin is any module or object with functions marked ``@tempsched.hookimpl`` whose names match the
specs below; every hook name starts with ``tempsched_``. A function marked ``@hookimpl`` whose name
matches no spec (a misspelling) is refused when the plugin loads, naming the plugin.

Registration hooks receive a ``register`` callback and call ``register(thing)`` once per thing they
add; the thing's ``name`` attribute names it. Schedules, feedback rules, selection policies and tasks
are registered as classes (the engine builds them from their declared parameters); presets as
``Preset`` instances. Lifecycle hooks receive plain records and return nothing; loggers and reporters
implement them.

Plugins are found through the ``tempsched`` entry-point group; the plugins tempsched ships are
registered by the same manager through the same hooks (see ``tempsched.plugins``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only
    from tempsched.parts import Preset
    from tempsched.records import BatchProgress, EpochRecord, RunInfo, RunSummary
    from tempsched.space import SearchSpace

PROJECT = "tempsched"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[object], None]


@hookspec
def tempsched_register_schedules(register: Register) -> None:
    """Add temperature schedules: ``register(ScheduleClass)`` for each ``tempsched.Schedule`` subclass.

    Called once when the plugin manager builds its registry. Every member gets its own instance,
    built from the parameters the class declares; the member's index and the run's epochs and tau
    bounds come in the contexts passed to ``on_epoch`` / ``on_step``.
    """


@hookspec
def tempsched_register_feedback_rules(register: Register) -> None:
    """Add feedback rules: ``register(FeedbackRuleClass)`` for each ``tempsched.FeedbackRule`` subclass.

    A feedback rule turns a member's selection loss and the best member's loss into a temperature
    change added on top of the member's own schedule step (Algorithm 3 of the paper is one).
    """


@hookspec
def tempsched_register_selection_policies(register: Register) -> None:
    """Add selection policies: ``register(SelectionPolicyClass)``.

    A selection policy names the member whose weights every other member takes after an epoch.
    """


@hookspec
def tempsched_register_tasks(register: Register) -> None:
    """Add tasks: ``register(TaskClass)``; the class declares its options in ``params`` like a part and
    is built as ``TaskClass(env, **options)`` (``env``: device, seed and speed settings of the run).

    A task is what the population trains (the GS-VAE is one); the engine only talks to it through
    the ``tempsched.task.Task`` protocol.
    """


@hookspec
def tempsched_register_presets(register: Register) -> None:
    """Add presets: ``register(Preset(...))``.

    A preset is a complete, named recipe (``--preset NAME`` picks one): the task, which schedule each
    member follows, the feedback rule, the selection policy, tau settings and default overrides.
    """


@hookspec
def tempsched_register_evaluations(register: Register) -> None:
    """Add evaluations: ``register(EvaluationClass)`` for each ``tempsched.Evaluation`` subclass.

    ``tempsched eval NAME RUN_DIR...`` builds the class from its declared options (``--set NAME=VALUE``) and
    calls its ``run(ctx)``, which fills a report folder; ``tempsched plugins`` lists them.
    """


@hookspec
def tempsched_search_space(preset: Preset, space: SearchSpace) -> None:
    """Change the parameters ``tempsched tune`` samples for runs of ``preset``.

    The space starts with every parameter the preset's parts declare a ``tune`` range for, and the
    preset's own ``tune`` entries. Implementations may ``space.add(Dim(...))``,
    ``space.replace(name, ...)`` or ``space.require_below(a, b)``; they run in registration order
    (the shipped plugins first), so an installed plugin sees what they did. Leave ``space`` alone
    for presets the plugin does not know.
    """


@hookspec
def tempsched_run_start(info: RunInfo) -> None:
    """Called once before the first epoch of a run (or of a resumed run)."""


@hookspec
def tempsched_batch_end(progress: BatchProgress) -> None:
    """Called after every member took its step on one batch (progress bars use it); keep it cheap."""


@hookspec
def tempsched_epoch_end(record: EpochRecord) -> None:
    """Called after every epoch, once the population state is saved.

    ``record`` holds the epoch's per-member rows (the same rows as ``metrics.jsonl``), the best
    member and the timings. Implementations must not change it.
    """


@hookspec
def tempsched_run_end(summary: RunSummary) -> None:
    """Called once when a run finishes, with the best member's figures and the run directory."""
