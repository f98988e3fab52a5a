"""Vowel segments, the second unlabelled input of the estimator with ``align="vowel"``.

A segment set is a pair ``(features, vowels)``: the mean features of aligned vowel segments
in the layer format of ``X`` (a dict ``{layer: (S, D) array}`` or an ``(S, L, D)`` array),
and one vowel class per segment (``"a"``, ``"e"``, ...; see :mod:`sers.inputs.vowels`). Segments
carry no emotion label: the vowel-level loss compares source and target segments of the
same *vowel*, which forced alignments give for both languages.
"""
from __future__ import annotations

import numpy as np
import torch

from sers.classifiers import data
from sers.classifiers.data import Cycle, InputError
from sers.classifiers.losses import class_conditional_coral


def aligned_layers(branches: list[list[int]], aligned) -> list[int]:
    """The layers of the aligned branches (for lam and lam-gl: the anchors), sorted."""
    return sorted({layer for b in aligned for layer in branches[b]})


def vowel_coral(head, branches, aligned, source: torch.Tensor, source_vowels, target: torch.Tensor,
                target_vowels, scale: str = "relative") -> torch.Tensor:
    """The vowel-level alignment term: Σ over aligned branches b of the mean over vowel classes v of
    CORAL(P_b source segments of v, P_b target segments of v).

    ``source``/``target``: (segments, layers, D) standardised tensors holding the layers
    :func:`aligned_layers` names, in that order; ``head``: the estimator's :class:`LayerHead`,
    whose branch projections the segments pass through exactly as utterances do.
    """
    layers = aligned_layers(branches, aligned)
    total = torch.zeros((), device=source.device)
    for b in aligned:
        slots = [layers.index(layer) for layer in branches[b]]
        total = total + class_conditional_coral(head.embed_branch(b, source, slots), source_vowels,
                                                head.embed_branch(b, target, slots), target_vowels, scale)
    return total


def as_segments(segments, name: str, layers: list[int], width: int) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Validate ``(features, vowels)`` into ({layer: (S, D)}, (S,) str array of vowel classes)."""
    if not (isinstance(segments, (tuple, list)) and len(segments) == 2):
        raise InputError(f"{name} must be a pair (segment features, vowel class of each segment)")
    features = data.as_layer_dict(segments[0], f"{name} features")
    missing = sorted(set(layers) - set(features))
    if missing:
        raise InputError(f"{name} lacks layers {missing}; the vowel-level loss reads the anchor layers {layers}")
    if features[layers[0]].shape[1] != width:
        raise InputError(f"{name} has dimension {features[layers[0]].shape[1]}, X_source has {width}")
    vowels = np.asarray(segments[1]).astype(str)
    if vowels.shape != (data.n_rows(features),):
        raise InputError(f"{name} gives {vowels.size} vowel classes for {data.n_rows(features)} segments")
    return features, vowels


def as_segment_pair(source_segments, target_segments, layers: list[int], width: int):
    """((source features, vowels), (target features, vowels)), each checked by :func:`as_segments`."""
    return (as_segments(source_segments, "source_segments", layers, width),
            as_segments(target_segments, "target_segments", layers, width))


class VowelBatches:
    """Each step, up to ``batch_size`` segments of every vowel class found on both sides, per side.

    Only classes with at least two segments on each side take part (a covariance needs
    two). Every class cycles through its own segments in shuffled passes, so a rare
    vowel is seen as often as a common one.
    """

    def __init__(self, source_vowels: np.ndarray, target_vowels: np.ndarray, batch_size: int,
                 generator: torch.Generator):
        def counts(vowels):
            names, n = np.unique(vowels, return_counts=True)
            return dict(zip(names.tolist(), n.tolist()))

        source_counts, target_counts = counts(source_vowels), counts(target_vowels)
        self.classes = [v for v in sorted(set(source_counts) & set(target_counts))
                        if source_counts[v] >= 2 and target_counts[v] >= 2]
        if not self.classes:
            raise InputError(f"no vowel class has at least two segments on both sides "
                             f"(source: {source_counts}, target: {target_counts})")
        self.batch_size = batch_size
        # per side, per class: (the class's segment rows, an endless shuffle of them)
        self.sides = [[(rows, Cycle(len(rows), generator))
                       for rows in (np.flatnonzero(vowels == v) for v in self.classes)]
                      for vowels in (source_vowels, target_vowels)]

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(source segment rows, their vowels, target segment rows, their vowels) for one step."""
        out = []
        for side in self.sides:
            rows = [segment_rows[cycle.take(min(self.batch_size, len(segment_rows)))] for segment_rows, cycle in side]
            out += [np.concatenate(rows), np.repeat(self.classes, [len(r) for r in rows])]
        return tuple(out)
