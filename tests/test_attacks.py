"""The purification experiment (Tables 2-3): the basic CNN, the deployed pipeline's gradients, PGD's iterates,
eps 0, monotonicity, the grey-image bound, and a report that resumes from its cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from conftest import WAIT_SECONDS

from tempsched import runs
from tempsched.build import build_part
from tempsched.errors import UserError
from tempsched.evaluation import evaluate, evaluation_options
from tempsched.gsvae import classifier
from tempsched.gsvae.adversarial import Budget, as_classifier, craft
from tempsched.gsvae.classifier import ClassifierSpec, ensure_classifier, predict
from tempsched.gsvae.experiments import attacks
from tempsched.gsvae.measure import reconstruct, unit_images
from tempsched.gsvae.purify import ExpectedPipeline, Pipeline, Purifier
from tempsched.plugins import PluginManager

pytestmark = pytest.mark.usefixtures("one_thread")


TINY_CNN = {"cnn_epochs": 8, "cnn_widths": [4, 8], "cnn_hidden": [16, 16]}


@pytest.fixture(scope="module")
def population(two_runs: tuple[Path, Path]) -> runs.LoadedRun:  # noqa: F811
    return runs.load_best(two_runs[0], PluginManager())


@pytest.fixture(scope="module")
def cnn(population: runs.LoadedRun, tmp_path_factory: pytest.TempPathFactory) -> classifier.TrainedClassifier:
    data = population.task.data
    return ensure_classifier(_spec(data), data, tmp_path_factory.mktemp("classifiers"), torch.device("cpu"))


def _spec(data: object, epochs: int = 15) -> ClassifierSpec:
    """A tiny CNN that learns something from 272 images in a second."""
    return ClassifierSpec("sample", data.describe(), widths=(4, 8), hidden=(16, 16), train_epochs=epochs,
                          batch_size=32, learning_rate=3e-3)


def test_the_cnn_learns_and_is_reloaded_weights_only_from_its_cache(
        population: runs.LoadedRun, cnn: classifier.TrainedClassifier, monkeypatch: pytest.MonkeyPatch) -> None:
    data = population.task.data
    assert cnn.test_accuracy > 0.3  # ten classes: chance is about 0.1
    monkeypatch.setattr(classifier, "train", lambda *a, **k: pytest.fail("trained again instead of reloading"))
    again = ensure_classifier(_spec(data), data, cnn.path.parent, torch.device("cpu"))
    assert again.path == cnn.path and again.test_accuracy == cnn.test_accuracy
    assert torch.equal(predict(again.model, data.x_test), predict(cnn.model, data.x_test))
    assert _spec(data, epochs=16).key() != _spec(data).key()
    monkeypatch.undo()
    torch.manual_seed(1)  # the caller's random state must not matter (dropout draws included)
    first = classifier.train(_spec(data, epochs=1), data, torch.device("cpu")).state_dict()
    torch.manual_seed(2)
    second = classifier.train(_spec(data, epochs=1), data, torch.device("cpu")).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_pgd_iterates_stay_in_the_ball_and_in_range(cnn: classifier.TrainedClassifier, population: runs.LoadedRun,
                                                    eps: float, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = unit_images(population.task.data.x_test[:20]), population.task.data.y_test[:20]
    estimator = as_classifier(Pipeline(cnn.model), tuple(x.shape[1:]), 10)
    iterates: list[torch.Tensor] = []
    real = type(estimator).loss_gradient

    def watched(self: object, x: torch.Tensor, y: object, **kwargs: object) -> object:
        iterates.append(torch.as_tensor(x).detach().cpu().clone())
        return real(self, x, y, **kwargs)

    monkeypatch.setattr(type(estimator), "loss_gradient", watched)
    adv = craft("pgd", estimator, x, y, eps, Budget(pgd_steps=40), seed=1)
    assert len(iterates) == 40  # one batch, every step a gradient at the current iterate
    assert not torch.equal(iterates[0], x)  # the random start
    step = 2.5 * eps / 40
    for before, after in zip(iterates + [adv], iterates[1:] + [adv]):
        assert (after - x).abs().max() <= eps + 1e-6 and after.min() >= 0 and after.max() <= 1
        assert (after - before).abs().max() <= step + 1e-6
    assert (iterates[0] - x).abs().max() <= eps + 1e-6


def test_pgd_accuracy_does_not_rise_with_eps(cnn: classifier.TrainedClassifier,
                                             population: runs.LoadedRun) -> None:
    x, y = unit_images(population.task.data.x_test[:40]), population.task.data.y_test[:40]
    estimator = as_classifier(Pipeline(cnn.model), tuple(x.shape[1:]), 10)
    accuracy = [float((predict(cnn.model, craft("pgd", estimator, x, y, eps, seed=3)) == y).double().mean())
                for eps in (0.0, 0.02, 0.05, 0.1, 0.3)]
    assert accuracy[0] == float((predict(cnn.model, x) == y).double().mean())
    assert all(a >= b for a, b in zip(accuracy, accuracy[1:])), accuracy
    assert accuracy[-1] < accuracy[0]


@pytest.mark.parametrize("decoding", [None, "argmax"])
def test_the_grey_image_attack_keeps_at_most_the_largest_class_share(
        cnn: classifier.TrainedClassifier, population: runs.LoadedRun, decoding: str | None) -> None:
    x, y = unit_images(population.task.data.x_test), population.task.data.y_test
    purifier = Purifier(population.model, population.tau, decoding) if decoding else None
    grey = craft("grey", None, x, y, 0.5)
    assert torch.equal(grey, torch.full_like(x, 0.5)) and (grey - x).abs().max() <= 0.5
    accuracy = float((predict(Pipeline(cnn.model, purifier), grey) == y).double().mean())
    assert accuracy <= float(torch.bincount(y).max()) / len(y)
    with pytest.raises(ValueError, match="outside"):
        craft("grey", None, x, y, 0.4)


def test_the_purifier_decodes_as_measured_and_passes_gradients_where_a_one_hot_code_blocks_them(
        population: runs.LoadedRun) -> None:
    x = unit_images(population.task.data.x_test[:8])
    for decoding in ("soft", "hard", "argmax"):
        purifier = Purifier(population.model, population.tau, decoding, seed=5)
        assert purifier.random == (decoding != "argmax")
        if decoding == "argmax":  # noise-free: exactly the measurement module's decoding
            assert torch.allclose(purifier(x), reconstruct(population.model, x, population.tau, "argmax"), atol=1e-6)
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(purifier(xg).sum(), xg)
        assert grad.abs().sum() > 0  # exact (soft) or straight-through (hard, argmax): never blocked
    purifier = Purifier(population.model, population.tau, "soft", seed=5)
    first = purifier(x)
    assert not torch.equal(first, purifier(x))  # fresh noise at every call
    purifier.reseed(5)
    assert torch.equal(first, purifier(x))  # ... and repeatable from a seed


def test_eot_averages_probabilities_over_draws(cnn: classifier.TrainedClassifier,
                                               population: runs.LoadedRun) -> None:
    x = unit_images(population.task.data.x_test[:4])
    pipeline = Pipeline(cnn.model, Purifier(population.model, population.tau, "soft", seed=2))
    with torch.no_grad():
        expected = ExpectedPipeline(pipeline, 10)(x)
        pipeline.reseed(2)  # the same noise: the ten draws as one batch of ten copies
        draws = torch.softmax(pipeline(x.repeat(10, 1, 1, 1)), dim=1).view(10, 4, -1)
        assert torch.allclose(expected.exp(), draws.mean(dim=0), atol=1e-6)
        assert not torch.allclose(draws[0], draws[1])  # the draws differ
        plain = Pipeline(cnn.model)  # no noise: EOT changes nothing
        assert torch.allclose(ExpectedPipeline(plain, 10)(x), torch.log_softmax(plain(x), dim=1), atol=1e-5)


def _evaluate(runs: list[Path], out: Path, cache: Path, **settings: object) -> dict:
    evaluate("attacks", runs, out, manager=PluginManager(), options={**TINY_CNN, **settings}, cache=cache)
    return json.loads((out / "results.json").read_text())


SMALL = {"subset": 8, "fgsm_eps": [0.5, 0.0], "pgd_eps": [0.1, 0.0], "eot_eps": [0.1], "apgd_eps": [0.1],
         "apgd_steps": 10, "baseline": ""}


def test_the_attacks_report_from_eps_zero_to_the_grey_bound_and_its_resume(
        two_runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    results = _evaluate([two_runs[0]], tmp_path / "a", tmp_path / "cache", **SMALL)
    clean = {r["pipeline"]: r["clean accuracy (attacked subset)"] for r in results["clean"]}
    assert list(clean) == ["CNN", "CNN + paper-default (n=2)"]
    rows = results["all_attacks"]
    attacked = {(r["pipeline"], r["attack"]) for r in rows}
    for expected in ["FGSM (non-adaptive)", "PGD (non-adaptive)", "FGSM (authors' variant)", "PGD (authors' variant)",
                     "FGSM (adaptive)", "PGD (adaptive)", "PGD (adaptive, EOT 10)", "APGD-CE (adaptive, EOT 20)",
                     "APGD-DLR (adaptive, EOT 20)", "grey image (adaptive)"]:
        assert ("CNN + paper-default (n=2)", expected) in attacked
    for row in rows:  # eps 0: no attack moves an image, and the pipelines are judged with the same draws
        if row["eps 0"] is not None:
            assert row["eps 0"] == clean[row["pipeline"]], row
    for row in results["robust"]:
        curve = [row[f"eps {e:g}"] for e in (0.5, 0.1, 0.0)]
        assert all(a <= b for a, b in zip(curve, curve[1:])), row  # does not rise with eps
        assert curve[-1] == clean[row["pipeline"]]
    cnn_robust = results["robust"][0]["eps 0.5"]
    assert cnn_robust <= results["largest_class_share"]  # the grey image is among the attacks at 0.5
    assert [r["pipeline"] for r in results["table3_pgd"]] == list(clean)
    printed = {r["pipeline"]: r for r in results["paper_table2_fgsm"]}  # the sample is MNIST: its Table 2
    assert printed["paper, Table 2 (printed): our model"]["eps 0.5"] == 87.28
    assert printed["paper, Table 2 (printed): CNN + GS-VAE"]["eps 0.09"] == 61.32
    assert len(results["attacked_images"]) == 8 == len(set(results["attacked_images"]))
    by_attack = {(r["pipeline"], r["attack"]): r["eps 0.1"] for r in rows}
    (check,) = results["apgd_check"]  # the purified pipeline at the one eps where APGD and EOT-PGD both ran
    assert (check["pipeline"], check["eps"], check["reference"]) == ("CNN + paper-default (n=2)", 0.1,
                                                                     "PGD (adaptive, EOT 10)")
    assert check["reference_accuracy"] == by_attack[(check["pipeline"], check["reference"])]
    assert check["apgd"] <= min(by_attack[(check["pipeline"], f"APGD-{loss} (adaptive, EOT 20)")]
                                for loss in ("CE", "DLR"))

    def no_crafting(*args: object, **kwargs: object) -> None:
        pytest.fail("an attack ran again instead of coming from the cache")

    monkeypatch.setattr(attacks.Attacks, "_craft", no_crafting)
    again = _evaluate([two_runs[0]], tmp_path / "b", tmp_path / "cache", **SMALL)
    assert again["all_attacks"] == rows and again["robust"] == results["robust"]


def test_processes_sharing_a_cache_split_the_attacks_and_wait_for_each_others_results(
        two_runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import threading

    from tempsched import rundir

    results = _evaluate([two_runs[0]], tmp_path / "a", tmp_path / "cache", **SMALL)
    cached = sorted((tmp_path / "cache" / "attacks").glob("*.pt"))
    taken = cached[len(cached) // 2]  # another process is crafting this one
    crafted, ready, waited = taken.read_bytes(), threading.Event(), threading.Event()
    taken.unlink()
    lock = rundir.exclusive_lock

    def waiting_lock(path: Path, *, wait: Callable[[str], None] | None = None) -> Any:
        """The evaluation's lock, which says when it found ``taken`` held by the other and waits for it."""
        def wait_and_say(pid: str) -> None:
            if wait is not None:
                wait(pid)
            if path == taken.with_suffix(".lock"):
                waited.set()
        return lock(path, wait=None if wait is None else wait_and_say)

    def other_process() -> None:
        with lock(taken.with_suffix(".lock")):
            ready.set()
            waited.wait(WAIT_SECONDS)  # the result comes while the evaluation waits for it
            taken.write_bytes(crafted)

    def no_crafting(*args: object, **kwargs: object) -> None:
        pytest.fail("crafted an attack that another process was crafting")

    monkeypatch.setattr(attacks.Attacks, "_craft", no_crafting)
    monkeypatch.setattr(rundir, "exclusive_lock", waiting_lock)
    other = threading.Thread(target=other_process)
    other.start()
    assert ready.wait(WAIT_SECONDS)
    try:
        again = _evaluate([two_runs[0]], tmp_path / "b", tmp_path / "cache", **SMALL)
    finally:
        waited_for_it = waited.is_set()
        waited.set()  # let the other go on whatever happened
        other.join()
    assert waited_for_it, "the evaluation did not wait for the attack the other process held"
    assert again["all_attacks"] == results["all_attacks"]


def test_attacks_refuse_bad_options_in_one_line(two_runs: tuple[Path, Path], tmp_path: Path) -> None:  # noqa: F811
    manager = PluginManager()
    with pytest.raises(UserError, match="'pgd_steps' must be >= 40"):
        evaluation_options(manager, "attacks", {"pgd_steps": 10})
    with pytest.raises(UserError, match="'apgd_draws' must be >= 10"):
        evaluation_options(manager, "attacks", {"apgd_draws": 1})
    with pytest.raises(UserError, match="'heldout_draws' must be >= 1"):
        evaluation_options(manager, "attacks", {"heldout_draws": 0})
    with pytest.raises(UserError, match="'fgsm_eps' takes a list of eps on"):
        build_part(manager, "evaluations", "attacks",
                            evaluation_options(manager, "attacks", {"fgsm_eps": [2]}))
    evaluation = build_part(manager, "evaluations", "attacks", evaluation_options(manager, "attacks", {}))
    with pytest.raises(UserError, match="need a labelled data set"):
        evaluation.eps_lists("celeba")


# -- attacks on a pipeline with fresh noise (issue 18 item 5) -----------------------------------------------------

class NoisyPurifier(torch.nn.Module):
    """A toy purifier with fresh noise at every call, from its own generator as ``Purifier``'s: the image plus
    Gaussian noise, so that one draw's prediction near a class boundary is a coin toss."""

    random = True

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma, self.generator = sigma, torch.Generator()

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn(x.shape, generator=self.generator).to(x.device)


def _toy(n: int = 30, sigma: float = 0.2) -> tuple[Pipeline, torch.Tensor, torch.Tensor]:
    """A linear classifier of 1x2x2 images (class c: pixel c, logit 10 x pixel) behind a ``NoisyPurifier``, and
    ``n`` images it gets right without noise: 0.7 at their class's pixel, 0.3 at the other two, 0.5 unused.
    Within eps 0.2 an attacker ties the three classes at best; within eps 0.02 it cannot come close."""
    linear = torch.nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        linear.weight.copy_(10 * torch.eye(3, 4))
    y = torch.arange(n) % 3
    x = torch.full((n, 4), 0.3)
    x[:, 3] = 0.5
    x[torch.arange(n), y] = 0.7
    return Pipeline(torch.nn.Sequential(torch.nn.Flatten(), linear), NoisyPurifier(sigma)), x.view(n, 1, 2, 2), y


def _heldout_accuracy(pipeline: Pipeline, x: torch.Tensor, y: torch.Tensor, draws: int = 50) -> float:
    pipeline.reseed(12345)  # no attack below uses this seed
    return float(torch.stack([predict(pipeline, x) == y for _ in range(draws)]).double().mean())


@pytest.mark.parametrize("method", ["apgd-ce", "apgd-dlr"])
def test_apgd_eot_judges_success_on_the_prediction_averaged_over_its_own_draws(method: str) -> None:
    from torchattacks import APGD

    pipeline, x, y = _toy()
    eps = 0.02  # the prediction averaged over draws stays right everywhere in the ball; single draws do not
    worst = x + eps * (1 - 2 * torch.nn.functional.one_hot(y, 4).view(-1, 1, 2, 2))
    assert 1 - _heldout_accuracy(pipeline, worst, y) > 0.1  # one draw's prediction is noisy
    pipeline.reseed(7)
    adversarial = craft(method, ExpectedPipeline(pipeline, 20), x, y, eps, Budget(apgd_steps=20), seed=7)
    assert torch.equal(adversarial, x)  # never a success: AutoAttack returns the clean image
    # ... where judging success on the last of torchattacks' own EOT calls, one draw, returns moved images
    pipeline.reseed(7)
    single = APGD(pipeline, eps=eps, steps=20, loss=method[5:], eot_iter=20, seed=7)(x, y)
    assert not torch.equal(single, x)
    broken = craft(method, ExpectedPipeline(pipeline, 20), x, y, 0.2, Budget(apgd_steps=20), seed=7)
    assert (broken - x).abs().max() <= 0.2 + 1e-6 and broken.min() >= 0
    assert _heldout_accuracy(pipeline, broken, y) < 0.6  # clean: above 0.8


def test_apgd_eot_is_at_least_as_strong_as_pgd_eot_on_a_toy_with_a_tie_at_the_corner() -> None:
    """At eps 0.2 the best an attacker can do is a three-way tie, right one draw in three: both attacks get
    there. ART's APGD, judging its final iterate on one noisy prediction, returned the clean image for about a
    third of the images here."""
    pipeline, x, y = _toy()
    clean = _heldout_accuracy(pipeline, x, y)
    pipeline.reseed(3)
    pgd = craft("pgd", as_classifier(ExpectedPipeline(pipeline, 10), (1, 2, 2), 3), x, y, 0.2, Budget(), seed=3)
    pipeline.reseed(3)
    apgd = craft("apgd-ce", ExpectedPipeline(pipeline, 20), x, y, 0.2, Budget(apgd_steps=40), seed=3)
    pgd_accuracy, apgd_accuracy = _heldout_accuracy(pipeline, pgd, y), _heldout_accuracy(pipeline, apgd, y)
    assert clean > 0.8 and pgd_accuracy < 0.5
    assert apgd_accuracy <= pgd_accuracy + 0.08, (apgd_accuracy, pgd_accuracy)


def _toy_rows() -> list[attacks.Row]:
    classifier_ = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    return [attacks.Row("CNN", Pipeline(classifier_), {"classifier": "toy"}),
            attacks.Row("CNN + toy", Pipeline(classifier_, NoisyPurifier(0.1)), {"classifier": "toy", "p": 1})]


# The (data set, eps) pairs where docs/reproduction.md's glance table sets a purified pipeline's robust accuracy
# beside the bare CNN's (a figure at one eps, or a range: MNIST eps 0.1; Fashion-MNIST and CIFAR-10 from 0.1 up;
# CIFAR-10 0.02-0.05).
CITED = {"MNIST": [0.1], "Fashion-MNIST": [0.1, 0.2, 0.3, 0.4, 0.5],
         "CIFAR-10": [0.02, 0.03, 0.04, 0.05, 0.1, 0.3, 0.5]}
FAMILY_DATASET = {"MNIST": "mnist", "Fashion-MNIST": "fashion-mnist", "CIFAR-10": "cifar10"}


@pytest.mark.parametrize("family", list(CITED))
def test_the_bare_cnn_meets_the_same_attacks_as_the_purified_pipelines_where_the_report_compares_them(
        family: str) -> None:
    manager = PluginManager()
    evaluation = build_part(manager, "evaluations", "attacks", evaluation_options(manager, "attacks", {}))
    lists = evaluation.eps_lists(FAMILY_DATASET[family])
    eps_all = sorted({e for values in lists.values() for e in values})
    cnn_row, purified = _toy_rows()

    def behind(row: attacks.Row, eps: float) -> set[tuple[str, float]]:
        """The attacks behind a row's robust figure at eps (every ball up to eps), as methods: on a pipeline
        without noise the non-adaptive, adaptive and EOT versions of one attack are that attack, and the
        authors' variant attacks a purifier the bare CNN does not have."""
        return {(a.method, e) for e in eps_all if e <= eps for a in evaluation.plan(row, e, lists)
                if a.protocol != attacks.AUTHORS}

    for eps in CITED[family]:
        assert behind(cnn_row, eps) == behind(purified, eps), eps
        if eps >= min(lists["apgd"]):  # APGD with EOT as AutoAttack's rand version: about 20 draws per call
            assert {"apgd-ce", "apgd-dlr"} <= {m for m, _ in behind(cnn_row, eps)}, eps
            assert {a.draws for e in lists["apgd"] if e <= eps for a in evaluation.plan(purified, e, lists)
                    if a.method.startswith("apgd")} == {20}
    quoted = {"MNIST": 0.1, "CIFAR-10": 0.03}.get(family)  # the glance table's figures at one eps
    assert quoted is None or quoted >= min(lists["apgd"])  # ... have APGD behind them (checked above)


def test_new_apgd_results_are_not_read_from_the_old_apgds_cache_entries() -> None:
    """The key older caches were written under (copied here) stays for what still means the same."""
    from tempsched import rundir

    def old_key(row: attacks.Row, attack: attacks.Attack, eps: float, picked: torch.Tensor) -> str:
        return rundir.fingerprint({"row": row.identity, "attack": [attack.method, attack.protocol, attack.draws],
                                   "eps": eps, "images": picked.tolist()})[:24]

    manager = PluginManager()
    picked = torch.arange(5)
    for heldout in (1, 5):
        evaluation = build_part(manager, "evaluations", "attacks", evaluation_options(
            manager, "attacks", {"heldout_draws": heldout}))
        cnn_row, purified = _toy_rows()
        for row, draws in ((cnn_row, 1), (purified, 10)):
            for method in ("apgd-ce", "apgd-dlr"):
                attack = attacks.Attack(method, attacks.ADAPTIVE, draws)
                assert evaluation._key(row, attack, 0.3, picked) != old_key(row, attack, 0.3, picked)
            reused = [attacks.Attack("fgsm", attacks.NON_ADAPTIVE), attacks.Attack("pgd", attacks.NON_ADAPTIVE)]
            if row is purified:
                reused = [attacks.Attack("pgd", attacks.ADAPTIVE, 10)]
            for attack in reused:  # judged on one held-out draw, or on a pipeline without noise: as before
                same = heldout == 1 or row is cnn_row
                assert (evaluation._key(row, attack, 0.3, picked) == old_key(row, attack, 0.3, picked)) == same


def test_a_pipeline_with_fresh_noise_is_judged_on_several_held_out_draws_none_of_them_an_attackers(
        two_runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Every noise draw of the purifier is recorded, as crafting (an attack) or judging (a prediction)."""
    population = runs.load_best(two_runs[0], PluginManager())
    seen: dict[str, list[bytes]] = {"crafting": [], "judging": []}
    phase: list[str] = []
    real_noise, real_craft, real_correct = type(population.model).draw_noise, attacks.Attacks._craft, \
        attacks.Target.correct

    def noise(self: object, *args: Any, **kwargs: Any) -> Any:
        drawn = real_noise(self, *args, **kwargs)
        if phase:  # per latent layer and image: its uniforms
            seen[phase[-1]] += [row.numpy().tobytes() for u in drawn for row in u[0].flatten(1)]
        return drawn

    def crafting(*args: Any, **kwargs: Any) -> Any:
        phase.append("crafting")
        try:
            return real_craft(*args, **kwargs)
        finally:
            phase.pop()

    shapes: set[tuple[int, ...]] = set()

    def judging(target: attacks.Target, row: attacks.Row, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        before = len(seen["judging"])
        phase.append("judging")
        try:
            correct = real_correct(target, row, x, y)
        finally:
            phase.pop()
        drawn = seen["judging"][before:]
        if row.pipeline.random:  # two latent layers, each image, each held-out draw: every one a new draw
            assert len(drawn) == 2 * len(x) * 3 == len(set(drawn))
        shapes.add(tuple(correct.shape))
        return correct

    monkeypatch.setattr(type(population.model), "draw_noise", noise)
    monkeypatch.setattr(attacks.Attacks, "_craft", crafting)
    monkeypatch.setattr(attacks.Target, "correct", judging)
    results = _evaluate([two_runs[0]], tmp_path / "a", tmp_path / "cache", subset=4, fgsm_eps=[0.1],
                        pgd_eps=[0.1], eot_eps=[0.1], apgd_eps=[0.1], apgd_steps=10, baseline="",
                        authors_variant=False, heldout_draws=3)
    assert seen["crafting"] and seen["judging"]
    assert not set(seen["crafting"]) & set(seen["judging"])  # no judging draw is one an attack saw
    test_size = len(population.task.data.x_test)
    # the bare CNN judged on its one answer, the purified pipeline on 3 draws: clean (the full test set, the
    # attacked subset), then each attack on the 4 images
    assert shapes == {(test_size, 1), (4, 1), (test_size, 3), (4, 3)}
    assert any(r["attack"] == "APGD-CE (adaptive, EOT 20)" for r in results["all_attacks"])


def test_the_apgd_check_sets_apgd_against_pgds_interval() -> None:
    """APGD's accuracy (both losses must miss) against the PGD reference's 95% upper end over the images."""
    from types import SimpleNamespace

    from tempsched.intervals import wilson

    def row(apgd_ce: list[bool], apgd_dlr: list[bool], pgd: list[bool]) -> attacks.Row:
        hits = lambda v: torch.tensor(v)[:, None]  # noqa: E731  images x one held-out draw
        adaptive = attacks.ADAPTIVE
        return attacks.Row("CNN + purifier", SimpleNamespace(purifier=object()), {}, correct={
            (attacks.Attack("apgd-ce", adaptive, 20), 0.1): hits(apgd_ce),
            (attacks.Attack("apgd-dlr", adaptive, 20), 0.1): hits(apgd_dlr),
            (attacks.Attack("pgd", adaptive), 0.1): hits([True] * 20),  # single-draw PGD: not the reference
            (attacks.Attack("pgd", adaptive, 10), 0.1): hits(pgd)})

    pgd = [True] * 2 + [False] * 18  # 10 %; Wilson's upper end over 20 images: about 30 %
    high = 100 * wilson(2, 20)[1]
    cases = [([True] * 2 + [False] * 18, [False] * 20, "at least as strong", 0.0),
             ([True] * 5 + [False] * 15, [True] * 5 + [False] * 15, "within the reference's 95% interval", 25.0),
             ([True] * 10 + [False] * 10, [True] * 10 + [False] * 10, "weaker beyond the reference's 95% interval",
              50.0)]
    for ce, dlr, verdict, apgd in cases:
        (check,) = attacks.apgd_check([row(ce, dlr, pgd)], [0.1], 20)
        assert (check["verdict"], check["apgd"], check["reference"]) == (verdict, apgd, "PGD (adaptive, EOT 10)")
        assert check["reference_accuracy"] == 10.0 and check["reference_high"] == pytest.approx(high)
    assert attacks.apgd_check([row([True] * 20, [True] * 20, pgd)], [0.3], 20) == []  # no APGD at that eps
