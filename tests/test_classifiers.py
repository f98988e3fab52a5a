"""sers.classifiers: losses, metrics and the LayerAnchoringClassifier on planted data (arrays only)."""
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, recall_score

from sers.classifiers import InputError, LayerAnchoringClassifier, coral_loss, reverse_gradient
from sers.analysis.metrics import classification_metrics, uar
from sers.synth.planted import planted_corpora


@pytest.fixture(scope="module")
def planted():
    return planted_corpora(n_source=600, n_target=600, seed=1)


def split(d):
    """Source train/dev, target train (unlabelled) / test."""
    return (d["X_source"][:450], d["y_source"][:450], d["X_source"][450:], d["y_source"][450:],
            d["X_target"][:300], d["X_target"][300:], d["y_target"][300:])


FAST = dict(hidden=64, epochs=20, batch_size=64, patience=5)


# -- losses -----------------------------------------------------------------------------------

def test_coral_matches_numpy_and_is_zero_for_identical_batches():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(50, 8)), rng.normal(size=(40, 8)) @ rng.normal(size=(8, 8))
    expected = np.sum((np.cov(source, rowvar=False) - np.cov(target, rowvar=False)) ** 2) / (4 * 8 ** 2)
    got = coral_loss(torch.tensor(source), torch.tensor(target), scale="4d2").item()
    assert got == pytest.approx(expected, rel=1e-10)
    assert expected > 0.01
    for scale in ("4d2", "relative"):
        assert coral_loss(torch.tensor(source), torch.tensor(source), scale).item() == 0.0


def test_relative_coral_is_free_of_width_and_feature_scale():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(50, 8)), rng.normal(size=(40, 8)) @ rng.normal(size=(8, 8))
    cs, ct = np.cov(source, rowvar=False), np.cov(target, rowvar=False)
    expected = np.sum((cs - ct) ** 2) / (np.sum(cs ** 2) + np.sum(ct ** 2))
    got = coral_loss(torch.tensor(source), torch.tensor(target)).item()  # the default scale
    assert got == pytest.approx(expected, rel=1e-10) and 0 < got <= 2
    # shrinking both sides' features leaves it unchanged (Deep CORAL's 4d2 form falls by 100x)...
    assert coral_loss(torch.tensor(source / 10), torch.tensor(target / 10)).item() == pytest.approx(got, rel=1e-9)
    assert coral_loss(torch.tensor(source / 10), torch.tensor(target / 10), "4d2").item() == pytest.approx(
        coral_loss(torch.tensor(source), torch.tensor(target), "4d2").item() / 1e4, rel=1e-9)
    # ...and so does repeating every dimension (a wider layer with the same information)
    wide = coral_loss(torch.tensor(np.repeat(source, 4, axis=1)), torch.tensor(np.repeat(target, 4, axis=1))).item()
    assert wide == pytest.approx(got, rel=1e-9)
    with pytest.raises(ValueError, match="CORAL scale must be one of relative, 4d2"):
        coral_loss(torch.tensor(source), torch.tensor(target), "paper")


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    weights = torch.randn(5, 3)
    y = reverse_gradient(x, alpha=0.5)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    assert torch.allclose(x.grad, -0.5 * weights)


# -- metrics ----------------------------------------------------------------------------------

def test_metrics_match_sklearn_and_ignore_unknown_labels():
    y_true = ["A", "A", "A", "H", "H", "N", "S", "S", "Z"]
    y_pred = ["A", "H", "A", "H", "N", "N", "S", "A", "A"]
    m = classification_metrics(y_true, y_pred, ["A", "H", "N", "S"])
    assert m["n"] == 8 and m["ignored_labels"] == {"Z": 1}
    assert m["uar"] == pytest.approx(recall_score(y_true[:8], y_pred[:8], average="macro"))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true[:8], y_pred[:8], average="macro"))
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["confusion"][0] == [2, 1, 0, 0] and m["per_class_recall"]["S"] == 0.5
    assert uar(["A", "A", "H"], ["A", "A", "A"]) == 0.5  # majority class: chance UAR, not 2/3
    assert classification_metrics(["Z"], ["A"], ["A", "H"]) is None


# -- the estimator on planted data --------------------------------------------------------------

def test_lam_on_planted_layers_beats_last_layer_on_the_target(planted):
    Xs, ys, Xd, yd, Xt, Xtest, ytest = split(planted)
    last = LayerAnchoringClassifier(method="last", **FAST).fit(Xs, ys, Xt, X_dev=Xd, y_dev=yd)
    lam = LayerAnchoringClassifier(method="lam", anchors=[2, 3], **FAST).fit(Xs, ys, Xt, X_dev=Xd, y_dev=yd)
    last_uar, lam_uar = last.score(Xtest, ytest), lam.score(Xtest, ytest)
    print(f"planted layer choice: target UAR last {last_uar:.3f}, lam {lam_uar:.3f}")
    assert last.score(Xd, yd, domain="source") > 0.75  # the last layer does carry emotion in the source
    assert last_uar < 0.45
    assert lam_uar > last_uar + 0.35


@pytest.mark.parametrize("coral_scale, lambda_", [("relative", 1.0), ("4d2", 10.0)])
def test_coral_term_helps_when_anchor_layers_carry_a_covariance_shift(coral_scale, lambda_):
    # The relative scale acts at the default weight 1; Deep CORAL's 1/(4d^2) needs 10 or more.
    # Global statistics: per-language standardisation alone rescales the target's extra-variance
    # dimensions, and this test isolates what the CORAL term does.
    d = planted_corpora(n_source=600, n_target=600, anchor_shift=8.0, seed=0)
    Xs, ys, Xd, yd, Xt, Xtest, ytest = split(d)
    scores = {}
    for weight in (0.0, lambda_):
        model = LayerAnchoringClassifier(method="lam", anchors=[2, 3], lambda_=weight, hidden=64, epochs=30,
                                         batch_size=32, lr=3e-3, coral_scale=coral_scale,
                                         normalize="global").fit(Xs, ys, Xt)
        scores[weight] = model.score(Xtest, ytest)
        assert model.score(Xd, yd, domain="source") > 0.9
    print(f"planted covariance shift ({coral_scale}): target UAR lam λ=0 {scores[0.0]:.3f}, "
          f"λ={lambda_:g} {scores[lambda_]:.3f}")
    assert scores[lambda_] > scores[0.0] + 0.2


@pytest.mark.parametrize("group_weights", ["concat", "per-layer"])
def test_groups_of_one_layer_are_lam_when_each_layer_has_its_own_projection(planted, group_weights):
    Xs, ys, Xd, yd, Xt, Xtest, _ = split(planted)
    params = dict(FAST, epochs=3, lambda_=1.0)
    lam = LayerAnchoringClassifier(method="lam", anchors=[2, 3], **params).fit(Xs, ys, Xt)
    singletons = LayerAnchoringClassifier(method="lam-gl", anchors=[[2], [3]], group_weights=group_weights,
                                          **params).fit(Xs, ys, Xt)
    np.testing.assert_array_equal(lam.predict_proba(Xtest), singletons.predict_proba(Xtest))


def test_a_concatenated_group_reads_every_layer(planted):
    Xs, ys, Xd, yd, Xt, Xtest, _ = split(planted)
    params = dict(FAST, epochs=3, lambda_=1.0)
    group = LayerAnchoringClassifier(method="lam-gl", anchors=[[2, 3]], group_weights="concat", **params)
    group.fit(Xs, ys, Xt)
    dim = Xs.shape[2]
    assert [p.weight.shape[1] for p in group.module_.projections] == [2 * dim, dim]  # group [2, 3], last layer
    # each layer of the group has its own columns of the projection: changing layer 3 alone changes the output
    changed = Xtest.copy()
    changed[:, 3] += 1.0
    assert not np.allclose(group.predict_proba(changed), group.predict_proba(Xtest))


def test_a_per_layer_group_averages_its_layers_embeddings_and_reloads(planted, tmp_path):
    import torch

    Xs, ys, Xd, yd, Xt, Xtest, _ = split(planted)
    group = LayerAnchoringClassifier(method="lam-gl", anchors=[[2, 3]], group_weights="per-layer",
                                     **dict(FAST, epochs=3, lambda_=1.0))
    group.fit(Xs, ys, Xt)
    head, dim = group.module_, Xs.shape[2]
    layer_2, layer_3 = head.projections[0]  # one projection per layer of the group [2, 3]; the last layer: one
    assert layer_2.weight.shape == layer_3.weight.shape == head.projections[1].weight.shape == (FAST["hidden"], dim)
    assert not torch.equal(layer_2.weight, layer_3.weight)
    x = torch.randn(5, len(group.layers_), dim)
    slots = head.branch_slots[0]
    expected = (torch.relu(layer_2(x[:, slots[0]])) + torch.relu(layer_3(x[:, slots[1]]))) / 2
    torch.testing.assert_close(head.embed(x)[0], expected)
    group.save(tmp_path / "gl.safetensors")
    loaded = LayerAnchoringClassifier.load(tmp_path / "gl.safetensors")
    assert loaded.group_weights == "per-layer"
    np.testing.assert_array_equal(loaded.predict_proba(Xtest), group.predict_proba(Xtest))


def test_wsum_layer_weights_sum_to_one_and_are_learned(planted):
    Xs, ys, Xd, yd, *_ = split(planted)
    model = LayerAnchoringClassifier(method="wsum", **FAST).fit(Xs, ys, X_dev=Xd, y_dev=yd)
    (weights,) = model.layer_weights()
    assert list(weights) == [0, 1, 2, 3, 4, 5]
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-6)
    assert max(weights.values()) - min(weights.values()) > 1e-3


def test_same_seed_same_result_and_global_rng_untouched(planted):
    Xs, ys, Xd, yd, Xt, Xtest, _ = split(planted)
    params = dict(method="coral", hidden=32, epochs=3, batch_size=64)
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    torch.manual_seed(123)
    first = LayerAnchoringClassifier(seed=4, **params).fit(Xs, ys, Xt, X_dev=Xd, y_dev=yd)
    assert torch.equal(torch.rand(1), expected_draw)
    second = LayerAnchoringClassifier(seed=4, **params).fit(Xs, ys, Xt, X_dev=Xd, y_dev=yd)
    other = LayerAnchoringClassifier(seed=5, **params).fit(Xs, ys, Xt, X_dev=Xd, y_dev=yd)
    assert np.array_equal(first.predict_proba(Xtest), second.predict_proba(Xtest))
    assert [r["loss_total"] for r in first.history_] == [r["loss_total"] for r in second.history_]
    assert not np.array_equal(first.predict_proba(Xtest), other.predict_proba(Xtest))


def test_dict_input_reads_only_the_layers_given(planted):
    Xs, ys, _, _, Xt, Xtest, _ = split(planted)
    model = LayerAnchoringClassifier(method="lam", anchors=[2], hidden=16, epochs=2)
    assert model.required_layers(6) == [2, 5]
    from_array = model.fit(Xs, ys, Xt).predict_proba(Xtest)
    as_dict = lambda X: {2: X[:, 2], 5: X[:, 5]}  # noqa: E731
    from_dict = LayerAnchoringClassifier(method="lam", anchors=[2], hidden=16, epochs=2).fit(
        as_dict(Xs), ys, as_dict(Xt)).predict_proba(as_dict(Xtest))
    assert np.allclose(from_array, from_dict, atol=1e-6)


def test_lam_gl_groups_with_learned_weights(planted):
    Xs, ys, Xd, yd, Xt, *_ = split(planted)
    model = LayerAnchoringClassifier(method="lam-gl", anchors=[[1, 2, 3]], group_weights="learned",
                                     hidden=16, epochs=3).fit(Xs, ys, Xt, X_dev=Xd, y_dev=yd)
    assert model.branches_ == [[1, 2, 3], [5]]
    group, last = model.layer_weights()
    assert list(group) == [1, 2, 3] and sum(group.values()) == pytest.approx(1.0) and last == {5: 1.0}


def test_save_and_load_round_trip(tmp_path, planted):
    Xs, ys, _, _, Xt, Xtest, _ = split(planted)
    model = LayerAnchoringClassifier(method="dann", normalize="per-language", hidden=16, epochs=2).fit(Xs, ys, Xt)
    model.save(tmp_path / "m.safetensors")
    loaded = LayerAnchoringClassifier.load(tmp_path / "m.safetensors")
    assert loaded.get_params() == model.get_params()
    for domain in ("source", "target"):
        assert np.array_equal(loaded.predict_proba(Xtest, domain=domain), model.predict_proba(Xtest, domain=domain))
    assert not np.array_equal(model.stats_["source"][0], model.stats_["target"][0])
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(InputError, match="not a sers classifier"):
        LayerAnchoringClassifier.load(tmp_path / "junk.safetensors")


@pytest.mark.parametrize("params, args, message", [
    (dict(method="lam"), "source", "needs anchors as layer numbers"),
    (dict(method="lam-gl", anchors=[3, 4]), "source", "groups of layers"),
    (dict(method="transformer"), "source", "unknown; choose from"),
    (dict(method="coral"), "source", "pass X_target"),
    (dict(method="lam", anchors=[9]), "source", "needs \\[9\\]"),
    (dict(method="last"), "short_y", "3 labels for 600 rows"),
    (dict(method="last"), "bad_dev", "y_dev must give one of the source classes"),
    (dict(method="last"), "1d", "expected \\(n_utterances, n_layers, dim\\), \\(n_utterances, dim\\) as layer 0"),
])
def test_inputs_are_checked_with_messages_that_say_what_to_do(planted, params, args, message):
    X, y = planted["X_source"], planted["y_source"]
    calls = {"source": lambda m: m.fit(X, y), "short_y": lambda m: m.fit(X, y[:3]),
             "bad_dev": lambda m: m.fit(X, y, X_dev=X[:5], y_dev=["Q"] * 5), "1d": lambda m: m.fit(X[:, 0, 0], y)}
    with pytest.raises(InputError, match=message):
        calls[args](LayerAnchoringClassifier(epochs=1, **params))
