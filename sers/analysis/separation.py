"""Label-free measures of how far apart two samples are: a cross-validated domain classifier
(with the proxy A-distance) and the Gaussian-kernel MMD.

Both must still see a difference after sers's default per-speaker standardisation, which makes
every speaker's mean 0 and every dimension's variance 1, so each language's mean and
per-dimension variance are fixed by construction: a linear classifier or a linear-kernel MMD
(a difference of means) has nothing left to see there. What is left are the correlations
between dimensions and higher moments:

- ``domain`` is a quadratic discriminant (a covariance per side), shrunk towards a multiple
  of the identity by the oracle approximating shrinkage (Chen et al. 2010), solved in closed form
  from per-fold moments. Folds are grouped by speaker where speakers are known (see
  :func:`fold_assignment`).
- ``mmd`` is the unbiased MMD^2 with a Gaussian kernel, a characteristic kernel: 0 only when
  the two distributions are equal (Gretton et al. 2012), on a seeded subsample, its within-side
  terms over pairs of different speakers where speakers are known (see :func:`gaussian_mmd`).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from sers.analysis.moments import CHUNK_ROWS, Moments, standardised, standardiser_of

MMD_ROWS = 1000  # rows per side for the kernel MMD: its cost is quadratic in the rows it sees
DOMAIN_ROWS = 5000  # held-out rows per side the domain classifier scores (it is fitted on every row)


# -- folds ------------------------------------------------------------------------------------

def fold_assignment(n: int, n_folds: int, seed: int, groups=None) -> np.ndarray:
    """A seeded assignment of n rows to folds 0..n_folds-1: balanced by rows, or, with ``groups``
    (one key per row, e.g. its speaker), every group wholly in one fold, folds balanced by rows.

    Why groups: sers standardises each speaker by the mean and std of that speaker's own rows,
    so a speaker's standardised rows sum to 0. With the speaker's rows in several folds, the
    held-out rows' sum is minus the training rows' sum: the held-out fold sits on the far side
    of whatever the training folds learnt, and a classifier of two samples of one distribution
    scores far below chance (0.07 to 0.15 balanced accuracy, docs/method.md). A held-out speaker's
    standardisation uses none of the training rows, so grouped folds have no such tie.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.permutation(n) % n_folds
    names, group_of, sizes = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    if len(names) < n_folds:
        raise ValueError(f"{len(names)} groups cannot fill {n_folds} folds")
    order = rng.permutation(len(names))
    order = order[np.argsort(-sizes[order], kind="stable")]  # largest first, seeded among equal sizes
    fold_of, filled = np.empty(len(names), int), np.zeros(n_folds, int)
    for group in order:
        fold = int(np.argmin(filled))  # the emptiest fold (the lowest one among equals)
        fold_of[group], filled[fold] = fold, filled[fold] + sizes[group]
    return fold_of[group_of]


def fold_plan(groups_s, groups_t, n_folds: int) -> tuple[int, bool]:
    """(folds, grouped) for two sides whose rows have group keys (None: unknown): grouped when both
    sides have at least 2 groups, with as many folds as the side with fewer groups allows."""
    if groups_s is None or groups_t is None:
        return n_folds, False
    fewest = min(len(np.unique(groups_s)), len(np.unique(groups_t)))
    if fewest < 2:
        return n_folds, False
    return min(n_folds, fewest), True


# -- the domain classifier --------------------------------------------------------------------

def oas_shrinkage(cov: np.ndarray, n: int) -> float:
    """The oracle approximating shrinkage of a covariance from ``n`` rows towards mean-variance x I
    (Chen, Wiesel, Eldar & Hero 2010, eq. 23, as sklearn.covariance.oas computes it)."""
    dim = len(cov)
    alpha, mu = np.mean(cov ** 2), np.trace(cov) / dim
    denominator = (n + 1) * (alpha - mu ** 2 / dim)
    return 1.0 if denominator <= 0 else float(min((alpha + mu ** 2) / denominator, 1.0))


def domain_from_moments(xs, ms: Moments, folds_s, xt, mt: Moments, folds_t, seed: int = 0,
                        max_rows: int = DOMAIN_ROWS) -> tuple[float, float]:
    """(balanced accuracy, proxy A-distance) of a k-fold cross-validated quadratic discriminant.

    For each fold, from the other folds' moments alone (all their rows): the joint standardiser,
    each side's mean and covariance, each covariance shrunk by :func:`oas_shrinkage`; a held-out
    row goes to the side under whose Gaussian it is more likely (equal priors). The accuracy is
    counted on at most ``max_rows`` seeded held-out rows per side: scoring a row costs a D x D
    product, as much as its share of the moments, and 5000 rows already pin a balanced accuracy
    to +-0.005 (one standard error). Balanced accuracy makes chance 0.5 whatever the two sample
    sizes are.
    """
    scored_s, scored_t = subsample_rows(len(xs), max_rows, seed), subsample_rows(len(xt), max_rows, seed + 1)
    correct_s = correct_t = 0
    for k in range(len(ms.counts)):
        train_s, train_t = ms.stats(leave_out=k), mt.stats(leave_out=k)
        centre, scale = standardiser_of(train_s, train_t)  # fitted inside the fold, as everything else
        rule = _quadratic_rule(train_s, train_t, centre, scale)
        held_s, held_t = scored_s[folds_s[scored_s] == k], scored_t[folds_t[scored_t] == k]
        correct_s += int(np.sum(_log_ratio(xs[held_s], rule, centre, scale) > 0))
        correct_t += int(np.sum(_log_ratio(xt[held_t], rule, centre, scale) <= 0))
    accuracy = (correct_s / len(scored_s) + correct_t / len(scored_t)) / 2
    return float(accuracy), proxy_a_distance(accuracy)


def proxy_a_distance(balanced_accuracy: float) -> float:
    """2 (1 - 2 err), err = 1 - balanced accuracy, clipped at 0 so that it lies in [0, 2].

    Clipped rather than folded (err -> min(err, 1 - err)): a held-out error above 0.5 is no
    evidence that the samples differ (the classifier's sign was learnt on the training folds and
    flipping it would use the held-out labels), and folding would give two samples of one
    distribution a positive distance on average."""
    return float(max(0.0, 2 * (1 - 2 * (1 - balanced_accuracy))))


def _quadratic_rule(train_s, train_t, centre, scale):
    """(A, b, c) with log N(z; source) - log N(z; target) = -z'Az/2 + z'b + c for standardised z:
    one D x D product per row scores it, where the two densities separately would take two."""
    parts = []
    for stats in (train_s, train_t):
        inv = 1.0 / scale
        cov = stats.cov * np.outer(inv, inv)
        dim = len(cov)
        level = np.trace(cov) / dim
        if level > 0:
            gamma = oas_shrinkage(cov, stats.n)
            shrunk = (1 - gamma) * cov
            shrunk.flat[::dim + 1] += gamma * level
        else:  # no variance at all (a single training row): an isotropic unit Gaussian
            shrunk = np.eye(dim)
        factor = scipy.linalg.cho_factor(shrunk, lower=True, check_finite=False)
        precision = scipy.linalg.cho_solve(factor, np.eye(dim), check_finite=False)
        mean = (stats.mean - centre) * inv
        parts.append((precision, mean, precision @ mean, 2 * float(np.sum(np.log(np.diag(factor[0]))))))
    (p_s, m_s, pm_s, logdet_s), (p_t, m_t, pm_t, logdet_t) = parts
    constant = -0.5 * (m_s @ pm_s - m_t @ pm_t) - 0.5 * (logdet_s - logdet_t)
    return p_s - p_t, pm_s - pm_t, float(constant)


def _log_ratio(x, rule, centre, scale) -> np.ndarray:
    """log N(x; source) - log N(x; target) per row, a chunk of rows at a time."""
    quadratic, linear, constant = rule
    out = np.empty(len(x))
    for start in range(0, len(x), CHUNK_ROWS):
        z = (x[start:start + CHUNK_ROWS].astype(np.float64) - centre) / scale
        out[start:start + CHUNK_ROWS] = -0.5 * np.einsum("ij,ij->i", z @ quadratic, z) + z @ linear + constant
    return out


# -- the Gaussian-kernel MMD --------------------------------------------------------------------

def subsample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of ``size`` of ``n`` rows (all of them when n <= size).
    The same n and seed give the same rows at every layer, so layers are compared on one sample."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def gaussian_mmd(xs, xt, centre, scale, seed: int = 0, max_rows: int = MMD_ROWS, groups_s=None,
                 groups_t=None) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) with k(x, y) = exp(-||x - y||^2 / (2 sigma^2)),
    sigma the median distance between distinct rows of both subsamples together (the median
    heuristic), on jointly standardised features, at most ``max_rows`` seeded rows per side.

    With ``groups_s`` / ``groups_t`` (speakers; a side with fewer than 2 is taken whole), the
    within-side averages take only pairs of rows from different speakers. Eq. 3 is unbiased for
    independent rows, and a speaker's rows are not: standardised per speaker they sum to 0 (each
    pair a little farther apart than two independent rows), raw they share the voice (closer).
    Either way the within-side terms measured speaker identity: on one population of speakers,
    -1.7e-3 (standardised) or +0.05 (raw) where pairs of different speakers give 0 within sampling
    error (docs/method.md). It is then 0 in expectation for one distribution, so slightly negative
    about half the time; it lies in [-2, 2] (the kernel is in (0, 1])."""
    rows_s, rows_t = subsample_rows(len(xs), max_rows, seed), subsample_rows(len(xt), max_rows, seed + 1)
    a, b = _rows(xs, rows_s, centre, scale), _rows(xt, rows_t, centre, scale)
    m, n = len(a), len(b)
    if m < 2 or n < 2:
        raise ValueError("the kernel MMD needs at least 2 rows per side")
    d_aa, d_bb, d_ab = _squared_distances(a, a), _squared_distances(b, b), _squared_distances(a, b)
    distances = np.sqrt(np.concatenate([d_aa[np.triu_indices(m, 1)], d_bb[np.triu_indices(n, 1)], d_ab.ravel()]))
    sigma = float(np.median(distances))
    if sigma == 0:  # most rows coincide: fall back to the mean distance, and 0 when every row does
        sigma = float(distances.mean())
        if sigma == 0:
            return 0.0
    gamma = 1.0 / (2 * sigma ** 2)
    within_a = _within_mean(np.exp(-gamma * d_aa), None if groups_s is None else np.asarray(groups_s)[rows_s])
    within_b = _within_mean(np.exp(-gamma * d_bb), None if groups_t is None else np.asarray(groups_t)[rows_t])
    return float(within_a + within_b - 2 * np.exp(-gamma * d_ab).mean())


def _within_mean(kernel: np.ndarray, groups) -> float:
    """Mean kernel value over pairs of distinct rows, of different groups where there are 2 or more."""
    if groups is None or len(np.unique(groups)) < 2:
        count = len(kernel)
        return (kernel.sum() - np.trace(kernel)) / (count * (count - 1))
    other = groups[:, None] != groups[None, :]  # excludes the diagonal too
    return float(np.sum(kernel, where=other) / other.sum())


def _rows(x, rows, centre, scale) -> np.ndarray:
    return standardised(x[rows], centre, scale, np.float64)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """||a_i - b_j||^2 from one matrix product; exact 0 on the diagonal when a is b."""
    out = np.add.outer(np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)) - 2 * (a @ b.T)
    np.maximum(out, 0, out=out)  # rounding can leave a tiny negative
    if a is b:
        np.fill_diagonal(out, 0.0)
    return out
