"""What ``LayerAnchoringClassifier.fit`` reads besides X and y: the target and dev sets, labels, speakers.

scikit-learn's searches and ``cross_validate`` cut every fit argument that has as many rows as
X to each fold, and pass the others whole (``sklearn.utils.validation._check_method_params``):
a plain ``X_target`` array was cut when its row count happened to equal X's, and passed whole
otherwise. :class:`TargetSet` and :class:`DevSet` hold a set of rows and have no length, so they
are always passed whole: the unlabelled target rows align every fold's model to the same target.

    >>> clf.fit(X, y, X_target=TargetSet(X_zh, speakers=s_zh), speakers=s_en)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sers.classifiers.data import InputError


class _WholeSet:
    """A set of rows handed on whole (no ``__len__``, ``shape`` or ``__array__``: scikit-learn's
    fold cutting leaves objects without them alone)."""

    def _rows(self) -> str:
        X = self.X
        n = (X.n_utterances if hasattr(X, "n_utterances") else
             len(next(iter(X.values()))) if isinstance(X, dict) and X else np.shape(X)[0] if np.ndim(X) else "?")
        return f"{n} rows" + (", with speakers" if self.speakers is not None else "")


@dataclass(frozen=True, eq=False, repr=False)
class TargetSet(_WholeSet):
    """Unlabelled target-language rows for ``fit(X_target=...)`` and the speaker of each (optional).

    It holds no labels: no argument of ``fit`` lets target labels reach training."""
    X: object
    speakers: object = None

    def __repr__(self):
        return f"TargetSet({self._rows()})"


@dataclass(frozen=True, eq=False, repr=False)
class DevSet(_WholeSet):
    """Labelled rows that choose the epoch, for ``fit(X_dev=...)``, and the speaker of each (optional);
    their language is ``fit``'s ``dev_domain``."""
    X: object
    y: object
    speakers: object = None

    def __repr__(self):
        return f"DevSet({self._rows()})"


def unwrap_target(X_target, target_speakers):
    """(features, speakers) of ``X_target`` (an array, a dict, FrameFeatures or a TargetSet)."""
    if isinstance(X_target, DevSet):
        raise InputError("X_target takes unlabelled rows: pass TargetSet(X, speakers=...), not a DevSet")
    if isinstance(X_target, TargetSet):
        if target_speakers is not None:
            raise InputError("pass the target speakers once: in TargetSet(X, speakers=...) or as target_speakers")
        return X_target.X, X_target.speakers
    return X_target, target_speakers


def unwrap_dev(X_dev, y_dev, dev_speakers):
    """(features, labels, speakers) of ``X_dev`` (with ``y_dev``) or of a DevSet."""
    if isinstance(X_dev, TargetSet):
        raise InputError("X_dev takes labelled rows: pass DevSet(X, y, speakers=...), not a TargetSet")
    if isinstance(X_dev, DevSet):
        if y_dev is not None or dev_speakers is not None:
            raise InputError("a DevSet holds its labels and speakers: pass neither y_dev nor dev_speakers with it")
        X_dev, y_dev, dev_speakers = X_dev.X, X_dev.y, X_dev.speakers
    if (X_dev is None) != (y_dev is None):
        raise InputError("pass both X_dev and y_dev, or neither")
    return X_dev, y_dev, dev_speakers


def labels(y, n_rows: int, name: str = "y") -> np.ndarray:
    """``y`` as a 1-D array of class labels (its own dtype kept: classes_ and predictions share it),
    checked as scikit-learn checks a classifier's targets."""
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import column_or_1d

    if y is None:
        raise InputError(f"LayerAnchoringClassifier requires y to be passed, but the target y is None; "
                         f"pass the source labels as {name}")
    try:
        values = column_or_1d(y, warn=True)  # an (n, 1) y: scikit-learn's DataConversionWarning, then used
    except ValueError as error:
        raise InputError(f"{name}: {error}") from None
    try:
        check_classification_targets(values)
    except ValueError as error:
        raise InputError(f"{name}: {error}; give one class label per row (strings or integers)") from None
    if len(values) != n_rows:
        raise InputError(f"{name} has {len(values)} labels for {n_rows} rows of X")
    return values


def checked_speakers(speakers, target, target_speakers, dev, dev_speakers, features: str, uses_segments: bool):
    """Whether to standardise per speaker (``speakers`` given), after checking that every set given
    has its speakers too (a set standardised and a set not would be in two spaces)."""
    if speakers is None:
        given = [name for name, value in (("target_speakers", target_speakers), ("dev_speakers", dev_speakers))
                 if value is not None]
        if given:
            raise InputError(f"{' and '.join(given)} given without speakers: pass speakers= (the speaker of each "
                             "row of X) too, or none of them")
        return False
    if features != "pooled":
        raise InputError("speakers= standardises pooled features; with features='frames' standardise the frames "
                         "first (SpeakerStatistics.standardise_frames, as `sers train` does) and fit without speakers=")
    if uses_segments:
        raise InputError("speakers= standardises utterances, not vowel segments: standardise both with "
                         "SpeakerStatistics (segments by their utterance's speaker) and fit without speakers=")
    for name, rows, their in (("X_target", target, target_speakers), ("X_dev", dev, dev_speakers)):
        if rows is not None and their is None:
            what = "TargetSet(X, speakers=...) or target_speakers" if name == "X_target" else \
                "DevSet(X, y, speakers=...) or dev_speakers"
            raise InputError(f"X is standardised per speaker (speakers=), so {name} must be too: pass {what}")
    return True
