"""Every place that reports a UAR or macro-F1 gives the same number for the same predictions.

sers.analysis.metrics is the one definition; this pins that the run metrics (metrics.json),
the bootstrap intervals, the estimator's score, the probe measure and sklearn agree with it,
including on a true class that is never predicted and a predicted class that is never true.
"""
import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from sers.analysis.measures import probe_uar
from sers.analysis.metrics import classification_metrics, macro_f1, uar, uar_weights
from sers.classifiers.intervals import UARBootstrap

TRUTH = np.array(list("aaaabbbcccdd"))
# "c" is never predicted (recall 0, counted); "e" is predicted but never true (no recall, left out of UAR;
# F1 0, counted in macro-F1).
PREDICTED = np.array(list("aaabbbaabeda"))
# recalls: a 3/4, b 2/3 ("b" at 5, 6; one "a"), c 0, d 1/2 -> UAR (0.75 + 2/3 + 0 + 0.5) / 4
EXPECTED_UAR = (0.75 + 2 / 3 + 0.0 + 0.5) / 4


def test_the_uar_and_macro_f1_of_every_place_agree():
    labels = sorted(set(TRUTH) | set(PREDICTED))
    run = classification_metrics(TRUTH, PREDICTED, labels)
    sklearn_uar = recall_score(TRUTH, PREDICTED, labels=np.unique(TRUTH), average="macro", zero_division=0)
    assert uar(TRUTH, PREDICTED) == pytest.approx(EXPECTED_UAR)
    assert run["uar"] == uar(TRUTH, PREDICTED, labels) == pytest.approx(sklearn_uar)
    assert (PREDICTED == TRUTH) @ uar_weights(TRUTH) == pytest.approx(EXPECTED_UAR)
    assert UARBootstrap(TRUTH, n_resamples=10).uars([PREDICTED])[0] == pytest.approx(EXPECTED_UAR)
    assert run["per_class_recall"]["c"] == 0.0 and run["per_class_recall"]["e"] is None
    assert run["macro_f1"] == macro_f1(TRUTH, PREDICTED) == pytest.approx(f1_score(TRUTH, PREDICTED, average="macro"))


def test_the_probe_scores_its_predictions_with_the_same_uar():
    """Source has classes a, b far apart; the target adds c where a lies, so c is never predicted."""
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.normal(-5, 0.1, (20, 3)), rng.normal(5, 0.1, (20, 3))])
    ys = np.array(["a"] * 20 + ["b"] * 20)
    xt = np.concatenate([rng.normal(-5, 0.1, (6, 3)), rng.normal(5, 0.1, (4, 3)), rng.normal(-5, 0.1, (2, 3))])
    yt = np.array(["a"] * 6 + ["b"] * 4 + ["c"] * 2)
    predicted = np.array(["a"] * 6 + ["b"] * 4 + ["a"] * 2)
    assert probe_uar(xs, ys, xt, yt) == uar(yt, predicted) == pytest.approx(2 / 3)


def test_the_estimator_scores_a_class_it_never_learnt_with_recall_zero():
    from sers.classifiers import LayerAnchoringClassifier
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-3, 0.2, (16, 2, 4)), rng.normal(3, 0.2, (16, 2, 4))]).astype(np.float32)
    y = np.array(["a"] * 16 + ["b"] * 16)
    model = LayerAnchoringClassifier(method="last", epochs=30, seed=0).fit(x, y)
    test_y = np.array(["a"] * 16 + ["b"] * 8 + ["z"] * 8)
    predicted = model.predict(x)
    assert model.score(x, test_y) == pytest.approx(uar(test_y, predicted))
    assert model.score(x, test_y) == pytest.approx(classification_metrics(
        test_y, predicted, list(model.classes_) + ["z"])["uar"])
