"""sers.analysis.measures against plain reference computations, and the invariances that define them."""
import numpy as np
import pytest
from scipy.stats import ortho_group
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sers.analysis import measures


def reference_standardiser(xs, xt):
    """Equal-weight mixture mean and std per dimension, written out plainly."""
    centre = (xs.mean(0) + xt.mean(0)) / 2
    var = (xs.var(0, ddof=1) + xt.var(0, ddof=1)) / 2 + ((xs.mean(0) - xt.mean(0)) / 2) ** 2
    return centre, np.sqrt(var)


def reference_cka_gram(x, y):
    """Linear CKA through n x n Gram matrices (Kornblith et al. 2019, eq. HSIC)."""
    n = len(x)
    h = np.eye(n) - 1.0 / n
    k, l = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h)

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# shapes: N > D and D > N (covariances are rank-deficient there)
SHAPES = [(80, 70, 12), (9, 7, 30)]


@pytest.mark.parametrize("n_s,n_t,dim", SHAPES)
def test_coral_matches_numpy_cov(rng, n_s, n_t, dim):
    xs = rng.normal(size=(n_s, dim)) * rng.uniform(0.5, 3, dim) + 2.0
    xt = rng.normal(size=(n_t, dim)) @ rng.normal(size=(dim, dim)) * 0.5
    centre, scale = reference_standardiser(xs, xt)
    cs = np.cov((xs - centre) / scale, rowvar=False)
    ct = np.cov((xt - centre) / scale, rowvar=False)
    expected = np.sum((cs - ct) ** 2) / (4 * dim ** 2)
    assert measures.coral(xs.astype(np.float32), xt.astype(np.float32)) == pytest.approx(expected, rel=1e-5)
    assert measures.coral(xs, xt) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("n_s,n_t,dim", SHAPES)
def test_mmd_matches_mean_distance(rng, n_s, n_t, dim):
    xs = rng.normal(size=(n_s, dim)) + 1.0
    xt = rng.normal(size=(n_t, dim)) * 2.0
    centre, scale = reference_standardiser(xs, xt)
    expected = np.sum(((xs.mean(0) - xt.mean(0)) / scale) ** 2)
    assert measures.mmd(xs, xt) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("n,dim", [(50, 8), (6, 40)])
def test_cka_feature_space_matches_gram_formula(rng, n, dim):
    x = rng.normal(size=(n, dim))
    y = x[:, :5] @ rng.normal(size=(5, dim + 3)) + rng.normal(size=(n, dim + 3))
    assert measures.linear_cka(x, y) == pytest.approx(reference_cka_gram(x, y), rel=1e-10)


def test_cka_is_one_under_orthogonal_transform_and_isotropic_scaling(rng):
    x = rng.normal(size=(40, 16))
    q = ortho_group.rvs(16, random_state=1)
    assert measures.linear_cka(x, 3.7 * x @ q + 5.0) == pytest.approx(1.0, abs=1e-12)
    assert measures.linear_cka(x, rng.normal(size=(40, 16))) < 0.6
    # but not invariant to an anisotropic scaling
    assert measures.linear_cka(x, x * np.linspace(0.1, 10, 16)) < 0.99


def test_coral_and_mmd_near_zero_for_one_distribution_and_grow_with_shift(rng):
    dim = 16
    mix = rng.normal(size=(dim, dim))
    draw = lambda n: rng.normal(size=(n, dim)) @ mix  # noqa: E731
    xs = draw(4000)
    same_coral, same_mmd = measures.coral(xs, draw(4000)), measures.mmd(xs, draw(4000))
    assert same_coral < 1e-3 and same_mmd < 0.02
    shifted = draw(4000)
    mmds = [measures.mmd(xs, shifted + s) for s in (0.5, 1.0, 2.0)]
    corals = [measures.coral(xs, shifted * np.r_[np.full(4, s), np.ones(dim - 4)]) for s in (1.5, 2.0, 3.0)]
    assert same_mmd < mmds[0] < mmds[1] < mmds[2]
    assert same_coral * 10 < corals[0] < corals[1] < corals[2]


def test_moments_leave_one_fold_out_equal_numpy(rng):
    x = rng.normal(size=(103, 6)) * 10 + 100  # large offset: the shift keeps it exact
    folds = measures.fold_assignment(len(x), 4, seed=3)
    assert np.bincount(folds).tolist() == [26, 26, 26, 25]
    moments = measures.compute_moments(x.astype(np.float32), folds, 4)
    x32 = x.astype(np.float32).astype(np.float64)
    for k in (None, 0, 3):
        rows = x32 if k is None else x32[folds != k]
        stats = moments.stats(leave_out=k)
        assert stats.n == len(rows)
        np.testing.assert_allclose(stats.mean, rows.mean(0), rtol=1e-12)
        np.testing.assert_allclose(stats.cov, np.cov(rows, rowvar=False), rtol=1e-9, atol=1e-9)


def reference_domain_accuracy(xs, xt, n_folds, seed, shrinkage):
    """The same cross-validated shrinkage discriminant, fitted on the training rows directly."""
    folds_s = measures.fold_assignment(len(xs), n_folds, seed)
    folds_t = measures.fold_assignment(len(xt), n_folds, seed + 1)
    centre, scale = reference_standardiser(xs, xt)
    zs, zt = (xs - centre) / scale, (xt - centre) / scale
    right_s = right_t = 0
    for k in range(n_folds):
        a, b = zs[folds_s != k], zt[folds_t != k]
        pooled = ((len(a) - 1) * np.cov(a, rowvar=False) + (len(b) - 1) * np.cov(b, rowvar=False)) / (len(a) + len(b) - 2)
        shrunk = (1 - shrinkage) * pooled + shrinkage * np.trace(pooled) / len(pooled) * np.eye(len(pooled))
        w = np.linalg.solve(shrunk, a.mean(0) - b.mean(0))
        threshold = w @ (a.mean(0) + b.mean(0)) / 2
        right_s += np.sum(zs[folds_s == k] @ w > threshold)
        right_t += np.sum(zt[folds_t == k] @ w <= threshold)
    return (right_s / len(xs) + right_t / len(xt)) / 2


@pytest.mark.parametrize("n_s,n_t,dim", [(120, 90, 10), (30, 25, 60)])
def test_domain_classifier_matches_direct_fit(rng, n_s, n_t, dim):
    xs = rng.normal(size=(n_s, dim))
    xt = rng.normal(size=(n_t, dim)) + np.r_[0.6, np.zeros(dim - 1)]
    accuracy, pad = measures.domain_separability(xs, xt, n_folds=5, seed=7)
    assert accuracy == pytest.approx(reference_domain_accuracy(xs, xt, 5, 7, 0.1), abs=1e-12)
    assert pad == pytest.approx(2 * (1 - 2 * (1 - accuracy)))


def test_domain_classifier_chance_and_separable(rng):
    xs, xt = rng.normal(size=(600, 8)), rng.normal(size=(400, 8))
    accuracy, pad = measures.domain_separability(xs, xt)
    assert abs(accuracy - 0.5) < 0.06 and abs(pad) < 0.25
    accuracy, pad = measures.domain_separability(xs, xt + 4.0)
    assert accuracy > 0.99 and pad > 1.95


def test_centroid_cosine_matches_explicit_loop(rng):
    dim = 7
    xs, xt = rng.normal(size=(60, dim)) + 1, rng.normal(size=(50, dim))
    gs = np.array(list("NHAS") * 15)
    gt = np.array(list("NHA") * 16 + ["X", "X"])  # X only in the target, S only in the source
    centre, scale = reference_standardiser(xs, xt)
    cosines = []
    for c in ("A", "H", "N"):
        a, b = (xs[gs == c].mean(0) - centre) / scale, (xt[gt == c].mean(0) - centre) / scale
        cosines.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert measures.shared_classes(gs, gt) == ["A", "H", "N"]
    assert measures.centroid_cosine(xs, gs, xt, gt) == pytest.approx(np.mean(cosines), rel=1e-10)
    expected_cka = reference_cka_gram(*[np.stack([(x[g == c].mean(0) - centre) / scale for c in "AHN"])
                                        for x, g in ((xs, gs), (xt, gt))])
    assert measures.centroid_cka(xs, gs, xt, gt) == pytest.approx(expected_cka, rel=1e-10)


def test_probe_matches_sklearn_and_sees_shared_structure(rng):
    dim, classes = 10, np.array(list("NHAS"))
    means = rng.normal(size=(4, dim)) * 2
    ys, yt = classes[rng.integers(0, 4, 400)], classes[rng.integers(0, 4, 300)]
    index = {c: i for i, c in enumerate(classes)}
    xs = means[[index[c] for c in ys]] + rng.normal(size=(400, dim))
    xt = means[[index[c] for c in yt]] + rng.normal(size=(300, dim)) + 0.3
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=500))
    expected = recall_score(yt, model.fit(xs, ys).predict(xt), average="macro")
    uar = measures.probe(xs, ys, xt, yt)
    assert uar == pytest.approx(expected, abs=1e-3) and uar > 0.85
    assert measures.probe(xs, ys, xt, rng.permutation(yt)) < 0.4  # labels unrelated to the features


def test_cross_layer_matrix_diagonal_is_the_per_layer_value(rng):
    def summary(x, g):
        return measures.LayerSummary(x.mean(0), x.var(0, ddof=1), measures.class_centroids(x, g, list("AHNS")))

    gs, gt = np.array(list("NHAS") * 10), np.array(list("SAHN") * 8)
    layers_s = [rng.normal(size=(40, 5)) + i for i in range(3)]
    layers_t = [rng.normal(size=(32, 5)) * (i + 1) for i in range(3)]
    for name, single in (("centroid-cos", measures.centroid_cosine), ("cka", measures.centroid_cka)):
        matrix = measures.cross_layer_matrix([summary(x, gs) for x in layers_s],
                                             [summary(x, gt) for x in layers_t], name)
        assert matrix.shape == (3, 3)
        for i in range(3):
            assert matrix[i, i] == pytest.approx(single(layers_s[i], gs, layers_t[i], gt), rel=1e-10)
        assert matrix[0, 2] == pytest.approx(single(layers_s[0], gs, layers_t[2], gt), rel=1e-10)
