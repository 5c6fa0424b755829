"""The anomaly experiment (Fig. 9): patch masks, AUROC, a threshold that never sees a test image, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tempsched.errors import UserError
from tempsched.evaluation import evaluate
from tempsched.gsvae.experiments import anomaly
from tempsched.gsvae.experiments.anomaly import auroc, balanced_accuracy, detect, fit_threshold
from tempsched.gsvae.patches import SHAPES, Patch, apply_patch, scaled_size, shape_mask
from tempsched.plugins import PluginManager

pytestmark = pytest.mark.usefixtures("one_thread")


# Each shape drawn by hand at a few sizes: the mask must be exactly this.
DRAWN = {
    ("square", 1): ["#"],
    ("disc", 1): ["#"],
    ("cross", 1): ["#"],
    ("square", 3): ["###", "###", "###"],
    ("disc", 4): [".##.", "####", "####", ".##."],
    ("cross", 4): [".#..", "####", ".#..", ".#.."],
    ("cross", 5): ["..#..", "..#..", "#####", "..#..", "..#.."],
    ("disc", 6): [".####.", "######", "######", "######", "######", ".####."],
    ("cross", 8): ["...##...", "...##...", "...##...", "########", "########", "...##...", "...##...", "...##..."],
}


@pytest.mark.parametrize("shape,size", sorted(DRAWN))
def test_a_shape_mask_is_the_drawn_shape(shape: str, size: int) -> None:
    drawn = torch.tensor([[c == "#" for c in line] for line in DRAWN[(shape, size)]])
    assert torch.equal(shape_mask(shape, size), drawn)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", [1, 2, 4, 7, 16])
def test_a_patch_changes_the_shapes_pixels_and_no_others(shape: str, size: int) -> None:
    """Images of 2.0 (outside every patch content's range): exactly the mask's pixels change, at the
    position where the mask says, in every channel."""
    x = torch.full((6, 3, 28, 28), 2.0)
    patched, masks = apply_patch(x, Patch(shape, size), torch.Generator().manual_seed(1))
    changed = (patched != x).any(dim=1)
    assert torch.equal(changed, masks)
    assert ((patched != x).all(dim=1) == masks).all()  # every channel of a patched pixel
    mask = shape_mask(shape, size)
    assert mask[0].any() and mask[:, 0].any()  # every shape touches the top and left of its box
    for image in masks:
        rows, cols = image.nonzero(as_tuple=True)
        top, left = int(rows.min()), int(cols.min())
        window = torch.zeros_like(image)
        window[top:top + size, left:left + size] = mask
        assert torch.equal(image, window)
    assert torch.equal(x, torch.full((6, 3, 28, 28), 2.0))  # the input is left alone


def test_a_fixed_patch_lands_where_asked_and_sizes_scale() -> None:
    x = torch.zeros(2, 1, 28, 28)
    patched, masks = apply_patch(x, Patch("square", 1, "white", at=(10, 10)), torch.Generator())
    assert masks[:, 10, 10].all() and int(masks.sum()) == 2 and (patched[:, 0, 10, 10] == 1).all()
    assert [scaled_size(s, 32) for s in (1, 2, 4, 16)] == [1, 2, 5, 18] and scaled_size(4, 28) == 4
    with pytest.raises(UserError, match="does not fit"):
        apply_patch(x, Patch("square", 4, at=(26, 0)), torch.Generator())


def test_auroc_of_a_perfect_a_constant_and_a_reversed_scorer() -> None:
    clean, patched = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 0.7])
    assert auroc(clean, patched) == 1.0
    assert auroc(torch.zeros(5), torch.zeros(7)) == 0.5
    assert auroc(patched, clean) == 0.0


def test_auroc_agrees_with_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(3)
    clean = torch.randint(0, 20, (200,), generator=g).double()  # many ties
    patched = torch.randint(3, 25, (150,), generator=g).double()
    labels = [0] * len(clean) + [1] * len(patched)
    assert auroc(clean, patched) == pytest.approx(roc_auc_score(labels, torch.cat([clean, patched]).numpy()))


def test_the_threshold_sees_the_validation_scores_and_nothing_else() -> None:
    g = torch.Generator().manual_seed(0)
    val_clean, val_patched = torch.rand(50, generator=g), torch.rand(50, generator=g) + 2
    test_clean, test_patched = torch.rand(40, generator=g), torch.rand(40, generator=g) + 2
    honest = detect(val_clean, val_patched, test_clean, test_patched)
    assert 1.0 <= honest.threshold <= 2.0 and honest.accuracy == 1.0
    # test scores that any threshold fitted on them would follow: the held-out threshold does not move
    odd = detect(val_clean, val_patched, test_clean + 5, test_patched + 5)
    assert odd.threshold == honest.threshold and odd.accuracy == 0.5 and odd.oracle_accuracy == 1.0
    moved = detect(val_clean + 5, val_patched + 5, test_clean, test_patched)
    assert moved.threshold > 5


def test_fit_threshold_cuts_between_the_groups_and_accuracy_is_balanced() -> None:
    assert fit_threshold(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])) == 2.5
    assert fit_threshold(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])) < 1.0  # all called patched: 50%
    assert balanced_accuracy(2.5, torch.tensor([1.0, 2.0, 3.0, 0.0]), torch.tensor([3.0])) == pytest.approx(0.875)


def _evaluate(runs: list[Path], out: Path, **settings: object) -> dict:
    evaluate("anomaly", runs, out, manager=PluginManager(), options=settings, cache=runs[0].parent)
    return json.loads((out / "results.json").read_text())


def test_the_anomaly_report_fits_on_validation_images_and_measures_on_disjoint_test_halves(
        two_runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_fit = anomaly.fit_threshold

    def watched(clean: torch.Tensor, patched: torch.Tensor) -> float:
        seen.append(len(clean) + len(patched))
        return real_fit(clean, patched)

    monkeypatch.setattr(anomaly, "fit_threshold", watched)
    results = _evaluate(list(two_runs), tmp_path / "report", sizes=[1, 4])
    splits = results["splits"]
    val, test = splits["validation (threshold fitted)"], splits["test (measured)"]
    for part in (val, test):
        assert not set(part["clean"]) & set(part["patched"])
    assert sorted(val["clean"] + val["patched"]) == list(range(48))  # the run's 48 validation images
    assert sorted(test["clean"] + test["patched"]) == list(range(64))  # the full test split, each image once
    # per model, case and score: one held-out fit on the 48 validation images, one oracle fit on the 64 test ones
    fits = 2 * (3 * 2 + 2) * 2
    assert seen.count(48) == fits and seen.count(64) == fits and len(seen) == 2 * fits
    rows = results["anomaly_mse"]
    assert len(rows) == 3 * 2 and {"AUROC paper-default (n=2)", "AUROC standard-annealing (n=1)"} <= set(rows[0])
    assert all(0 <= row[k] <= 1 for row in rows for k in row if k.startswith(("AUROC", "accuracy", "oracle")))
    assert [r["patch"] for r in results["paper_cases_neg_elbo"]] == ["white square 1x1 at (10, 10)",
                                                                    "gaussian square 4x4"]
    assert (tmp_path / "report" / "fig9.png").is_file()


def test_a_single_run_trains_its_baseline_through_the_cache(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    population, standard = two_runs
    stamp = (standard / "summary.json").stat().st_mtime_ns
    results = _evaluate([population], tmp_path / "report", sizes=[2], shapes=["disc"], paper_cases=False)
    assert "AUROC standard-annealing (n=1)" in results["anomaly_mse"][0]
    assert (standard / "summary.json").stat().st_mtime_ns == stamp  # reused, not trained again


@pytest.mark.parametrize("settings,needle", [
    ({"shapes": ["star"]}, "'shapes' takes a list of square, disc, cross"),
    ({"sizes": [0]}, "'sizes' takes a list of positive pixel counts"),
    ({"sizes": [40]}, "does not fit into 28 x 28"),
])
def test_bad_options_are_one_line_errors(two_runs: tuple[Path, Path], tmp_path: Path, settings: dict,
                                         needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        _evaluate(list(two_runs), tmp_path / "report", **settings)
