"""Sufficient statistics of a sample's rows (counts, sums, D x D cross-products) in float64.

Rows are read in chunks, so nothing here holds a float64 copy of a whole layer or any
N x N matrix: a layer is summarised in one pass, and cross-validation takes each training
set's statistics as "all folds minus one" without a second pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK_ROWS = 4096  # rows cast to float64 at a time: 32 MB at D = 1024


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
    shift = column_mean(x)
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


def joint_standardiser(mean_a, var_a, mean_b, var_b) -> tuple[np.ndarray, np.ndarray]:
    """(centre, scale) of the equal-weight mixture of two samples, per dimension."""
    centre = (mean_a + mean_b) / 2
    var = (var_a + var_b) / 2 + ((mean_a - mean_b) / 2) ** 2
    scale = np.sqrt(var)
    scale[scale == 0] = 1.0  # a constant dimension carries nothing; leave it at 0
    return centre, scale


def standardiser_of(a: Stats, b: Stats) -> tuple[np.ndarray, np.ndarray]:
    return joint_standardiser(a.mean, np.diag(a.cov), b.mean, np.diag(b.cov))


# -- chunked float64 helpers: never a full float64 copy of a layer ---------------------------

def column_mean(x: np.ndarray) -> np.ndarray:
    total = np.zeros(x.shape[1])
    for start in range(0, len(x), CHUNK_ROWS):
        total += x[start:start + CHUNK_ROWS].sum(0, dtype=np.float64)
    return total / max(len(x), 1)


def column_mean_square(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Mean of (x - centre)^2 per column (the ddof=0 variance when centre is the mean)."""
    total = np.zeros(x.shape[1])
    for start in range(0, len(x), CHUNK_ROWS):
        total += np.sum((x[start:start + CHUNK_ROWS] - centre) ** 2, axis=0)
    return total / max(len(x), 1)


def standardised(x: np.ndarray, centre, scale, dtype=np.float32) -> np.ndarray:
    """A standardised copy of ``x`` in ``dtype``, built chunk by chunk."""
    out = np.empty(x.shape, dtype)
    for start in range(0, len(x), CHUNK_ROWS):
        out[start:start + CHUNK_ROWS] = (x[start:start + CHUNK_ROWS] - centre) / scale
    return out
