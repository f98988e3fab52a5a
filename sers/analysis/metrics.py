"""Emotion-recognition metrics from label arrays: UAR (the headline), macro-F1, accuracy.

The one definition of each for the whole package: `sers train`/`evaluate` (metrics.json),
the estimator's score and dev-set early stopping, the `probe` similarity measure, the
bootstrap intervals (`sers.classifiers.intervals`, through `uar_weights`) and the benchmarks
all score through this module, so a UAR means the same number everywhere. It lives in
`analysis` (which imports no other part) so that the measures and the classifiers can both use it.

UAR (unweighted average recall) is the mean of per-class recalls, so a model that
always answers the majority class of an imbalanced corpus scores 1/K, not the
majority share. The classes are those present in ``y_true``: a class absent from the
predictions counts with recall 0, a class absent from ``y_true`` has no recall and is
left out of the mean (sklearn's ``recall_score(labels=unique(y_true), average="macro")``).
Macro-F1 averages over the classes present in ``y_true`` or ``y_pred`` (sklearn's default
labels): a class predicted but never true counts with F1 0.
"""
from __future__ import annotations

import numpy as np


def confusion(y_true, y_pred, classes) -> np.ndarray:
    """(K, K) counts: rows are true classes, columns predicted, in ``classes`` order."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        matrix[index[t], index[p]] += 1
    return matrix


def _recalls(matrix: np.ndarray) -> np.ndarray:
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / support, np.nan)


def _f1s(matrix: np.ndarray) -> np.ndarray:
    """Each class's F1, over the classes that occur in the truth or the predictions."""
    predicted = matrix.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, np.diag(matrix) / predicted, 0.0)
        recall0 = np.nan_to_num(_recalls(matrix))
        f1 = np.where(precision + recall0 > 0, 2 * precision * recall0 / (precision + recall0), 0.0)
    return f1[(matrix.sum(axis=1) > 0) | (predicted > 0)]


def _classes(y_true, y_pred, classes):
    return sorted(set(y_true) | set(y_pred)) if classes is None else list(classes)


def uar(y_true, y_pred, classes=None) -> float:
    """Unweighted average recall over the classes present in ``y_true``."""
    return float(np.nanmean(_recalls(confusion(y_true, y_pred, _classes(y_true, y_pred, classes)))))


def macro_f1(y_true, y_pred, classes=None) -> float:
    """Mean F1 over the classes present in ``y_true`` or ``y_pred``."""
    return float(_f1s(confusion(y_true, y_pred, _classes(y_true, y_pred, classes))).mean())


def uar_weights(y_true) -> np.ndarray:
    """Each utterance's weight in the UAR, 1 / (K n_c) for its class c of the K in ``y_true``:
    ``uar(y_true, y_pred) == (y_pred == y_true) @ uar_weights(y_true)``, the form a bootstrap
    scores many runs and resamples with in one matrix product."""
    _, index, counts = np.unique(np.asarray(y_true), return_inverse=True, return_counts=True)
    return 1.0 / (counts[index] * len(counts))


def classification_metrics(y_true, y_pred, classes) -> dict:
    """UAR, macro-F1, accuracy, per-class recall and the confusion matrix, as plain JSON types.

    ``y_true`` rows whose label is not in ``classes`` (the model cannot predict them)
    are left out and counted in ``ignored_labels``; an empty selection gives ``None``.
    """
    classes = [str(c) for c in classes]
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    known = np.isin(y_true, classes)
    ignored = {str(k): int(v) for k, v in zip(*np.unique(y_true[~known], return_counts=True))}
    if not known.any():
        return None
    matrix = confusion(y_true[known], y_pred[known], classes)
    recalls = _recalls(matrix)
    return {
        "n": int(known.sum()),
        "uar": float(np.nanmean(recalls)),
        "macro_f1": float(_f1s(matrix).mean()),
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "per_class_recall": {c: (None if np.isnan(r) else float(r)) for c, r in zip(classes, recalls)},
        "support": {c: int(s) for c, s in zip(classes, matrix.sum(axis=1))},
        "classes": classes,
        "confusion": matrix.tolist(),
        "ignored_labels": ignored,
    }
