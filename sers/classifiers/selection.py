"""Model-selection criteria that read no target labels: which of several trained candidates to keep.

A cross-lingual run has no labelled target data to choose λ or the anchors with. Each
criterion scores a fitted :class:`~sers.classifiers.estimator.LayerAnchoringClassifier` from
what training had anyway: labelled *source* dev rows and *unlabelled* target rows. Higher is
better for every criterion (risks are negated), so a caller keeps the argmax.

    source-dev   UAR on the source dev split (what early stopping uses). Blind to the target.
    im           information maximisation on the target rows (as in SHOT, Liang et al. 2020):
                 H(mean prediction) - mean H(prediction), divided by log K. High when the
                 model is confident on each target utterance yet uses every class.
    dev          deep embedded validation (You et al., ICML 2019): the source dev loss,
                 importance-weighted by p(target | z) / p(source | z) from a logistic domain
                 classifier on the model's own embeddings z, with the control variate of the
                 paper; negated. An estimate of the target risk when the languages overlap in z.

None of them takes target labels: there is no argument through which they could pass.
"""
from __future__ import annotations

import numpy as np

from sers.classifiers.data import InputError
from sers.classifiers.metrics import uar
from sers.classifiers.options import CRITERIA


def information_maximisation(proba: np.ndarray) -> float:
    """(H(mean p) - mean H(p)) / log K for (n, K) class probabilities: in [0, 1]."""
    proba = np.clip(np.asarray(proba, np.float64), 1e-12, 1.0)
    k = proba.shape[1]
    marginal = proba.mean(axis=0)
    diversity = -np.sum(marginal * np.log(marginal))
    confidence = -np.mean(np.sum(proba * np.log(proba), axis=1))
    return float((diversity - confidence) / np.log(k))


def deep_embedded_validation(dev_loss: np.ndarray, dev_z: np.ndarray, source_z: np.ndarray,
                             target_z: np.ndarray, seed: int = 0) -> float:
    """Negated DEV risk: per-row source dev losses weighted by the density ratio of the embeddings.

    The domain classifier is fitted on source training embeddings (label 0) against target
    embeddings (label 1), balanced, and applied to the dev embeddings:
    w = n_s / n_t · p(t | z) / p(s | z). Risk = mean(w·l) + η·mean(w) − η with
    η = −Cov(w·l, w) / Var(w) (the control variate that lowers the variance of the estimate).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    z = np.concatenate([source_z, target_z])
    domain = np.r_[np.zeros(len(source_z)), np.ones(len(target_z))]
    scaler = StandardScaler().fit(z)
    classifier = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced", random_state=seed)
    classifier.fit(scaler.transform(z), domain)
    p_target = np.clip(classifier.predict_proba(scaler.transform(dev_z))[:, 1], 1e-6, 1 - 1e-6)
    weights = p_target / (1 - p_target)  # balanced classes: the prior ratio is already 1
    weighted = weights * dev_loss
    variance = np.var(weights, ddof=1)
    eta = -np.cov(weighted, weights)[0, 1] / variance if variance > 0 else 0.0
    return float(-(weighted.mean() + eta * weights.mean() - eta))


def score_candidate(model, X_dev, y_dev, X_source, X_target) -> dict[str, float]:
    """Every criterion for one fitted model: {criterion: value}, higher is better.

    ``X_dev``/``y_dev``: labelled source dev rows; ``X_source``: source training rows and
    ``X_target``: target training rows, both read as features only.
    """
    y_dev = np.asarray(y_dev).astype(str)
    unknown = sorted(set(y_dev) - set(model.classes_))
    if unknown:
        raise InputError(f"y_dev has labels {unknown[:5]} that the model was not trained on")
    dev_proba = model.predict_proba(X_dev, domain="source")
    target_proba = model.predict_proba(X_target, domain="target")
    truth = np.searchsorted(model.classes_, y_dev)
    dev_loss = -np.log(np.clip(dev_proba[np.arange(len(truth)), truth], 1e-12, 1.0))
    return {"source-dev": uar(y_dev, model.classes_[dev_proba.argmax(axis=1)], model.classes_),
            "im": information_maximisation(target_proba),
            "dev": deep_embedded_validation(dev_loss, model.embed(X_dev, domain="source"),
                                            model.embed(X_source, domain="source"),
                                            model.embed(X_target, domain="target"), seed=model.seed)}


def choose(scores: list[dict[str, float]], criterion: str) -> int:
    """Index of the best candidate by ``criterion`` (the first of equals: candidates come in the
    order the user listed them)."""
    if criterion not in CRITERIA:
        raise InputError(f"selection criterion must be one of {', '.join(CRITERIA)}, not {criterion!r}")
    values = [s[criterion] for s in scores]
    return int(np.argmax(values))
