"""95 % intervals for UAR over seeds *and* test utterances, and paired intervals for differences.

The ± over seeds that a results table usually shows hides the larger error: a test set of a few
hundred utterances is one sample of the target language. Every interval here comes from one
two-level bootstrap (a hierarchical bootstrap, Davison & Hinkley 1997, sec. 3.8):

1. the target test utterances are resampled with replacement *within each true class*
   (stratified: every resample keeps the class counts, so UAR stays defined), ``n_resamples``
   times from a fixed seed;
2. in each resample the seeds are resampled with replacement too, and the statistic is the mean
   over the drawn seeds of each run's UAR on the drawn utterances.

The 2.5th and 97.5th percentiles of the statistic are the interval. A *paired* interval of a
difference (method A − method B) uses the same utterance resamples and the same seed draws for
both methods, seed k of A against seed k of B, so what the two methods share (the test set's
hard utterances) cancels. A difference whose interval excludes 0 is called *significant* in
sers's tables; with one seed the interval is the test set's sampling error alone.

A resample is a weight per utterance (how often it was drawn over its class size and the
number of classes), so the UAR of every run under every resample is one matrix product:
(n_resamples x n) @ (n x runs). Memory is n_resamples x n float32 (4 MB per 1000 utterances).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sers.analysis.metrics import uar_weights

N_RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided interval."""
    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self, prefix: str) -> dict:
        return {prefix: self.estimate, f"{prefix}_ci_low": self.low, f"{prefix}_ci_high": self.high}


class UARBootstrap:
    """Stratified resamples of one labelled test set, shared by every run scored on it.

    ``truth``: the true class of each test utterance (any hashable labels). Runs are given as
    arrays of predicted labels in the same utterance order; utterances whose true class is not
    among ``classes`` (when given) should be removed by the caller, as the metrics do.
    """

    def __init__(self, truth, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = LEVEL):
        truth = np.asarray(truth).astype(str)
        if truth.ndim != 1 or len(truth) == 0:
            raise ValueError("truth must be a non-empty 1-D array of labels")
        if n_resamples < 1 or not 0 < level < 1:
            raise ValueError("n_resamples must be >= 1 and level in (0, 1)")
        self.truth, self.n_resamples, self.seed, self.level = truth, int(n_resamples), int(seed), float(level)
        classes, index = np.unique(truth, return_inverse=True)
        rng = np.random.default_rng(seed)
        self.weights = np.zeros((n_resamples, len(truth)), np.float32)
        # The weights of the test set itself: metrics.uar's definition, as a vector.
        self.full = uar_weights(truth)
        for c in range(len(classes)):
            members = np.flatnonzero(index == c)
            draws = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=n_resamples)
            self.weights[:, members] = draws / (len(members) * len(classes))  # as self.full, resampled

    def _correct(self, runs) -> np.ndarray:
        runs = [np.asarray(r).astype(str) for r in runs]
        if not runs or any(r.shape != self.truth.shape for r in runs):
            raise ValueError(f"every run needs one prediction per test utterance ({len(self.truth)})")
        return np.stack([r == self.truth for r in runs]).astype(np.float32)  # (runs, n)

    def _seed_draws(self, n_seeds: int) -> np.ndarray:
        """(n_resamples, n_seeds) seed indices; the same for every call with as many seeds."""
        return np.random.default_rng([self.seed, n_seeds]).integers(0, n_seeds, size=(self.n_resamples, n_seeds))

    def _interval(self, per_seed: np.ndarray, resampled: np.ndarray) -> Interval:
        """``per_seed``: (S,) statistic on the test set; ``resampled``: (n_resamples, S)."""
        draws = self._seed_draws(resampled.shape[1])
        statistic = np.take_along_axis(resampled, draws, axis=1).mean(axis=1)
        tail = (1 - self.level) / 2 * 100
        low, high = np.percentile(statistic, [tail, 100 - tail])
        return Interval(float(per_seed.mean()), float(low), float(high))

    def uars(self, runs) -> np.ndarray:
        """Each run's UAR on the whole test set."""
        return self._correct(runs) @ self.full

    def interval(self, runs) -> Interval:
        """Mean UAR over the runs (one per seed) and its interval over seeds and test utterances."""
        correct = self._correct(runs)
        return self._interval(correct @ self.full, self.weights @ correct.T)

    def paired(self, runs_a, runs_b) -> Interval:
        """Mean UAR difference A − B over paired runs (the same seeds, in the same order) and its interval."""
        if len(runs_a) != len(runs_b):
            raise ValueError(f"paired runs need as many of each: {len(runs_a)} and {len(runs_b)}")
        difference = self._correct(runs_a) - self._correct(runs_b)
        return self._interval(difference @ self.full, self.weights @ difference.T)
