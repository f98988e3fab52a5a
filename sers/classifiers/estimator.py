"""LayerAnchoringClassifier: a scikit-learn style estimator over pooled layer features.

    >>> clf = LayerAnchoringClassifier(method="lam", anchors=[3, 5, 7], lambda_=1.0)
    >>> clf.fit(X_source, y_source, X_target, X_dev=X_dev, y_dev=y_dev)
    >>> clf.score(X_test, y_test)          # UAR

``X_*`` are dicts ``{layer: (n, D) array}``, ``(n, L, D)`` arrays, or ``(n, D)`` arrays taken as
layer 0 (see :mod:`sers.classifiers.data`). ``X_target`` is *unlabelled* target-language data:
the estimator has no argument through which target labels could reach training,
except ``X_dev``/``y_dev`` with ``dev_domain="target"``, which the caller must ask for.

With ``speakers=`` (the speaker of each row of X; ``target_speakers``, ``dev_speakers`` and
``predict(..., speakers=)`` for the other sets) every set is standardised speaker by speaker first,
by the same code as `sers train` (:mod:`sers.classifiers.speakers`)::

    >>> clf.fit(X_source, y_source, X_target, speakers=s_source, target_speakers=s_target)
    >>> clf.predict(X_test, speakers=s_test)

In a search or ``cross_validate`` pass ``X_target=TargetSet(X, speakers=...)``
(:mod:`sers.classifiers.fit_data`): it reaches every fold's fit whole, never cut to the fold.

With ``align="vowel"`` (lam, lam-gl) the anchors are also aligned vowel by vowel on
segment features, which carry a vowel class and no emotion label
(:mod:`sers.classifiers.segments`)::

    >>> clf = LayerAnchoringClassifier(method="lam", anchors=[3, 5, 7], align="vowel")
    >>> clf.fit(X_source, y_source, X_target, source_segments=(S_source, vowels_source),
    ...         target_segments=(S_target, vowels_target))

With ``features="frames"`` every ``X_*`` is a :class:`~sers.classifiers.frames.FrameFeatures`
(per layer one (total_frames, D) array and per-utterance lengths, the cache layout) and each
branch pools its frames by attention before its projection; see :mod:`sers.classifiers.frames`
for the equation and what is held in memory.
"""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from sers.classifiers import data, fit_data, weights
from sers.classifiers.constraints import ARRAY_LIKE, VERBOSE, Choices, Interval, check_combination, check_params
from sers.classifiers.data import InputError
from sers.classifiers.frames import as_frames
from sers.classifiers.heads import LayerHead
from sers.classifiers.inspection import ModelInspection
from sers.classifiers.losses import CORAL_SCALES
from sers.classifiers.methods import METHODS, get_method
from sers.analysis.metrics import uar
from sers.classifiers.normalization import NORMALIZE, StandardisedBatches, feature_stats, fit_statistics
from sers.classifiers.segments import aligned_layers, as_segment_pair
from sers.classifiers.speakers import standardise_layers
from sers.classifiers.training import train_head
from sers.classifiers.options import ALIGN, FEATURES, GROUP_WEIGHTS

NOT_FITTED = "this LayerAnchoringClassifier is not fitted yet; call fit() or load()"


class NotFitted(InputError, NotFittedError):
    """predict/embed/... before fit() or load() (scikit-learn's NotFittedError too)."""


class LayerAnchoringClassifier(ClassifierMixin, ModelInspection, BaseEstimator):
    """Emotion classifier over pooled hidden states, optionally aligned to a target language.

    Parameters
    ----------
    method : "last" | "wsum" | "coral" | "dann" | "lam" | "lam-gl"
        See :mod:`sers.classifiers.methods` for what each one reads and aligns.
    anchors : layer numbers for ``lam`` (e.g. ``[3, 5, 7]``); groups for ``lam-gl``
        (e.g. ``[[3, 4, 5], [8, 9, 10]]``). Ignored by the other methods.
    lambda_ : weight of the alignment term (CORAL sum, or the DANN gradient-reversal strength).
    coral_scale : "relative" (||C_s - C_t||^2 / (||C_s||^2 + ||C_t||^2): the same for any width and
        feature scale, so ``lambda_=1`` puts alignment on the scale of the cross-entropy) or "4d2"
        (Deep CORAL as published, / 4 d^2: about 1e-3 of the cross-entropy; see docs/method.md).
    hidden, dropout : width of the branch projections and MLP; dropout in the MLP.
    epochs, batch_size, lr, weight_decay : Adam training; an epoch is one pass over the source.
    patience : stop after this many epochs without a better dev UAR (needs ``X_dev``); 0 = never stop early.
    normalize : "per-language" (the default: source rows standardised by the statistics of the source
        training rows, target rows by those of the unlabelled target rows; without ``X_target`` the target
        side takes the source's), "global" (one mean/std over source and target training rows) or "none".
        Label-free; see docs/method.md for why per-language is the default.
    group_weights : how the layers of a ``lam-gl`` group become one embedding: "concat" (the
        default: side by side, i.e. one projection per layer, summed before the ReLU); "per-layer"
        (one projection and ReLU per layer, as ``lam`` has, the embeddings averaged); "mean" or
        "learned" (softmax weights) of the layers, then one projection. With "concat" or
        "per-layer" a group of one layer is exactly a ``lam`` anchor. The group is aligned by one
        CORAL term whatever the choice. See docs/method.md for the evidence behind the default.
    seed : same seed, same data -> identical results on CPU.
    device : "cpu" or a torch device such as "cuda".
    align : "utterance" (CORAL on utterance features) or "vowel" (``lam``/``lam-gl`` only): in
        addition, at each anchor, the mean over vowel classes of CORAL between the source and
        target segments of that vowel (``fit``'s ``source_segments``/``target_segments``); each
        step draws up to ``batch_size`` segments of every vowel class from each side.
    vowel_lambda : weight of the vowel-level term; None = ``lambda_``.
    features : "pooled" (one vector per utterance and layer) or "frames" (``FrameFeatures``
        inputs; attentive pooling per branch, its scoring vectors trained with the head).

    Attributes (set by ``fit`` or ``load``): ``classes_``, ``layers_`` (the layers read),
    ``branches_``, ``n_features_in_`` (the width D of every layer's features), ``stats_``
    (per-domain standardisation), ``speaker_standardised_`` (fitted with ``speakers=``: every
    ``predict`` then needs them), ``module_`` (the torch head), ``history_``, ``best_epoch_``,
    ``best_dev_uar_``, ``selection_``.
    """

    # The rules each parameter follows on its own (checked by fit and required_layers); the rules
    # between parameters (anchors by method, align="vowel" by method) are in check_combination.
    _parameter_constraints = {
        "method": [Choices(METHODS, "method {value!r} is unknown; choose from {options}")],
        "anchors": [ARRAY_LIKE, None],
        "lambda_": [Interval(Real, 0, None, closed="left")],
        "hidden": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "patience": [Interval(Integral, 0, None, closed="left"), None],
        "normalize": [Choices(NORMALIZE)],
        "group_weights": [Choices(GROUP_WEIGHTS)],
        "seed": [Integral],
        "device": [str, torch.device],
        "verbose": [*VERBOSE],
        "align": [Choices(ALIGN)],
        "vowel_lambda": [Interval(Real, 0, None, closed="left"), None],
        "features": [Choices(FEATURES)],
        "coral_scale": [Choices(CORAL_SCALES)],
    }

    def __init__(self, *, method="lam", anchors=None, lambda_=1.0, hidden=512, dropout=0.2, epochs=30,
                 batch_size=128, lr=3e-3, weight_decay=0.0, patience=5, normalize="per-language",
                 group_weights="concat", seed=0, device="cpu", verbose=False, align="utterance",
                 vowel_lambda=None, features="pooled", coral_scale="relative"):
        self.method = method
        self.anchors = anchors
        self.lambda_ = lambda_
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.normalize = normalize
        self.group_weights = group_weights
        self.seed = seed
        self.device = device
        self.verbose = verbose
        self.align = align
        self.vowel_lambda = vowel_lambda
        self.features = features
        self.coral_scale = coral_scale

    # -- parameters and the layers they read ---------------------------------------------

    def _validate_params(self) -> None:
        """Every parameter against ``_parameter_constraints``, then the rules between them."""
        check_params(self._parameter_constraints, self.get_params(deep=False))
        check_combination(self.get_params(deep=False))

    def _method(self):
        return get_method(self.method)

    def _branches(self, available_layers) -> tuple[list[list[int]], list[int]]:
        return self._method().branch_layers(self.anchors, available_layers)

    def required_layers(self, num_layers: int) -> list[int]:
        """The layers this configuration reads from a model with ``num_layers`` hidden states."""
        self._validate_params()
        branches, _ = self._branches(range(num_layers))
        layers = sorted({layer for branch in branches for layer in branch})
        if layers[0] < 0 or layers[-1] >= num_layers:
            raise InputError(f"anchors {self.anchors} are outside layers 0-{num_layers - 1}")
        return layers

    def required_segment_layers(self, num_layers: int) -> list[int]:
        """The layers of segment features that ``align="vowel"`` reads: those of the anchors."""
        self.required_layers(num_layers)
        return aligned_layers(*self._branches(range(num_layers)))

    def uses_target(self) -> bool:
        """Whether ``fit`` reads unlabelled target rows for alignment (an aligning method with λ > 0)."""
        return self._method().reads_target and self.lambda_ > 0

    def _uses_segments(self) -> bool:
        vowel_weight = self.lambda_ if self.vowel_lambda is None else self.vowel_lambda
        return self.align == "vowel" and vowel_weight > 0

    # -- fitting ----------------------------------------------------------------------

    def fit(self, X, y, X_target=None, X_dev=None, y_dev=None, dev_domain="source", source_segments=None,
            target_segments=None, *, speakers=None, target_speakers=None, dev_speakers=None):
        """Train on labelled source rows ``X``/``y`` and unlabelled target rows; select the epoch on the dev UAR.

        ``X_target``: unlabelled target rows, or a :class:`~sers.classifiers.fit_data.TargetSet` (rows
        and speakers, passed whole by scikit-learn's searches). ``X_dev``/``y_dev`` (optional, or a
        ``DevSet``) choose the best epoch and early stopping; they are source rows unless
        ``dev_domain="target"``. Without them the last epoch is kept.
        ``speakers``/``target_speakers``/``dev_speakers``: the speaker of each row; given, every set is
        standardised speaker by speaker first (:mod:`sers.classifiers.speakers`), as `sers train` does.
        ``source_segments``/``target_segments`` (``align="vowel"`` only): ``(features, vowel
        classes)`` of the vowel segments of the source and target training utterances.
        """
        prepared = self._prepare_fit(X, y, X_target, X_dev, y_dev, dev_domain, source_segments, target_segments,
                                     speakers=speakers, target_speakers=target_speakers, dev_speakers=dev_speakers)
        branches, aligned, source, label_index, target, dev, y_dev, segments = prepared
        # The CPU kernels used here are deterministic already; asking torch for deterministic
        # algorithms matters on GPUs (and costs a second-long import, so only there).
        on_gpu = torch.device(self.device).type != "cpu"
        deterministic = torch.are_deterministic_algorithms_enabled()
        with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
            try:
                if on_gpu:
                    torch.use_deterministic_algorithms(True, warn_only=True)
                torch.manual_seed(self.seed)
                self._build(branches)
                dev_uar = (None if dev is None else  # dev is standardised already: predicted as it is
                           lambda: uar(y_dev, self._predict_values(dev, dev_domain), self.classes_))
                outcome = train_head(self.module_, self, self._method().aligned_by, self._batches(), branches,
                                     aligned, source, label_index, len(self.classes_),
                                     target=target if self.uses_target() else None, segments=segments,
                                     dev_uar=dev_uar)
            finally:
                if on_gpu:
                    torch.use_deterministic_algorithms(deterministic)
        self._fitted(outcome, None if dev is None else dev_domain)
        return self

    def _fitted(self, outcome, dev_domain) -> None:
        """What training leaves on the estimator (the stacked trainer sets the same)."""
        self.history_, self.best_epoch_, self.best_dev_uar_ = outcome.history, outcome.best_epoch, outcome.best_dev_uar
        self.selection_ = None if dev_domain is None else f"{dev_domain}-dev"

    def _prepare_fit(self, X, y, X_target, X_dev, y_dev, dev_domain, source_segments, target_segments, *,
                     speakers=None, target_speakers=None, dev_speakers=None, stats=None):
        """Every check of ``fit`` and the standardisation statistics (``stats``: reuse these, computed
        already by an estimator of the same layers and normalisation on the same rows); sets
        ``classes_``, ``layers_``, ``n_features_in_``, ``stats_``. Returns (branches, aligned, source,
        label_index, target, dev, y_dev, segments): what training reads."""
        self._validate_params()
        source = self._as_input(X, "X")
        branches, aligned = self._branches(source)
        self.layers_ = sorted({layer for branch in branches for layer in branch})
        missing = sorted(set(self.layers_) - set(source))
        if missing:
            raise InputError(f"X has layers {sorted(source)} but {self.method} needs {missing}; "
                             f"pass them (required_layers() lists what to read)")
        y = fit_data.labels(y, data.n_rows(source))
        self.classes_, label_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise InputError(f"y has one class {self.classes_.tolist()}; need at least two")
        X_target, target_speakers = fit_data.unwrap_target(X_target, target_speakers)
        X_dev, y_dev, dev_speakers = fit_data.unwrap_dev(X_dev, y_dev, dev_speakers)
        if X_target is None and self.uses_target():
            raise InputError(f"method {self.method!r} with lambda_={self.lambda_} aligns the languages and "
                             f"needs unlabelled target rows: pass X_target")
        if dev_domain not in ("source", "target"):
            raise InputError("dev_domain must be 'source' or 'target'")
        by_speaker = fit_data.checked_speakers(speakers, X_target, target_speakers, X_dev, dev_speakers,
                                               self.features, self._uses_segments())
        self.n_features_in_ = source[self.layers_[0]].shape[1]
        source = self._values(source, speakers if by_speaker else None, "X")
        target = None if X_target is None else self._values(
            self._checked_other(X_target, "X_target"), target_speakers, "X_target")
        dev = None
        if X_dev is not None:
            dev = self._values(self._checked_other(X_dev, "X_dev"), dev_speakers, "X_dev")
            y_dev = fit_data.labels(y_dev, data.n_rows(dev), "y_dev")
            unknown = sorted(set(y_dev.tolist()) - set(self.classes_.tolist()), key=str)
            if unknown:
                raise InputError(f"y_dev must give one of the source classes {self.classes_.tolist()} "
                                 f"for each of the {data.n_rows(dev)} rows of X_dev (unknown: {unknown[:5]})")
        segments = self._checked_segments(source_segments, target_segments, branches, aligned, source)

        self.stats_ = (dict(stats) if stats is not None else
                       fit_statistics(self.normalize, source, target, self.layers_, self.features))
        self.speaker_standardised_ = by_speaker
        return branches, aligned, source, label_index, target, dev, y_dev, segments

    def _as_input(self, X, name):
        """A layer dict of pooled features, or FrameFeatures, as ``features`` says."""
        return as_frames(X, name) if self.features == "frames" else data.as_layer_dict(X, name)

    def _values(self, layers_data, speakers, name):
        """The layers this model reads, checked (numbers, finite) and, given ``speakers``, standardised
        speaker by speaker; frame features as they are."""
        if self.features == "frames":
            return layers_data
        if speakers is None:
            return data.checked_layers(layers_data, self.layers_, name)
        return standardise_layers(layers_data, speakers, self.layers_, name)

    def _checked_other(self, X, name):
        """``X`` (target, dev or test rows) with the layers and width of the training rows."""
        other = self._as_input(X, name)
        missing = sorted(set(self.layers_) - set(other))
        if missing:
            alone = " (an (n, D) array is layer 0 alone: pass (n, L, D) or {layer: (n, D)})" if list(other) == [0] else ""
            raise InputError(f"{name} lacks layers {missing}; this model reads layers {self.layers_}{alone}")
        width = other[self.layers_[0]].shape[1]
        if width != self.n_features_in_:
            raise InputError(f"{name} has {width} features, but LayerAnchoringClassifier is expecting "
                             f"{self.n_features_in_} features as input (the width of each layer of X); "
                             "pass features of the same model")
        return other

    def _checked_segments(self, source_segments, target_segments, branches, aligned, source):
        """(source, target) segment sets, validated, when the vowel-level loss is on; else None."""
        if self.align != "vowel" and (source_segments is not None or target_segments is not None):
            raise InputError("source_segments/target_segments are read only with align='vowel'")
        if not self._uses_segments():
            return None
        if source_segments is None or target_segments is None:
            raise InputError("align='vowel' needs source_segments and target_segments: (features, vowel classes) "
                             "of the vowel segments of the source and target training utterances")
        return as_segment_pair(source_segments, target_segments, aligned_layers(branches, aligned),
                               source[self.layers_[0]].shape[1])

    def add_statistics(self, domain: str, X, name: str = "X", *, speakers=None) -> "LayerAnchoringClassifier":
        """Standardise inputs of a new ``domain`` (e.g. "cache": a third corpus) by the statistics of
        ``X`` itself (label-free); ``predict(X, domain=domain)`` then uses them. Returns self."""
        self._check_fitted()
        values = self._input(X, speakers, name)
        self.stats_[domain] = feature_stats([values], self.layers_, self.features, name)
        return self

    def _build(self, branches) -> None:
        self.branches_ = branches
        method = self._method()
        # wsum's one branch of every layer is a learned weighted sum; only lam-gl has groups to choose for.
        combine = {"all": "learned", "groups": self.group_weights}.get(method.branches, "mean")
        self.module_ = LayerHead(self.layers_, branches, self.n_features_in_, len(self.classes_), self.hidden,
                                 self.dropout, combine=combine,
                                 domain_classifier=(method.aligned_by == "gradient-reversal"),
                                 attentive=(self.features == "frames")).to(self.device)

    def _batches(self) -> StandardisedBatches:
        return StandardisedBatches(self.layers_, self.stats_, self.features, self.device)

    # -- predicting -------------------------------------------------------------------

    def predict_proba(self, X, domain="target", batch_size=None, *, speakers=None) -> np.ndarray:
        """(n, n_classes) class probabilities; ``domain`` picks the per-language statistics.

        ``batch_size``: utterances per forward pass (default 4096 pooled, ``self.batch_size`` frames).
        ``speakers``: the speaker of each row; needed when the model was fitted with ``speakers=``
        (each speaker of X is standardised by the statistics of its rows in X).
        """
        return self._forward(self._checked_input(X, domain, speakers), domain, batch_size, self._probabilities)

    def _probabilities(self, x) -> torch.Tensor:
        return torch.softmax(self.module_(*x), dim=1)

    def _predict_values(self, values, domain) -> np.ndarray:
        """Labels of rows checked (and standardised) already: the dev set during fit."""
        return self.classes_[self._forward(values, domain, None, self._probabilities).argmax(axis=1)]

    def embed(self, X, domain="target", batch_size=None, *, speakers=None) -> np.ndarray:
        """(n, hidden) what the classifier reads: the branch embeddings averaged, each weighted by its
        number of layers (the space the alignment acts in; label-free model selection compares
        languages there)."""
        return self._forward(self._checked_input(X, domain, speakers), domain, batch_size,
                             lambda x: self.module_.mix(self.module_.embed(*x)))

    def _forward(self, layers_data, domain, batch_size, output) -> np.ndarray:
        batch_size = batch_size or (4096 if self.features == "pooled" else self.batch_size)
        batches = self._batches()
        self.module_.eval()
        out = []
        with torch.no_grad():
            for start in range(0, data.n_rows(layers_data), batch_size):
                rows = np.arange(start, min(start + batch_size, data.n_rows(layers_data)))
                out.append(output(batches.inputs(layers_data, rows, domain)).cpu().numpy())
        return np.concatenate(out)

    def __sklearn_is_fitted__(self) -> bool:
        # scikit-learn's own test (any attribute ending in "_") would take the parameter lambda_ for one
        return hasattr(self, "module_")

    def _check_fitted(self) -> None:
        try:
            check_is_fitted(self, "module_")
        except NotFittedError:
            raise NotFitted(NOT_FITTED) from None

    def _checked_input(self, X, domain, speakers):
        """The layers of ``X`` this model reads, checked and standardised as its training rows were."""
        self._check_fitted()
        if domain not in self.stats_:
            raise InputError(f"domain must be one of {', '.join(self.stats_)}, not {domain!r}")
        return self._input(X, speakers, "X")

    def _input(self, X, speakers, name):
        standardised = getattr(self, "speaker_standardised_", False)
        if standardised and speakers is None:
            raise InputError(f"this model was fitted on features standardised per speaker (speakers=): pass "
                             f"speakers=, the speaker of each row of {name}")
        if speakers is not None and not standardised:
            raise InputError(f"this model was fitted without speakers=, on features as they are: call it without "
                             f"speakers= (or fit it with them)")
        return self._values(self._checked_other(X, name), speakers, name)

    def predict(self, X, domain="target", *, speakers=None) -> np.ndarray:
        """The class of each row (one of ``classes_``); arguments as :meth:`predict_proba`'s."""
        proba = self.predict_proba(X, domain=domain, speakers=speakers)  # first: it says "not fitted"
        return self.classes_[proba.argmax(axis=1)]

    def score(self, X, y, domain="target", *, speakers=None) -> float:
        """UAR (unweighted average recall) of ``predict(X)`` against ``y``; a class of ``y`` the model
        never learnt counts with recall 0."""
        predicted = self.predict(X, domain=domain, speakers=speakers)
        y = fit_data.labels(y, len(predicted))
        classes = list(self.classes_) + sorted(set(y.tolist()) - set(self.classes_.tolist()), key=str)
        return uar(y, predicted, classes)

    # -- saving -----------------------------------------------------------------------

    def save(self, path) -> None:
        """Write one safetensors file: weights, normalisation statistics and the configuration."""
        self._check_fitted()
        weights.save(self, path)

    @classmethod
    def load(cls, path, device="cpu") -> "LayerAnchoringClassifier":
        """Read a file written by :meth:`save` (plain tensors and JSON; nothing is unpickled)."""
        return weights.load(cls, path, device)
