"""sers.classifiers.selection: each label-free criterion on arrays with a known answer, degenerate
input, determinism, and end to end that the target's labels cannot change any choice."""
import inspect
import json
import warnings

import numpy as np
import pytest

import sers.cache
from sers.classifiers import selection
from sers.classifiers.data import InputError
from sers.classifiers.frames import FrameFeatures
from sers.classifiers.options import CRITERIA, SELECTORS
from sers.classifiers.selection import (batch_nuclear_norm, choose, class_ami, deep_embedded_validation,
                                        importance_weighted_validation, information_maximisation,
                                        input_density_ratio, model_inputs, score_candidate,
                                        soft_neighbourhood_density)
from sers.synth.planted import planted_corpora

K = 4


def one_hot(classes, k=K):
    return np.eye(k)[np.asarray(classes)]


# -- snd ------------------------------------------------------------------------------------------

def test_snd_of_balanced_one_hot_predictions_is_the_closed_form():
    n, m = 40, 10  # 4 classes of 10 rows: 9 neighbours at cosine 1, 30 at cosine 0
    near, far = np.exp(1 / 0.05), 1.0
    z = (m - 1) * near + (n - m) * far
    entropy = -((m - 1) * near / z * np.log(near / z) + (n - m) * far / z * np.log(far / z))
    assert soft_neighbourhood_density(one_hot(np.arange(n) % K)) == pytest.approx(entropy / np.log(n - 1), rel=1e-9)


def test_snd_is_higher_for_clustered_than_for_scattered_predictions():
    rng = np.random.default_rng(0)
    clustered = 0.9 * one_hot(rng.integers(0, K, 300)) + 0.1 * rng.dirichlet(np.ones(K), 300)
    scattered = rng.dirichlet(np.ones(K), 300)
    assert soft_neighbourhood_density(clustered) > soft_neighbourhood_density(scattered) + 0.02  # 0.756, 0.722


def test_snd_degenerate_inputs_are_finite():
    assert soft_neighbourhood_density(one_hot(np.zeros(50, int))) == pytest.approx(1.0)  # the documented limit
    assert soft_neighbourhood_density(one_hot([0, 1])) == 0.0  # one neighbour: no entropy
    assert soft_neighbourhood_density(np.zeros((20, K))) == pytest.approx(1.0)  # no norm: all alike, no nan


def test_snd_reads_a_fixed_subsample_of_many_rows():
    proba = np.random.default_rng(1).dirichlet(np.ones(K), 700)
    rows = np.sort(np.random.default_rng(5).choice(700, size=200, replace=False))
    value = soft_neighbourhood_density(proba, max_rows=200, seed=5)
    assert value == soft_neighbourhood_density(proba, max_rows=200, seed=5)
    assert value == pytest.approx(soft_neighbourhood_density(proba[rows], max_rows=200), rel=1e-12)
    assert value != soft_neighbourhood_density(proba, max_rows=200, seed=6)


# -- bnm ------------------------------------------------------------------------------------------

def test_bnm_is_one_for_confident_balanced_predictions_and_lower_otherwise():
    assert batch_nuclear_norm(one_hot(np.arange(40) % K)) == pytest.approx(1.0)
    assert batch_nuclear_norm(one_hot(np.zeros(40, int))) == pytest.approx(1 / np.sqrt(K))  # one class
    assert batch_nuclear_norm(np.full((40, K), 1 / K)) == pytest.approx(1 / K)              # no confidence
    imbalanced = one_hot(np.r_[np.zeros(37, int), [1, 2, 3]])
    assert 1 / np.sqrt(K) < batch_nuclear_norm(imbalanced) < 1.0
    assert batch_nuclear_norm(np.zeros((5, K))) == 0.0


# -- class-ami ------------------------------------------------------------------------------------

def _clusters(n=200, seed=0):
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, K, n)
    centres = 10 * np.eye(K, 8)
    return classes, centres[classes] + rng.standard_normal((n, 8))


def test_class_ami_is_high_when_predictions_follow_the_embedding_clusters():
    classes, z = _clusters()
    assert class_ami(one_hot(classes), z) == pytest.approx(1.0)
    shuffled = np.random.default_rng(3).permutation(classes)
    assert abs(class_ami(one_hot(shuffled), z)) < 0.05
    assert class_ami(one_hot(classes), z, seed=2) == class_ami(one_hot(classes), z, seed=2)


def test_class_ami_degenerate_inputs_are_finite():
    classes, z = _clusters()
    assert class_ami(one_hot(np.zeros(200, int)), z) == 0.0  # one class: no structure (sklearn would say 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a constant embedding: no warning escapes, AMI 0
        assert class_ami(one_hot(classes), np.zeros((200, 8))) == 0.0
    assert np.isfinite(class_ami(one_hot([0, 1]), np.zeros((2, 8))))


# -- iwcv and dev ---------------------------------------------------------------------------------

def _covariance_shift(n=1500, seed=0):
    """Source and target with mean 0 and variance 1 in every dimension (as per-language statistics
    leave them); the target's first two dimensions are correlated (0.8), the source's are not."""
    rng = np.random.default_rng(seed)
    source, dev = rng.standard_normal((n, 6)), rng.standard_normal((n, 6))
    target = rng.standard_normal((n, 6))
    target[:, 1] = 0.8 * target[:, 0] + 0.6 * target[:, 1]
    return dev, source, target


def test_iwcv_weights_the_dev_rows_where_the_target_lies():
    dev, source, target = _covariance_shift()
    weights = input_density_ratio(source, target)(dev)
    same_sign = dev[:, 0] * dev[:, 1] > 0  # the target's correlation puts its mass there
    assert weights[same_sign].mean() > 2 * weights[~same_sign].mean()
    loss_there, loss_elsewhere = same_sign.astype(float), (~same_sign).astype(float)
    # unweighted both losses average about 0.5; weighted, the one where the target lies counts more
    assert -importance_weighted_validation(loss_there, weights) > 0.6
    assert -importance_weighted_validation(loss_elsewhere, weights) < 0.4


def test_iwcv_is_the_mean_dev_loss_without_shift_and_on_constant_inputs():
    loss = np.random.default_rng(2).exponential(size=300)
    assert importance_weighted_validation(loss, np.ones(300)) == pytest.approx(-loss.mean())
    constant = np.zeros((300, 5))
    assert np.array_equal(input_density_ratio(constant, constant)(constant), np.ones(300))
    dev, source, target = _covariance_shift(seed=4)
    ratio = input_density_ratio(source, source[::-1].copy())  # the same rows on both sides
    assert np.allclose(ratio(dev), 1.0, atol=1e-6)
    assert np.array_equal(input_density_ratio(source, target, seed=1)(dev), input_density_ratio(source, target, seed=1)(dev))


def test_dev_is_finite_on_constant_embeddings():
    loss = np.full(20, 2.0)
    assert deep_embedded_validation(loss, np.zeros((20, 8)), np.zeros((30, 8)), np.zeros((30, 8))) == pytest.approx(-2.0)


def test_information_maximisation_bounds():
    assert information_maximisation(one_hot(np.arange(40) % K)) == pytest.approx(1.0)
    assert information_maximisation(np.full((40, K), 1 / K)) == pytest.approx(0.0, abs=1e-12)
    assert information_maximisation(one_hot(np.zeros(40, int))) == pytest.approx(0.0, abs=1e-9)


# -- score_candidate and choose ------------------------------------------------------------------

def test_score_candidate_has_no_argument_for_target_labels():
    parameters = inspect.signature(score_candidate).parameters
    assert list(parameters) == ["model", "X_dev", "y_dev", "X_source", "X_target", "dev_domain"]
    # y_dev is the only label argument: the labels of the dev split the caller trained with
    assert [name for name in parameters if name.startswith("y") or "label" in name] == ["y_dev"]
    assert parameters["dev_domain"].kind is inspect.Parameter.KEYWORD_ONLY
    assert not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters.values())


@pytest.fixture(scope="module")
def fitted():
    from sers.classifiers.estimator import LayerAnchoringClassifier

    d = planted_corpora(n_source=260, n_target=200, seed=3)
    model = LayerAnchoringClassifier(method="lam", anchors=[2, 3], lambda_=1.0, hidden=16, epochs=3, batch_size=32,
                                     coral_scale="4d2", seed=0)
    split = {"X_dev": d["X_source"][180:], "y_dev": d["y_source"][180:], "X_source": d["X_source"][:180],
             "X_target": d["X_target"]}
    model.fit(split["X_source"], d["y_source"][:180], split["X_target"], X_dev=split["X_dev"], y_dev=split["y_dev"])
    return model, split


def test_score_candidate_gives_every_criterion_finite_and_deterministic(fitted):
    model, split = fitted
    scores = score_candidate(model, **split)
    assert list(scores) == list(CRITERIA)
    assert all(np.isfinite(v) for v in scores.values())
    assert scores == score_candidate(model, **split)
    assert 0 <= scores["snd"] <= 1 and 1 / K <= scores["bnm"] <= 1 and scores["iwcv"] < 0 and scores["dev"] < 0
    assert scores["source-dev"] == pytest.approx(model.score(split["X_dev"], split["y_dev"], domain="source"))
    # the same rows as a layer dict of the model's layers only
    as_dict = {key: {layer: value[:, layer] for layer in model.layers_} if key != "y_dev" else value
               for key, value in split.items()}
    assert score_candidate(model, **as_dict) == pytest.approx(scores, rel=1e-5)
    with pytest.raises(InputError, match="y_dev has labels"):
        score_candidate(model, **{**split, "y_dev": np.full(len(split["y_dev"]), "zzz")})


class _Collapsed:
    """A fitted-model stand-in whose head collapsed: one class everywhere, one embedding for every row."""
    classes_ = np.array(["A", "H", "N", "S"])
    seed, layers_ = 0, [0, 1]
    stats_ = {domain: (np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)) for domain in ("source", "target")}

    def predict_proba(self, X, domain):
        return one_hot(np.full(len(X), 2))

    def embed(self, X, domain):
        return np.zeros((len(X), 5))


def test_score_candidate_is_finite_for_a_collapsed_model_on_constant_inputs():
    X = np.zeros((30, 2, 3), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = score_candidate(_Collapsed(), X, ["A", "N"] * 15, X, X)
    assert all(np.isfinite(v) for v in scores.values())
    assert scores["class-ami"] == 0.0 and scores["bnm"] == pytest.approx(0.5) and scores["snd"] == pytest.approx(1.0)
    assert scores["iwcv"] == pytest.approx(scores["dev"])  # uniform weights: both are the mean dev loss


def test_model_inputs_are_the_standardised_layers_and_the_mean_frame():
    model = _Collapsed()
    model.stats_ = {"source": (np.full((2, 3), 1.0, np.float32), np.full((2, 3), 2.0, np.float32))}
    X = np.random.default_rng(0).standard_normal((4, 3, 3)).astype(np.float32)  # layers 0-2; the model reads 0, 1
    expected = ((X[:, :2] - 1.0) / 2.0).reshape(4, 6)
    assert np.allclose(model_inputs(model, X, "source"), expected)
    assert np.allclose(model_inputs(model, X, "source", rows=[3, 1]), expected[[3, 1]])
    frames = FrameFeatures.from_lists({layer: [np.repeat(X[i:i + 1, layer], 3, axis=0) for i in range(4)]
                                       for layer in range(3)})  # every frame equals its utterance's mean
    assert np.allclose(model_inputs(model, frames, "source", rows=[3, 1]), expected[[3, 1]])


def test_choose_takes_the_first_of_the_best_and_checks_the_name():
    scores = [{"snd": 0.2, "iwcv": -1.0}, {"snd": 0.5, "iwcv": -0.5}, {"snd": 0.5, "iwcv": -2.0}]
    assert choose(scores, "snd") == 1 and choose(scores, "iwcv") == 1
    with pytest.raises(InputError, match="one of bnm\+source-dev, source-dev, im, dev, snd, bnm, class-ami, iwcv"):
        choose(scores, "target-uar")


# -- end to end: the target's labels cannot change the choice --------------------------------------

def _write_cache(path, X, labels, splits, language):
    n = len(labels)
    return sers.cache.from_arrays(path, np.ascontiguousarray(X.transpose(1, 0, 2)),
                                  {"id": [f"{language}-{i:04d}" for i in range(n)], "label": list(labels),
                                   "split": list(splits), "language": [language] * n},
                                  model_id="planted", sample_rate=16000, frame_rate=50)


@pytest.fixture(scope="module")
def label_caches(tmp_path_factory):
    """One source cache; two target caches with the same features and splits, the labels permuted."""
    folder = tmp_path_factory.mktemp("selection-caches")
    d = planted_corpora(n_source=200, n_target=240, seed=3)
    target_splits = ["train"] * 120 + ["test"] * 120
    permuted = np.random.default_rng(11).permutation(d["y_target"])
    assert np.mean(permuted != d["y_target"]) > 0.5
    return {"source": _write_cache(folder / "en.zarr", d["X_source"], d["y_source"], ["train"] * 130 + ["dev"] * 70, "en"),
            "target": _write_cache(folder / "zh.zarr", d["X_target"], d["y_target"], target_splits, "zh"),
            "permuted": _write_cache(folder / "zh-permuted.zarr", d["X_target"], permuted, target_splits, "zh")}


@pytest.mark.parametrize("criterion", SELECTORS)
def test_target_labels_cannot_change_any_selectors_choice(label_caches, tmp_path, criterion):
    from sers.pipeline.train import train

    chosen, scores, uars = {}, {}, {}
    for name in ("target", "permuted"):
        result = train(label_caches["source"], label_caches[name], methods=("lam",), anchors=[2, 3], seeds=[0],
                       out_dir=tmp_path / name, lambda_=(0.0, 1.0, 3.0), select=criterion, hidden=16, epochs=3,
                       batch_size=32, coral_scale="4d2", progress=False, plots=False)
        run = next(r for r in result.runs if r["method"] == "lam")
        chosen[name] = run["candidate"]
        scores[name] = [(c["candidate"], c["selection_scores"]) for c in run["candidates"]]
        uars[name] = [c["metrics"]["target_test"]["uar"] for c in run["candidates"]]
        config = json.loads((tmp_path / name / "lam/seed0/config.json").read_text())["candidate_selection"]
        assert config["criterion"] == criterion and config["chosen"] == run["candidate"]
    assert [tag for tag, _ in scores["target"]] == ["lambda=0", "lambda=1", "lambda=3"]
    assert chosen["target"] == chosen["permuted"] and scores["target"] == scores["permuted"]
    assert uars["target"] != uars["permuted"]  # the labels did differ, and were read, for the test scores
    tags, values = zip(*scores["target"])
    assert chosen["target"] == tags[choose(list(values), criterion, list(tags))]


# -- benchmarks/selection_regret.py: the regret the default --select is chosen by -----------------

def _regret_module():
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(folder))  # the script imports its sibling _common
    try:
        spec = importlib.util.spec_from_file_location("selection_regret", folder / "selection_regret.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


def _candidate(tag, uar, **scores):
    return {"candidate": tag, "selection_scores": {c: scores.get(c, 0.0) for c in CRITERIA},
            "metrics": {"target_test": {"uar": uar}}}


def test_regret_rows_compare_each_criterions_choice_with_the_best_candidate():
    from types import SimpleNamespace

    module = _regret_module()
    runs = [{"method": "anchors-only", "seed": 0},  # no candidates: left out
            {"method": "lam", "seed": 0, "candidates": [_candidate("lambda=0", 0.60, snd=0.9, bnm=0.1),
                                                        _candidate("lambda=1", 0.70, snd=0.5, bnm=0.2)]},
            {"method": "lam", "seed": 1, "candidates": [_candidate("lambda=0", 0.65, snd=0.9, bnm=0.3),
                                                        _candidate("lambda=1", 0.55, snd=0.2, bnm=0.1)]}]
    rows = {row[2]: row for row in module.regret_rows(SimpleNamespace(runs=runs), "en→zh")}
    assert list(rows) == [*SELECTORS, "oracle"]
    assert rows["bnm+source-dev"][3:] == rows["bnm"][3:]  # one set of layers: the staged selector is bnm
    # snd picks λ=0 twice: regret 0.10 then 0; bnm picks λ=1 then λ=0: regret 0 both times
    assert rows["snd"] == ["en→zh", "lam", "snd", "0.050", "0.100", "2/2", "0.625"]
    assert rows["bnm"] == ["en→zh", "lam", "bnm", "0.000", "0.000", "1/2", "0.675"]
    assert rows["oracle"] == ["en→zh", "lam", "oracle", "0.000", "0.000", "1/2", "0.675"]
    # every score 0: the first candidate (λ=0), as choose breaks ties
    assert rows["im"][3:] == ["0.050", "0.100", "2/2", "0.625"]
    pooled = {row[2]: row for row in module.pooled_rows([SimpleNamespace(runs=runs)] * 2)}
    assert pooled["snd"] == ["all", "all", "snd", "0.050", "0.100", "4/4", "0.625"]
    assert module._is_lambda_zero("lambda=0,anchors=pair") and not module._is_lambda_zero("lambda=0.3")


def test_the_staged_selector_takes_lambda_by_bnm_within_layers_then_layers_by_source_dev():
    from sers.classifiers.selection import choose

    tags = ["lambda=0,groups=2x1", "lambda=1,groups=2x1", "lambda=0,groups=3x1", "lambda=1,groups=3x1"]
    scores = [{"bnm": 0.5, "source-dev": 0.90}, {"bnm": 0.7, "source-dev": 0.60},   # 2x1: bnm keeps λ=1
              {"bnm": 0.9, "source-dev": 0.70}, {"bnm": 0.4, "source-dev": 0.95}]   # 3x1: bnm keeps λ=0
    assert choose(scores, "bnm+source-dev", tags) == 2    # 3x1's pick (0.70) beats 2x1's (0.60)
    assert choose(scores, "bnm", tags) == 2 and choose(scores, "source-dev", tags) == 3
    # one set of layers (lam's λ candidates): the staged selector is bnm
    assert choose(scores[:2], "bnm+source-dev", tags[:2]) == choose(scores[:2], "bnm") == 1
    # equals: the first candidate, as for every criterion
    assert choose([{"bnm": 0.5, "source-dev": 0.8}] * 2, "bnm+source-dev", ["groups=2x1", "groups=3x1"]) == 0
