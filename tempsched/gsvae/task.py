"""The GS-VAE as a ``tempsched.task.Task``: data in memory, one shared batch per step, fixed-noise eval."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from tempsched.config import RunConfig
from tempsched.gsvae.data import ImageData, load
from tempsched.errors import UserError
from tempsched.gsvae.loss import negative_elbo
from tempsched.gsvae.model import DualGSVAE

EVAL_BATCH = 1000

# Task options ([task_options] in a config file) and their defaults.
OPTIONS: dict[str, Any] = {
    "z1": [32, 8],  # N categorical variables x K classes: 256 units, as the paper's z1
    "z2": [16, 8],  # 128 units, as the paper's z2
    "channels": [],  # encoder widths; empty: by image size (28: 16,32; 32/64: 32,64,128,256)
    "eval_noise_seed": 1234,  # the Gumbel noise every evaluation draws, identical for all members
}


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA where there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def _options(given: dict[str, Any]) -> dict[str, Any]:
    unknown = set(given) - set(OPTIONS)
    if unknown:
        raise UserError(f"unknown task option(s) {sorted(unknown)} for task 'gsvae' (known: {sorted(OPTIONS)})")
    opts = {**OPTIONS, **given}
    for key in ("z1", "z2"):
        v = opts[key]
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(i, int) and i > 0 for i in v)):
            raise UserError(f"task option '{key}' must be [variables, classes] of positive integers, got {v!r}")
    if not isinstance(opts["channels"], list) or not all(isinstance(c, int) and c > 0 for c in opts["channels"]):
        raise UserError(f"task option 'channels' must be a list of positive integers, got {opts['channels']!r}")
    return opts


class GSVAETask:
    """Trains ``DualGSVAE`` members on an image data set held in memory."""

    def __init__(self, config: RunConfig, data: ImageData | None = None) -> None:
        self.opts = _options(config.task_options)
        d = config.data
        self.data = data or load(d.dataset, d.data_dir, d.exclude_classes, d.val_size, d.train_size, d.test_size)
        self.device = resolve_device(config.device)
        self.batch_size = d.batch_size
        self.seed = config.seed
        self.learning_rate = config.learning_rate
        self.shape = tuple(self.data.x_train.shape[1:])
        size = self.shape[-1]
        self.channels = self.opts["channels"] or ([16, 32] if size == 28 else [32, 64, 128, 256])
        if size % (2 ** len(self.channels)):
            raise UserError(f"images of size {size} cannot pass {len(self.channels)} stride-2 convolutions")
        perf = config.performance
        self.memory_format = torch.channels_last if perf.channels_last else torch.contiguous_format
        self.autocast_dtype = torch.bfloat16 if perf.precision == "bf16" else None
        self._x_train = self.data.x_train.to(self.device)
        self._x_val = self._as_float(self.data.x_val.to(self.device))

    def _as_float(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0).contiguous(memory_format=self.memory_format)

    def _autocast(self) -> torch.autocast:
        """bf16 autocast of the forward pass where asked for; the loss is always summed in fp32."""
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                              enabled=self.autocast_dtype is not None)

    @property
    def train_examples(self) -> int:
        return len(self._x_train)

    def describe_data(self) -> str:
        return self.data.describe()

    def build_model(self) -> nn.Module:
        c, size = self.shape[0], self.shape[-1]
        model = DualGSVAE(c, size, list(self.channels), tuple(self.opts["z1"]), tuple(self.opts["z2"]))
        return model.to(self.device, memory_format=self.memory_format)

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=self.learning_rate)

    def batches(self, epoch: int) -> Iterator[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self._x_train), generator=g).to(self.device)
        for i in range(0, len(perm), self.batch_size):
            yield self._as_float(self._x_train[perm[i:i + self.batch_size]])

    def draw_noise(self, model: nn.Module, batch: torch.Tensor,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return model.draw_noise(len(batch), generator, self.device)

    def batch_loss(self, forward: Callable[..., Any], batch: torch.Tensor, tau: float | torch.Tensor,
                   noise: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        with self._autocast():
            x_hat, l1, l2 = forward(batch, tau, noise)
        return negative_elbo(x_hat.float(), batch, l1.float(), l2.float()).mean()

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: torch.Tensor, tau: float,
                   generator: torch.Generator) -> float:
        loss = self.batch_loss(model, batch, tau, self.draw_noise(model, batch, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def _passes(self, model: nn.Module, x: torch.Tensor, tau: float, hard: bool = False) -> Iterator[tuple[Any, ...]]:
        model.eval()
        g = torch.Generator(device=self.device).manual_seed(self.opts["eval_noise_seed"])
        for i in range(0, len(x), EVAL_BATCH):
            xb = x[i:i + EVAL_BATCH]
            with self._autocast():
                out = model(xb, tau, g, hard)
            yield (xb, *(t.float() for t in out))

    def evaluate(self, model: nn.Module, tau: float) -> float:
        total = sum(float(negative_elbo(x_hat, xb, l1, l2).sum()) for xb, x_hat, l1, l2 in
                    self._passes(model, self._x_val, tau))
        return total / len(self._x_val)

    def test_metrics(self, model: nn.Module, tau: float) -> dict[str, float]:
        """Per-pixel MSE on [0, 1] and -ELBO over the whole test split; also the argmax-latent MSE."""
        x = self._as_float(self.data.x_test.to(self.device))
        pixels = x[0].numel() * len(x)
        sq = elbo = sq_hard = 0.0
        for xb, x_hat, l1, l2 in self._passes(model, x, tau):
            sq += float(((x_hat - xb) ** 2).sum())
            elbo += float(negative_elbo(x_hat, xb, l1, l2).sum())
        for xb, x_hat, _, _ in self._passes(model, x, tau, hard=True):
            sq_hard += float(((x_hat - xb) ** 2).sum())
        return {"test_mse": sq / pixels, "test_mse_hard": sq_hard / pixels, "test_neg_elbo": elbo / len(x)}

    def save_artifacts(self, model: nn.Module, tau: float, directory: Path) -> dict[str, str]:
        """A PNG grid: 16 test images on the top rows, their reconstructions below."""
        from torchvision.utils import save_image

        from tempsched.rundir import atomic_path

        x = self._as_float(self.data.x_test[:16].to(self.device))
        _, x_hat, _, _ = next(self._passes(model, x, tau))
        target = directory / "reconstructions.png"
        with atomic_path(target) as tmp:
            save_image(torch.cat([x, x_hat]).cpu(), tmp, nrow=8, format="png")
        return {"reconstructions": target.name}
