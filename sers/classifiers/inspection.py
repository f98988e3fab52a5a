"""What a fitted LayerAnchoringClassifier tells about itself: frame attention, the vowel-level
alignment term, the weights of its layers (a mixin of the estimator, kept apart from fit/predict)."""
from __future__ import annotations

import numpy as np
import torch

from sers.classifiers.data import InputError
from sers.classifiers.methods import names_where
from sers.classifiers.segments import aligned_layers, as_segment_pair
from sers.classifiers.training import vowel_term


class ModelInspection:
    """Methods of :class:`~sers.classifiers.estimator.LayerAnchoringClassifier` that read a fitted model."""

    def attention_weights(self, X, domain="target", branch=0, batch_size=None) -> np.ndarray:
        """(total_frames,) attention weight of every frame of ``X`` at one branch, in ``X``'s
        utterance order (each utterance's weights sum to one; a ``per-layer`` group: the mean of its
        layers' weights). ``features="frames"`` only."""
        if self.features != "frames":
            raise InputError("attention_weights needs a model trained with features='frames'")
        X = self._checked_input(X, domain, None)
        slots, batches = self.module_.branch_slots[branch], self._batches()
        out = []
        self.module_.eval()
        with torch.no_grad():
            for start in range(0, X.n_utterances, batch_size or self.batch_size):
                rows = np.arange(start, min(start + (batch_size or self.batch_size), X.n_utterances))
                frames, mask = batches.inputs(X, rows, domain)
                out.append(self.module_.attention_weights(branch, frames, slots, mask)[mask].cpu().numpy())
        return np.concatenate(out)

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
