"""sers.analysis.measures against plain reference computations, and the invariances that define them."""
import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist
from scipy.stats import kendalltau, multivariate_normal, ortho_group
from sklearn.covariance import empirical_covariance, oas
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


def reference_mmd(xs, xt, rows_s=None, rows_t=None):
    """Unbiased Gaussian MMD^2 with n x n kernel matrices (Gretton et al. 2012, eq. 3), the bandwidth
    the median of scipy's pdist over both samples; standardised by all rows, then subsampled."""
    centre, scale = reference_standardiser(xs, xt)
    a, b = (xs - centre) / scale, (xt - centre) / scale
    a, b = a if rows_s is None else a[rows_s], b if rows_t is None else b[rows_t]
    sigma = np.median(pdist(np.vstack([a, b])))

    def kernel(u, v):
        return np.exp(-cdist(u, v, "sqeuclidean") / (2 * sigma ** 2))

    m, n = len(a), len(b)
    k_aa, k_bb = kernel(a, a), kernel(b, b)
    return ((k_aa.sum() - np.trace(k_aa)) / (m * (m - 1)) + (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
            - 2 * kernel(a, b).mean())


@pytest.mark.parametrize("n_s,n_t,dim", SHAPES)
def test_mmd_matches_kernel_matrix_reference(rng, n_s, n_t, dim):
    xs = rng.normal(size=(n_s, dim)) + 1.0
    xt = rng.normal(size=(n_t, dim)) * 2.0
    assert measures.mmd(xs, xt) == pytest.approx(reference_mmd(xs, xt), rel=1e-9)
    assert measures.mmd(xs.astype(np.float32), xt.astype(np.float32)) == pytest.approx(reference_mmd(xs, xt), rel=1e-4)


def test_mmd_uses_a_fixed_seeded_subsample(rng):
    xs, xt = rng.normal(size=(300, 6)), rng.normal(size=(250, 6)) * 1.5
    rows_s, rows_t = measures.subsample_rows(300, 40, 3), measures.subsample_rows(250, 40, 4)
    assert len(rows_s) == 40 and np.all(np.diff(rows_s) > 0)  # distinct, sorted
    assert measures.mmd(xs, xt, seed=3, max_rows=40) == pytest.approx(reference_mmd(xs, xt, rows_s, rows_t), rel=1e-9)
    assert measures.mmd(xs, xt, seed=3, max_rows=40) == measures.mmd(xs, xt, seed=3, max_rows=40)
    assert measures.mmd(xs, xt, seed=5, max_rows=40) != measures.mmd(xs, xt, seed=3, max_rows=40)
    assert measures.mmd(xs, xt, max_rows=300) == pytest.approx(reference_mmd(xs, xt), rel=1e-9)  # all rows
    assert measures.MMD_ROWS == 1000


def correlated(rng, n, dim, strength):
    """Rows with mean 0 and unit variance per dimension whose dimensions are correlated in pairs
    (0-1, 2-3, ...) with correlation ``strength``: only the covariance tells strengths apart."""
    z = rng.normal(size=(n, dim))
    pair = np.roll(z, 1, axis=1) if dim > 1 else z
    mixed = np.sqrt(1 - strength ** 2) * z + strength * pair
    mixed[:, 1::2] = z[:, 1::2]
    return mixed


def test_gaussian_mmd_sees_a_covariance_gap_the_mean_difference_misses(rng):
    dim, n = 8, 1000
    xs = correlated(rng, n, dim, 0.0)
    gaps = [measures.mmd(xs, correlated(rng, n, dim, strength)) for strength in (0.5, 0.7, 0.9)]
    same = measures.mmd(xs, correlated(rng, n, dim, 0.0))
    mean_gap = max(np.sum((xs.mean(0) - correlated(rng, n, dim, s).mean(0)) ** 2) for s in (0.5, 0.7, 0.9))
    assert abs(same) < 1e-3 < gaps[0] < gaps[1] < gaps[2]
    assert mean_gap < 0.05  # what the linear-kernel MMD measured: sampling noise, the same at every gap
    # the coral distance sees the same gap (a second moment), the linear domain rule would not
    corals = [measures.coral(xs, correlated(rng, n, dim, strength)) for strength in (0.5, 0.7, 0.9)]
    assert corals[0] < corals[1] < corals[2]


def test_mmd_of_one_distribution_is_zero_within_sampling_error_and_sometimes_negative(rng):
    values = np.array([measures.mmd(rng.normal(size=(300, 5)), rng.normal(size=(300, 5))) for _ in range(30)])
    assert (values < 0).sum() >= 5 and (values > 0).sum() >= 5  # unbiased: it scatters around 0
    assert abs(values.mean()) < 3 * values.std() / np.sqrt(len(values))
    assert measures.mmd(rng.normal(size=(300, 5)), rng.normal(size=(300, 5)) + 0.5) > 10 * values.std()
    bounds = measures.MEASURES["mmd"].bounds
    assert bounds == (-2.0, None) and measures.ranking_problem("mmd", values[:7].tolist()) is None
    assert measures.ranking_problem("mmd", [-2.5, 0.1]) == "outside its range [-2, inf): -2.5"


def per_speaker(x, speakers):
    """What sers.pipeline.speakers does: each speaker's rows by that speaker's own mean and std."""
    out = np.empty_like(x)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        out[rows] = (x[rows] - x[rows].mean(0)) / x[rows].std(0)
    return out


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


def test_coral_near_zero_for_one_distribution_and_grows_with_a_scale_gap(rng):
    dim = 16
    mix = rng.normal(size=(dim, dim))
    draw = lambda n: rng.normal(size=(n, dim)) @ mix  # noqa: E731
    xs = draw(4000)
    same_coral = measures.coral(xs, draw(4000))
    assert same_coral < 1e-3
    shifted = draw(4000)
    corals = [measures.coral(xs, shifted * np.r_[np.full(4, s), np.ones(dim - 4)]) for s in (1.5, 2.0, 3.0)]
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


def reference_domain_accuracy(xs, xt, folds_s, folds_t, n_folds, scored_s=None, scored_t=None):
    """The same cross-validated quadratic discriminant, fitted on the training rows directly:
    np.cov, the OAS shrinkage and scipy's multivariate normal log-density; counted on the rows
    ``scored_*`` (default: all)."""
    scored_s = np.arange(len(xs)) if scored_s is None else scored_s
    scored_t = np.arange(len(xt)) if scored_t is None else scored_t
    right_s = right_t = 0
    for k in range(n_folds):
        a, b = xs[folds_s != k], xt[folds_t != k]
        centre, scale = reference_standardiser(a, b)
        gaussians = []
        for z in ((a - centre) / scale, (b - centre) / scale):
            cov = np.cov(z, rowvar=False)
            gamma = measures.oas_shrinkage(cov, len(z))
            shrunk = (1 - gamma) * cov + gamma * np.trace(cov) / len(cov) * np.eye(len(cov))
            gaussians.append(multivariate_normal(z.mean(0), shrunk))

        def source_side(x):
            z = (x - centre) / scale
            return gaussians[0].logpdf(z) - gaussians[1].logpdf(z) > 0

        right_s += np.sum(source_side(xs[scored_s[folds_s[scored_s] == k]]))
        right_t += np.sum(~source_side(xt[scored_t[folds_t[scored_t] == k]]))
    return (right_s / len(scored_s) + right_t / len(scored_t)) / 2


def test_oas_shrinkage_matches_sklearn(rng):
    for n, dim in ((200, 10), (15, 40)):
        x = rng.normal(size=(n, dim)) * rng.uniform(0.5, 3, dim)
        expected = oas(x)[1]
        assert measures.oas_shrinkage(empirical_covariance(x), n) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n_s,n_t,dim", [(120, 90, 10), (40, 35, 60)])
def test_domain_classifier_matches_direct_fit(rng, n_s, n_t, dim):
    xs = rng.normal(size=(n_s, dim))
    xt = rng.normal(size=(n_t, dim)) * np.r_[1.6, np.ones(dim - 1)] + np.r_[0.3, np.zeros(dim - 1)]
    accuracy, pad = measures.domain_separability(xs, xt, n_folds=5, seed=7)
    folds_s, folds_t = measures.fold_assignment(n_s, 5, 7), measures.fold_assignment(n_t, 5, 8)
    assert accuracy == pytest.approx(reference_domain_accuracy(xs, xt, folds_s, folds_t, 5), abs=1e-12)
    assert pad == pytest.approx(max(0.0, 2 * (1 - 2 * (1 - accuracy))))
    # fitted on every row, counted on a seeded subsample of held-out rows
    ms, mt = measures.compute_moments(xs, folds_s, 5), measures.compute_moments(xt, folds_t, 5)
    counted, _ = measures.domain_from_moments(xs, ms, folds_s, xt, mt, folds_t, seed=7, max_rows=20)
    scored = measures.subsample_rows(n_s, 20, 7), measures.subsample_rows(n_t, 20, 8)
    assert counted == pytest.approx(reference_domain_accuracy(xs, xt, folds_s, folds_t, 5, *scored), abs=1e-12)
    assert measures.DOMAIN_ROWS == 5000


def chance_margin(n_s, n_t):
    """3 standard errors of a balanced accuracy at chance."""
    return 3 * 0.25 * np.sqrt(1 / n_s + 1 / n_t)


def test_domain_classifier_chance_separable_and_beyond_the_means(rng):
    xs, xt = rng.normal(size=(600, 8)), rng.normal(size=(400, 8))
    accuracy, pad = measures.domain_separability(xs, xt)
    assert abs(accuracy - 0.5) < chance_margin(600, 400) and 0 <= pad < 0.25
    accuracy, pad = measures.domain_separability(xs, xt + 10.0)
    assert accuracy == 1.0 and pad == 2.0
    # equal means, different correlations: the quadratic discriminant sees it (a linear one could not)
    accuracy, _ = measures.domain_separability(correlated(rng, 600, 8, 0.0), correlated(rng, 400, 8, 0.9))
    assert accuracy > 0.75


def speaker_sample(rng, speakers=6, per_speaker_rows=60, dim=64):
    """Rows of ``speakers`` voices drawn from one population (own offsets, shared noise)."""
    who = np.repeat([f"s{i}" for i in range(speakers)], per_speaker_rows)
    offsets = rng.normal(size=(speakers, dim))
    return rng.normal(size=(len(who), dim)) + offsets[np.repeat(np.arange(speakers), per_speaker_rows)], who


def test_speaker_standardised_samples_score_chance_only_with_folds_of_whole_speakers(rng):
    """The cause of the below-chance scores of issue 23, and its fix: a speaker's standardised rows
    sum to 0, so with the speaker's rows spread over folds the held-out rows are minus the
    training rows' sum, and the classifier scores far below chance."""
    (xs, who_s), (xt, who_t) = speaker_sample(rng), speaker_sample(rng)
    zs, zt = per_speaker(xs, who_s), per_speaker(xt, who_t)
    rows_folds, _ = measures.domain_separability(zs, zt, n_folds=5)
    assert rows_folds < 0.3  # the artefact: this check would pass with any fold rule if there were none
    margin = chance_margin(len(zs), len(zt))
    for seed in (0, 1, 2):
        accuracy, pad = measures.domain_separability(zs, zt, n_folds=5, seed=seed, groups_s=who_s, groups_t=who_t)
        assert abs(accuracy - 0.5) < margin and 0 <= pad < 4 * margin


def test_folds_of_whole_groups_are_seeded_and_balanced():
    groups = np.repeat(list("abcdefg"), [30, 30, 30, 20, 20, 10, 10])
    folds = measures.fold_assignment(len(groups), 3, seed=4, groups=groups)
    assert all(len(set(folds[groups == g])) == 1 for g in "abcdefg")
    assert sorted(np.bincount(folds).tolist()) == [50, 50, 50]
    assert np.array_equal(folds, measures.fold_assignment(len(groups), 3, seed=4, groups=groups))
    assert not all(np.array_equal(folds, measures.fold_assignment(len(groups), 3, seed=s, groups=groups))
                   for s in range(5, 10))
    with pytest.raises(ValueError, match="2 groups cannot fill 3 folds"):
        measures.fold_assignment(4, 3, seed=0, groups=list("aabb"))
    assert measures.fold_plan(list("aabbcc"), list("xxyy"), 5) == (2, True)
    assert measures.fold_plan(list("aabbcc"), list("xxxx"), 5) == (5, False)
    assert measures.fold_plan(None, list("xxyy"), 5) == (5, False)


def test_proxy_a_distance_lies_in_its_definition():
    assert [measures.proxy_a_distance(a) for a in (0.0, 0.3, 0.5, 0.75, 1.0)] == [0.0, 0.0, 0.0, 1.0, 2.0]


def test_ranking_problem_names_what_cannot_rank():
    assert measures.ranking_problem("proxy-a-distance", [-1.38, -1.47, -1.53]) == \
        "outside its range [0, 2]: -1.38 and 2 more"
    assert measures.ranking_problem("coral", [0.1, -0.2]) == "outside its range [0, inf): -0.2"
    assert measures.ranking_problem("mmd", [1.8e-15, 2.0e-15, 1.7e-15]) == "constant: 1.8e-15 at every layer"
    assert measures.ranking_problem("domain", [1.0, 1.0, 1.0]) == "saturated: 1 (its worst value) at every layer"
    assert measures.ranking_problem("domain", [0.4, 0.9]) is None
    assert measures.ranking_problem("mmd", [-1e-4, 2e-3, 1e-2]) is None  # below 0 is within its range
    assert measures.ranking_problem("cka", [None, float("nan")]) == "no finite values"


def test_ranking_agreement_is_oriented_and_leaves_out_what_cannot_rank():
    columns = {"coral": {"direction": "lower", "values": [3.0, 2.0, 1.0, 0.5]},
               "cka": {"direction": "higher", "values": [0.1, 0.5, 0.7, 0.9]},   # the same order of alike layers
               "probe": {"direction": "higher", "values": [0.9, 0.6, 0.5, 0.2]},  # the opposite order
               "mmd": {"direction": "lower", "values": [1e-15] * 4},             # constant: left out
               "domain": {"direction": "lower", "values": [0.9, 0.8, 0.7, 0.6]},
               "proxy-a-distance": {"direction": "lower", "values": [1.6, 1.2, 0.8, 0.4]}}  # comes with domain
    pairs = {tuple(p["measures"]): p for p in measures.ranking_agreement(columns)}
    assert set(pairs) == {("coral", "cka"), ("coral", "probe"), ("coral", "domain"), ("cka", "probe"),
                          ("cka", "domain"), ("probe", "domain")}
    assert pairs[("coral", "cka")]["tau"] == pytest.approx(1.0) and pairs[("coral", "probe")]["tau"] == pytest.approx(-1.0)
    assert pairs[("coral", "cka")]["layers"] == 4 and 0 < pairs[("coral", "cka")]["p_value"] < 0.1
    columns["cka"]["values"][1] = None  # fewer than 3 shared layers: no tau
    columns["cka"]["values"][2] = None
    assert {tuple(p["measures"]): p["tau"] for p in measures.ranking_agreement(columns)}[("coral", "cka")] is None


def planted_layers(rng, n_layers=6, n=400, dim=8, speakers=4):
    """Source and target per layer, both with speakers; the target's correlation gap grows with the
    layer (0 at layer 0), every speaker standardised: only second and higher moments differ."""
    who = np.repeat([f"v{i}" for i in range(speakers)], n // speakers)
    layers = []
    for layer in range(n_layers):
        xs = correlated(rng, n, dim, 0.0) + rng.normal(size=(speakers, dim))[np.repeat(np.arange(speakers), n // speakers)]
        xt = correlated(rng, n, dim, 0.15 * layer)
        layers.append((per_speaker(xs, who), per_speaker(xt, who)))
    return layers, who


def test_each_label_free_measure_recovers_planted_layer_order(rng):
    layers, who = planted_layers(rng)
    gap = -np.arange(len(layers), dtype=float)  # higher = more alike: layer 0 first
    table = {"coral": [measures.coral(xs, xt) for xs, xt in layers],
             "mmd": [measures.mmd(xs, xt) for xs, xt in layers],
             "domain": [measures.domain_separability(xs, xt, groups_s=who, groups_t=who)[0] for xs, xt in layers]}
    for name, values in table.items():
        assert measures.ranking_problem(name, values) is None, name
        assert kendalltau(gap, -np.array(values)).statistic > 0.85, (name, values)
    assert all(abs(m) < 1e-12 for xs, xt in layers for m in xs.mean(0) - xt.mean(0))  # no mean difference anywhere


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
