"""LayerAnchoringClassifier: a scikit-learn style estimator over pooled layer features.

    >>> clf = LayerAnchoringClassifier(method="lam", anchors=[3, 5, 7], lambda_=1.0)
    >>> clf.fit(X_source, y_source, X_target, X_dev=X_dev, y_dev=y_dev)
    >>> clf.score(X_test, y_test)          # UAR

``X_*`` are dicts ``{layer: (n, D) array}`` or ``(n, L, D)`` arrays (see
:mod:`sers.classifiers.data`). ``X_target`` is *unlabelled* target-language data:
the estimator has no argument through which target labels could reach training,
except ``X_dev``/``y_dev`` with ``dev_domain="target"``, which the caller must ask for.

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

import json
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from sers.classifiers import data
from sers.classifiers.constraints import Choices, check_params
from sers.classifiers.data import InputError, NotFitted
from sers.classifiers.frames import as_frames
from sers.classifiers.heads import LayerHead
from sers.classifiers.losses import CORAL_SCALES
from sers.classifiers.methods import METHODS, get_method, names_where
from sers.classifiers.metrics import uar
from sers.classifiers.normalization import NORMALIZE, StandardisedBatches, feature_stats, fit_statistics
from sers.classifiers.segments import aligned_layers, as_segment_pair
from sers.classifiers.training import train_head, vowel_term
from sers.classifiers.options import ALIGN, FEATURES, GROUP_WEIGHTS

WEIGHTS_FORMAT = "sers-layer-anchoring-classifier/1"
NOT_FITTED = "this LayerAnchoringClassifier is not fitted yet; call fit() or load()"


class LayerAnchoringClassifier(ClassifierMixin, BaseEstimator):
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
    (per-domain standardisation), ``module_`` (the torch head), ``history_``, ``best_epoch_``,
    ``best_dev_uar_``, ``selection_``.
    """

    # The rules each parameter follows on its own (checked by fit and required_layers); the rules
    # between parameters (anchors by method, align="vowel" by method) are in _check_combination.
    _parameter_constraints = {
        "method": [Choices(METHODS, "method {value!r} is unknown; choose from {options}")],
        "anchors": ["array-like", None],
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
        "verbose": ["verbose"],
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
        check_params(self._parameter_constraints, self.get_params(deep=False), type(self).__name__)
        self._check_combination()

    def _check_combination(self) -> None:
        method = self._method()
        if method.anchors == "layers" and (
                not self.anchors or not all(isinstance(a, (int, np.integer)) for a in self.anchors)):
            raise InputError(f"method {method.name!r} needs anchors as layer numbers, e.g. anchors=[3, 5, 7] "
                             "(from `sers anchor` or your own choice)")
        if method.anchors == "groups" and (
                not self.anchors or not all(isinstance(g, (list, tuple)) and g for g in self.anchors)):
            raise InputError(f"method {method.name!r} needs anchors as groups of layers, "
                             "e.g. anchors=[[3, 4, 5], [8, 9, 10]]")
        if self.align == "vowel" and not method.vowel:
            raise InputError(f"align='vowel' aligns anchor layers vowel by vowel: it works with methods "
                             f"{' and '.join(names_where(vowel=True))}, not {self.method!r}")
        if self.align == "vowel" and self.features != "pooled":
            raise InputError("align='vowel' compares pooled vowel segments: use it with features='pooled'")

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

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X_source, y_source, X_target=None, X_dev=None, y_dev=None, dev_domain="source",
            source_segments=None, target_segments=None):
        """Train on labelled source rows and unlabelled target rows; select the epoch on the dev UAR.

        ``X_dev``/``y_dev`` (optional) choose the best epoch and early stopping; they are source
        rows unless ``dev_domain="target"``. Without them the last epoch is kept.
        ``source_segments``/``target_segments`` (``align="vowel"`` only): ``(features, vowel
        classes)`` of the vowel segments of the source and target training utterances.
        """
        source = self._as_input(X_source, "X_source")
        branches, aligned = self._branches(source)
        self.layers_ = sorted({layer for branch in branches for layer in branch})
        missing = sorted(set(self.layers_) - set(source))
        if missing:
            raise InputError(f"X_source has layers {sorted(source)} but {self.method} needs {missing}; "
                             f"pass them (required_layers() lists what to read)")
        y = np.asarray(y_source).astype(str)
        if len(y) != data.n_rows(source):
            raise InputError(f"y_source has {len(y)} labels for {data.n_rows(source)} rows of X_source")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise InputError(f"y_source has a single class {self.classes_.tolist()}; need at least two")
        target = self._checked_other(X_target, "X_target", source) if X_target is not None else None
        if target is None and self.uses_target():
            raise InputError(f"method {self.method!r} with lambda_={self.lambda_} aligns the languages and "
                             f"needs unlabelled target rows: pass X_target")
        if (X_dev is None) != (y_dev is None):
            raise InputError("pass both X_dev and y_dev, or neither")
        dev = None
        if X_dev is not None:
            dev = self._checked_other(X_dev, "X_dev", source)
            y_dev = np.asarray(y_dev).astype(str)
            unknown = sorted(set(y_dev) - set(self.classes_))
            if len(y_dev) != data.n_rows(dev) or unknown:
                raise InputError(f"y_dev must give one of the source classes {self.classes_.tolist()} "
                                 f"for each of the {data.n_rows(dev)} rows of X_dev (unknown: {unknown[:5]})")
        if dev_domain not in ("source", "target"):
            raise InputError("dev_domain must be 'source' or 'target'")
        segments = self._checked_segments(source_segments, target_segments, branches, aligned, source)

        self.stats_ = fit_statistics(self.normalize, source, target, self.layers_, self.features)
        self.n_features_in_ = source[self.layers_[0]].shape[1]
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
                dev_uar = (None if dev is None else
                           lambda: uar(y_dev, self.predict(dev, domain=dev_domain), self.classes_))
                outcome = train_head(self.module_, self, self._method().aligned_by, self._batches(), branches,
                                     aligned, source, np.searchsorted(self.classes_, y), len(self.classes_),
                                     target=target if self.uses_target() else None, segments=segments,
                                     dev_uar=dev_uar)
            finally:
                if on_gpu:
                    torch.use_deterministic_algorithms(deterministic)
        self.history_, self.best_epoch_, self.best_dev_uar_ = outcome.history, outcome.best_epoch, outcome.best_dev_uar
        self.selection_ = None if dev is None else f"{dev_domain}-dev"
        return self

    def _as_input(self, X, name):
        """A layer dict of pooled features, or FrameFeatures, as ``features`` says."""
        return as_frames(X, name) if self.features == "frames" else data.as_layer_dict(X, name)

    def _checked_other(self, X, name, source):
        other = self._as_input(X, name)
        missing = sorted(set(self.layers_) - set(other))
        if missing:
            raise InputError(f"{name} lacks layers {missing} that X_source provides")
        width = source[self.layers_[0]].shape[1]
        if other[self.layers_[0]].shape[1] != width:
            raise InputError(f"{name} has dimension {other[self.layers_[0]].shape[1]}, X_source has {width}")
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

    def add_statistics(self, domain: str, X, name: str = "X") -> "LayerAnchoringClassifier":
        """Standardise inputs of a new ``domain`` (e.g. "cache": a third corpus) by the statistics of
        ``X`` itself (label-free); ``predict(X, domain=domain)`` then uses them. Returns self."""
        self._check_fitted()
        self.stats_[domain] = feature_stats([self._as_input(X, name)], self.layers_, self.features, name)
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

    def predict_proba(self, X, domain="target", batch_size=None) -> np.ndarray:
        """(n, n_classes) class probabilities; ``domain`` picks the per-language statistics.

        ``batch_size``: utterances per forward pass (default 4096 pooled, ``self.batch_size`` frames).
        """
        return self._forward(X, domain, batch_size, lambda x: torch.softmax(self.module_(*x), dim=1))

    def embed(self, X, domain="target", batch_size=None) -> np.ndarray:
        """(n, hidden) what the classifier reads: the branch embeddings averaged, each weighted by its
        number of layers (the space the alignment acts in; label-free model selection compares
        languages there)."""
        return self._forward(X, domain, batch_size,
                             lambda x: self.module_.mix(self.module_.embed(*x)))

    def _forward(self, X, domain, batch_size, output) -> np.ndarray:
        layers_data = self._checked_input(X, domain)
        batch_size = batch_size or (4096 if self.features == "pooled" else self.batch_size)
        batches = self._batches()
        self.module_.eval()
        out = []
        with torch.no_grad():
            for start in range(0, data.n_rows(layers_data), batch_size):
                rows = np.arange(start, min(start + batch_size, data.n_rows(layers_data)))
                out.append(output(batches.inputs(layers_data, rows, domain)).cpu().numpy())
        return np.concatenate(out)

    def attention_weights(self, X, domain="target", branch=0, batch_size=None) -> np.ndarray:
        """(total_frames,) attention weight of every frame of ``X`` at one branch, in ``X``'s
        utterance order (each utterance's weights sum to one; a ``per-layer`` group: the mean of its
        layers' weights). ``features="frames"`` only."""
        if self.features != "frames":
            raise InputError("attention_weights needs a model trained with features='frames'")
        X = self._checked_input(X, domain)
        slots, batches = self.module_.branch_slots[branch], self._batches()
        out = []
        self.module_.eval()
        with torch.no_grad():
            for start in range(0, X.n_utterances, batch_size or self.batch_size):
                rows = np.arange(start, min(start + (batch_size or self.batch_size), X.n_utterances))
                frames, mask = batches.inputs(X, rows, domain)
                out.append(self.module_.attention_weights(branch, frames, slots, mask)[mask].cpu().numpy())
        return np.concatenate(out)

    def _check_fitted(self) -> None:
        try:
            check_is_fitted(self, "module_")
        except NotFittedError:
            raise NotFitted(NOT_FITTED) from None

    def _checked_input(self, X, domain):
        self._check_fitted()
        if domain not in self.stats_:
            raise InputError(f"domain must be one of {', '.join(self.stats_)}, not {domain!r}")
        layers_data = self._as_input(X, "X")
        missing = sorted(set(self.layers_) - set(layers_data))
        if missing:
            raise InputError(f"X lacks layers {missing}; this model reads layers {self.layers_}")
        if layers_data[self.layers_[0]].shape[1] != self.n_features_in_:
            raise InputError(f"X has dimension {layers_data[self.layers_[0]].shape[1]}; "
                             f"the model was trained on {self.n_features_in_}")
        return layers_data

    def predict(self, X, domain="target") -> np.ndarray:
        self._check_fitted()
        return self.classes_[self.predict_proba(X, domain=domain).argmax(axis=1)]

    def score(self, X, y, domain="target") -> float:
        """UAR (unweighted average recall) of ``predict(X)`` against ``y``."""
        return uar(np.asarray(y).astype(str), self.predict(X, domain=domain), self.classes_)

    def vowel_coral(self, source_segments, target_segments) -> float:
        """The vowel-level alignment term on whole segment sets, after the trained projections.

        Σ over anchors (groups) of the mean over shared vowel classes of CORAL between the
        projected source and target segments of that vowel: how differently the anchors treat
        each vowel in the two languages. Works for any fitted ``lam``/``lam-gl`` model, so
        ``align="vowel"`` can be compared with ``align="utterance"`` on held-out segments.
        """
        self._check_fitted()
        if not self._method().vowel:
            raise InputError(f"vowel_coral compares anchor layers: methods {' and '.join(names_where(vowel=True))} only")
        aligned = self._branches(self.layers_)[1]
        segments = as_segment_pair(source_segments, target_segments, aligned_layers(self.branches_, aligned),
                                   self.n_features_in_)
        self.module_.eval()
        with torch.no_grad():
            return float(vowel_term(self.module_, self._batches(), self.branches_, aligned, segments,
                                    self.coral_scale))

    def layer_weights(self) -> list[dict[int, float]]:
        """Per branch, the weight of each of its layers (wsum and learned lam-gl groups)."""
        self._check_fitted()
        return [{layer: float(w) for layer, w in zip(branch, self.module_.layer_weights(b).detach().cpu())}
                for b, branch in enumerate(self.branches_)]

    # -- saving -----------------------------------------------------------------------

    def save(self, path) -> None:
        """Write one safetensors file: weights, normalisation statistics and the configuration."""
        from safetensors.torch import save_file

        self._check_fitted()
        tensors = {f"head.{k}": v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}
        for domain, (mean, std) in self.stats_.items():
            tensors[f"stats.{domain}.mean"] = torch.tensor(mean)
            tensors[f"stats.{domain}.std"] = torch.tensor(std)
        spec = {"params": self.get_params(), "classes": self.classes_.tolist(), "layers": self.layers_,
                "branches": self.branches_, "input_dim": self.n_features_in_}
        # One metadata key: safetensors writes several in a random order, and the same model
        # should give the same bytes.
        save_file(tensors, str(path), metadata={"sers": json.dumps({"format": WEIGHTS_FORMAT, **spec})})

    @classmethod
    def load(cls, path, device="cpu") -> "LayerAnchoringClassifier":
        """Read a file written by :meth:`save` (plain tensors and JSON; nothing is unpickled)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            spec = json.loads((handle.metadata() or {}).get("sers", "{}"))
            if spec.get("format") != WEIGHTS_FORMAT:
                raise InputError(f"{path}: not a sers classifier weights file")
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        model = cls(**{**spec["params"], "device": device})
        model.classes_ = np.asarray(spec["classes"])
        model.layers_, model.n_features_in_ = spec["layers"], spec["input_dim"]
        model.stats_ = {domain: (tensors[f"stats.{domain}.mean"].numpy(), tensors[f"stats.{domain}.std"].numpy())
                        for domain in ("source", "target")}
        model._build([list(branch) for branch in spec["branches"]])
        model.module_.load_state_dict({k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")})
        return model

