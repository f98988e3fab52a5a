"""LayerAnchoringClassifier on the scikit-learn contract: parameters, scikit-learn's estimator checks on
(n, D) input, and target data routed whole to every fold of a search."""
import inspect

import numpy as np
import pytest
import sklearn
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sers.classifiers import METHODS, InputError, LayerAnchoringClassifier, ParameterError, TargetSet, fit_data
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
    (dict(method="transformer"), "method 'transformer' is unknown; choose from " + ", ".join(METHODS)),
])
def test_a_parameter_outside_its_constraint_is_an_invalid_parameter_error(planted, params, message):
    model = LayerAnchoringClassifier(**{"method": "last", **params})
    for check in (lambda: model.fit(planted["X_source"], planted["y_source"]), lambda: model.required_layers(4)):
        with pytest.raises(ParameterError, match=message) as raised:
            check()
        assert isinstance(raised.value, InputError)  # a SersError: one line at the command line
        # what scikit-learn's InvalidParameterError is, for code that catches either
        assert isinstance(raised.value, ValueError) and isinstance(raised.value, TypeError)


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


# -- scikit-learn's own checks, on the (n, D) input its tools pass (one layer: layer 0) ----------------

# Every check passes; a check that may not would be listed here, name -> one-line reason.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@parametrize_with_checks([LayerAnchoringClassifier(method="last", hidden=8, epochs=10, batch_size=16),
                          LayerAnchoringClassifier(method="lam", anchors=[0], lambda_=0.0, hidden=8, epochs=10,
                                                   batch_size=16)],
                         expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_two_d_input_is_layer_0_and_follows_a_scaler_in_a_pipeline(planted):
    X, y = planted["X_source"][:, 3], planted["y_source"]
    model = LayerAnchoringClassifier(method="last", **FAST).fit(X, y)
    assert model.layers_ == [0] and model.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba({0: X}))
    pipeline = make_pipeline(StandardScaler(), LayerAnchoringClassifier(method="last", **FAST)).fit(X, y)
    assert 0 <= pipeline.score(X, y) <= 1
    with pytest.raises(InputError, match=r"X lacks layers \[3, 5\]; this model reads layers \[3, 5\] \(an \(n, D\) "
                                         r"array is layer 0 alone"):
        LayerAnchoringClassifier(method="lam", anchors=[3], lambda_=0.0, **FAST).fit(
            planted["X_source"], y).predict(X)


# -- target data through metadata routing: every fold is aligned to the whole target set ---------------

@pytest.fixture
def received(monkeypatch):
    """(target features, target speakers) as each fit receives them, before anything is done to them."""
    seen = []
    unwrap = fit_data.unwrap_target

    def spy(X_target, target_speakers):
        seen.append(unwrap(X_target, target_speakers))
        return seen[-1]

    monkeypatch.setattr(fit_data, "unwrap_target", spy)
    return seen


def _routed(how, model, X, y, target, **params):
    if how == "grid search":
        search = GridSearchCV(model, {"lambda_": [0.0, 1.0]}, cv=3).fit(X, y, X_target=target, **params)
        return 2 * 3 + 1, search  # candidates x folds, then the refit on all rows
    return 3, cross_validate(model, X, y, params={"X_target": target, **params}, cv=3)


@pytest.mark.parametrize("n_target", [90, 60], ids=["as many target rows as X", "fewer target rows"])
@pytest.mark.parametrize("how", ["grid search", "cross_validate"])
def test_a_search_hands_every_fold_the_whole_target_set(planted, received, how, n_target):
    X, y, Xt = planted["X_source"][:90], planted["y_source"][:90], planted["X_target"][:n_target]
    with sklearn.config_context(enable_metadata_routing=True):
        model = LayerAnchoringClassifier(method="lam", anchors=[2, 3], **FAST).set_fit_request(X_target=True)
        fits, _ = _routed(how, model, X, y, TargetSet(Xt))
    assert len(received) == fits
    for target, speakers in received:
        assert target is Xt and speakers is None


def test_target_speakers_stay_whole_while_the_source_speakers_follow_the_folds(planted, received, monkeypatch):
    X, y, Xt = planted["X_source"][:90], planted["y_source"][:90], planted["X_target"][:90]
    s_source, s_target = np.repeat(np.arange(9), 10).astype(str), np.repeat(np.arange(9), 10).astype(str)
    source_speakers = []
    checked = fit_data.checked_speakers
    monkeypatch.setattr(fit_data, "checked_speakers", lambda speakers, *rest: (
        source_speakers.append(speakers), checked(speakers, *rest))[1])
    with sklearn.config_context(enable_metadata_routing=True):
        model = (LayerAnchoringClassifier(method="lam", anchors=[2, 3], **FAST)
                 .set_fit_request(X_target=True, speakers=True).set_score_request(speakers=True, domain=True))
        search = GridSearchCV(model, {"lambda_": [0.0, 1.0]}, cv=3).fit(
            X, y, X_target=TargetSet(Xt, speakers=s_target), speakers=s_source, domain="source")
    assert [len(s) for s in source_speakers] == [60] * 6 + [90]  # each fold's own rows' speakers, then all
    assert all(target is Xt and speakers is s_target for target, speakers in received)
    assert search.best_estimator_.speaker_standardised_


def test_a_pipeline_routes_the_target_set_to_the_estimator(planted, received):
    X, y = planted["X_source"][:, 3], planted["y_source"]
    Xt = planted["X_target"][:, 3]
    with sklearn.config_context(enable_metadata_routing=True):
        model = LayerAnchoringClassifier(method="lam", anchors=[0], **FAST).set_fit_request(X_target=True)
        make_pipeline(StandardScaler(), model).fit(X, y, X_target=TargetSet(Xt))
    assert len(received) == 1 and received[0][0] is Xt
    # without routing, scikit-learn's own convention: the step's name before the argument
    received.clear()
    pipeline = make_pipeline(StandardScaler(), LayerAnchoringClassifier(method="lam", anchors=[0], **FAST))
    pipeline.fit(X, y, layeranchoringclassifier__X_target=TargetSet(Xt))
    assert len(received) == 1 and received[0][0] is Xt
