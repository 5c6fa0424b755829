"""Image data sets held in memory as uint8 tensors, with a deterministic validation split.

Sources (``DATASETS``):

- ``sample``: the embedded MNIST sample (the default, works offline).
- ``mnist``, ``fashion-mnist``: torchvision's folder layout, ``<data_dir>/MNIST/raw/*-ubyte[.gz]``.
- ``cifar10``: torchvision's ``<data_dir>/cifar-10-batches-py``, MD5-checked by torchvision.
- ``cifar10-jpeg``: ``cifar10_jpeg_q75.npz`` (in ``<data_dir>`` or ``<data_dir>/cifar10``): all 50,000 +
  10,000 images in the official order, each a JPEG (quality 75) of 32x32 RGB. Keys ``train_jpeg`` /
  ``test_jpeg`` (uint8, the JPEG files concatenated), ``train_offsets`` / ``test_offsets`` (int64, n + 1
  boundaries from 0 to the blob's length), ``y_train`` / ``y_test`` (int64). Lossy: about 5.8/255 mean
  absolute error per channel.
- ``cifar10-exact``: ``cifar10_exact_subset.npz``: 8,068 + 1,017 images with their original pixels. Keys
  ``x_train`` / ``x_test`` (uint8, N x 32 x 32 x 3) and ``y_train`` / ``y_test`` (int64).
- ``celeba``: torchvision's layout, ``<data_dir>/celeba/img_align_celeba/*.jpg`` and
  ``list_eval_partition.txt``, read by our own reader (see ``_load_celeba``).

The two CIFAR-10 npz copies differ in size and in pixels, so neither is picked behind the user's back:
each has its own name, and the data description (in every run summary) says which copy was used.
Where MNIST, Fashion-MNIST or the CIFAR-10 batches are missing, torchvision's download is tried; offline
that fails with a one-line error naming the folder. Every unreadable or corrupt file is a ``UserError``
naming the file.
"""

from __future__ import annotations

import functools
import gzip
import io
import zipfile
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from tempsched.errors import UserError

DATASETS = ("sample", "mnist", "fashion-mnist", "cifar10", "cifar10-jpeg", "cifar10-exact", "celeba")
_IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


class _NpzCopy(NamedTuple):
    """One CIFAR-10 npz file of the shared data folder."""

    file: str
    title: str  # what the run summary calls it
    choice: str  # how the error for a plain 'cifar10' tells it from the other copy


_CIFAR10_NPZ = {
    "cifar10-jpeg": _NpzCopy("cifar10_jpeg_q75.npz", "CIFAR-10 JPEG q75 copy", "all 60,000 images, lossy JPEG q75"),
    "cifar10-exact": _NpzCopy("cifar10_exact_subset.npz", "CIFAR-10 exact subset", "9,085 images, original pixels"),
}
_RGB32 = (32, 32, 3)  # a CIFAR-10 image, height x width x channels
VAL_SPLIT_SEED = 20240  # fixed, so every run and every seed validates on the same images

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test


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
        """One line for the run summary: which source and copy, and how many images each split has."""
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} val / {len(self.x_test)} test images, "
                f"{tuple(self.x_train.shape[1:])}")


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped or not, checked against its own header."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # bad header or CRC / truncated / garbage deflate data
            raise UserError(f"corrupt data file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != expected_dims:
        raise UserError(f"corrupt data file {path}: not an IDX file of {expected_dims} dimension(s)")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(expected_dims)]
    offset = 4 + 4 * expected_dims
    if len(raw) != offset + int(np.prod(dims)):
        raise UserError(f"corrupt data file {path}: size does not match its header {dims}")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims).copy()


def _find(folder: Path, stem: str) -> Path | None:
    """The file, plain or gzipped; anything of that name counts, so a directory there is reported, not skipped."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def _load_idx_dataset(name: str, data_dir: Path) -> tuple[str, Arrays]:
    raw = data_dir / _IDX_FOLDERS[name] / "raw"
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if any(_find(raw, s) is None for s in stems):
        _try_download(name, data_dir)
    paths = [_find(raw, s) for s in stems]
    if any(p is None for p in paths):
        raise UserError(f"{name} files not found under {raw}")
    x_tr, y_tr, x_te, y_te = (_read_idx(p, 3 if "images" in p.name else 1) for p in paths if p is not None)
    return f"{name} from {raw}", (x_tr[:, None], y_tr, x_te[:, None], y_te)


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


def _find_cifar10_npz(name: str, data_dir: Path) -> Path | None:
    """The npz of ``name`` in ``data_dir`` itself or in its ``cifar10`` folder (the shared data folder's layout)."""
    filename = _CIFAR10_NPZ[name].file
    for candidate in (data_dir / filename, data_dir / "cifar10" / filename):
        if candidate.exists():
            return candidate
    return None


def _read_npz(path: Path, spec: dict[str, tuple[type, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    """The arrays ``spec`` names, each checked: key -> (dtype class, shape after the first axis)."""
    try:
        archive = np.load(path)
    except (zipfile.BadZipFile, ValueError, EOFError):  # ValueError: numpy took it for a pickle
        archive = None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # garbage, empty, or a single .npy array
        raise UserError(f"corrupt data file {path}: not an npz archive")
    with archive:
        missing = [key for key in spec if key not in archive.files]
        if missing:
            raise UserError(f"corrupt data file {path}: missing key(s) {missing} (has {archive.files})")
        arrays = {}
        for key, (kind, tail) in spec.items():
            try:
                array = archive[key]
            except (zipfile.BadZipFile, zlib.error, ValueError, EOFError) as exc:
                raise UserError(f"corrupt data file {path}: cannot read '{key}' ({exc})") from None
            if not np.issubdtype(array.dtype, kind) or array.ndim != 1 + len(tail) or array.shape[1:] != tail:
                raise UserError(f"corrupt data file {path}: '{key}' is {array.dtype} of shape {array.shape}, "
                                f"expected {kind.__name__} of shape (N{''.join(f', {d}' for d in tail)})")
            arrays[key] = array
    return arrays


def _load_cifar10_exact(path: Path) -> Arrays:
    d = _read_npz(path, {"x_train": (np.uint8, _RGB32), "y_train": (np.integer, ()),
                         "x_test": (np.uint8, _RGB32), "y_test": (np.integer, ())})
    return d["x_train"].transpose(0, 3, 1, 2), d["y_train"], d["x_test"].transpose(0, 3, 1, 2), d["y_test"]


def _decode_jpegs(path: Path, blob: np.ndarray, offsets: np.ndarray, key: str) -> np.ndarray:
    """N x 3 x 32 x 32 from JPEG files laid end to end (CIFAR-10's 60,000: 10-15 s of one core).

    PIL, whose Python header parsing is most of that time: ``torchvision.io.decode_jpeg`` would save about a
    quarter, but torchvision 0.29 deprecates it.
    """
    from PIL import Image, UnidentifiedImageError

    bounds = offsets.tolist()
    if bounds[0] != 0 or bounds[-1] != len(blob) or any(a >= b for a, b in zip(bounds, bounds[1:])):
        raise UserError(f"corrupt data file {path}: '{key}_offsets' do not split '{key}_jpeg' "
                        f"({len(blob)} bytes) into {len(bounds) - 1} images")
    view = memoryview(blob)
    out = np.empty((len(bounds) - 1, *_RGB32), dtype=np.uint8)
    for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
        where = f"corrupt data file {path}: image {i} of '{key}_jpeg'"
        try:
            with Image.open(io.BytesIO(view[start:end]), formats=("JPEG",)) as image:
                pixels = np.asarray(image.convert("RGB"))
        except UnidentifiedImageError:
            raise UserError(f"{where} is not a JPEG") from None
        except OSError as exc:  # truncated, or broken inside
            raise UserError(f"{where} cannot be decoded ({exc})") from None
        if pixels.shape != _RGB32:
            raise UserError(f"{where} is {pixels.shape[1]}x{pixels.shape[0]}, expected 32x32")
        out[i] = pixels
    return out.transpose(0, 3, 1, 2)


@functools.lru_cache(maxsize=1)
def _decoded_cifar10_jpeg(path: Path, stamp: tuple[int, int]) -> Arrays:
    """Decoding all 60,000 JPEGs takes seconds, and a tune study loads the data once per trial: keep the last
    decoded file in memory (the shared data folder is read-only, so nothing is cached on disk). ``stamp``
    (mtime, size) makes a replaced file a new entry."""
    spec = {"train_jpeg": (np.uint8, ()), "train_offsets": (np.integer, ()), "y_train": (np.integer, ()),
            "test_jpeg": (np.uint8, ()), "test_offsets": (np.integer, ()), "y_test": (np.integer, ())}
    d = _read_npz(path, spec)
    out = []
    for split in ("train", "test"):
        out += [_decode_jpegs(path, d[f"{split}_jpeg"], d[f"{split}_offsets"], split), d[f"y_{split}"]]
    return tuple(out)


def _load_cifar10_npz(name: str, data_dir: Path) -> tuple[str, Arrays]:
    path = _find_cifar10_npz(name, data_dir)
    if path is None:
        raise UserError(f"{name}: {_CIFAR10_NPZ[name].file} not found in {data_dir} or {data_dir / 'cifar10'}")
    if name == "cifar10-jpeg":
        stat = path.stat()
        # copies, so that no caller can change the cached arrays another load will return
        arrays = tuple(a.copy() for a in _decoded_cifar10_jpeg(path.resolve(), (stat.st_mtime_ns, stat.st_size)))
    else:
        arrays = _load_cifar10_exact(path)
    return f"{_CIFAR10_NPZ[name].title} ({len(arrays[0])} train + {len(arrays[2])} test images) from {path}", arrays


def _load_cifar10_batches(data_dir: Path) -> tuple[str, Arrays]:
    """torchvision's layout only: with just the npz copies present, the user must say which one."""
    import torchvision

    folder = data_dir / "cifar-10-batches-py"
    if not folder.exists():
        found = [name for name in _CIFAR10_NPZ if _find_cifar10_npz(name, data_dir) is not None]
        if found:
            choices = " or ".join(f"--dataset {name} ({_CIFAR10_NPZ[name].choice})" for name in found)
            raise UserError(f"cifar10 means torchvision's cifar-10-batches-py, which {data_dir} lacks; "
                            f"for its npz copies use {choices}")
        _try_download("cifar10", data_dir)
    try:
        sets = [torchvision.datasets.CIFAR10(str(data_dir), train=t, download=False) for t in (True, False)]
    except RuntimeError:  # torchvision's MD5 check of the batches
        raise UserError(f"corrupt data in {folder}: torchvision's MD5 check of the CIFAR-10 batches failed") from None
    arrays = (sets[0].data.transpose(0, 3, 1, 2), np.asarray(sets[0].targets),
              sets[1].data.transpose(0, 3, 1, 2), np.asarray(sets[1].targets))
    return f"CIFAR-10 (torchvision's cifar-10-batches-py) from {folder}", arrays


def _celeba_partition(path: Path) -> dict[int, list[str]]:
    """``list_eval_partition.txt``: one ``<image> <0|1|2>`` line per image (train, valid, test)."""
    splits: dict[int, list[str]] = {0: [], 1: [], 2: []}
    text = path.read_bytes().decode("ascii", errors="replace")  # a binary file then fails on its first line
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise UserError(f"corrupt data file {path}, line {number}: expected '<image> <0|1|2>', got {line!r}")
        splits[int(fields[1])].append(fields[0])
    return splits


def _load_celeba(data_dir: Path, train_limit: int, test_limit: int, size: int = 64) -> tuple[str, Arrays]:
    """CelebA's aligned faces, center-cropped to 178 x 178 and resized to ``size``, as the usual VAE recipe.

    Our own reader, not ``torchvision.datasets.CelebA``: that class demands MD5-exact copies of five
    annotation files, while all this needs is the partition list and the images. Train is partition 0,
    test partition 2; validation is carved from train like every other data set, so partition 1 is unused.
    Identities are not classes: every label is 0. ``*_limit`` (0: all) stop decoding early, since the full
    train split has 162,770 images.
    """
    from PIL import Image
    from torchvision import transforms

    folder = data_dir / "celeba"
    partition, images = folder / "list_eval_partition.txt", folder / "img_align_celeba"
    if not partition.exists() or not images.exists():
        raise UserError(f"celeba not found: expected {partition} and {images}/ (torchvision's layout; "
                        "CelebA is not downloaded automatically)")
    splits = _celeba_partition(partition)
    crop = transforms.Compose([transforms.CenterCrop(178), transforms.Resize(size)])
    arrays = []
    for split, limit in ((0, train_limit), (2, test_limit)):
        names = splits[split][:limit or None]
        if not names:
            raise UserError(f"{partition} lists no images of partition {split}")
        batch = np.empty((len(names), 3, size, size), dtype=np.uint8)
        for i, name in enumerate(names):
            path = images / name
            with path.open("rb") as fh:
                try:
                    image = Image.open(fh).convert("RGB")
                except OSError as exc:  # PIL: not an image, or truncated
                    raise UserError(f"corrupt data file {path}: {exc}") from None
            batch[i] = np.asarray(crop(image)).transpose(2, 0, 1)
        arrays += [batch, np.zeros(len(names), dtype=np.int64)]
    return f"CelebA from {folder}", tuple(arrays)


def _load_sample() -> tuple[str, Arrays]:
    with resources.files("tempsched").joinpath("data/mnist_sample.npz").open("rb") as fh:
        d = np.load(io.BytesIO(fh.read()))
        arrays = d["x_train"][:, None], d["y_train"], d["x_test"][:, None], d["y_test"]
    return "MNIST sample (embedded, 4000 train + 1000 test digits)", arrays


def _load_source(name: str, data_dir: str | None, train_size: int, test_size: int) -> tuple[str, Arrays]:
    """The label and arrays of ``name``; a file the system refuses to read is a one-line error naming it."""
    if name == "sample":
        return _load_sample()
    root = Path(data_dir) if data_dir else Path("data")
    if data_dir and not root.is_dir():
        raise UserError(f"data directory not found: {root}")
    try:
        if name in _IDX_FOLDERS:
            return _load_idx_dataset(name, root)
        if name in _CIFAR10_NPZ:
            return _load_cifar10_npz(name, root)
        if name == "cifar10":
            return _load_cifar10_batches(root)
        return _load_celeba(root, train_size, test_size)
    except OSError as exc:  # permissions, a directory where a file should be, a vanished file
        where = exc.filename or root
        raise UserError(f"cannot read {where}: {exc.strerror or exc}") from None


def validation_size(available: int, val_size: int, source: str) -> int:
    """How many of the ``available`` training images (those left after ``train_size`` and
    ``exclude_classes``) the validation split takes: the one rule for every run, tune trial and evaluation
    that trains, since each of them loads its images here.

    ``val_size`` if given, else max(1, min(10% of them, 5000)); at least one image must stay to train on, so
    a run needs two. Why at least one validation image: the selection loss is the mean -ELBO over the split,
    and an empty split has no mean (it ended the first epoch in a ZeroDivisionError). Why the same split under
    ``--select-on train``, which does not read it: a run's training images then do not depend on how it
    selects, so two runs that differ only in that compare on equal terms. Anything else is one line, said
    before any training, with ``source`` naming where the images came from.
    """
    if available < 2:
        raise UserError(f"{source} has {available} training image(s), but a run needs at least 2 (one to "
                        "validate on, one to train on): raise --train-size or exclude fewer classes")
    n_val = val_size or max(1, min(available // 10, 5000))
    if n_val >= available:
        raise UserError(f"val_size {n_val} leaves no training images: {source} has {available}; "
                        f"give --val-size {available - 1} or less")
    return n_val


def load(name: str, data_dir: str | None, exclude_classes: Sequence[int] = (), val_size: int = 0,
         train_size: int = 0, test_size: int = 0) -> ImageData:
    """Load ``name`` and carve the validation split (fixed permutation, independent of the run seed).

    ``exclude_classes`` removes classes from train and validation only: the test set keeps them, as
    the unseen-class experiment needs. How many images are validated on: ``validation_size``.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    label, arrays = _load_source(name, data_dir, train_size, test_size)
    x_tr, y_tr, x_te, y_te = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if len(x) != len(y):
            raise UserError(f"{label}: {len(x)} {split} images but {len(y)} labels")
    y_tr, y_te = y_tr.long(), y_te.long()
    if train_size:
        x_tr, y_tr = x_tr[:train_size], y_tr[:train_size]
    if test_size:
        x_te, y_te = x_te[:test_size], y_te[:test_size]
    if exclude_classes:
        keep = ~torch.isin(y_tr, torch.tensor(list(exclude_classes)))
        x_tr, y_tr = x_tr[keep], y_tr[keep]
        label += f", without classes {sorted(exclude_classes)}"
    source = (name + (f" (first {train_size} training images)" if train_size else "")
              + (f" without classes {sorted(exclude_classes)}" if exclude_classes else ""))
    n_val = validation_size(len(x_tr), val_size, source)
    perm = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    return ImageData(label, x_tr[train_idx], y_tr[train_idx], x_tr[val_idx], y_tr[val_idx], x_te, y_te)
