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
import math
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch.nn import functional as F

from sers.classifiers import data
from sers.classifiers.data import InputError
from sers.classifiers.frames import as_frames, padded_batch
from sers.classifiers.heads import ALIGNING_METHODS, METHODS, LayerHead, method_branches
from sers.classifiers.losses import CORAL_SCALES, coral_loss
from sers.classifiers.metrics import uar
from sers.classifiers.segments import VowelBatches, aligned_layers, as_segment_pair, vowel_coral

WEIGHTS_FORMAT = "sers-layer-anchoring-classifier/1"
ALIGN = ("utterance", "vowel")
VOWEL_METHODS = ("lam", "lam-gl")
FEATURES = ("pooled", "frames")
GROUP_WEIGHTS = ("mean", "learned", "concat")


class LayerAnchoringClassifier(BaseEstimator):
    """Emotion classifier over pooled hidden states, optionally aligned to a target language.

    Parameters
    ----------
    method : "last" | "wsum" | "coral" | "dann" | "lam" | "lam-gl"
        See :mod:`sers.classifiers.heads` for what each one reads and aligns.
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
    group_weights : how the layers of a ``lam-gl`` group are combined before the group's projection:
        "mean", "learned" (softmax weights) or "concat" (side by side: one projection per layer,
        summed; a group of one layer is then exactly a ``lam`` anchor).
    seed : same seed, same data -> identical results on CPU.
    device : "cpu" or a torch device such as "cuda".
    align : "utterance" (CORAL on utterance features) or "vowel" (``lam``/``lam-gl`` only): in
        addition, at each anchor, the mean over vowel classes of CORAL between the source and
        target segments of that vowel (``fit``'s ``source_segments``/``target_segments``); each
        step draws up to ``batch_size`` segments of every vowel class from each side.
    vowel_lambda : weight of the vowel-level term; None = ``lambda_``.
    features : "pooled" (one vector per utterance and layer) or "frames" (``FrameFeatures``
        inputs; attentive pooling per branch, its scoring vectors trained with the head).
    """

    def __init__(self, method="lam", anchors=None, lambda_=1.0, hidden=256, dropout=0.2, epochs=30,
                 batch_size=128, lr=1e-3, weight_decay=0.0, patience=5, normalize="per-language",
                 group_weights="mean", seed=0, device="cpu", verbose=False, align="utterance",
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

    # -- which layers -----------------------------------------------------------------

    def _check_params(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"method {self.method!r} is unknown; choose from {', '.join(METHODS)}")
        if self.method == "lam":
            if not self.anchors or not all(isinstance(a, (int, np.integer)) for a in self.anchors):
                raise InputError("method 'lam' needs anchors as layer numbers, e.g. anchors=[3, 5, 7] "
                                 "(from `sers anchor` or your own choice)")
        if self.method == "lam-gl":
            if not self.anchors or not all(isinstance(g, (list, tuple)) and g for g in self.anchors):
                raise InputError("method 'lam-gl' needs anchors as groups of layers, "
                                 "e.g. anchors=[[3, 4, 5], [8, 9, 10]]")
        checks = [(self.hidden >= 1, "hidden must be >= 1"), (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
                  (self.epochs >= 1, "epochs must be >= 1"), (self.batch_size >= 2, "batch_size must be >= 2"),
                  (self.lr > 0, "lr must be > 0"), (self.lambda_ >= 0, "lambda_ must be >= 0"),
                  ((self.patience or 0) >= 0, "patience must be >= 0"),
                  (self.normalize in data.NORMALIZE, f"normalize must be one of {', '.join(data.NORMALIZE)}"),
                  (self.group_weights in GROUP_WEIGHTS, f"group_weights must be one of {', '.join(GROUP_WEIGHTS)}"),
                  (self.align in ALIGN, f"align must be one of {', '.join(ALIGN)}, not {self.align!r}"),
                  (self.align != "vowel" or self.method in VOWEL_METHODS,
                   f"align='vowel' aligns anchor layers vowel by vowel: it works with methods "
                   f"{' and '.join(VOWEL_METHODS)}, not {self.method!r}"),
                  (self.vowel_lambda is None or self.vowel_lambda >= 0, "vowel_lambda must be >= 0"),
                  (self.coral_scale in CORAL_SCALES,
                   f"coral_scale must be one of {', '.join(CORAL_SCALES)}, not {self.coral_scale!r}"),
                  (self.features in FEATURES, f"features must be one of {', '.join(FEATURES)}, not {self.features!r}"),
                  (self.features == "pooled" or self.align == "utterance",
                   "align='vowel' compares pooled vowel segments: use it with features='pooled'")]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def required_layers(self, num_layers: int) -> list[int]:
        """The layers this configuration reads from a model with ``num_layers`` hidden states."""
        self._check_params()
        branches, _ = method_branches(self.method, self.anchors, range(num_layers))
        layers = sorted({layer for branch in branches for layer in branch})
        if layers[0] < 0 or layers[-1] >= num_layers:
            raise InputError(f"anchors {self.anchors} are outside layers 0-{num_layers - 1}")
        return layers

    def required_segment_layers(self, num_layers: int) -> list[int]:
        """The layers of segment features that ``align="vowel"`` reads: those of the anchors."""
        self.required_layers(num_layers)
        return aligned_layers(*method_branches(self.method, self.anchors, range(num_layers)))

    def _uses_target(self) -> bool:
        return self.method in ALIGNING_METHODS and self.lambda_ > 0

    def _vowel_weight(self) -> float:
        return self.lambda_ if self.vowel_lambda is None else self.vowel_lambda

    def _uses_segments(self) -> bool:
        return self.align == "vowel" and self._vowel_weight() > 0

    # -- fitting ----------------------------------------------------------------------

    def fit(self, X_source, y_source, X_target=None, X_dev=None, y_dev=None, dev_domain="source",
            source_segments=None, target_segments=None):
        """Train on labelled source rows and unlabelled target rows; select the epoch on the dev UAR.

        ``X_dev``/``y_dev`` (optional) choose the best epoch and early stopping; they are source
        rows unless ``dev_domain="target"``. Without them the last epoch is kept.
        ``source_segments``/``target_segments`` (``align="vowel"`` only): ``(features, vowel
        classes)`` of the vowel segments of the source and target training utterances.
        """
        self._check_params()
        source = self._as_input(X_source, "X_source")
        branches, aligned = method_branches(self.method, self.anchors, source)
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
        if target is None and self._uses_target():
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

        self._fit_stats(source, target)
        self.input_dim_ = source[self.layers_[0]].shape[1]
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
                self._train(source, y, target, aligned, dev, y_dev, dev_domain, segments)
            finally:
                if on_gpu:
                    torch.use_deterministic_algorithms(deterministic)
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

    def _fit_stats(self, source, target) -> None:
        if self.normalize == "none":
            stats = data.identity_stats(len(self.layers_), source[self.layers_[0]].shape[1])
            self.stats_ = {"source": stats, "target": stats}
        elif self.normalize == "global":
            sides = [source] + ([target] if target is not None else [])
            stats = self.feature_stats(sides, "X_source/X_target")
            self.stats_ = {"source": stats, "target": stats}
        else:  # per-language; without target rows the target side can only take the source's statistics
            source_stats = self.feature_stats([source], "X_source")
            self.stats_ = {"source": source_stats,
                           "target": self.feature_stats([target], "X_target") if target is not None else source_stats}

    def feature_stats(self, sides, name) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) per read layer over the rows (pooled) or frames (frames) of ``sides``."""
        if self.features == "frames":
            sides = [{layer: side.frames_of(layer) for layer in self.layers_} for side in sides]
        return data.layer_stats(sides, self.layers_, name)

    def _build(self, branches) -> None:
        self.branches_ = branches
        learned = self.method == "wsum" or self.group_weights == "learned"
        self.module_ = LayerHead(self.layers_, branches, self.input_dim_, len(self.classes_), self.hidden,
                                 self.dropout, learned_weights=learned,
                                 domain_classifier=(self.method == "dann"),
                                 concatenate=(self.method == "lam-gl" and self.group_weights == "concat"),
                                 attentive=(self.features == "frames")).to(self.device)

    def _inputs(self, layers_data, rows, domain) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(standardised batch, mask of real frames or None): the arguments of the head's ``embed``."""
        if self.features == "pooled":
            return self._tensor(layers_data, rows, domain), None
        frames, mask = padded_batch(layers_data, self.layers_, rows, self.stats_[domain])
        return torch.from_numpy(frames).to(self.device), torch.from_numpy(mask).to(self.device)

    def _tensor(self, layers_data, rows, domain, layers=None) -> torch.Tensor:
        """Standardised (rows, layers, D) batch; ``layers`` (default: all the model reads) may be a subset."""
        stats = self.stats_[domain]
        if layers is not None:  # segment features: only the anchor layers, with their statistics
            positions = [self.layers_.index(layer) for layer in layers]
            stats = (stats[0][positions], stats[1][positions])
        return torch.from_numpy(data.gather(layers_data, layers or self.layers_, rows, stats)).to(self.device)

    def _vowel_term(self, segments, aligned, rows=None) -> torch.Tensor:
        """The vowel-level term on ``segments`` ((source, target) sets of (features, vowels)): on the
        rows one :meth:`VowelBatches.take` drew, or on every segment (``rows=None``)."""
        (source, source_vowels), (target, target_vowels) = segments
        if rows is None:
            rows = (np.arange(len(source_vowels)), source_vowels, np.arange(len(target_vowels)), target_vowels)
        layers = aligned_layers(self.branches_, aligned)
        return vowel_coral(self.module_, self.branches_, aligned, self._tensor(source, rows[0], "source", layers),
                           rows[1], self._tensor(target, rows[2], "target", layers), rows[3], self.coral_scale)

    def _train(self, source, y, target, aligned, dev, y_dev, dev_domain, segments) -> None:
        model = self.module_
        label_index = np.searchsorted(self.classes_, y)
        counts = np.bincount(label_index, minlength=len(self.classes_))
        # Inverse-frequency class weights, normalised so a balanced corpus gets weight 1.
        class_weights = torch.tensor(len(y) / (len(counts) * counts), dtype=torch.float32, device=self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        shuffle = torch.Generator().manual_seed(self.seed)
        n_batches = max(1, len(y) // self.batch_size)  # equal batches of >= batch_size rows
        target_rows = data.Cycle(data.n_rows(target), shuffle) if self._uses_target() else None
        if segments is not None:  # own generator: the utterance batches stay those of align="utterance"
            vowel_batches = VowelBatches(segments[0][1], segments[1][1], self.batch_size,
                                         torch.Generator().manual_seed(self.seed))
        names = ("loss_ce", "loss_align") + (("loss_vowel",) if segments is not None else ()) + ("loss_total",)
        best_uar, best_state, since_best = -1.0, None, 0
        self.history_ = []
        for epoch in range(1, self.epochs + 1):
            started = time.perf_counter()
            model.train()
            sums = np.zeros(len(names))
            order = torch.randperm(len(y), generator=shuffle).numpy()
            for step, rows in enumerate(np.array_split(order, n_batches)):
                logits_embeddings = model.embed(*self._inputs(source, rows, "source"))
                targets = torch.from_numpy(label_index[rows]).to(self.device)
                ce = F.cross_entropy(model.classify(logits_embeddings), targets, weight=class_weights)
                align = torch.zeros((), device=self.device)
                if target_rows is not None:
                    target_embeddings = model.embed(*self._inputs(target, target_rows.take(len(rows)), "target"))
                    if self.method == "dann":
                        progress = ((epoch - 1) * n_batches + step) / (self.epochs * n_batches)
                        model.domain[0].alpha = self.lambda_ * (2 / (1 + math.exp(-10 * progress)) - 1)
                        align = _domain_loss(model, logits_embeddings, target_embeddings)
                    else:
                        align = sum(coral_loss(logits_embeddings[b], target_embeddings[b], self.coral_scale)
                                    for b in aligned)
                loss = ce + (align if self.method == "dann" else self.lambda_ * align)
                terms = [ce, align]
                if segments is not None:
                    vowel = self._vowel_term(segments, aligned, vowel_batches.take())
                    loss = loss + self._vowel_weight() * vowel
                    terms.append(vowel)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                sums += [t.item() for t in terms + [loss]]
            record = {"epoch": epoch, **dict(zip(names, sums / n_batches))}
            if dev is not None:
                record["dev_uar"] = uar(y_dev, self.predict(dev, domain=dev_domain), self.classes_)
            record["seconds"] = time.perf_counter() - started
            self.history_.append(record)
            if self.verbose:
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if dev is None:
                continue
            if record["dev_uar"] > best_uar:
                best_uar, since_best = record["dev_uar"], 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
                if self.patience and since_best >= self.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        self.best_epoch_ = (max(self.history_, key=lambda r: (r["dev_uar"], -r["epoch"]))["epoch"]
                            if dev is not None else self.history_[-1]["epoch"])
        self.best_dev_uar_ = best_uar if dev is not None else None
        self.selection_ = None if dev is None else f"{dev_domain}-dev"

    # -- predicting -------------------------------------------------------------------

    def predict_proba(self, X, domain="target", batch_size=None) -> np.ndarray:
        """(n, n_classes) class probabilities; ``domain`` picks the per-language statistics.

        ``batch_size``: utterances per forward pass (default 4096 pooled, ``self.batch_size`` frames).
        """
        return self._forward(X, domain, batch_size, lambda x: torch.softmax(self.module_(*x), dim=1))

    def embed(self, X, domain="target", batch_size=None) -> np.ndarray:
        """(n, hidden) what the classifier reads: the mean of the branch embeddings (the space the
        alignment acts in; label-free model selection compares languages there)."""
        return self._forward(X, domain, batch_size,
                             lambda x: torch.stack(self.module_.embed(*x)).mean(dim=0))

    def _forward(self, X, domain, batch_size, output) -> np.ndarray:
        layers_data = self._checked_input(X, domain)
        batch_size = batch_size or (4096 if self.features == "pooled" else self.batch_size)
        self.module_.eval()
        out = []
        with torch.no_grad():
            for start in range(0, data.n_rows(layers_data), batch_size):
                rows = np.arange(start, min(start + batch_size, data.n_rows(layers_data)))
                out.append(output(self._inputs(layers_data, rows, domain)).cpu().numpy())
        return np.concatenate(out)

    def attention_weights(self, X, domain="target", branch=0, batch_size=None) -> np.ndarray:
        """(total_frames,) attention weight of every frame of ``X`` at one branch, in ``X``'s
        utterance order (each utterance's weights sum to one). ``features="frames"`` only."""
        if self.features != "frames":
            raise InputError("attention_weights needs a model trained with features='frames'")
        X = self._checked_input(X, domain)
        slots = self.module_.branch_slots[branch]
        out = []
        self.module_.eval()
        with torch.no_grad():
            for start in range(0, X.n_utterances, batch_size or self.batch_size):
                rows = np.arange(start, min(start + (batch_size or self.batch_size), X.n_utterances))
                frames, mask = self._inputs(X, rows, domain)
                combined = self.module_.combine(branch, frames, slots)
                out.append(self.module_.attention[branch].weights(combined, mask)[mask].cpu().numpy())
        return np.concatenate(out)

    def _checked_input(self, X, domain):
        if not hasattr(self, "module_"):
            raise InputError("this LayerAnchoringClassifier is not fitted yet; call fit() or load()")
        if domain not in self.stats_:
            raise InputError(f"domain must be one of {', '.join(self.stats_)}, not {domain!r}")
        layers_data = self._as_input(X, "X")
        missing = sorted(set(self.layers_) - set(layers_data))
        if missing:
            raise InputError(f"X lacks layers {missing}; this model reads layers {self.layers_}")
        if layers_data[self.layers_[0]].shape[1] != self.input_dim_:
            raise InputError(f"X has dimension {layers_data[self.layers_[0]].shape[1]}; "
                             f"the model was trained on {self.input_dim_}")
        return layers_data

    def predict(self, X, domain="target") -> np.ndarray:
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
        if not hasattr(self, "module_"):
            raise InputError("this LayerAnchoringClassifier is not fitted yet; call fit() or load()")
        if self.method not in VOWEL_METHODS:
            raise InputError(f"vowel_coral compares anchor layers: methods {' and '.join(VOWEL_METHODS)} only")
        aligned = method_branches(self.method, self.anchors, self.layers_)[1]
        segments = as_segment_pair(source_segments, target_segments, aligned_layers(self.branches_, aligned),
                                   self.input_dim_)
        self.module_.eval()
        with torch.no_grad():
            return float(self._vowel_term(segments, aligned))

    def layer_weights(self) -> list[dict[int, float]]:
        """Per branch, the weight of each of its layers (wsum and learned lam-gl groups)."""
        return [{layer: float(w) for layer, w in zip(branch, self.module_.layer_weights(b).detach().cpu())}
                for b, branch in enumerate(self.branches_)]

    # -- saving -----------------------------------------------------------------------

    def save(self, path) -> None:
        """Write one safetensors file: weights, normalisation statistics and the configuration."""
        from safetensors.torch import save_file

        tensors = {f"head.{k}": v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}
        for domain, (mean, std) in self.stats_.items():
            tensors[f"stats.{domain}.mean"] = torch.tensor(mean)
            tensors[f"stats.{domain}.std"] = torch.tensor(std)
        spec = {"params": self.get_params(), "classes": self.classes_.tolist(), "layers": self.layers_,
                "branches": self.branches_, "input_dim": self.input_dim_}
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
        model.layers_, model.input_dim_ = spec["layers"], spec["input_dim"]
        model.stats_ = {domain: (tensors[f"stats.{domain}.mean"].numpy(), tensors[f"stats.{domain}.std"].numpy())
                        for domain in ("source", "target")}
        model._build([list(branch) for branch in spec["branches"]])
        model.module_.load_state_dict({k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")})
        return model


def _domain_loss(model, source_embeddings, target_embeddings) -> torch.Tensor:
    """Binary cross-entropy of the domain classifier (source = 0, target = 1) behind gradient reversal."""
    logits = torch.cat([model.domain_logits(source_embeddings), model.domain_logits(target_embeddings)])
    labels = torch.cat([torch.zeros(len(source_embeddings[0])), torch.ones(len(target_embeddings[0]))])
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.device))
