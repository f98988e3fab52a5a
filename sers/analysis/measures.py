"""Layer-similarity measures between a source and a target sample, on plain arrays.

Rows are utterances (or segments), columns are feature dimensions. Everything is
computed in float64 from sufficient statistics (counts, sums, D x D cross-products),
so nothing here is ever N x N and a layer can be summarised in row chunks.

The distances and centroid measures see *jointly standardised* features: each
dimension is centred and scaled by the mean and standard deviation of the
equal-weight mixture of source and target. This removes per-dimension scale (a few
huge dimensions would otherwise dominate every distance) while keeping the
language shift that the distances are meant to see. Each domain weighs the same
regardless of size. The probe, a classifier trained on the source, standardises
with the source's statistics alone.

Label-free (need no target labels):
    coral   ||C_s - C_t||_F^2 / (4 d^2)                       lower = more alike
    mmd     ||mu_s - mu_t||^2 (linear-kernel MMD)             lower = more alike
    domain  cross-validated balanced accuracy of a linear      lower = more alike
            source-vs-target classifier; also proxy A-distance 2 (1 - 2 err)
Label-aware (need a labelled target analysis split):
    centroid-cos  mean cosine of matching class centroids      higher = more alike
    cka           linear CKA of the matched centroid matrices  higher = more alike
    probe         UAR on target of a class-balanced logistic   higher = more alike
                  regression trained on source labels (features
                  standardised by the source's own statistics)

The domain classifier is a shrinkage linear discriminant solved in closed form
from per-fold moments: k-fold cross-validation costs one pass over the data plus
k D x D solves, instead of k iterative fits on 2N x D (see docs/benchmarks/similarity.md).

Adding a measure is one entry in :data:`MEASURES` (name, direction, label-free or not,
description, what its function needs, the function): `sers similarity` computes it,
`--measures` and `sers anchor --measure` offer it, similarity.json describes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.linalg

CHUNK_ROWS = 4096  # rows cast to float64 at a time: 32 MB at D = 1024


def ties(a: float, b: float) -> bool:
    """Two scores a ranking cannot tell apart (balanced accuracies are often exactly equal)."""
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def ranking_problem(name: str, values) -> str | None:
    """Why the per-layer ``values`` of measure ``name`` cannot rank layers, or None when they can.

    A measure that sits at its worst bound at every layer (a domain classifier that separates
    the languages perfectly everywhere) or has one value at every layer says nothing about which
    layer is more alike; picking its "best" layer would be a tie-break, not a measurement.
    """
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return "no finite values"
    worst = MEASURES[name].worst if name in MEASURES else None
    if worst is not None and all(ties(v, worst) for v in finite):
        return f"saturated: {worst:g} (its worst value) at every layer"
    if len(finite) > 1 and all(ties(v, finite[0]) for v in finite):
        return f"constant: {finite[0]:.4g} at every layer"
    return None


def best_positions(values, direction: str) -> list[int]:
    """Positions of the best finite value, all of them when several tie ([] when none is finite)."""
    finite = [(i, float(v)) for i, v in enumerate(values) if v is not None and np.isfinite(v)]
    if not finite:
        return []
    best = (min if direction == "lower" else max)(v for _, v in finite)
    return [i for i, v in finite if ties(v, best)]


# -- sufficient statistics --------------------------------------------------------------

@dataclass
class Stats:
    n: int
    mean: np.ndarray   # (D,)
    cov: np.ndarray    # (D, D), unbiased (n - 1), like np.cov


@dataclass
class Moments:
    """Count, sum and cross-product of ``x - shift`` per fold, in float64.

    Keeping folds apart lets cross-validation take training statistics as
    "everything minus fold k" without a second pass over the rows.
    """
    shift: np.ndarray    # (D,) the sample mean: keeps the cross-products well conditioned
    counts: np.ndarray   # (K,)
    sums: np.ndarray     # (K, D)
    cross: np.ndarray    # (K, D, D)

    def stats(self, leave_out: int | None = None) -> Stats:
        keep = np.ones(len(self.counts), bool)
        if leave_out is not None:
            keep[leave_out] = False
        n = int(self.counts[keep].sum())
        offset = self.sums[keep].sum(0) / n
        cross = self.cross[keep].sum(0)
        cov = (cross - n * np.outer(offset, offset)) / max(n - 1, 1)
        return Stats(n, self.shift + offset, cov)


def compute_moments(x: np.ndarray, folds: np.ndarray | None = None, n_folds: int = 1) -> Moments:
    """Moments of the rows of ``x`` (any float dtype), split by ``folds`` (ints 0..K-1)."""
    n, dim = x.shape
    if folds is None:
        folds = np.zeros(n, int)
    shift = _column_mean(x)
    counts = np.bincount(folds, minlength=n_folds)
    sums = np.zeros((n_folds, dim))
    cross = np.zeros((n_folds, dim, dim))
    for k in range(n_folds):
        rows = np.flatnonzero(folds == k)
        for start in range(0, len(rows), CHUNK_ROWS):
            block = x[rows[start:start + CHUNK_ROWS]].astype(np.float64) - shift
            sums[k] += block.sum(0)
            cross[k] += block.T @ block  # numpy computes X^T X with one symmetric BLAS call
    return Moments(shift, counts, sums, cross)


def fold_assignment(n: int, n_folds: int, seed: int) -> np.ndarray:
    """A seeded, balanced assignment of n rows to folds 0..n_folds-1."""
    return np.random.default_rng(seed).permutation(n) % n_folds


def joint_standardiser(mean_a, var_a, mean_b, var_b) -> tuple[np.ndarray, np.ndarray]:
    """(centre, scale) of the equal-weight mixture of two samples, per dimension."""
    centre = (mean_a + mean_b) / 2
    var = (var_a + var_b) / 2 + ((mean_a - mean_b) / 2) ** 2
    scale = np.sqrt(var)
    scale[scale == 0] = 1.0  # a constant dimension carries nothing; leave it at 0
    return centre, scale


def standardiser_of(a: Stats, b: Stats) -> tuple[np.ndarray, np.ndarray]:
    return joint_standardiser(a.mean, np.diag(a.cov), b.mean, np.diag(b.cov))


# -- label-free measures ----------------------------------------------------------------

def coral_from_stats(a: Stats, b: Stats, centre, scale) -> float:
    dim = len(scale)
    inv = 1.0 / scale
    diff = (a.cov - b.cov) * np.outer(inv, inv)
    return float(np.sum(diff * diff) / (4 * dim * dim))


def mmd_from_stats(a: Stats, b: Stats, centre, scale) -> float:
    return float(np.sum(((a.mean - b.mean) / scale) ** 2))


def domain_from_moments(xs, ms: Moments, folds_s, xt, mt: Moments, folds_t, centre, scale,
                        shrinkage: float = 0.1) -> tuple[float, float]:
    """(balanced accuracy, proxy A-distance) of a k-fold cross-validated linear discriminant.

    For each fold: fit on the other folds' moments (pooled within-domain covariance,
    shrunk towards its mean variance), score the held-out rows. Balanced accuracy
    makes chance 0.5 whatever the two sample sizes are.
    """
    correct_s = correct_t = 0
    for k in range(len(ms.counts)):
        s, t = ms.stats(leave_out=k), mt.stats(leave_out=k)
        inv = 1.0 / scale
        mean_s, mean_t = (s.mean - centre) * inv, (t.mean - centre) * inv
        pooled = ((s.n - 1) * s.cov + (t.n - 1) * t.cov) / max(s.n + t.n - 2, 1) * np.outer(inv, inv)
        ridge = shrinkage * np.trace(pooled) / len(pooled)
        shrunk = (1 - shrinkage) * pooled + ridge * np.eye(len(pooled))
        w = scipy.linalg.cho_solve(scipy.linalg.cho_factor(shrunk, check_finite=False), mean_s - mean_t,
                                   check_finite=False)
        threshold = w @ (mean_s + mean_t) / 2
        # back to raw coordinates: score(x) = x @ w_raw - offset
        w_raw = w * inv
        offset = threshold + centre @ w_raw
        correct_s += int(np.sum(_project(xs[folds_s == k], w_raw) > offset))
        correct_t += int(np.sum(_project(xt[folds_t == k], w_raw) <= offset))
    accuracy = (correct_s / len(xs) + correct_t / len(xt)) / 2
    return float(accuracy), float(2 * (1 - 2 * (1 - accuracy)))


@dataclass
class PairSummary:
    """What a layer's label-free pass leaves for the centroid measures: each side's mean and
    variance per dimension, and the joint standardiser (all (D,) vectors, no D x D matrix)."""
    mean_s: np.ndarray
    var_s: np.ndarray
    mean_t: np.ndarray
    var_t: np.ndarray
    centre: np.ndarray
    scale: np.ndarray


def label_free_at_layer(xs, folds_s, xt, folds_t, n_folds: int, names) -> tuple[dict[str, float], PairSummary]:
    """The label-free measures among ``names`` (registry entries needing "stats" or "folds"; domain
    also gives proxy-a-distance) for one layer's source and target rows, from one pass over each."""
    ms, mt = compute_moments(xs, folds_s, n_folds), compute_moments(xt, folds_t, n_folds)
    s, t = ms.stats(), mt.stats()
    centre, scale = standardiser_of(s, t)
    values = {}
    for name in names:
        measure = MEASURES[name]
        if measure.needs == "stats":
            values[name] = measure.compute(s, t, centre, scale)
        elif measure.needs == "folds":
            values.update(zip(measure.columns, measure.compute(xs, ms, folds_s, xt, mt, folds_t, centre, scale)))
        else:
            raise ValueError(f"{name} is not a label-free measure")
    return values, PairSummary(s.mean, np.diag(s.cov).copy(), t.mean, np.diag(t.cov).copy(), centre, scale)


# -- label-aware measures -----------------------------------------------------------------

def class_centroids(x: np.ndarray, groups: np.ndarray, classes) -> np.ndarray:
    """(len(classes), D) float64 mean of the rows of each class (group key)."""
    out = np.empty((len(classes), x.shape[1]))
    for i, name in enumerate(classes):
        out[i] = _column_mean(x[groups == name])
    return out


def centroid_cosine_from_centroids(cs, ct, centre, scale) -> float:
    """Mean over classes of cos(source centroid, target centroid), standardised."""
    a, b = (cs - centre) / scale, (ct - centre) / scale
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(norms, 1e-300)))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two row-matched matrices, feature-space formula (no rows x rows matrix):
    ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centred X, Y."""
    x = np.asarray(x, np.float64) - np.mean(x, axis=0, dtype=np.float64)
    y = np.asarray(y, np.float64) - np.mean(y, axis=0, dtype=np.float64)
    cross = np.linalg.norm(y.T @ x) ** 2
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denominator) if denominator > 0 else float("nan")


def centroid_cka_from_centroids(cs, ct, centre, scale) -> float:
    return linear_cka((cs - centre) / scale, (ct - centre) / scale)


def probe_uar(xs, ys, xt, yt, C: float = 1.0, max_iter: int = 500) -> float:
    """Target UAR (macro recall over the target's classes) of a class-balanced
    logistic regression trained on the source rows.

    Features are standardised with the source's own mean and std (what a
    StandardScaler fitted on the training data does): the probe learns from the
    source alone, and centred inputs keep lbfgs to tens of iterations.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import recall_score
    from threadpoolctl import threadpool_limits

    centre = _column_mean(xs)
    scale = np.sqrt(_column_mean_square(xs, centre))
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter)
    # The products here are N x D by D x classes: too thin to gain from BLAS threads, and
    # threads that spin for a busy core made each lbfgs step ~8x slower on a shared machine.
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(_standardise(xs, centre, scale), ys)
        predicted = model.predict(_standardise(xt, centre, scale))
    return float(recall_score(yt, predicted, labels=np.unique(yt), average="macro", zero_division=0))


# -- matrix forms ---------------------------------------------------------------------------

@dataclass
class LayerSummary:
    """What the matrix forms need of one domain at one layer."""
    mean: np.ndarray        # (D,)
    var: np.ndarray         # (D,)
    centroids: np.ndarray   # (C, D), rows in the shared class order


def cross_layer_matrix(source: list[LayerSummary], target: list[LayerSummary], measure: str) -> np.ndarray:
    """(L_s, L_t) values of a centroid measure for source layer l vs target layer m,
    each pair standardised jointly, as the per-layer values are (the diagonal)."""
    function = CENTROID_MEASURES[measure]
    out = np.empty((len(source), len(target)))
    for i, s in enumerate(source):
        for j, t in enumerate(target):
            centre, scale = joint_standardiser(s.mean, s.var, t.mean, t.var)
            out[i, j] = function(s.centroids, t.centroids, centre, scale)
    return out


# -- the registry: one entry per measure ------------------------------------------------------

@dataclass(frozen=True)
class Measure:
    """One similarity measure: what `sers similarity` computes per layer, `--measures` offers and
    `sers anchor --measure` ranks layers by. ``needs`` says what ``compute`` takes, which is
    where :mod:`sers.pipeline.similarity` computes it:

    "stats"      (source Stats, target Stats, centre, scale) -> float; label-free, one pass per layer
    "folds"      (xs, source Moments, source folds, xt, target Moments, target folds, centre, scale)
                 -> one value per name in ``columns``; label-free, cross-validated
    "centroids"  (source class centroids, target class centroids, centre, scale) -> float; label-aware,
                 also computed source layer x target layer (a heatmap)
    "rows"       (source rows, source labels, target rows, target labels) -> float; label-aware

    An entry without ``compute`` is a column another measure yields (proxy-a-distance comes
    with domain): it has a direction and a description but cannot be asked for by itself.
    """
    name: str
    direction: str            # "lower" or "higher": which end means "more alike"
    label_free: bool          # usable without target labels
    description: str
    needs: str | None = None
    compute: Callable | None = None
    worst: float | None = None  # the bound meaning "not alike at all" (a saturated measure sits there)
    also: tuple[str, ...] = ()  # further columns ``compute`` returns, after its own

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.name, *self.also)

    @property
    def has_matrix(self) -> bool:
        return self.needs == "centroids"


MEASURES = {m.name: m for m in (
    Measure("coral", "lower", True, "CORAL distance ||C_s - C_t||_F^2 / (4 d^2)", "stats", coral_from_stats),
    Measure("mmd", "lower", True, "linear MMD: squared distance of the means", "stats", mmd_from_stats),
    Measure("domain", "lower", True, "cross-validated balanced accuracy of a source-vs-target classifier",
            "folds", domain_from_moments, worst=1.0, also=("proxy-a-distance",)),
    Measure("proxy-a-distance", "lower", True, "2 (1 - 2 err) of the domain classifier", worst=2.0),
    Measure("centroid-cos", "higher", False, "mean cosine of matching class centroids", "centroids",
            centroid_cosine_from_centroids),
    Measure("cka", "higher", False, "linear CKA of matched class-centroid matrices", "centroids",
            centroid_cka_from_centroids),
    Measure("probe", "higher", False, "target UAR of a linear probe trained on source labels", "rows",
            probe_uar),
)}
# What a user can ask for (in this order), and the two kinds.
MEASURE_NAMES = tuple(name for name, m in MEASURES.items() if m.compute is not None)
LABEL_FREE = tuple(name for name in MEASURE_NAMES if MEASURES[name].label_free)
LABEL_AWARE = tuple(name for name in MEASURE_NAMES if not MEASURES[name].label_free)
CENTROID_MEASURES = {name: m.compute for name, m in MEASURES.items() if m.needs == "centroids"}


# -- array-level entry points: one call per measure, for users and tests --------------------

def coral(xs, xt) -> float:
    s, t = compute_moments(xs).stats(), compute_moments(xt).stats()
    return coral_from_stats(s, t, *standardiser_of(s, t))


def mmd(xs, xt) -> float:
    s, t = compute_moments(xs).stats(), compute_moments(xt).stats()
    return mmd_from_stats(s, t, *standardiser_of(s, t))


def domain_separability(xs, xt, n_folds: int = 5, seed: int = 0, shrinkage: float = 0.1):
    """(balanced accuracy, proxy A-distance) telling the rows of xs from those of xt."""
    folds_s = fold_assignment(len(xs), n_folds, seed)
    folds_t = fold_assignment(len(xt), n_folds, seed + 1)
    ms, mt = compute_moments(xs, folds_s, n_folds), compute_moments(xt, folds_t, n_folds)
    centre, scale = standardiser_of(ms.stats(), mt.stats())
    return domain_from_moments(xs, ms, folds_s, xt, mt, folds_t, centre, scale, shrinkage)


def shared_classes(gs, gt) -> list:
    return sorted(set(np.unique(gs).tolist()) & set(np.unique(gt).tolist()))


def centroid_cosine(xs, gs, xt, gt) -> float:
    return _centroid_measure("centroid-cos", xs, gs, xt, gt)


def centroid_cka(xs, gs, xt, gt) -> float:
    return _centroid_measure("cka", xs, gs, xt, gt)


def probe(xs, ys, xt, yt) -> float:
    return probe_uar(xs, ys, xt, yt)


def _centroid_measure(name, xs, gs, xt, gt) -> float:
    classes = shared_classes(gs, gt)
    s, t = compute_moments(xs).stats(), compute_moments(xt).stats()
    return CENTROID_MEASURES[name](class_centroids(xs, gs, classes), class_centroids(xt, gt, classes),
                                   *standardiser_of(s, t))


# -- chunked float64 helpers: never a full float64 copy of a layer ---------------------------

def _column_mean(x: np.ndarray) -> np.ndarray:
    total = np.zeros(x.shape[1])
    for start in range(0, len(x), CHUNK_ROWS):
        total += x[start:start + CHUNK_ROWS].sum(0, dtype=np.float64)
    return total / max(len(x), 1)


def _column_mean_square(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Mean of (x - centre)^2 per column (the ddof=0 variance when centre is the mean)."""
    total = np.zeros(x.shape[1])
    for start in range(0, len(x), CHUNK_ROWS):
        total += np.sum((x[start:start + CHUNK_ROWS] - centre) ** 2, axis=0)
    return total / max(len(x), 1)


def _project(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.concatenate([x[i:i + CHUNK_ROWS].astype(np.float64) @ w for i in range(0, len(x), CHUNK_ROWS)]
                          or [np.zeros(0)])


def _standardise(x: np.ndarray, centre, scale) -> np.ndarray:
    """float32 standardised copy (what the probe trains on), built chunk by chunk."""
    out = np.empty(x.shape, np.float32)
    for start in range(0, len(x), CHUNK_ROWS):
        out[start:start + CHUNK_ROWS] = (x[start:start + CHUNK_ROWS] - centre) / scale
    return out
