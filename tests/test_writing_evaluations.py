"""docs/writing-evaluations.md: its complete evaluation is the installed example package, under 30 lines,
built only on ``tempsched``'s public names, and it measures what it says on a real run. ``tempsched eval
--help`` lists the evaluations."""

from __future__ import annotations

import json
import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from test_cli import TINY, cli

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "examples" / "tempsched-tauscan" / "tempsched_tauscan" / "__init__.py"


def test_the_guide_shows_the_example_package_whole_in_under_30_lines() -> None:
    guide = (ROOT / "docs" / "writing-evaluations.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.S)
    assert SOURCE.read_text(encoding="utf-8") in blocks
    code = [line for line in SOURCE.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(code) < 30
    imports = [line for line in code if line.startswith(("import ", "from "))]
    assert imports == ["from tempsched import EvalContext, Evaluation, Param, hookimpl"]


def test_the_example_evaluation_runs_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert any(ep.name == "tauscan" for ep in entry_points(group="tempsched")), \
        "install the example evaluation: pip install -e examples/tempsched-tauscan"
    monkeypatch.setenv("TEMPSCHED_PLUGINS", "tauscan")
    run = tmp_path / "run"
    code, _, err = cli("run", *TINY, "--epochs", "1", "--out", str(run), capsys=capsys)
    assert code == 0, err
    code, out, err = cli("eval", "--help", capsys=capsys)
    assert code == 0 and re.search(r"tau-scan: Each best model's test metrics", out), out
    assert re.search(r"recon: Reconstruction on the full test set", out)
    code, _, err = cli("eval", "tau-scan", str(run), "--set", "factors=[1.0, 2.0]", "--out", str(tmp_path / "r"),
                       capsys=capsys)
    assert code == 0, err
    rows = json.loads((tmp_path / "r" / "results.json").read_text())["scan"]
    summary = json.loads((run / "summary.json").read_text())
    assert [r["factor"] for r in rows] == [1.0, 2.0]
    assert rows[1]["tau"] == pytest.approx(2 * summary["best_tau"])
    for key, value in summary["test_metrics"].items():  # at its own tau: the run's own test figures
        assert rows[0][key] == pytest.approx(value, rel=1e-6)
    code, _, err = cli("eval", "tau-scan", str(run), "--set", "factors=2", "--out", str(tmp_path / "bad"),
                       capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "factors" in err
