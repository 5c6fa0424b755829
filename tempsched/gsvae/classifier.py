"""The paper's basic CNN: the classifier the purification experiment (Tables 2-3) protects.

Two 3x3 convolutions, each followed by 2x2 max pooling, then three fully connected layers with dropout
after the first (the authors' code: 32 and 64 channels, 128 and 64 hidden units, dropout 0.2). It is trained
on clean images of a run's data set on the [0, 1] scale, the scale of the attacked images and of the GS-VAE's
reconstructions. (The authors trained on Normalize(0.5, 0.5) inputs and then fed it [0, 1] reconstructions;
one scale everywhere removes that mismatch.)

A trained classifier is cached once per data set and recipe (``ensure_classifier``), so every evaluation
and every rerun attacks the same weights; it is loaded weights-only like every tempsched checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tempsched import rundir as rd
from tempsched.errors import UserError
from tempsched.gsvae.data import ImageData
from tempsched.gsvae.measure import unit_images

FORMAT = "tempsched-classifier-1"
RETRAIN = "delete it to train the classifier again"  # what to do with a saved classifier that does not load
BATCH = 1000  # images per prediction pass


class BasicCNN(nn.Module):
    """conv(3x3) -> ReLU -> maxpool, twice; FC -> ReLU -> dropout -> FC -> ReLU -> FC (logits)."""

    def __init__(self, in_channels: int, size: int, classes: int, widths: tuple[int, int] = (32, 64),
                 hidden: tuple[int, int] = (128, 64), dropout: float = 0.2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(widths[0], widths[1], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        flat = widths[1] * (size // 4) ** 2
        self.head = nn.Sequential(nn.Linear(flat, hidden[0]), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden[0], hidden[1]), nn.ReLU(), nn.Linear(hidden[1], classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class ClassifierSpec:
    """What decides a trained classifier's weights: its data and its recipe (the cache key)."""

    dataset: str
    data: str  # the data's description (source, copy, split sizes), so another copy is another classifier
    widths: tuple[int, int] = (32, 64)
    hidden: tuple[int, int] = (128, 64)
    train_epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0

    def key(self) -> str:
        return rd.fingerprint(asdict(self))[:16]


@dataclass
class TrainedClassifier:
    """A trained basic CNN (eval mode) with its accuracies and the file that holds it."""

    model: BasicCNN
    val_accuracy: float
    test_accuracy: float
    path: Path


def _build(spec: ClassifierSpec, data: ImageData) -> BasicCNN:
    c, size = data.x_train.shape[1], data.x_train.shape[-1]
    classes = int(torch.cat([data.y_train, data.y_test]).max()) + 1
    if classes < 2:
        raise UserError(f"{data.name} has one class only: there is nothing for a classifier to tell apart")
    return BasicCNN(c, size, classes, spec.widths, spec.hidden)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Predicted classes (CPU) of ``x`` (uint8 or [0, 1] floats), batch by batch, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(unit_images(x[i:i + BATCH]).to(device)).argmax(dim=1).cpu()
                      for i in range(0, len(x), BATCH)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``x`` classified as ``y``."""
    return float((predict(model, x) == y.cpu()).double().mean())


def train(spec: ClassifierSpec, data: ImageData, device: torch.device,
          progress: Callable[[int], None] = lambda advance: None) -> BasicCNN:
    """Adam on cross-entropy over the clean training images, ``spec.train_epochs`` passes. Seeded throughout
    (weights, batch order and dropout), so a spec names one set of weights; the caller's random state is
    left as it was."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(spec.seed)
        model = _build(spec, data).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=spec.learning_rate)
        order = torch.Generator().manual_seed(spec.seed)
        for _ in range(spec.train_epochs):
            model.train()
            for idx in torch.randperm(len(data.x_train), generator=order).split(spec.batch_size):
                x = unit_images(data.x_train[idx]).to(device)
                loss = F.cross_entropy(model(x), data.y_train[idx].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            progress(1)
    return model.eval()


def ensure_classifier(spec: ClassifierSpec, data: ImageData, folder: Path, device: torch.device,
                      progress: Callable[[int], None] = lambda advance: None) -> TrainedClassifier:
    """The classifier of ``spec`` from ``folder``, trained and saved there first if it is not there yet."""
    path = Path(folder) / f"cnn-{spec.dataset}-{spec.key()}.pt"
    if path.is_file():
        saved = rd.load_torch(path, FORMAT, remedy=RETRAIN)
        model = _build(spec, data)
        rd.load_weights(model, saved.get("model"), path, remedy=RETRAIN)
        model = model.to(device).eval()
        return TrainedClassifier(model, float(saved["val_accuracy"]), float(saved["test_accuracy"]), path)
    model = train(spec, data, device, progress)
    val_acc, test_acc = accuracy(model, data.x_val, data.y_val), accuracy(model, data.x_test, data.y_test)
    path.parent.mkdir(parents=True, exist_ok=True)
    rd.save_torch(path, {"format": FORMAT, "spec": asdict(spec), "model": model.state_dict(),
                         "val_accuracy": val_acc, "test_accuracy": test_acc})
    return TrainedClassifier(model, val_acc, test_acc, path)
