"""Building a run's parts from its resolved configuration: the task, each member, the rules, the population.

Every part is made by the class its plugin registered, from the parameter values the configuration
resolved for it; a part that fails to build is one line naming its plugin. Members are seeded by their
number, so a member is the same whichever process builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tempsched.config import RunConfig, task_options
from tempsched.distributed import Group, Spread
from tempsched.engine import Member, Population, TauBounds
from tempsched.errors import UserError, describe_exception
from tempsched.plugins import PluginManager
from tempsched.steppers import choose_stepper
from tempsched.task import Task, TaskEnv

@dataclass
class Built:
    """A population ready to train, with the task it trains (and in a run of several processes, the group)."""

    task: Task
    population: Population
    group: Group | None = None


def _seed(config: RunConfig, member: int, stream: int) -> int:
    return (config.seed * 1_000_003 + member * 7919 + stream) % (2**63)


def build_part(manager: PluginManager, kind: str, name: str, values: dict[str, Any]) -> Any:
    """Instantiate part ``name`` from its checked parameter values; a failure names the plugin."""
    cls = manager.registry.get(kind, name)
    try:
        return cls(**values)
    except UserError:
        raise
    except Exception as exc:
        owner = manager.registry.owner_of(cls)
        raise UserError(f"plugin '{owner}' failed building {kind.rstrip('s').replace('_', ' ')} '{name}': "
                        f"{describe_exception(exc)}") from None


def build_task(config: RunConfig, manager: PluginManager) -> Task:
    """The run's task, built from its own options and the run's device, seed and speed settings."""
    perf = config.performance
    env = TaskEnv(device=config.device, seed=config.seed, backend=perf.backend, precision=perf.precision,
                  channels_last=perf.channels_last)
    cls = manager.registry.get("tasks", config.task)
    try:
        return cls(env, **task_options(config, cls))
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"plugin '{manager.registry.owner_of(cls)}' failed building task '{config.task}': "
                        f"{describe_exception(exc)}") from None


def build(config: RunConfig, manager: PluginManager, group: Group | None = None) -> Built:
    """Instantiate the task, every member (model, optimizer, generator, schedule) and the rules.

    With ``group`` (a run spread over processes) this process builds the models, optimizers and noise
    generators of its own slice of the members only; each is seeded by its member number, so it is
    the same whichever process builds it.
    """
    assert config.tau.initial is not None and config.tau.min is not None and config.tau.max is not None
    assert config.schedules is not None and config.feedback is not None and config.selection is not None
    if config.performance.threads:
        torch.set_num_threads(config.performance.threads)
    placement = None
    if group is not None:
        placement = Spread(group, len(config.schedules))
        group.use_device(config.device)
    own = placement.mine if placement is not None else range(len(config.schedules))
    task = build_task(config, manager)
    feedback = build_part(manager, "feedback_rules", config.feedback, config.part_params(config.feedback))
    selection = build_part(manager, "selection_policies", config.selection, config.part_params(config.selection))
    members = []
    for i, strategy in enumerate(config.schedules, start=1):
        schedule = build_part(manager, "schedules", strategy, config.part_params(strategy))
        start = config.tau.members[i - 1] if config.tau.members is not None else config.tau.initial
        tau = min(max(start, config.tau.min), config.tau.max)
        if i - 1 not in own:
            members.append(Member(i, strategy, schedule, None, None, None, tau))  # another process trains it
            continue
        seat = i + (config.member_offset or 0)  # the member number its weights and noise are seeded by
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(config, seat, 0))
            model = task.build_model()
        if i - 1 == own[0]:
            check_memory(model, len(own))
        optimizer = task.build_optimizer(model)
        generator = torch.Generator(device=task.device).manual_seed(_seed(config, seat, 1))
        members.append(Member(i, strategy, schedule, model, optimizer, generator, tau))
    population = Population(task, members, feedback, selection,
                            TauBounds(config.tau.initial, config.tau.min, config.tau.max), config.epochs,
                            config.select_on, choose_stepper(config.performance.backend, task),
                            placement=placement, plan_seed=_seed(config, 0, 2))
    return Built(task, population, group)


def check_memory(model: torch.nn.Module, members: int) -> None:
    """Refuse a population whose weights, gradients and Adam moments alone would not fit in memory.

    Four copies of the parameters per member is a floor (activations come on top), so a refusal is
    never wrong; it stops ``--members 1000000`` before it allocates until the machine gives out.
    """
    per_member = 4 * sum(p.numel() * p.element_size() for p in model.parameters())
    need = per_member * members
    available = _available_memory()
    if available is not None and need > available:
        raise UserError(f"{members} members need at least {need / 2**30:.1f} GiB for weights, gradients and Adam "
                        f"state ({per_member / 2**20:.1f} MiB each), but {available / 2**30:.1f} GiB is available")


def _available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux's MemAvailable), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
