"""Data loading from small crafted files: the CIFAR-10 copies by name, CelebA's layout, and every corrupt
or unreadable file as one ``UserError`` that names it."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED, write_mnist_folder
from tempsched.errors import UserError
from tempsched.gsvae.data import DATASETS, load

JPEG_NPZ, EXACT_NPZ = "cifar10_jpeg_q75.npz", "cifar10_exact_subset.npz"


def _images(n: int, size: tuple[int, int] = (32, 32), seed: int = 0) -> np.ndarray:
    """Flat-coloured RGB images: JPEG keeps them within a few levels, so decoded pixels can be compared."""
    colours = np.random.default_rng(seed).integers(0, 256, (n, 1, 1, 3), dtype=np.uint8)
    return np.broadcast_to(colours, (n, *size, 3)).copy()


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def _concatenated(split: str, files: list[bytes]) -> dict[str, np.ndarray]:
    """``<split>_jpeg`` and ``<split>_offsets`` as the shared file stores them: the files end to end, n + 1 bounds."""
    return {f"{split}_jpeg": np.frombuffer(b"".join(files), dtype=np.uint8).copy(),
            f"{split}_offsets": np.cumsum([0] + [len(f) for f in files], dtype=np.int64)}


def _jpeg_arrays(n_train: int = 4, n_test: int = 2) -> dict[str, np.ndarray]:
    """The keys, dtypes and layout of the shared ``cifar10_jpeg_q75.npz``."""
    arrays: dict[str, np.ndarray] = {"label_names": np.array(["airplane", "automobile"], dtype="<U10")}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        arrays.update(_concatenated(split, [_jpeg(image) for image in _images(n, seed=seed)]))
        arrays[f"y_{split}"] = np.arange(n, dtype=np.int64) % 10
    return arrays


def _exact_arrays(n_train: int = 4, n_test: int = 2) -> dict[str, np.ndarray]:
    """The keys, dtypes and layout of the shared ``cifar10_exact_subset.npz``."""
    rng = np.random.default_rng(3)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        arrays[f"x_{split}"] = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        arrays[f"y_{split}"] = np.arange(n, dtype=np.int64) % 10
        arrays[f"idx_{split}"] = np.arange(n, dtype=np.int64)
    return arrays


def _save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def _load_error(name: str, data_dir: Path, **kwargs: int) -> str:
    with pytest.raises(UserError) as info:
        load(name, str(data_dir), **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def _header_layout(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Key -> (dtype, shape after the first axis) from each member's .npy header, without reading the data."""
    layout = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            with archive.open(member) as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
            layout[member.removesuffix(".npy")] = (dtype.str, shape[1:])
    return layout


@pytest.mark.parametrize("filename,arrays", [(JPEG_NPZ, _jpeg_arrays), (EXACT_NPZ, _exact_arrays)])
def test_crafted_npz_have_the_shared_files_layout(filename: str, arrays: Callable[[], dict[str, np.ndarray]],
                                                  tmp_path: Path) -> None:
    real = SHARED / "cifar10" / filename
    if not real.is_file():
        pytest.skip(f"{real} not here")
    assert _header_layout(_save(tmp_path / filename, arrays())) == _header_layout(real)


def test_cifar10_jpeg_copy_decodes_and_says_so(tmp_path: Path) -> None:
    arrays = _jpeg_arrays()
    _save(tmp_path / "cifar10" / JPEG_NPZ, arrays)  # the shared folder's layout: <data_dir>/cifar10/
    data = load("cifar10-jpeg", str(tmp_path), val_size=1)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (3, 1, 2)
    assert data.x_test.shape[1:] == (3, 32, 32) and data.x_test.dtype == torch.uint8
    decoded = data.x_test.permute(0, 2, 3, 1).numpy().astype(int)
    assert np.abs(decoded - _images(2, seed=2)).max() <= 3
    assert data.y_test.tolist() == arrays["y_test"].tolist()
    assert data.describe().startswith("CIFAR-10 JPEG q75 copy (4 train + 2 test images) from ")


def test_cifar10_jpeg_cache_follows_the_file_and_hands_out_copies(tmp_path: Path) -> None:
    path = _save(tmp_path / JPEG_NPZ, _jpeg_arrays())
    first = load("cifar10-jpeg", str(tmp_path), val_size=1)
    first.x_test.zero_()
    assert load("cifar10-jpeg", str(tmp_path), val_size=1).x_test.any()
    stat = path.stat()
    _save(path, _jpeg_arrays(n_test=3))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # a new stamp even on a coarse clock
    assert len(load("cifar10-jpeg", str(tmp_path), val_size=1).x_test) == 3


def test_cifar10_exact_subset_keeps_pixels_and_says_so(tmp_path: Path) -> None:
    arrays = _exact_arrays()
    _save(tmp_path / EXACT_NPZ, arrays)
    data = load("cifar10-exact", str(tmp_path), val_size=1)
    assert np.array_equal(data.x_test.permute(0, 2, 3, 1).numpy(), arrays["x_test"])
    assert data.describe().startswith("CIFAR-10 exact subset (4 train + 2 test images) from ")


def test_plain_cifar10_is_torchvisions_layout_only(tmp_path: Path) -> None:
    _save(tmp_path / "cifar10" / JPEG_NPZ, _jpeg_arrays())
    _save(tmp_path / "cifar10" / EXACT_NPZ, _exact_arrays())
    message = _load_error("cifar10", tmp_path)
    assert "cifar-10-batches-py" in message
    assert "--dataset cifar10-jpeg" in message and "--dataset cifar10-exact" in message
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert "MD5 check" in _load_error("cifar10", tmp_path)


def test_dataset_names_are_listed(tmp_path: Path) -> None:
    assert {"cifar10-jpeg", "cifar10-exact"} <= set(DATASETS)
    assert "cifar10-jpeg" in _load_error("cifar", tmp_path)
    assert f"{EXACT_NPZ} not found" in _load_error("cifar10-exact", tmp_path)


Change = Callable[[dict[str, np.ndarray]], None]  # edits a crafted npz's arrays before they are saved


def _replace(key: str, value: np.ndarray) -> Change:
    return lambda arrays: arrays.__setitem__(key, value)


def _set_jpeg(index: int, data: bytes) -> Change:
    """Train image ``index`` replaced by ``data``, the offsets kept consistent."""
    def set_jpeg(arrays: dict[str, np.ndarray]) -> None:
        bounds = arrays["train_offsets"]
        files = [arrays["train_jpeg"][a:b].tobytes() for a, b in zip(bounds, bounds[1:])]
        files[index] = data
        arrays.update(_concatenated("train", files))
    return set_jpeg


@pytest.mark.parametrize("name,change,needle", [
    ("cifar10-exact", lambda a: a.pop("y_test"), "missing key(s) ['y_test']"),
    ("cifar10-exact", _replace("x_train", np.zeros((4, 32, 32, 3), np.float32)), "'x_train' is float32"),
    ("cifar10-exact", _replace("x_train", np.zeros((4, 28, 28), np.uint8)), "expected uint8 of shape (N, 32, 32, 3)"),
    ("cifar10-exact", _replace("y_train", np.zeros(4, np.float64)), "expected integer of shape (N)"),
    ("cifar10-exact", _replace("y_train", np.zeros(3, np.int64)), "4 train images but 3 labels"),
    ("cifar10-jpeg", lambda a: a.pop("train_offsets"), "missing key(s) ['train_offsets']"),
    ("cifar10-jpeg", _replace("test_offsets", np.array([0, 5, 3], np.int64)), "'test_offsets' do not split"),
    ("cifar10-jpeg", _set_jpeg(1, b"GIF89a, not a JPEG"), "image 1 of 'train_jpeg' is not a JPEG"),
    ("cifar10-jpeg", _set_jpeg(0, _jpeg(_images(1)[0])[:200]), "image 0 of 'train_jpeg' cannot be decoded"),
    ("cifar10-jpeg", _set_jpeg(2, _jpeg(_images(1, (16, 16))[0])), "image 2 of 'train_jpeg' is 16x16, expected 32x32"),
    ("cifar10-jpeg", _replace("y_test", np.zeros(1, np.int64)), "2 test images but 1 labels"),
])
def test_broken_cifar10_npz_is_one_line_naming_file_and_fault(name: str, change: Change, needle: str,
                                                              tmp_path: Path) -> None:
    arrays = _jpeg_arrays() if name == "cifar10-jpeg" else _exact_arrays()
    change(arrays)
    path = _save(tmp_path / (JPEG_NPZ if name == "cifar10-jpeg" else EXACT_NPZ), arrays)
    message = _load_error(name, tmp_path, val_size=1)
    assert str(path) in message and needle in message


def _flip_member_bytes(path: Path) -> None:
    """Garbage inside the first member's deflate stream; the zip directory stays intact."""
    raw = bytearray(path.read_bytes())
    raw[100:140] = bytes(40)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("spoil,needle", [
    (lambda p: p.write_bytes(b"this is not a zip file at all"), "not an npz archive"),
    (lambda p: p.write_bytes(b""), "not an npz archive"),
    (lambda p: p.write_bytes(p.read_bytes()[:300]), "not an npz archive"),
    (lambda p: np.save(p.open("wb"), np.zeros(3)), "not an npz archive"),
    (_flip_member_bytes, "cannot read 'x_train'"),
])
def test_npz_that_is_no_archive_or_corrupt_inside(spoil: Callable[[Path], None], needle: str, tmp_path: Path) -> None:
    path = _save(tmp_path / EXACT_NPZ, _exact_arrays())
    spoil(path)
    message = _load_error("cifar10-exact", tmp_path)
    assert str(path) in message and needle in message


def _mnist_folder(root: Path) -> Path:
    images, labels = np.arange(5 * 28 * 28, dtype=np.uint8).reshape(5, 28, 28), np.arange(5, dtype=np.uint8)
    return write_mnist_folder(root, (images, labels, images[:2], labels[:2]))


def test_idx_files_load(tmp_path: Path) -> None:
    _mnist_folder(tmp_path)
    data = load("mnist", str(tmp_path), val_size=1)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (4, 1, 2)
    assert data.x_train.shape[1:] == (1, 28, 28)


@pytest.mark.parametrize("spoil,needle", [
    (lambda raw: raw[:10] + b"\xff" * 40, "invalid"),  # a valid gzip header, then garbage: zlib.error
    (lambda raw: raw[: len(raw) // 2], "ended before the end-of-stream"),  # truncated: EOFError
    (lambda raw: raw[:-8] + bytes(8), "CRC check failed"),  # wrong checksum: BadGzipFile
    (lambda raw: b"plain text, not gzip", "Not a gzipped file"),
])
def test_corrupt_gz_is_one_line_naming_file(spoil: Callable[[bytes], bytes], needle: str, tmp_path: Path) -> None:
    path = _mnist_folder(tmp_path) / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(spoil(path.read_bytes()))
    message = _load_error("mnist", tmp_path)
    assert message.startswith(f"corrupt data file {path}: ") and needle in message


def _celeba(root: Path, partition: list[int]) -> Path:
    """torchvision's CelebA layout, 178 x 218 faces: a red middle, blue bands in the 20 rows crop 178 removes."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    face = np.zeros((218, 178, 3), np.uint8)
    face[:, :, 2] = 255
    face[20:198] = (255, 0, 0)
    names = [f"{i + 1:06d}.jpg" for i in range(len(partition))]
    for name in names:
        Image.fromarray(face).save(folder / "img_align_celeba" / name, quality=95)
    (folder / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, partition)))
    return folder


def test_celeba_layout_loads_cropped_faces(tmp_path: Path) -> None:
    folder = _celeba(tmp_path, [0, 0, 0, 1, 2, 2])
    data = load("celeba", str(tmp_path), val_size=1)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (2, 1, 2)
    assert data.x_train.shape[1:] == (3, 64, 64) and data.x_test.shape[1:] == (3, 64, 64)
    assert data.x_test[:, 0].float().mean() > 250 and data.x_test[:, 2].float().mean() < 5  # the bands are gone
    assert data.y_train.tolist() == [0, 0] and data.describe().startswith(f"CelebA from {folder}")


def test_celeba_sizes_stop_decoding_early(tmp_path: Path) -> None:
    folder = _celeba(tmp_path, [0, 0, 0, 2, 2])
    for name in ("000003.jpg", "000005.jpg"):  # beyond train_size / test_size: never opened
        (folder / "img_align_celeba" / name).write_bytes(b"garbage")
    data = load("celeba", str(tmp_path), val_size=1, train_size=2, test_size=1)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (1, 1, 1)


def test_celeba_faults(tmp_path: Path) -> None:
    assert "celeba not found" in _load_error("celeba", tmp_path)
    folder = _celeba(tmp_path, [0, 0, 2])
    assert "without classes [0] has 0 training image(s)" in _load_error("celeba", tmp_path, exclude_classes=[0])
    image = folder / "img_align_celeba" / "000002.jpg"
    image.write_bytes(image.read_bytes()[:400])
    assert _load_error("celeba", tmp_path).startswith(f"corrupt data file {image}: ")
    image.write_bytes(b"not an image")
    assert _load_error("celeba", tmp_path).startswith(f"corrupt data file {image}: ")
    partition = folder / "list_eval_partition.txt"
    partition.write_text("000001.jpg 0\n000002.jpg train\n")
    assert _load_error("celeba", tmp_path).startswith(f"corrupt data file {partition}, line 2: ")
    partition.write_text("000001.jpg 0\n")
    assert "lists no images of partition 2" in _load_error("celeba", tmp_path)


def _directory_instead(name: str, root: Path) -> Path:
    """Build ``name``'s files under ``root`` with a directory where one file should be; return that path."""
    if name == "mnist":
        path = _mnist_folder(root) / "train-labels-idx1-ubyte.gz"
    elif name == "cifar10-exact":
        path = root / EXACT_NPZ
    else:
        path = _celeba(root, [0, 0, 2]) / "img_align_celeba" / "000003.jpg"
    if path.exists():
        path.unlink()
    path.mkdir()
    return path


@pytest.mark.parametrize("name", ["mnist", "cifar10-exact", "celeba"])
def test_directory_where_a_file_should_be(name: str, tmp_path: Path) -> None:
    path = _directory_instead(name, tmp_path)
    assert _load_error(name, tmp_path, val_size=1) == f"cannot read {path}: Is a directory"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_file_without_read_permission(tmp_path: Path) -> None:
    path = _save(tmp_path / EXACT_NPZ, _exact_arrays())
    path.chmod(0)
    try:
        assert _load_error("cifar10-exact", tmp_path) == f"cannot read {path}: Permission denied"
    finally:
        path.chmod(0o600)
