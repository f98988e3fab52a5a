"""LayerAnchoringClassifier on the scikit-learn contract (estimator_checks assume one X; fit here takes two)."""
import inspect

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from sers.classifiers import InputError, LayerAnchoringClassifier
from sers.synth.planted import planted_corpora

FAST = dict(hidden=8, epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def planted():
    return planted_corpora(n_source=160, n_target=120, seed=2)


def test_parameters_are_keyword_only_and_declared():
    signature = inspect.signature(LayerAnchoringClassifier.__init__)
    params = [p for name, p in signature.parameters.items() if name != "self"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    assert set(LayerAnchoringClassifier._parameter_constraints) == {p.name for p in params}
    with pytest.raises(TypeError):
        LayerAnchoringClassifier("lam")  # noqa: the point of the test


def test_clone_and_get_set_params_round_trip():
    model = LayerAnchoringClassifier(method="lam-gl", anchors=[[1, 2]], lambda_=0.5, group_weights="concat")
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    copy.set_params(lambda_=3.0, anchors=[[2, 3]])
    assert copy.lambda_ == 3.0 and copy.anchors == [[2, 3]] and model.lambda_ == 0.5
    assert LayerAnchoringClassifier(**copy.get_params()).get_params() == copy.get_params()
    assert is_classifier(model)


@pytest.mark.parametrize("params, message", [
    (dict(dropout=1.5), r"dropout must be in \[0, 1\), not 1.5"),
    (dict(lr=0), "lr must be > 0, not 0"),
    (dict(hidden=0), "hidden must be >= 1, not 0"),
    (dict(weight_decay=-1.0), "weight_decay must be >= 0, not -1.0"),
    (dict(patience=-1), "patience must be >= 0 or None, not -1"),
    (dict(seed=1.5), "seed must be an integer, not 1.5"),
    (dict(normalize="z-score"), "normalize must be one of none, global, per-language, not 'z-score'"),
    (dict(coral_scale="d2"), "coral_scale must be one of relative, 4d2, not 'd2'"),
    (dict(method="transformer"), "method 'transformer' is unknown; choose from last, wsum, coral, dann, lam, lam-gl"),
])
def test_a_parameter_outside_its_constraint_is_an_invalid_parameter_error(planted, params, message):
    model = LayerAnchoringClassifier(**{"method": "last", **params})
    for check in (lambda: model.fit(planted["X_source"], planted["y_source"]), lambda: model.required_layers(4)):
        with pytest.raises(InvalidParameterError, match=message) as raised:
            check()
        assert isinstance(raised.value, InputError)  # a SersError: one line at the command line


def test_not_fitted_is_sklearns_not_fitted_error(planted, tmp_path):
    model = LayerAnchoringClassifier(method="last")
    for call in (lambda: model.predict(planted["X_target"]), lambda: model.predict_proba(planted["X_target"]),
                 lambda: model.embed(planted["X_target"]), lambda: model.save(tmp_path / "m.safetensors"),
                 lambda: model.add_statistics("cache", planted["X_target"])):
        with pytest.raises(NotFittedError, match="not fitted yet; call fit\\(\\) or load\\(\\)") as raised:
            call()
        assert isinstance(raised.value, InputError)


def test_fit_sets_n_features_in_and_load_keeps_it(planted, tmp_path):
    model = LayerAnchoringClassifier(method="coral", **FAST).fit(planted["X_source"], planted["y_source"],
                                                                 planted["X_target"])
    assert model.n_features_in_ == planted["X_source"].shape[2]
    model.save(tmp_path / "m.safetensors")
    assert LayerAnchoringClassifier.load(tmp_path / "m.safetensors").n_features_in_ == model.n_features_in_


def test_add_statistics_standardises_a_new_domain_by_its_own_rows(planted):
    Xs, ys, Xt = planted["X_source"], planted["y_source"], planted["X_target"]
    model = LayerAnchoringClassifier(method="lam", anchors=[1, 2], **FAST).fit(Xs, ys, Xt)
    assert model.add_statistics("cache", Xt) is model
    for cached, target in zip(model.stats_["cache"], model.stats_["target"]):
        np.testing.assert_array_equal(cached, target)
    np.testing.assert_array_equal(model.predict_proba(Xt, domain="cache"), model.predict_proba(Xt))
    model.add_statistics("other", Xs)
    np.testing.assert_array_equal(model.predict_proba(Xs, domain="other"), model.predict_proba(Xs, domain="source"))
