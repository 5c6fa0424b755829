"""docs/reproduction.md says no more than its results: the commentary types no measured number (each is a
placeholder the doc writer fills from the kept results.json files), every glance row names its metric,
comparison and seeds, no heading or column calls the upsampled 64x64 figure the authors' metric, and each
accuracy's interval is the Wilson interval."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTES = ROOT / "benchmarks" / "reproduction_notes.md"
DOC = ROOT / "docs" / "reproduction.md"

# What the commentary may show as digits: settings and names, never a result. Removed first: placeholders
# ({{...}}), code spans and links (paths, commands, run names), and text in double quotes (the paper's claims,
# quoted as printed). Then each pattern below removes one allowed form; any digit left is a typed number.
_NUMBER = r"\d+(?:[.,]\d+)*"  # 3, 0.05, 1,000
_LISTED = _NUMBER + r"(?:(?:,\s*|\s*-\s*|\s+(?:to|and)\s+)" + _NUMBER + r")*"  # 1, 2, 4 / 3-10 / 120 to 1,000
ALLOWED = (
    r"(?i:\b(?:Tables?|Figs?\.|Algorithm|issue|digits?|seeds?|members?|decoders?)\s+)" + _LISTED,  # names, indices
    r"\b(?:eps|ε|l_inc|torch)\s+" + _LISTED,  # settings by name: the attack budget, the tau increment, torch
    r"\b[nK]\s*=\s*" + _LISTED,  # population size, categories
    _LISTED + r"\s+(?:(?:attacked|test|held-out)\s+)*(?:seeds?|epochs?|members?|images|trials|steps|draws|"
              r"categoricals|conv layers|channels|patch cases|units|standard errors|CPU cores)\b",
    r"\b\d+\s*[x×]\s*\d+\b",  # image and patch sizes, members x epochs
    r"\b\d+-(?:epoch|member)\b",  # a 5-epoch population
    r"\bat \(\d+, \d+\)",  # the paper's patch position
    r"\b[A-Za-z_]+-?\d+\b",  # identifiers: CIFAR-10, z1, H200
    r"\b1/K\b", r"\b95% Wilson\b",  # the uniform code's probability; the intervals' level
)


def typed_numbers(text: str) -> list[str]:
    """The digits ``text`` shows outside placeholders and the allowed forms, each with a little context."""
    text = re.sub(r"\{\{[^{}]*\}\}|`[^`]*`|\]\([^)]*\)|\"[^\"\n]*\"", " ", text)
    for pattern in ALLOWED:
        text = re.sub(pattern, " ", text)
    return [text[max(0, m.start() - 30):m.end() + 30].replace("\n", " ") for m in re.finditer(r"\d+", text)]


def test_the_check_catches_a_typed_result_and_passes_settings() -> None:
    assert typed_numbers("soft MSE 0.0138 against the population's") != []
    assert typed_numbers("the bare CNN keeps 68.7% at eps 0.1") != []
    assert typed_numbers("at eps 0.05 to 0.1 over 3 seeds, n = 1, 2, 4, 8, 20 trials on 20,000 images, "
                         "CIFAR-10 at 32x32, Table 1 and Fig. 7-8, an 8 x 8 cross at (10, 10), "
                         "{{v:cell/recon|recon|#0|soft MSE}} `--cells mnist-seeds` \"above 80%\"") == []


def test_the_commentary_types_no_measured_number() -> None:
    assert typed_numbers(NOTES.read_text(encoding="utf-8")) == []


def test_every_placeholder_renders_from_the_kept_results() -> None:
    from reproduce_script import load

    reproduce = load()
    from reproduction_figures import Kept, render

    kept = Kept(reproduce.RESULTS, reproduce._seed_groups)
    notes = reproduce._notes()
    assert {"introduction", "mnist-baselines", "mnist-robustness"} <= set(notes)
    for name, text in notes.items():
        rendered = render(text, kept)
        assert "{{" not in rendered and "}}" not in rendered, name


def test_a_placeholder_that_names_nothing_stops_the_writer() -> None:
    from reproduce_script import load

    reproduce = load()
    from reproduction_figures import Kept, render

    kept = Kept(reproduce.RESULTS, reproduce._seed_groups)
    with pytest.raises(ValueError, match="not found"):
        render("{{v:mnist-baselines/recon|recon|(z) nobody|soft MSE}}", kept)
    with pytest.raises(ValueError, match="unknown figure"):
        render("{{guess:mnist-baselines/recon}}", kept)
    with pytest.raises(ValueError, match="no numbers in column"):
        render("{{argmin:mnist-population/tau-sweep|tau_sweep|tau|no such column}}", kept)


def test_argmin_gives_the_key_of_the_smallest_value(tmp_path: Path) -> None:
    import json

    from reproduce_script import load

    load()
    from reproduction_figures import Kept, render

    (tmp_path / "c" / "sweep").mkdir(parents=True)
    rows = [{"tau": 0.5, "soft MSE": 0.3}, {"tau": 1.9, "soft MSE": 0.1}, {"tau": 10.0, "soft MSE": None},
            {"tau": 30.0, "soft MSE": 0.2}]
    (tmp_path / "c" / "sweep" / "results.json").write_text(json.dumps({"tau_sweep": rows}))
    kept = Kept(tmp_path, lambda cell: {})
    assert render("{{argmin:c/sweep|tau_sweep|tau|soft MSE|.2g}}", kept) == "1.9"


def _glance_rows(text: str) -> list[list[str]]:
    table = text.split("**At a glance**", 1)[1].split("\n\n", 2)[1]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]


def test_each_glance_row_names_its_metric_comparison_and_seeds() -> None:
    rows = _glance_rows(DOC.read_text(encoding="utf-8"))
    assert rows[0][1] == "metric; comparison; seeds"
    for row in rows[2:]:
        assert row[1].count(";") >= 2 and "seed" in row[1] or "one model" in row[1], row[0]
        assert row[3], row[0]


def test_no_heading_or_column_calls_the_64x64_figure_anything_but_a_proxy() -> None:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    headers = [line for i, line in enumerate(lines)
               if line.startswith("#") or (line.startswith("|") and i + 1 < len(lines)
                                           and lines[i + 1].startswith("|---"))]
    sized = [line for line in headers if re.search(r"64\s*[x×]\s*64", line)]
    assert sized, "the recon tables' 64x64 column is gone: update this test"
    for line in sized:
        for column in line.split("|"):
            assert not re.search(r"64\s*[x×]\s*64", column) or "proxy" in column, column
    assert "authors' metric)" not in DOC.read_text(encoding="utf-8").replace("(the authors' metric, a model", "")


@pytest.mark.parametrize("successes,n,low,high", [(0, 1000, 0.0, 0.00383), (200, 1000, 0.17637, 0.22592),
                                                  (1000, 1000, 0.99617, 1.0), (9897, 10000, 0.98755, 0.99152)])
def test_wilson_interval(successes: int, n: int, low: float, high: float) -> None:
    from reproduce_script import load

    load()
    from tempsched.intervals import wilson

    got = wilson(successes, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_every_accuracy_of_an_attacks_table_carries_its_interval() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## mnist-robustness", 1)[1].split("### attacks", 1)[1].split("\n## ", 1)[0]
    table = section.split("#### Table 2", 1)[1].split("\n\n", 2)[1]
    for line in table.splitlines()[2:]:
        for cell in line.strip("|").split("|")[1:]:
            assert re.fullmatch(r"\s*\d+\.\d+ \(\d+\.\d+-\d+\.\d+\)\s*", cell), line


def test_a_cell_whose_options_changed_since_its_report_is_shown_as_a_pending_rerun(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    import shutil

    from reproduce_script import load

    reproduce = load()
    cell = next(c for c in reproduce.CELLS if c.name == "mnist-baselines")
    assert dict(cell.evaluations)["recon"]["baseline_seeds"] == 3
    kept = tmp_path / "mnist-baselines"
    shutil.copytree(reproduce.RESULTS / "mnist-baselines", kept)
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path)
    config = kept / "recon" / "config.toml"
    before = config.read_text()
    config.write_text(before.replace("[options]\n", "[options]\nbaseline_seeds = 1\n", 1))
    assert reproduce._changed_options(cell) == {"recon": {"baseline_seeds": 3}}
    assert reproduce._state(cell) == "rerun"
    config.write_text(before.replace("[options]\n", "[options]\nbaseline_seeds = 3\n", 1))
    assert reproduce._changed_options(cell) == {} and reproduce._state(cell) == "done"
    (kept / "cell.json").unlink()
    assert reproduce._state(cell) == "to do"


def test_the_doc_says_which_cells_wait_for_a_rerun() -> None:
    from reproduce_script import load

    reproduce = load()
    text = DOC.read_text(encoding="utf-8")
    for cell in reproduce.CELLS:
        section = text.split(f"## {cell.name}: ", 1)[1].split("\n## ", 1)[0]
        assert ("**Rerun pending:**" in section) == (reproduce._state(cell) == "rerun"), cell.name


def test_a_cell_whose_runs_are_partly_trained_in_the_cache_reads_as_running(tmp_path: Path) -> None:
    from reproduce_script import load

    reproduce = load()
    from tempsched import rundir as rd
    from tempsched.plugins import PluginManager
    from tempsched.runs import cached_run_dir

    cell = next(c for c in reproduce.CELLS if c.name == "mnist-linc1")
    assert reproduce._progress(cell, tmp_path) == ""
    config = reproduce._spec(cell.base, reproduce.Where()).resolve(PluginManager().registry)
    run_dir = cached_run_dir(config, tmp_path)
    run_dir.mkdir()
    rd.RunDir(run_dir).append_metrics([{"epoch": e, "member": m} for e in range(3) for m in (1, 2)])
    assert reproduce._progress(cell, tmp_path) == f"0 of 1 of its runs trained, {run_dir.name} at epoch 3 of 10"
    (run_dir / rd.METRICS).write_text("{damaged\n")
    assert "line 1 is damaged" in reproduce._progress(cell, tmp_path)
    (run_dir / rd.SUMMARY).write_text("{}")
    assert reproduce._progress(cell, tmp_path) == "1 of 1 of its runs trained"
    tuned = next(c for c in reproduce.CELLS if c.study)  # a study's runs are not the cell's own
    assert reproduce._progress(tuned, tmp_path) == ""
