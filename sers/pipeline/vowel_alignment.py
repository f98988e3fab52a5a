"""`sers train --align vowel`: which runs align vowel by vowel, their segments, what they record.

Vowel-level alignment adds, at each anchor of ``lam`` and ``lam-gl``, the mean over vowel
classes of CORAL between the source and target *segments* of that vowel (see
:mod:`sers.classifiers.segments`). The segments are those of the training utterances of
each side (``source_train``, ``target_train``), read from the caches' ``segments/`` group:
features of the anchor layers and the vowel class, never the emotion label.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sers.classifiers.methods import METHODS, VOWEL_METHODS
from sers.errors import SersError
from sers.pipeline.speakers import segment_features
from sers.classifiers.options import ALIGN



def check_segments(cache, layers) -> None:
    """Refuse, before any feature is read, a cache without the segments of ``layers``."""
    if not cache.has_segments:
        raise SersError(f"{cache.path}: no vowel segments, which --align vowel needs; extract the corpus with "
                        f"--alignments (or add them with `sers segments`)")
    missing = sorted(set(layers) - set(cache.segment_layers))
    if missing:
        raise SersError(f"{cache.path}: vowel segments are stored for layers {cache.segment_layers}, but --align "
                        f"vowel needs the anchor layers {missing}; `sers segments` covers only the frame layers: "
                        f"extract with --alignments to have every layer's segments")


@dataclass
class VowelSegments:
    """The vowel segments of one side's training utterances: features and vowel class, no emotion label."""
    features: dict[int, np.ndarray]   # layer -> (S, D)
    vowels: np.ndarray                # (S,) vowel class of each segment

    def of_layers(self, layers) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """The estimator's ``(features, vowels)`` pair, holding only ``layers``."""
        return {layer: self.features[layer] for layer in layers}, self.vowels

    def counts(self) -> dict[str, int]:
        names, counts = np.unique(self.vowels, return_counts=True)
        return {str(v): int(c) for v, c in zip(names, counts)}


def read_segments(cache, layers, utterance_rows: np.ndarray, name: str, split: str, log=None,
                  share=lambda block, name: block, by_speaker=None) -> VowelSegments:
    """Features of ``layers`` and vowel classes of the segments of ``utterance_rows`` (one split).

    ``name`` ("segments_source" or "segments_target") names the side in messages and the shared
    block: ``share(block, name)`` may put the (layers, S, D) block where worker processes can map it.
    ``by_speaker``: a :class:`~sers.pipeline.speakers.SpeakerStandardiser` of ``cache``, which
    standardises each segment as its utterance.
    """
    check_segments(cache, layers)
    table = cache.segments
    rows = np.flatnonzero(np.isin(table.utterance, utterance_rows))
    if len(rows) == 0:
        raise SersError(f"{cache.path}: no vowel segments in split {split!r}, whose utterances train the "
                        f"{name.split('_')[1]} side of --align vowel")
    if log:
        log(f"reading {len(layers)} layers x {len(rows)} vowel segments from {cache.path}")
    block = share(np.stack([segment_features(cache, layer, rows, by_speaker) for layer in layers]), name)
    return VowelSegments(dict(zip(layers, block)), table.vowel[rows].astype(str))


def run_names(methods, align: str) -> dict[str, tuple[str, str]]:
    """Run name -> (estimator method, align). ``align="vowel"`` turns lam and lam-gl into
    ``lam+vowel`` and ``lam-gl+vowel``; those names may also be given as methods, to compare
    ``lam`` with ``lam+vowel`` in one sweep. Other methods are trained as they are."""
    if align not in ALIGN:
        raise SersError(f"--align must be one of {', '.join(ALIGN)}, not {align!r}")
    runs = {}
    for name in methods:
        method, plus, variant = name.partition("+")
        if method not in METHODS or (plus and variant != "vowel"):
            raise SersError(f"unknown method {name!r}; choose from {', '.join(METHODS)} "
                            f"(and {' '.join(m + '+vowel' for m in VOWEL_METHODS)})")
        if plus and not METHODS[method].vowel:
            raise SersError(f"{name}: vowel-level alignment works on anchor layers, with {' and '.join(VOWEL_METHODS)}")
        vowel = plus or (align == "vowel" and METHODS[method].vowel)
        runs[f"{method}+vowel" if vowel else method] = (method, "vowel" if vowel else "utterance")
    if align == "vowel" and not any(a == "vowel" for _, a in runs.values()):
        raise SersError(f"--align vowel aligns the anchors of {' and '.join(VOWEL_METHODS)}; --method has neither")
    return runs


def alignment_config(template, segment_layers, segments: dict[str, VowelSegments], splits) -> dict:
    """What a run's config.json says about vowel-level alignment (just ``align`` for the others);
    ``segments``: the source and target :class:`VowelSegments`."""
    if template.align != "vowel":
        return {"align": template.align}
    segments = {side: {"split": splits[f"{side}_train"], "n": int(len(segments[side].vowels)),
                       "vowel_counts": segments[side].counts(), "labels_read": "never (vowel classes only)"}
                for side in ("source", "target")}
    weight = template.lambda_ if template.vowel_lambda is None else template.vowel_lambda
    return {"align": "vowel", "vowel_lambda": weight, "segment_layers": segment_layers,
            "segments": segments}
