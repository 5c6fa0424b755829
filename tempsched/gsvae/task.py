"""The GS-VAE as a ``tempsched.task.Task``: data in memory, one shared batch per step, fixed-noise eval."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from tempsched.errors import UserError
from tempsched.gsvae.data import DATASETS, ImageData, load
from tempsched.gsvae.estimators import ESTIMATORS
from tempsched.gsvae.loss import negative_elbo
from tempsched.gsvae.model import CategoricalVAE, DualGSVAE, MLPVAE
from tempsched.parts import Param
from tempsched.rundir import atomic_path
from tempsched.task import TaskEnv

EVAL_BATCH = 1000
MODELS = ("dual-conv", "mlp")
OPTIMIZERS = {"adam": torch.optim.Adam, "radam": torch.optim.RAdam}


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA where there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def _latent(value: list[Any], key: str) -> tuple[int, int]:
    if not (len(value) == 2 and all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in value)):
        raise UserError(f"task option '{key}' must be [variables, classes] of positive integers, got {value!r}")
    return value[0], value[1]


class GSVAETask:
    """Trains GS-VAE members (the paper's ``DualGSVAE`` or the benchmark's ``MLPVAE``) on images held in memory."""

    name = "gsvae"
    # The options added with the estimators (model .. optimizer) are omitted at their defaults, which train
    # what runs from before them trained: those runs keep their names and resume (Param.omitted_at_default).
    params = {
        "dataset": Param("sample", "sample (embedded MNIST digits, works offline), mnist, fashion-mnist, "
                         "cifar10-jpeg, cifar10-exact, cifar10 or celeba", choices=DATASETS, cli="--dataset"),
        "data_dir": Param("", "folder holding the data set (torchvision layout; empty: ./data)", cli="--data-dir"),
        "exclude_classes": Param([], "train and validate without these classes, e.g. 2,3 (the test set keeps "
                                 "them)", cli="--exclude-classes"),
        "batch_size": Param(128, "images per training step", low=1, cli="--batch-size"),
        "val_size": Param(0, "validation images carved from the training set (0: max(1, min(10% of train, "
                          "5000)); at least one image must stay to train on)", low=0, cli="--val-size"),
        "train_size": Param(0, "use only the first N training images (0: all)", low=0, cli="--train-size"),
        "test_size": Param(0, "use only the first N test images (0: all)", low=0, cli="--test-size"),
        "learning_rate": Param(1e-3, "the optimizer's learning rate", "authors' code", low=1e-12,
                               cli="--learning-rate"),
        "z1": Param([32, 8], "dual-conv's latent layer z1: [N variables, K classes] (256 units, as the paper's "
                    "z1)", "paper"),
        "z2": Param([16, 8], "dual-conv's latent layer z2: [N variables, K classes] (128 units, as the paper's "
                    "z2)", "paper"),
        "channels": Param([], "dual-conv's encoder widths; empty: by image size (28: 16,32; 32/64: "
                          "32,64,128,256)", "paper"),
        "eval_noise_seed": Param(1234, "seed of the Gumbel noise every evaluation draws (same for all members)",
                                 low=0),
        "model": Param("dual-conv", "dual-conv (the paper's two conv latent layers, z1 and z2) or mlp (the ReinMax "
                       "benchmark's MLP 784-512-256 with one latent layer, 'latent')", choices=MODELS,
                       omitted_at_default=True),
        "latent": Param([30, 10], "mlp's latent layer: [L variables, C categories] (the benchmark's '10x30' is "
                        "C x L, so [30, 10])", "ReinMax benchmark", omitted_at_default=True),
        "estimator": Param("relaxed", "how codes are sampled and differentiated: " + "; ".join(
            f"{e.name} ({e.help})" for e in ESTIMATORS.values()), choices=tuple(ESTIMATORS), omitted_at_default=True),
        "gumbel_rao_draws": Param(100, "gumbel-rao's conditional noise draws per sample", "Paulus et al. 2021",
                                  low=1, omitted_at_default=True),
        "optimizer": Param("adam", "adam or radam", choices=tuple(OPTIMIZERS), omitted_at_default=True),
    }

    @classmethod
    def selection_losses(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The held-out losses members can be judged on, the default first (see ``evaluate``).

        A straight-through estimator trains the discrete model itself, so its members are judged on it
        (``val-hard``) by default; ``relaxed`` keeps ``val``, so runs from before keep their results.
        """
        hard_first = ESTIMATORS[options["estimator"]].discrete
        return ("val-hard", "val") if hard_first else ("val", "val-hard")

    def __init__(self, env: TaskEnv, *, dataset: str, data_dir: str, exclude_classes: list[int], batch_size: int,
                 val_size: int, train_size: int, test_size: int, learning_rate: float, z1: list[int],
                 z2: list[int], channels: list[int], eval_noise_seed: int, model: str, latent: list[int],
                 estimator: str, gumbel_rao_draws: int, optimizer: str, data: ImageData | None = None) -> None:
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in exclude_classes):
            raise UserError(f"task option 'exclude_classes' must be a list of class numbers, got {exclude_classes!r}")
        if not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels):
            raise UserError(f"task option 'channels' must be a list of positive integers, got {channels!r}")
        self.z1, self.z2, self.latent = _latent(z1, "z1"), _latent(z2, "z2"), _latent(latent, "latent")
        self.model_kind, self.optimizer_kind = model, optimizer
        self.estimator = ESTIMATORS[estimator].with_draws(gumbel_rao_draws)
        self.eval_noise_seed = eval_noise_seed
        self.device = resolve_device(env.device)
        self.data = data or load(dataset, data_dir or None, exclude_classes, val_size, train_size, test_size)
        self.batch_size = batch_size
        self.seed = env.seed
        self.learning_rate = learning_rate
        self.shape = tuple(self.data.x_train.shape[1:])
        size = self.shape[-1]
        self.channels = channels or ([16, 32] if size == 28 else [32, 64, 128, 256])
        if model == "dual-conv" and size % (2 ** len(self.channels)):
            raise UserError(f"images of size {size} cannot pass {len(self.channels)} stride-2 convolutions")
        self.memory_format = torch.channels_last if env.channels_last else torch.contiguous_format
        self.autocast_dtype = torch.bfloat16 if env.precision == "bf16" else None
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

    def build_model(self) -> CategoricalVAE:
        model: CategoricalVAE
        if self.model_kind == "mlp":
            model = MLPVAE(self.shape, self.latent, self.estimator)
        else:
            model = DualGSVAE(self.shape[0], self.shape[-1], list(self.channels), self.z1, self.z2, self.estimator)
        return model.to(self.device, memory_format=self.memory_format)

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return OPTIMIZERS[self.optimizer_kind](model.parameters(), lr=self.learning_rate)

    def batch_count(self) -> int:
        return -(-len(self._x_train) // self.batch_size)

    def batches(self, epoch: int) -> Iterator[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self._x_train), generator=g).to(self.device)
        for i in range(0, len(perm), self.batch_size):
            yield self._as_float(self._x_train[perm[i:i + self.batch_size]])

    def draw_noise(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        return model.draw_noise(len(batch), generator, self.device)

    def batch_loss(self, forward: Callable[..., Any], batch: torch.Tensor, tau: float | torch.Tensor,
                   noise: tuple[torch.Tensor, ...]) -> torch.Tensor:
        with self._autocast():
            x_hat, *logits = forward(batch, tau, noise)
        return negative_elbo(x_hat.float(), batch, *(lg.float() for lg in logits)).mean()

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
        g = torch.Generator(device=self.device).manual_seed(self.eval_noise_seed)
        for i in range(0, len(x), EVAL_BATCH):
            xb = x[i:i + EVAL_BATCH]
            with self._autocast():
                out = model(xb, tau, g, hard)
            yield (xb, *(t.float() for t in out))

    def evaluate(self, model: nn.Module, tau: float, loss: str = "val") -> float:
        """The mean -ELBO of the validation images, the same fixed noise for every member.

        ``val``: through the code the decoder reads in training (the estimator's, at ``tau``); ``val-hard``:
        through one-hot samples of q = softmax(logits), the discrete model whatever the estimator and tau.
        """
        total = sum(float(chunk.sum()) for chunk in self._held_out(model, tau, loss))
        return total / len(self._x_val)

    def _held_out(self, model: nn.Module, tau: float, loss: str) -> Iterator[torch.Tensor]:
        """The per-image -ELBO of each evaluation batch of the validation images (``evaluate``'s terms)."""
        for xb, x_hat, *logits in self._passes(model, self._x_val, tau, hard=loss == "val-hard"):
            yield negative_elbo(x_hat, xb, *logits)

    def held_out_losses(self, model: nn.Module, tau: float, loss: str = "val") -> torch.Tensor:
        """The per-image terms whose mean ``evaluate`` returns, one per validation image, in order.

        Two members evaluated on the same images and noise can be compared image by image: the standard
        error of their paired differences says whether a gap in their selection losses is signal or the
        noise of a finite held-out sample (benchmarks/pbt_vs_grid.py). The engine never calls this.
        """
        return torch.cat(list(self._held_out(model, tau, loss)))

    def test_metrics(self, model: nn.Module, tau: float) -> dict[str, float]:
        """Per-pixel MSE on [0, 1] and -ELBO over the whole test split, through the training code and through
        one-hot samples of q (``_hard``: the discrete model)."""
        x = self._as_float(self.data.x_test.to(self.device))
        pixels = x[0].numel() * len(x)
        sq = elbo = sq_hard = elbo_hard = 0.0
        for xb, x_hat, *logits in self._passes(model, x, tau):
            sq += float(((x_hat - xb) ** 2).sum())
            elbo += float(negative_elbo(x_hat, xb, *logits).sum())
        for xb, x_hat, *logits in self._passes(model, x, tau, hard=True):
            sq_hard += float(((x_hat - xb) ** 2).sum())
            elbo_hard += float(negative_elbo(x_hat, xb, *logits).sum())
        return {"test_mse": sq / pixels, "test_mse_hard": sq_hard / pixels, "test_neg_elbo": elbo / len(x),
                "test_neg_elbo_hard": elbo_hard / len(x)}

    def save_artifacts(self, model: nn.Module, tau: float, directory: Path) -> dict[str, str]:
        """A PNG grid: 16 test images on the top rows, their reconstructions below."""
        from torchvision.utils import save_image

        x = self._as_float(self.data.x_test[:16].to(self.device))
        _, x_hat, *_ = next(self._passes(model, x, tau))
        target = directory / "reconstructions.png"
        with atomic_path(target) as tmp:
            save_image(torch.cat([x, x_hat]).cpu(), tmp, nrow=8, format="png")
        return {"reconstructions": target.name}
