"""sers.classifiers.intervals: UAR intervals over seeds and test utterances, paired differences."""
import numpy as np
import pytest
from scipy.special import expit

from sers.classifiers.intervals import Interval, UARBootstrap
from sers.analysis.metrics import uar

K = 4


def _runs(rng, truth, difficulty, skill, seeds=5, seed_sd=0.3):
    """Predictions of ``seeds`` models whose log-odds of being right are skill + difficulty + a
    seed effect: utterances hard for one model are hard for all, as on real test sets."""
    runs = []
    for _ in range(seeds):
        right = rng.random(len(truth)) < expit(skill + difficulty + rng.normal(0, seed_sd))
        runs.append(np.where(right, truth, (truth + 1 + rng.integers(0, K - 1, len(truth))) % K).astype(str))
    return runs


def test_the_estimate_is_the_mean_uar_and_the_interval_holds_it():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, K, 300)
    runs = _runs(rng, truth, rng.normal(0, 1, 300), 0.5)
    bootstrap = UARBootstrap(truth.astype(str))
    interval = bootstrap.interval(runs)
    assert interval.estimate == pytest.approx(np.mean([uar(truth.astype(str), r) for r in runs]))
    np.testing.assert_allclose(bootstrap.uars(runs), [uar(truth.astype(str), r) for r in runs], rtol=1e-6)
    assert interval.low < interval.estimate < interval.high
    again = UARBootstrap(truth.astype(str)).interval(runs)  # a fixed seed: the same interval every time
    assert again == interval


def test_stratified_resamples_keep_every_class_count():
    truth = np.array(["A"] * 10 + ["B"] * 30 + ["C"] * 5)
    bootstrap = UARBootstrap(truth, n_resamples=50)
    for label, count in (("A", 10), ("B", 30), ("C", 5)):
        drawn = bootstrap.weights[:, truth == label].sum(axis=1) * count * 3
        np.testing.assert_allclose(drawn, count, rtol=1e-5)


def test_intervals_shrink_with_more_test_utterances():
    rng = np.random.default_rng(1)
    widths = []
    for n in (100, 400, 1600):
        truth = rng.integers(0, K, n)
        runs = _runs(rng, truth, rng.normal(0, 1, n), 0.5, seed_sd=0.0)
        interval = UARBootstrap(truth.astype(str)).interval(runs)
        widths.append(interval.high - interval.low)
    assert widths[0] > 1.6 * widths[1] > 1.6 ** 2 * widths[2]  # about 1/sqrt(n): halves per 4x


def test_paired_intervals_cover_a_planted_difference_at_the_stated_rate():
    """150 test sets of 200 utterances, two methods 0.2 log-odds apart, 5 seeds each: the 95 %
    interval of the difference covers the true difference in expected UAR about 95 % of the time."""
    rng = np.random.default_rng(2)
    population = rng.normal(0, 1, 200_000)
    seed_effects = rng.normal(0, 0.3, 400)
    true_difference = (np.mean([expit(0.2 + population[:20_000] + e).mean() for e in seed_effects[:200]])
                       - np.mean([expit(population[:20_000] + e).mean() for e in seed_effects[200:]]))
    covered, significant = 0, 0
    for trial in range(150):
        truth = rng.integers(0, K, 200)
        difficulty = rng.normal(0, 1, 200)
        paired = UARBootstrap(truth.astype(str), seed=trial).paired(
            _runs(rng, truth, difficulty, 0.2), _runs(rng, truth, difficulty, 0.0))
        covered += paired.low <= true_difference <= paired.high
        significant += paired.excludes_zero
    assert 0.90 <= covered / 150 <= 0.99
    assert significant > 0  # a real difference of ~0.04 is found in part of the test sets


def test_a_difference_of_a_method_with_itself_is_zero_and_not_significant():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, K, 200)
    runs = _runs(rng, truth, rng.normal(0, 1, 200), 0.5)
    same = UARBootstrap(truth.astype(str)).paired(runs, runs)
    assert same == Interval(0.0, 0.0, 0.0) and not same.excludes_zero


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        UARBootstrap([])
    bootstrap = UARBootstrap(["A", "B", "A"])
    with pytest.raises(ValueError, match="one prediction per test utterance"):
        bootstrap.interval([["A", "B"]])
    with pytest.raises(ValueError, match="paired runs need as many"):
        bootstrap.paired([["A", "B", "A"]], [["A", "B", "A"], ["A", "A", "A"]])
