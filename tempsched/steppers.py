"""How the members take their training step on a shared batch: one after another, or vectorised.

The engine hands every step to a ``Stepper``. ``LoopStepper`` calls ``Task.train_step`` for each
member in turn; it is the reference, and the fastest choice on a CPU, where one member's batch already
keeps every core busy. ``VmapStepper`` stacks the members' weights and computes all their losses and
gradients in one ``torch.func.vmap`` call, which pays where one small member leaves most of a device
idle (a GPU). It needs a task that also implements ``VectorisableTask``; the optimizer step stays per
member, so weights and Adam state keep the layout that selection, copies and checkpoints expect.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from torch.utils._pytree import tree_map

from tempsched.errors import UserError
from tempsched.task import Task

@runtime_checkable
class VectorisableTask(Protocol):
    """What a task adds so that its members' steps can be vectorised.

    ``train_step`` must equal: draw ``noise`` with ``draw_noise``, take ``batch_loss`` with ``model``
    as ``forward``, back-propagate and step the optimizer. Keeping the randomness out of
    ``batch_loss`` makes it a pure function of the weights, which ``vmap`` needs, and gives both
    backends the same noise.
    """

    def draw_noise(self, model: nn.Module, batch: Any, generator: torch.Generator) -> Any:
        """The random numbers one training step of ``model`` on ``batch`` uses (a tensor or a tuple of them)."""
        ...

    def batch_loss(self, forward: Callable[..., Any], batch: Any, tau: float | torch.Tensor,
                   noise: Any) -> torch.Tensor:
        """The scalar loss of one step; ``forward`` is called like the model."""
        ...


class Member(Protocol):
    """The parts of an engine member a stepper touches."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    tau: float


class Stepper(Protocol):
    """One training step of every member on ``batch``; returns each member's batch loss."""

    def __call__(self, members: Sequence[Member], batch: Any) -> list[float]:
        ...


class LoopStepper:
    """Each member's ``Task.train_step`` in turn: the reference backend."""

    name = "loop"

    def __init__(self, task: Task) -> None:
        self.task = task

    def __call__(self, members: Sequence[Member], batch: Any) -> list[float]:
        losses = []
        for m in members:
            m.model.train()
            losses.append(self.task.train_step(m.model, m.optimizer, batch, m.tau, m.generator))
        return losses


class VmapStepper:
    """All members' forward and backward passes in one vectorised call over their stacked weights."""

    name = "vmap"

    def __init__(self, task: VectorisableTask) -> None:
        self.task = task

    def __call__(self, members: Sequence[Member], batch: Any) -> list[float]:
        for m in members:
            m.model.train()  # evaluation left them in eval mode; stacking needs one mode
        base = members[0].model
        params, buffers = stack_module_state([m.model for m in members])
        noise = tree_map(lambda *xs: torch.stack(xs), *[self.task.draw_noise(m.model, batch, m.generator)
                                                        for m in members])
        taus = torch.tensor([m.tau for m in members], device=next(base.parameters()).device)

        def loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tau: torch.Tensor,
                 member_noise: Any) -> torch.Tensor:
            return self.task.batch_loss(lambda *args: functional_call(base, (p, b), args), batch, tau,
                                        member_noise)

        grads, values = vmap(grad_and_value(loss), randomness="error")(params, buffers, taus, noise)
        for k, m in enumerate(members):
            for name, p in m.model.named_parameters():
                p.grad = grads[name][k]
            m.optimizer.step()
            m.optimizer.zero_grad(set_to_none=True)
        return values.tolist()


def choose_stepper(name: str, task: Task) -> LoopStepper | VmapStepper:
    """The backend ``name`` asks for; ``auto`` vectorises only on a GPU, where it measured faster."""
    vectorisable = isinstance(task, VectorisableTask)
    if name == "vmap" and not vectorisable:
        raise UserError(f"backend 'vmap' needs a task with draw_noise and batch_loss; {type(task).__name__} has none")
    if name == "vmap" or (name == "auto" and vectorisable and task.device.type == "cuda"):
        return VmapStepper(task)  # type: ignore[arg-type]
    return LoopStepper(task)
