"""Source against target on a selection of rows, one layer at a time, for `sers similarity`
(:mod:`sers.pipeline.similarity`): all rows, or one vowel class's segments; and how the
domain classifier's folds are cut for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sers.analysis import measures

if TYPE_CHECKING:
    from sers.pipeline.similarity import Sample

# A vowel class with fewer segments on either side is left out of ``per_vowel`` (with a note):
# a covariance or a held-out fold from a handful of segments says more about noise than layers.
MIN_VOWEL_SEGMENTS = 10


@dataclass
class FoldRule:
    """How the domain classifier's folds are cut: of whole speakers where both sides' speakers
    are known (and at least 2 each), else of rows; ``refused`` says why there can be none (features
    standardised per speaker, whose held-out rows would be tied to the training rows, without
    speakers to group by: see :func:`sers.analysis.measures.fold_assignment`)."""
    n_folds: int
    by_speaker: bool
    standardised: bool
    seed: int
    refused: str | None = None

    @classmethod
    def of(cls, source: Sample, target: Sample, n_folds: int, seed: int) -> "FoldRule":
        k, grouped = measures.fold_plan(source.speaker_keys(), target.speaker_keys(), n_folds)
        standardised = source.by_speaker is not None or target.by_speaker is not None
        refused = None
        if standardised and not grouped:
            refused = ("features standardised per speaker need folds of whole speakers, and a side has fewer "
                       "than 2 speakers")
        return cls(k, grouped, standardised, seed, refused)

    def assign(self, source: Sample, target: Sample, source_rows, target_rows):
        """(folds, source folds, target folds) for these rows of the samples, or None when these rows
        have too few speakers for folds of whole speakers and the features need them."""
        n_s, n_t = len(take(source.rows, source_rows)), len(take(target.rows, target_rows))
        k, groups_s, groups_t = self.n_folds, None, None
        if self.by_speaker:
            groups_s, groups_t = source.speaker_keys(source_rows), target.speaker_keys(target_rows)
            k, grouped = measures.fold_plan(groups_s, groups_t, self.n_folds)
            if not grouped:
                if self.standardised:
                    return None
                k, groups_s, groups_t = self.n_folds, None, None
        return (k, measures.fold_assignment(n_s, k, self.seed, groups_s),
                measures.fold_assignment(n_t, k, self.seed + 1, groups_t))


class Comparison:
    """Source against target on a selection of rows: all of them (the top-level measures)
    or one vowel class's. Rows are positions within the samples (None: all, without a copy);
    the label-aware rows are positions within the source's labelled-class rows and within
    the labelled target sample. ``keys`` are the centroid keys both sides have ([]: no
    label-aware measures here)."""

    def __init__(self, source_rows, target_rows, folds, label_free: list, label_aware: list, seed: int,
                 speakers=(None, None), labelled_rows=(None, None), source_keys=None, source_labels=None, target_keys=None,
                 target_labels=None, keys=()):
        self.source_rows, self.target_rows = source_rows, target_rows
        self.k, self.folds_s, self.folds_t = folds
        self.seed, self.speakers = seed, speakers
        self.labelled_source_rows, self.labelled_rows = labelled_rows
        self.source_keys, self.source_labels = source_keys, source_labels
        self.target_keys, self.target_labels = target_keys, target_labels
        self.keys = list(keys)
        columns = [column for name in label_free for column in measures.MEASURES[name].columns]
        self.values = {name: [] for name in columns + (label_aware if self.keys else [])}
        self.label_free = label_free
        self.pair = self.centroids = None  # of the current layer

    @classmethod
    def of(cls, source: Sample, target: Sample, labelled, source_keep, vowel, label_free, label_aware,
           fold_rule: FoldRule | None, seed: int):
        """All rows (``vowel`` None) or the rows of one vowel class. Where this selection's speakers
        cannot make the domain classifier's folds, it goes without domain."""
        def rows_of(vowels):  # positions of this vowel's rows; None: every row
            return None if vowel is None else np.flatnonzero(vowels == vowel)
        source_rows, target_rows = rows_of(source.vowels), rows_of(target.vowels)
        speakers = source.speaker_keys(source_rows), target.speaker_keys(target_rows)
        folds = (1, None, None)
        if "domain" in label_free:
            folds = fold_rule.assign(source, target, source_rows, target_rows)
            if folds is None:
                label_free, folds = [m for m in label_free if m != "domain"], (1, None, None)
        if not label_aware:
            return cls(source_rows, target_rows, folds, label_free, [], seed, speakers)
        # Centroids: "emotion/vowel" groups over all rows, the emotions within one vowel.
        key = "groups" if vowel is None else "labels"
        ls_rows = rows_of(None if vowel is None else source.vowels[source_keep])
        lt_rows = rows_of(labelled.vowels)
        source_keys = take(getattr(source, key)[source_keep], ls_rows)
        target_keys = take(getattr(labelled, key), lt_rows)
        shared = sorted(set(source_keys.tolist()) & set(target_keys.tolist()))
        return cls(source_rows, target_rows, folds, label_free, label_aware, seed, speakers, (ls_rows, lt_rows),
                   source_keys, take(source.labels[source_keep], ls_rows), target_keys,
                   take(labelled.labels, lt_rows), shared)

    def add_label_free(self, xs, xt) -> None:
        values, self.pair = measures.label_free_at_layer(take(xs, self.source_rows), self.folds_s,
                                                         take(xt, self.target_rows), self.folds_t, self.k,
                                                         self.label_free, self.seed, self.speakers)
        for name, value in values.items():
            self.values[name].append(value)

    def add_label_aware(self, xs_labelled, xl) -> None:
        a, b = take(xs_labelled, self.labelled_source_rows), take(xl, self.labelled_rows)
        cs = measures.class_centroids(a, self.source_keys, self.keys)
        cl = measures.class_centroids(b, self.target_keys, self.keys)
        for name in self.values:
            measure = measures.MEASURES[name]
            if measure.needs == "centroids":
                self.values[name].append(measure.compute(cs, cl, self.pair.centre, self.pair.scale))
            elif measure.needs == "rows":
                self.values[name].append(measure.compute(a, self.source_labels, b, self.target_labels))
        self.centroids = cs, cl


def vowel_comparisons(source, target, labelled, source_keep, label_free, label_aware, fold_rule, seed,
                       notes) -> dict[str, Comparison]:
    """One comparison per vowel class with enough segments on both sides; notes name the rest."""
    minimum = max(MIN_VOWEL_SEGMENTS, fold_rule.n_folds if fold_rule else 1)
    comparisons = {}
    for vowel in sorted(set(source.vowels.tolist()) | set(target.vowels.tolist())):
        n_s, n_t = int(np.sum(source.vowels == vowel)), int(np.sum(target.vowels == vowel))
        if min(n_s, n_t) < minimum:
            notes.append(f"per-vowel measures skip vowel {vowel!r}: {n_s} source and {n_t} target segments "
                         f"(need at least {minimum} on each side)")
            continue
        comparison = Comparison.of(source, target, labelled, source_keep, vowel, label_free, label_aware,
                                    fold_rule, seed)
        if "domain" in label_free and "domain" not in comparison.label_free:
            notes.append(f"per-vowel domain skips vowel {vowel!r}: its segments come from fewer than 2 speakers "
                         "on a side, too few for folds of whole speakers")
        if label_aware:
            n_l = len(comparison.labelled_rows)
            if len(comparison.keys) < 2 or n_l < minimum:
                notes.append(f"per-vowel {', '.join(label_aware)} skip vowel {vowel!r}: {n_l} labelled target "
                             f"segments of {len(comparison.keys)} shared classes (need at least {minimum} "
                             f"segments of 2 classes)")
                comparison = Comparison.of(source, target, None, None, vowel, label_free, [], fold_rule, seed)
        comparisons[vowel] = comparison
    return comparisons


def vowel_counts(source: Sample, target: Sample, labelled: Sample | None) -> dict:
    """Segments per vowel class on each side (the labelled target's only when it was read)."""
    sides = {"source": source, "target": target}
    if labelled is not None:
        sides["target_labelled"] = labelled
    vowels = sorted(set(source.vowels.tolist()) | set(target.vowels.tolist()))
    return {vowel: {side: int(np.sum(sample.vowels == vowel)) for side, sample in sides.items()}
            for vowel in vowels}


def take(x, rows):
    return x if rows is None else x[rows]
