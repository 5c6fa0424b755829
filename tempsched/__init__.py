"""tempsched: train a population of models side by side and tune a hyperparameter while they learn.

Everything a plugin author needs is importable from here: ``hookimpl``, the part base classes, ``Param``,
``Range``, ``Preset``, the contexts the engine passes to parts, the population view a selection policy
plans from and its actions (``Keep``, ``Copy``, ``Retire``), the records lifecycle hooks receive, the
``Task`` protocol and ``UserError``; for evaluations, ``EvalContext``, ``Report``, ``evaluate`` (run one),
``RunSpec`` (what a run asks for), ``RunConfig`` (what it resolved to), ``LoadedRun`` and ``replay_spec``.
Nothing deeper is part of the plugin API.
"""

from tempsched.config import RunConfig
from tempsched.errors import UserError
from tempsched.evaluation import EvalContext, Evaluation, Report, evaluate
from tempsched.hookspecs import hookimpl
from tempsched.parts import (Action, Copy, EpochContext, FeedbackRule, Keep, MemberView, Param, Part, PopulationView,
                             Preset, Range, Retire, Schedule, SelectionPolicy, StepContext, log_spaced)
from tempsched.records import BatchProgress, EpochRecord, RunInfo, RunSummary
from tempsched.runs import LoadedRun
from tempsched.spec import RunSpec
from tempsched.task import Task, TaskEnv
from tempsched.trajectories import replay_spec

__all__ = [
    "Action", "BatchProgress", "Copy", "EpochContext", "EpochRecord", "EvalContext", "Evaluation", "FeedbackRule",
    "Keep", "LoadedRun", "MemberView", "Param", "Part", "PopulationView", "Preset", "Range", "Report", "Retire",
    "RunConfig", "RunInfo", "RunSpec", "RunSummary", "Schedule", "SelectionPolicy", "StepContext", "Task",
    "TaskEnv", "UserError", "evaluate", "hookimpl", "log_spaced", "replay_spec", "__version__",
]
__version__ = "0.2.0"
