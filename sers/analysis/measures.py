"""Layer-similarity measures between a source and a target sample, on plain arrays.

Rows are utterances (or segments), columns are feature dimensions. Everything is
computed in float64, from sufficient statistics (:mod:`sers.analysis.moments`) or, for the
kernel MMD, on a seeded subsample of at most ``MMD_ROWS`` rows per side, so nothing grows
quadratically with the number of rows and a layer can be summarised in row chunks.

The distances and centroid measures see *jointly standardised* features: each
dimension is centred and scaled by the mean and standard deviation of the
equal-weight mixture of source and target. This removes per-dimension scale (a few
huge dimensions would otherwise dominate every distance) while keeping the
language shift that the distances are meant to see. Each domain weighs the same
regardless of size. The probe, a classifier trained on the source, standardises
with the source's statistics alone.

Label-free (need no target labels):
    coral   ||C_s - C_t||_F^2 / (4 d^2)                          lower = more alike
    mmd     unbiased MMD^2, Gaussian kernel, median-heuristic     lower = more alike
            bandwidth, at most 1000 seeded rows per side, within-side pairs of two speakers
    domain  cross-validated balanced accuracy of a shrinkage      lower = more alike
            quadratic source-vs-target discriminant, folds grouped by speaker;
            also the proxy A-distance max(0, 2 (1 - 2 err)) in [0, 2]; scored on at
            most 5000 seeded held-out rows per side
Label-aware (need a labelled target analysis split):
    centroid-cos  mean cosine of matching class centroids      higher = more alike
    cka           linear CKA of the matched centroid matrices  higher = more alike
    probe         UAR on target of a class-balanced logistic   higher = more alike
                  regression trained on source labels (features
                  standardised by the source's own statistics)

Why these label-free measures (:mod:`sers.analysis.separation`): after sers's default
per-speaker standardisation each language has mean 0 and unit variance per dimension by
construction, so a difference of means (the linear-kernel MMD sers had before) is 0 at
every layer and a linear domain classifier is at chance; what differs is left to second and
higher moments, which CORAL, the Gaussian MMD and the quadratic discriminant see.

Adding a measure is one entry in :data:`MEASURES` (name, direction, label-free or not,
description, what its function needs, the function): `sers similarity` computes it,
`--measures` and `sers anchor --measure` offer it, similarity.json describes it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.stats

from sers.analysis.metrics import uar
from sers.analysis.moments import (Moments, Stats, column_mean, column_mean_square, compute_moments,  # noqa: F401
                                   joint_standardiser, standardised, standardiser_of)
from sers.analysis.separation import (DOMAIN_ROWS, MMD_ROWS, domain_from_moments, fold_assignment,  # noqa: F401
                                      fold_plan, gaussian_mmd, oas_shrinkage, proxy_a_distance, subsample_rows)


def ties(a: float, b: float) -> bool:
    """Two scores a ranking cannot tell apart (balanced accuracies are often exactly equal)."""
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def ranking_problem(name: str, values) -> str | None:
    """Why the per-layer ``values`` of measure ``name`` cannot rank layers, or None when they can.

    A value outside the measure's range says the computation is broken, not that a layer is
    more alike. A measure that sits at its worst bound at every layer (a domain classifier that
    separates the languages perfectly everywhere) or has one value at every layer (a mean
    difference that standardisation set to 0) says nothing about which layer is more alike;
    picking its "best" layer would be a tie-break, not a measurement.
    """
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return "no finite values"
    measure = MEASURES.get(name)
    if measure is not None:
        low, high = measure.bounds
        outside = [v for v in finite if (low is not None and v < low and not ties(v, low))
                   or (high is not None and v > high and not ties(v, high))]
        if outside:
            return (f"outside its range {_range_text(low, high)}: {outside[0]:.4g}"
                    + (f" and {len(outside) - 1} more" if len(outside) > 1 else ""))
    worst = measure.worst if measure is not None else None
    if worst is not None and all(ties(v, worst) for v in finite):
        return f"saturated: {worst:g} (its worst value) at every layer"
    if len(finite) > 1 and all(ties(v, finite[0]) for v in finite):
        return f"constant: {finite[0]:.4g} at every layer"
    return None


def _range_text(low, high) -> str:
    return f"[{'-inf' if low is None else f'{low:g}'}, {'inf)' if high is None else f'{high:g}]'}"


def best_positions(values, direction: str) -> list[int]:
    """Positions of the best finite value, all of them when several tie ([] when none is finite)."""
    finite = [(i, float(v)) for i, v in enumerate(values) if v is not None and np.isfinite(v)]
    if not finite:
        return []
    best = (min if direction == "lower" else max)(v for _, v in finite)
    return [i for i, v in finite if ties(v, best)]


def ranking_agreement(columns: dict) -> list[dict]:
    """Kendall's tau-b (scipy.stats.kendalltau) between the layer orders of every pair of measures
    in ``columns`` ({name: {"direction", "values"}}) that can rank layers, each oriented so that
    higher means more alike: +1, the two put the layers in the same order; -1, in opposite orders.
    A column another measure yields (proxy-a-distance, a monotone function of domain) is left out.
    ``tau`` is None when fewer than 3 layers have both values or one of them is constant there."""
    usable = {}
    for name, column in columns.items():
        measure = MEASURES.get(name)
        if (measure is None or measure.compute is not None) and ranking_problem(name, column["values"]) is None:
            sign = -1.0 if column["direction"] == "lower" else 1.0
            usable[name] = sign * np.asarray([np.nan if v is None else v for v in column["values"]], float)
    pairs = []
    for a, b in itertools.combinations(usable, 2):
        keep = np.isfinite(usable[a]) & np.isfinite(usable[b])
        tau = p_value = None
        if keep.sum() >= 3:
            found = scipy.stats.kendalltau(usable[a][keep], usable[b][keep])
            if np.isfinite(found.statistic):
                tau, p_value = float(found.statistic), float(found.pvalue)
        pairs.append({"measures": [a, b], "tau": tau, "p_value": p_value, "layers": int(keep.sum())})
    return pairs


# -- label-free measures ----------------------------------------------------------------

def coral_from_stats(a: Stats, b: Stats, centre, scale) -> float:
    dim = len(scale)
    inv = 1.0 / scale
    diff = (a.cov - b.cov) * np.outer(inv, inv)
    return float(np.sum(diff * diff) / (4 * dim * dim))


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


def label_free_at_layer(xs, folds_s, xt, folds_t, n_folds: int, names, seed: int = 0, groups=(None, None)
                        ) -> tuple[dict[str, float], PairSummary]:
    """The label-free measures among ``names`` (registry entries needing "stats", "folds" or
    "sample"; domain also gives proxy-a-distance) for one layer's source and target rows, from
    one pass over each; ``seed`` chooses the kernel MMD's subsample (the same rows at every layer),
    ``groups`` are the two sides' speakers (None: unknown)."""
    ms, mt = compute_moments(xs, folds_s, n_folds), compute_moments(xt, folds_t, n_folds)
    s, t = ms.stats(), mt.stats()
    centre, scale = standardiser_of(s, t)
    values = {}
    for name in names:
        measure = MEASURES[name]
        if measure.needs == "stats":
            values[name] = measure.compute(s, t, centre, scale)
        elif measure.needs == "folds":
            values.update(zip(measure.columns, measure.compute(xs, ms, folds_s, xt, mt, folds_t, seed=seed)))
        elif measure.needs == "sample":
            values[name] = measure.compute(xs, xt, centre, scale, seed, groups_s=groups[0], groups_t=groups[1])
        else:
            raise ValueError(f"{name} is not a label-free measure")
    return values, PairSummary(s.mean, np.diag(s.cov).copy(), t.mean, np.diag(t.cov).copy(), centre, scale)


# -- label-aware measures -----------------------------------------------------------------

def class_centroids(x: np.ndarray, groups: np.ndarray, classes) -> np.ndarray:
    """(len(classes), D) float64 mean of the rows of each class (group key)."""
    out = np.empty((len(classes), x.shape[1]))
    for i, name in enumerate(classes):
        out[i] = column_mean(x[groups == name])
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
    """Target UAR (`sers.analysis.metrics.uar`: mean recall over the target's classes) of a
    class-balanced logistic regression trained on the source rows.

    Features are standardised with the source's own mean and std (what a
    StandardScaler fitted on the training data does): the probe learns from the
    source alone, and centred inputs keep lbfgs to tens of iterations.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    centre = column_mean(xs)
    scale = np.sqrt(column_mean_square(xs, centre))
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter)
    # The products here are N x D by D x classes: too thin to gain from BLAS threads, and
    # threads that spin for a busy core made each lbfgs step ~8x slower on a shared machine.
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(standardised(xs, centre, scale), ys)
        predicted = model.predict(standardised(xt, centre, scale))
    return uar(yt, predicted)


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
    "folds"      (xs, source Moments, source folds, xt, target Moments, target folds, seed=)
                 -> one value per name in ``columns``; label-free, cross-validated
    "sample"     (xs, xt, centre, scale, seed, groups_s=, groups_t=) -> float; label-free, on a seeded
                 subsample of rows; the groups are each row's speaker (None: unknown)
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
    bounds: tuple[float | None, float | None] = (None, None)  # every value it can take; None: unbounded
    floor: float | None = None  # "no difference": an unbiased estimate scatters around it, below it too

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.name, *self.also)

    @property
    def has_matrix(self) -> bool:
        return self.needs == "centroids"


MEASURES = {m.name: m for m in (
    Measure("coral", "lower", True, "CORAL distance ||C_s - C_t||_F^2 / (4 d^2)", "stats", coral_from_stats,
            bounds=(0.0, None)),
    # Gaussian MMD^2 estimates lie in [-2, 2]; no upper bound is checked so that tables written before it
    # (whose "mmd" was the linear-kernel one, any value >= 0) still rank their layers.
    Measure("mmd", "lower", True, f"unbiased MMD^2, Gaussian kernel with median-heuristic bandwidth, on at most "
            f"{MMD_ROWS} seeded rows per side", "sample", gaussian_mmd, bounds=(-2.0, None), floor=0.0),
    Measure("domain", "lower", True, "cross-validated balanced accuracy of a shrinkage quadratic source-vs-target "
            "discriminant, folds grouped by speaker", "folds", domain_from_moments, worst=1.0, bounds=(0.0, 1.0),
            also=("proxy-a-distance",)),
    Measure("proxy-a-distance", "lower", True, "max(0, 2 (1 - 2 err)) of the domain classifier", worst=2.0,
            bounds=(0.0, 2.0)),
    Measure("centroid-cos", "higher", False, "mean cosine of matching class centroids", "centroids",
            centroid_cosine_from_centroids, bounds=(-1.0, 1.0)),
    Measure("cka", "higher", False, "linear CKA of matched class-centroid matrices", "centroids",
            centroid_cka_from_centroids, bounds=(0.0, 1.0)),
    Measure("probe", "higher", False, "target UAR of a linear probe trained on source labels", "rows",
            probe_uar, bounds=(0.0, 1.0)),
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


def mmd(xs, xt, seed: int = 0, max_rows: int = MMD_ROWS, groups_s=None, groups_t=None) -> float:
    """Gaussian-kernel unbiased MMD^2; with speakers (``groups_*``) within-side pairs are of two speakers."""
    s, t = compute_moments(xs).stats(), compute_moments(xt).stats()
    return gaussian_mmd(xs, xt, *standardiser_of(s, t), seed=seed, max_rows=max_rows, groups_s=groups_s,
                        groups_t=groups_t)


def domain_separability(xs, xt, n_folds: int = 5, seed: int = 0, groups_s=None, groups_t=None):
    """(balanced accuracy, proxy A-distance) telling the rows of xs from those of xt; with
    ``groups_s`` and ``groups_t`` (e.g. speakers, at least 2 each) every group's rows stay in one
    fold, and there are as many folds (at most ``n_folds``) as the side with fewer groups allows."""
    n_folds, grouped = fold_plan(groups_s, groups_t, n_folds)
    if not grouped:
        groups_s = groups_t = None
    folds_s = fold_assignment(len(xs), n_folds, seed, groups_s)
    folds_t = fold_assignment(len(xt), n_folds, seed + 1, groups_t)
    ms, mt = compute_moments(xs, folds_s, n_folds), compute_moments(xt, folds_t, n_folds)
    return domain_from_moments(xs, ms, folds_s, xt, mt, folds_t, seed=seed)


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
