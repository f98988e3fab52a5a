"""Model-selection criteria that read no target labels: which of several trained candidates to keep.

A cross-lingual run has no labelled target data to choose λ or the anchors with. Each
criterion scores a fitted :class:`~sers.classifiers.estimator.LayerAnchoringClassifier` from
what training had anyway: labelled *source* dev rows and *unlabelled* target rows. Higher is
better for every criterion (risks are negated), so a caller keeps the argmax.

    source-dev   UAR on the source dev split (what early stopping uses). Blind to the target.
    im           information maximisation on the target predictions (as in SHOT, Liang et al.
                 2020): H(mean p) - mean H(p), divided by log K.
    dev          deep embedded validation (You et al., ICML 2019): the source dev loss weighted by
                 a density ratio of the model's own embeddings, with the paper's control variate.
    snd          soft neighbourhood density (Saito et al., ICCV 2021) of the target predictions.
    bnm          batch nuclear norm (Cui et al., CVPR 2020) of the target prediction matrix.
    class-ami    AMI between target predictions and a k-means clustering of target embeddings
                 (Musgrave et al., "Three new validators ...", ECCV 2022).
    iwcv         importance-weighted validation (Sugiyama et al., JMLR 2007): the source dev loss
                 weighted by a density ratio of the model's *input* features; negated.

None of them takes target labels: :func:`score_candidate` has no argument through which they
could pass (``y_dev`` holds source dev labels, or target dev labels only when the caller asks
for a labelled target dev split, as the estimator's ``dev_domain``).

Why not skada's scorers (``skada.metrics``, BSD): they are called as ``scorer(estimator, X, y,
sample_domain)`` with both domains in one 2-D ``X``, masked target labels in ``y``, and the
estimator's ``predict_proba``/``score`` receiving ``sample_domain``/``sample_weight`` through
scikit-learn metadata routing. sers's estimator reads per-layer dicts or FrameFeatures and a
``domain="source"|"target"`` name, so every scorer would need an adapter that flattens the layers
and translates the domains. Beyond that, skada's SND forms the full n x n similarity matrix (here a
bounded subsample), its importance weights come from kernel density estimates on the raw inputs
(thousands of dimensions here; see :func:`importance_weighted_validation` for the ratio used
instead), it has no BNM or class-AMI, and it would add POT to the dependencies. The functions below
are a few lines each on plain arrays.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.special import log_softmax
from threadpoolctl import threadpool_limits

from sers.classifiers import data
from sers.classifiers.data import InputError
from sers.analysis.metrics import uar
from sers.classifiers.options import CRITERIA, SELECTORS, STAGED

SND_TEMPERATURE = 0.05   # Saito et al.'s τ
SND_MAX_ROWS = 2000      # the n x n similarity matrix is formed on at most this many target rows
IWCV_MAX_ROWS = 1500     # rows per domain that fit the input-feature domain classifier
IWCV_COMPONENTS = 16     # principal components the quadratic domain classifier reads


def information_maximisation(proba: np.ndarray) -> float:
    """(H(mean p) - mean H(p)) / log K for (n, K) class probabilities: in [0, 1].

    High when the model is confident on each row yet uses every class (Liang et al., "Do we really
    need to access the source data?", ICML 2020). One predicted class everywhere: <= 0.
    """
    proba = np.clip(np.asarray(proba, np.float64), 1e-12, 1.0)
    k = proba.shape[1]
    marginal = proba.mean(axis=0)
    diversity = -np.sum(marginal * np.log(marginal))
    confidence = -np.mean(np.sum(proba * np.log(proba), axis=1))
    return float((diversity - confidence) / np.log(k))


def _subsample(n: int, max_rows: int, seed: int) -> np.ndarray:
    """Sorted row indices: all ``n`` rows, or a fixed-seed ``max_rows`` of them."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def soft_neighbourhood_density(proba: np.ndarray, temperature: float = SND_TEMPERATURE,
                               max_rows: int = SND_MAX_ROWS, seed: int = 0) -> float:
    """Soft neighbourhood density of (n, K) target probabilities, divided by log(n - 1): in [0, 1].

    Saito, Kim, Teterwak, Sclaroff, Darrell & Saenko, "Tune it the right way: unsupervised
    validation of domain adaptation via soft neighborhood density", ICCV 2021: the rows are
    L2-normalised, each row's cosine similarities to the *other* rows go through a softmax at
    temperature τ = 0.05, and SND is the mean entropy of those distributions. High when target
    predictions form dense neighbourhoods (clusters) rather than scattered points. On at most
    ``max_rows`` rows (a fixed-seed subsample), so the cost is bounded whatever n. Dividing by
    log(n - 1), the entropy of a uniform neighbourhood, changes no ranking among candidates scored on
    the same rows and makes the value readable. Known limit (the paper's too): one predicted class
    everywhere makes every neighbour equally close, the maximum, 1.
    """
    proba = np.asarray(proba, np.float64)
    proba = proba[_subsample(len(proba), max_rows, seed)]
    n = len(proba)
    if n < 3:  # one neighbour or none: its distribution has no entropy
        return 0.0
    norms = np.linalg.norm(proba, axis=1, keepdims=True)
    unit = proba / np.where(norms > 0, norms, 1.0)
    logits = unit @ unit.T / temperature
    np.fill_diagonal(logits, -np.inf)  # a row is not its own neighbour
    log_p = log_softmax(logits, axis=1)
    p = np.exp(log_p)
    np.fill_diagonal(log_p, 0.0)  # p = 0 there: 0 · log 0 counts 0, not 0 · -inf = nan
    entropy = -np.sum(p * log_p, axis=1)
    return float(entropy.mean() / np.log(n - 1))


def batch_nuclear_norm(proba: np.ndarray) -> float:
    """||P||_* / sqrt(n K) for the (n, K) target prediction matrix P: in (0, 1].

    Cui, Wang, Zhuo, Li, Huang & Tian, "Towards discriminability and diversity: batch nuclear-norm
    maximization under label insufficient situations", CVPR 2020: the nuclear norm of P rises with
    both confidence (Frobenius norm) and diversity (rank). Normalisation: rows of P have L2 norm
    <= 1, so ||P||_F <= sqrt(n) and ||P||_* <= sqrt(rank) ||P||_F <= sqrt(nK), with equality exactly
    for one-hot rows spread evenly over the K classes. One class everywhere gives 1/sqrt(K), uniform
    probabilities 1/K. The singular values of a tall n x K matrix cost O(n K²).
    """
    proba = np.asarray(proba, np.float64)
    n, k = proba.shape
    return float(np.linalg.svd(proba, compute_uv=False).sum() / np.sqrt(n * k))


def class_ami(proba: np.ndarray, embeddings: np.ndarray, seed: int = 0) -> float:
    """Adjusted mutual information between the predicted classes and a k-means clustering (k = K) of
    the target embeddings: about 0 (unrelated) to 1 (the same partition).

    Musgrave, Belongie & Lim, "Three new validators and a large-scale benchmark ranking for
    unsupervised domain adaptation" (ClassAMI), 2022: a model whose decisions follow the cluster
    structure of its own target embeddings scores high. One predicted class everywhere has no class
    structure and scores 0 (scikit-learn would call two one-cluster labelings a perfect match, 1).
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import adjusted_mutual_info_score

    predicted = np.asarray(proba).argmax(axis=1)
    if len(np.unique(predicted)) < 2:
        return 0.0
    embeddings = np.asarray(embeddings, np.float64)
    k = min(np.asarray(proba).shape[1], len(embeddings))
    # One thread: k = K clusters of a few thousand rows take milliseconds, and OpenMP threads that
    # contend with other work (parallel candidates, a shared machine) took 50 times longer.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # fewer distinct embeddings than k (a collapsed head): k-means says so and returns fewer clusters
        warnings.simplefilter("ignore", ConvergenceWarning)
        clusters = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(embeddings)
    return float(adjusted_mutual_info_score(predicted, clusters))


def _density_ratio(source_x: np.ndarray, target_x: np.ndarray, seed: int, transform=None):
    """A function ``x -> p_t(x) / p_s(x)`` from a logistic domain classifier fitted on the source and
    target rows (balanced classes, so the odds of the classifier are the density ratio; clipped to
    [1e-6, 1e6] so that no row is weighted 0 or inf). ``transform``: applied to new rows first."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([source_x, target_x])
    domain = np.r_[np.zeros(len(source_x)), np.ones(len(target_x))]
    scaler = StandardScaler().fit(x)
    classifier = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced", random_state=seed)
    classifier.fit(scaler.transform(x), domain)

    def ratio(rows: np.ndarray) -> np.ndarray:
        rows = transform(rows) if transform is not None else rows
        p_target = np.clip(classifier.predict_proba(scaler.transform(rows))[:, 1], 1e-6, 1 - 1e-6)
        return p_target / (1 - p_target)
    return ratio


def deep_embedded_validation(dev_loss: np.ndarray, dev_z: np.ndarray, source_z: np.ndarray,
                             target_z: np.ndarray, seed: int = 0) -> float:
    """Negated DEV risk: per-row source dev losses weighted by the density ratio of the embeddings.

    You, Wang, Long & Wang, "Towards accurate model selection in deep unsupervised domain
    adaptation", ICML 2019. The domain classifier is fitted on source training embeddings against
    target embeddings and applied to the dev embeddings: w = p(t | z) / p(s | z).
    Risk = mean(w·l) + η·mean(w) − η with η = −Cov(w·l, w) / Var(w) (the control variate that lowers
    the variance of the estimate).
    """
    weights = _density_ratio(source_z, target_z, seed)(dev_z)
    weighted = weights * dev_loss
    variance = np.var(weights, ddof=1) if len(weights) > 1 else 0.0
    eta = -np.cov(weighted, weights)[0, 1] / variance if variance > 0 else 0.0
    return float(-(weighted.mean() + eta * weights.mean() - eta))


def input_density_ratio(source_x: np.ndarray, target_x: np.ndarray, seed: int = 0,
                        components: int = IWCV_COMPONENTS):
    """A function ``x -> p_t(x) / p_s(x)`` for rows of input features, fitted on source and target rows.

    ``*_x`` are rows as the model's head receives them. With per-language standardisation both
    languages then have mean 0 and variance 1 in every dimension, and a *linear* domain classifier
    has nothing to fit (its gradient at zero weights is the mean difference, 0): every weight would
    be 1. So the logistic domain classifier reads the rows' leading ``components`` principal
    components with their squares and pairwise products: logistic regression on quadratic features
    is the discriminative form of the log density ratio of two Gaussians, and the covariance
    differences it sees are the ones CORAL measures.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import PolynomialFeatures

    fit = np.concatenate([source_x, target_x]).astype(np.float64)
    if not np.any(fit.var(axis=0) > 0):  # constant inputs: nothing tells the domains apart
        return lambda rows: np.ones(len(rows))
    k = max(1, min(components, len(fit) - 1, fit.shape[1]))
    pca = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit(fit)
    quadratic = PolynomialFeatures(degree=2, include_bias=False).fit(pca.transform(fit))
    lift = (lambda x: quadratic.transform(pca.transform(np.asarray(x, np.float64))))
    return _density_ratio(lift(source_x), lift(target_x), seed, transform=lift)


def importance_weighted_validation(dev_loss: np.ndarray, dev_weights: np.ndarray) -> float:
    """Negated importance-weighted dev risk: -sum_i w_i l_i / sum_i w_i, w = p_t(x) / p_s(x) of
    each dev row's *input* features (:func:`input_density_ratio`).

    Sugiyama, Krauledat & Müller, "Covariate shift adaptation by importance weighted cross
    validation", JMLR 2007, with the held-out source dev split as the validation fold: under
    covariate shift the weighted source loss estimates the target risk. Self-normalised (divided by
    the sum of the weights, not n): lower in variance, and the scale of the ratio cancels. Unlike
    ``dev``, the weights depend on the inputs alone, not on what the candidate learned.
    """
    dev_weights = np.asarray(dev_weights, np.float64)
    return float(-np.sum(dev_weights * np.asarray(dev_loss, np.float64)) / np.sum(dev_weights))


def model_inputs(model, X, domain: str, rows=None) -> np.ndarray:
    """(len(rows), layers x D) float32: rows of ``X`` as the model's head receives them, i.e. its
    layers standardised by ``domain``'s statistics (frame features: each utterance's mean frame,
    which is what attentive pooling starts from)."""
    if hasattr(X, "subset"):  # FrameFeatures
        X = X.subset(np.arange(X.n_utterances) if rows is None else rows).select(model.layers_).mean_pooled()
        rows = None
    else:
        X = data.as_layer_dict(X, "X")
    rows = np.arange(data.n_rows(X)) if rows is None else np.asarray(rows)
    return data.gather(X, model.layers_, rows, model.stats_[domain]).reshape(len(rows), -1)


def _count(X) -> int:
    """Utterances in a layer dict, FrameFeatures or an (n, L, D) array."""
    return data.n_rows(X) if isinstance(X, dict) or hasattr(X, "n_utterances") else len(X)


def score_candidate(model, X_dev, y_dev, X_source, X_target, *, dev_domain: str = "source") -> dict[str, float]:
    """Every criterion for one fitted model: {criterion: value}, higher is better.

    ``X_dev``/``y_dev``: labelled dev rows (source dev; target dev only where the caller asked for
    a labelled target dev split, then ``dev_domain="target"``); ``X_source``: source training rows
    and ``X_target``: target training rows, both read as features only. Deterministic for a fixed
    ``model.seed``.
    """
    y_dev = np.asarray(y_dev).astype(str)
    unknown = sorted(set(y_dev) - set(model.classes_))
    if unknown:
        raise InputError(f"y_dev has labels {unknown[:5]} that the model was not trained on")
    seed = model.seed
    # The model's outputs first (torch, its own threads); then the criteria, on one thread each:
    # small fits that contending BLAS/OpenMP threads only slow down.
    dev_proba = model.predict_proba(X_dev, domain=dev_domain)
    target_proba = model.predict_proba(X_target, domain="target")
    dev_z = model.embed(X_dev, domain=dev_domain)
    source_z = model.embed(X_source, domain="source")
    target_z = model.embed(X_target, domain="target")
    truth = np.searchsorted(model.classes_, y_dev)
    dev_loss = -np.log(np.clip(dev_proba[np.arange(len(truth)), truth], 1e-12, 1.0))
    with threadpool_limits(limits=1):
        # iwcv's domain classifier fits on bounded subsamples of the inputs, and the dev rows are
        # weighted in blocks: no copy of every row's layers is held at once.
        ratio = input_density_ratio(
            model_inputs(model, X_source, "source", _subsample(_count(X_source), IWCV_MAX_ROWS, seed)),
            model_inputs(model, X_target, "target", _subsample(_count(X_target), IWCV_MAX_ROWS, seed + 1)), seed)
        n_dev = _count(X_dev)
        dev_weights = np.concatenate([ratio(model_inputs(model, X_dev, dev_domain, np.arange(i, min(i + 4096, n_dev))))
                                      for i in range(0, n_dev, 4096)])
        return {"source-dev": uar(y_dev, model.classes_[dev_proba.argmax(axis=1)], model.classes_),
                "im": information_maximisation(target_proba),
                "dev": deep_embedded_validation(dev_loss, dev_z, source_z, target_z, seed=seed),
                "snd": soft_neighbourhood_density(target_proba, seed=seed),
                "bnm": batch_nuclear_norm(target_proba),
                "class-ami": class_ami(target_proba, target_z, seed=seed),
                "iwcv": importance_weighted_validation(dev_loss, dev_weights)}


def choose(scores: list[dict[str, float]], criterion: str, tags=None) -> int:
    """Index of the best candidate by ``criterion`` (the first of equals: candidates come in the
    order the user listed them). ``tags`` (sers.pipeline.candidates: "lambda=1,groups=2x2") say
    which candidates read the same layers; only the staged selector needs them."""
    if criterion not in SELECTORS:
        raise InputError(f"selection criterion must be one of {', '.join(SELECTORS)}, not {criterion!r}")
    if criterion == STAGED:
        return staged_choice(scores, tags or [""] * len(scores))
    values = [s[criterion] for s in scores]
    return int(np.argmax(values))


def staged_choice(scores: list[dict[str, float]], tags: list[str]) -> int:
    """bnm+source-dev: per set of layers (the tag without its λ), the λ that bnm scores best; then,
    of those, the one with the best source dev UAR.

    Why two rules: bnm compares the target predictions of models that read the same features and
    differ in how strongly they align, where it had the least regret choosing λ; across different
    layers (lam-gl's group settings) the confidence of the predictions says little about which
    layers carry the emotion, and source dev UAR chose the group setting with less regret
    (docs/benchmarks/selection.md)."""
    per_layers: dict[str, int] = {}
    for index, tag in enumerate(tags):
        layers = ",".join(part for part in tag.split(",") if not part.startswith("lambda="))
        best = per_layers.get(layers)
        if best is None or scores[index]["bnm"] > scores[best]["bnm"]:
            per_layers[layers] = index
    return max(per_layers.values(), key=lambda i: (scores[i]["source-dev"], -i))
