"""benchmarks/reproduce.py as a module, for the tests of its doc writer and its cache handling (benchmarks/
is a folder of scripts, not a package)."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def load() -> ModuleType:
    """The script, imported once; registered in sys.modules first, as its dataclasses need."""
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "benchmarks" / "reproduce.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = module
    spec.loader.exec_module(module)
    return module
