"""Shared fixtures: a plugin manager with the toy task, tiny GS-VAE configurations, a CLI runner, MNIST files."""

from __future__ import annotations

import gzip
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

# Tests see only the shipped plugins unless one asks for more (installed packages stay out of the way).
os.environ.setdefault("TEMPSCHED_PLUGINS", "")

import toy  # noqa: E402

from tempsched.config import RunConfig  # noqa: E402
from tempsched.plugins import PluginManager  # noqa: E402
from tempsched.spec import RunSpec  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
WAIT_SECONDS = 300.0  # how long a test waits for something another process or thread does, on the slowest machine

T = TypeVar("T")


def python_path(*folders: Path) -> str:
    """PYTHONPATH for a subprocess that imports from ``folders``: them first, then this process's PYTHONPATH,
    so the subprocess imports tempsched from where this process does (a checkout on PYTHONPATH included)."""
    return os.pathsep.join([*map(str, folders), *filter(None, [os.environ.get("PYTHONPATH")])])


def wait_for(condition: Callable[[], T], what: str, timeout: float = WAIT_SECONDS) -> T:
    """Poll ``condition`` until it returns something true, and return that; fail naming ``what`` after ``timeout`` s.

    The one place the tests wait: always for something the code under test does (a file written from a hook, a
    process that exits), never for a fixed time, so they pass on a machine of any speed. The deadline only turns
    a hang into a failure that says what never happened. Processes that are not tests use it too, so it raises
    AssertionError rather than calling pytest.
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(0.02)
    return value


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models on a busy two-core machine run several times faster on one thread than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_same_member_state(a: Any, b: Any) -> None:
    """Members ``a`` and ``b`` hold equal weights and Adam state, in tensors of their own (no aliasing)."""
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb) and pa.data_ptr() != pb.data_ptr()
        sa, sb = a.optimizer.state[pa], b.optimizer.state[pb]
        assert set(sa) == set(sb) == {"step", "exp_avg", "exp_avg_sq"}
        for key in sa:
            assert torch.equal(sa[key], sb[key]) and sa[key].data_ptr() != sb[key].data_ptr()


@pytest.fixture
def manager() -> PluginManager:
    m = PluginManager()
    m.register(toy, name="toy")
    return m


def tiny_gsvae(manager: PluginManager, **overrides: object) -> RunConfig:
    """A GS-VAE run that takes seconds: 256 sample images, 3 members, 2 epochs."""
    return tiny_gsvae_spec(**overrides).resolve(manager.registry)


def tiny_gsvae_spec(**overrides: object) -> RunSpec:
    """The spec ``tiny_gsvae`` resolves (for ``ensure_run`` and evaluations, which take specs)."""
    base = {"plugin": "paper-default", "members": 3, "epochs": 2,
            "task_options": {"dataset": "sample", "train_size": 320, "val_size": 64, "test_size": 64, "batch_size": 64,
                             "z1": [8, 4], "z2": [4, 4], "channels": [8, 16]}}
    for key, value in overrides.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return RunSpec(base)


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny population run and the standard GS-VAE beside it (its ``baseline``), trained once per session
    (``ensure_run`` in one folder) for the anomaly and attack tests."""
    from tempsched import runs
    from tempsched.gsvae.experiments.compared import baseline_spec

    manager = PluginManager()
    root = tmp_path_factory.getbasetemp() / "tiny-gsvae-runs"
    spec = tiny_gsvae_spec(members=2, epochs=1, task_options={"val_size": 48})
    config = spec.resolve(manager.registry)
    population = runs.ensure_run(spec, manager, root)
    return population, runs.ensure_run(baseline_spec(config, "standard-annealing", config), manager, root)


MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def write_mnist_folder(root: Path, arrays: tuple[np.ndarray, ...]) -> Path:
    """An MNIST folder in torchvision's layout under ``root`` holding ``arrays`` (train images, train labels,
    test images, test labels; uint8) as gzipped IDX files; returns its ``raw`` folder."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, array in zip(MNIST_STEMS, arrays):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
        (raw / f"{stem}.gz").write_bytes(gzip.compress(header + array.tobytes()))
    return raw


@pytest.fixture(scope="module")
def mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MNIST folder holding 300 + 100 of the embedded sample's digits, for the benchmarks' cells."""
    from tempsched.gsvae.data import load

    root = tmp_path_factory.mktemp("mnist")
    sample = load("sample", None, val_size=1)
    arrays = (sample.x_train[:300, 0], sample.y_train[:300], sample.x_test[:100, 0], sample.y_test[:100])
    write_mnist_folder(root, tuple(a.numpy().astype(np.uint8) for a in arrays))
    return root
