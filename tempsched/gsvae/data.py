"""Image data sets held in memory as uint8 tensors, with a deterministic validation split.

Sources: the embedded MNIST sample (the default, works offline), MNIST and Fashion-MNIST in
torchvision's folder layout (``<data_dir>/MNIST/raw/*-ubyte[.gz]``), CIFAR-10 as torchvision's
``cifar-10-batches-py`` or as the npz files of the shared data folder, and CelebA through
torchvision's class. Where files are missing, torchvision's download is tried; offline that fails
with a one-line error naming the folder.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from tempsched.errors import UserError

DATASETS = ("sample", "mnist", "fashion-mnist", "cifar10", "celeba")
_IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
VAL_SPLIT_SEED = 20240  # fixed, so every run and every seed validates on the same images


@dataclass(frozen=True)
class ImageData:
    """Train/validation/test images (uint8, N x C x H x W) and labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def describe(self) -> str:
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} val / {len(self.x_test)} test images, "
                f"{tuple(self.x_train.shape[1:])}")


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped or not, checked against its own header."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise UserError(f"corrupt data file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != expected_dims:
        raise UserError(f"corrupt data file {path}: not an IDX file of {expected_dims} dimension(s)")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(expected_dims)]
    offset = 4 + 4 * expected_dims
    if len(raw) != offset + int(np.prod(dims)):
        raise UserError(f"corrupt data file {path}: size does not match its header {dims}")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims).copy()


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_dataset(name: str, data_dir: Path) -> tuple[np.ndarray, ...]:
    raw = data_dir / _IDX_FOLDERS[name] / "raw"
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if any(_find(raw, s) is None for s in stems):
        _try_download(name, data_dir)
    paths = [_find(raw, s) for s in stems]
    if any(p is None for p in paths):
        raise UserError(f"{name} files not found under {raw}")
    x_tr, y_tr, x_te, y_te = (_read_idx(p, 3 if "images" in p.name else 1) for p in paths if p is not None)
    return x_tr[:, None], y_tr, x_te[:, None], y_te


def _try_download(name: str, data_dir: Path) -> None:
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST,
           "cifar10": torchvision.datasets.CIFAR10}[name]
    try:
        for train in (True, False):
            cls(str(data_dir), train=train, download=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{name} not found in {data_dir} and could not be downloaded ({reason})") from None


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
                     for i in range(len(offsets) - 1)])


def _load_cifar10(data_dir: Path) -> tuple[np.ndarray, ...]:
    for folder in (data_dir, data_dir / "cifar10"):
        exact, jpeg = folder / "cifar10_exact_subset.npz", folder / "cifar10_jpeg_q75.npz"
        if exact.is_file():
            d = np.load(exact)
            return (d["x_train"].transpose(0, 3, 1, 2), d["y_train"], d["x_test"].transpose(0, 3, 1, 2), d["y_test"])
        if jpeg.is_file():
            d = np.load(jpeg)
            x_tr = _decode_jpegs(d["train_jpeg"], d["train_offsets"]).transpose(0, 3, 1, 2)
            x_te = _decode_jpegs(d["test_jpeg"], d["test_offsets"]).transpose(0, 3, 1, 2)
            return x_tr, d["y_train"], x_te, d["y_test"]
    import torchvision

    if not (data_dir / "cifar-10-batches-py").is_dir():
        _try_download("cifar10", data_dir)
    sets = [torchvision.datasets.CIFAR10(str(data_dir), train=t, download=False) for t in (True, False)]
    return (sets[0].data.transpose(0, 3, 1, 2), np.asarray(sets[0].targets),
            sets[1].data.transpose(0, 3, 1, 2), np.asarray(sets[1].targets))


def _load_celeba(data_dir: Path, size: int = 64, limit: int = 0) -> tuple[np.ndarray, ...]:
    import torchvision
    from torchvision import transforms

    tf = transforms.Compose([transforms.CenterCrop(178), transforms.Resize(size)])
    out = []
    for split in ("train", "test"):
        try:
            ds = torchvision.datasets.CelebA(str(data_dir), split=split, target_type="identity", download=False)
        except Exception as exc:
            raise UserError(f"celeba not found in {data_dir} ({str(exc).splitlines()[0]})") from None
        n = len(ds) if limit <= 0 else min(limit, len(ds))
        imgs = np.stack([np.asarray(tf(ds[i][0])) for i in range(n)]).transpose(0, 3, 1, 2)
        out += [imgs, np.zeros(n, dtype=np.int64)]  # identities are not classes; no class filter
    return tuple(out)


def _load_sample() -> tuple[np.ndarray, ...]:
    with resources.files("tempsched").joinpath("data/mnist_sample.npz").open("rb") as fh:
        d = np.load(io.BytesIO(fh.read()))
        return d["x_train"][:, None], d["y_train"], d["x_test"][:, None], d["y_test"]


def load(name: str, data_dir: str | None, exclude_classes: list[int] = (), val_size: int = 0,
         train_size: int = 0, test_size: int = 0) -> ImageData:
    """Load ``name`` and carve the validation split (fixed permutation, independent of the run seed).

    ``exclude_classes`` removes classes from train and validation only: the test set keeps them, as
    the unseen-class experiment needs. ``val_size`` 0 means min(10% of train, 5000).
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    if name == "sample":
        arrays, label = _load_sample(), "MNIST sample (embedded, 4000 train + 1000 test digits)"
    else:
        root = Path(data_dir) if data_dir else Path("data")
        if data_dir and not root.is_dir():
            raise UserError(f"data directory not found: {root}")
        if name in _IDX_FOLDERS:
            arrays = _load_idx_dataset(name, root)
        elif name == "cifar10":
            arrays = _load_cifar10(root)
        else:
            arrays = _load_celeba(root, limit=train_size)
        label = f"{name} from {root}"
    x_tr, y_tr, x_te, y_te = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    y_tr, y_te = y_tr.long(), y_te.long()
    if train_size:
        x_tr, y_tr = x_tr[:train_size], y_tr[:train_size]
    if test_size:
        x_te, y_te = x_te[:test_size], y_te[:test_size]
    if exclude_classes:
        keep = ~torch.isin(y_tr, torch.tensor(list(exclude_classes)))
        x_tr, y_tr = x_tr[keep], y_tr[keep]
        label += f", without classes {sorted(exclude_classes)}"
    n_val = val_size or min(len(x_tr) // 10, 5000)
    if n_val >= len(x_tr):
        raise UserError(f"val_size {n_val} leaves no training images (train has {len(x_tr)})")
    perm = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    return ImageData(label, x_tr[train_idx], y_tr[train_idx], x_tr[val_idx], y_tr[val_idx], x_te, y_te)
