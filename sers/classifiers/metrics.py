"""Emotion-recognition metrics from label arrays: UAR (the headline), macro-F1, accuracy.

UAR (unweighted average recall) is the mean of per-class recalls, so a model that
always answers the majority class of an imbalanced corpus scores 1/K, not the
majority share. Classes absent from ``y_true`` have no recall and are left out of
the mean; they still count in macro-F1 when the model predicts them.
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


def uar(y_true, y_pred, classes=None) -> float:
    """Unweighted average recall over the classes present in ``y_true``."""
    classes = sorted(set(y_true) | set(y_pred)) if classes is None else list(classes)
    return float(np.nanmean(_recalls(confusion(y_true, y_pred, classes))))


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
    predicted = matrix.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, np.diag(matrix) / predicted, 0.0)
        recall0 = np.nan_to_num(recalls)
        f1 = np.where(precision + recall0 > 0, 2 * precision * recall0 / (precision + recall0), 0.0)
    # macro-F1 over classes that occur in the truth or the predictions (sklearn's default labels)
    occurring = (matrix.sum(axis=1) > 0) | (predicted > 0)
    return {
        "n": int(known.sum()),
        "uar": float(np.nanmean(recalls)),
        "macro_f1": float(f1[occurring].mean()),
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "per_class_recall": {c: (None if np.isnan(r) else float(r)) for c, r in zip(classes, recalls)},
        "support": {c: int(s) for c, s in zip(classes, matrix.sum(axis=1))},
        "classes": classes,
        "confusion": matrix.tolist(),
        "ignored_labels": ignored,
    }
