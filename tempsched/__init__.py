"""tempsched: train a population of models side by side and tune a hyperparameter while they learn.

Everything a plugin author needs is importable from here: ``hookimpl``, the part base classes, ``Param``,
``Range``, ``Preset``, the contexts the engine passes to parts, the population view a selection policy
plans from and its actions (``Keep``, ``Copy``, ``Retire``), the records lifecycle hooks receive, the
``Task`` protocol and ``UserError``. Nothing deeper is part of the plugin API.
"""

from tempsched.errors import UserError
from tempsched.evaluation import EvalContext, Evaluation, Report
from tempsched.hookspecs import hookimpl
from tempsched.parts import (Action, Copy, EpochContext, FeedbackRule, Keep, MemberView, Param, Part, PopulationView,
                             Preset, Range, Retire, Schedule, SelectionPolicy, StepContext, log_spaced)
from tempsched.records import BatchProgress, EpochRecord, RunInfo, RunSummary
from tempsched.task import Task, TaskEnv

__all__ = [
    "Action", "BatchProgress", "Copy", "Keep", "MemberView", "PopulationView", "Retire", "log_spaced", "EpochContext",
    "EvalContext", "Evaluation", "Report", "EpochRecord", "FeedbackRule", "Param", "Part", "Preset", "Range", "RunInfo",
    "RunSummary", "Schedule", "SelectionPolicy", "StepContext", "Task", "TaskEnv", "UserError", "hookimpl",
    "__version__",
]
__version__ = "0.2.0"
