"""`sers similarity`: how alike are source and target at each layer of the model?

Reads two caches one layer at a time (memory stays near one layer's features),
computes the measures of :mod:`sers.analysis.measures` per layer (on all rows and, at
segment level, per vowel class: :mod:`sers.pipeline.similarity_compare`), and writes
``similarity.json``, ``similarity.csv`` and PNG plots to an output folder
(:mod:`sers.pipeline.similarity_outputs`).

At segment level (vowel segments) the top-level measures pool every vowel, with
centroids per emotion x vowel; ``per_vowel`` repeats the measures on each vowel
class's segments alone (centroids per emotion), ``vowel_counts`` says how many there were.

Label discipline: the target's label column is read only when the user names a
labelled target analysis split (``target_labels``); without it the label-aware
measures are skipped with a note and no output depends on target labels.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import sers.cache
from sers import __version__, atomic
from sers.analysis import measures
from sers.errors import SersError
from sers.pipeline.options import LEVELS
from sers.pipeline.output_lock import locked_output
from sers.pipeline import speakers
from sers.pipeline.similarity_compare import (MIN_VOWEL_SEGMENTS, Comparison, FoldRule,  # noqa: F401
                                              take, vowel_comparisons, vowel_counts)
from sers.pipeline.similarity_outputs import (format_table, similarity_files, to_csv,  # noqa: F401 (re-exported)
                                              write_outputs)

@dataclass
class Sample:
    """The rows of one cache that act as one side of the comparison.

    ``groups`` is the centroid key per row: the emotion label at utterance level;
    at segment level it becomes "emotion/vowel", so centroid measures compare
    matched (emotion x vowel) centroids without changing anything downstream.
    ``labels`` (the emotion, what the probe learns) is None where labels may not be read.
    ``vowels`` (segment level only) is each segment's vowel class: not a label, always read.
    ``speakers`` is each row's speaker ("" where unknown): a speaker's rows stay in one fold of the
    domain classifier and apart in the kernel MMD (:mod:`sers.analysis.separation` says why).
    A segment-level sample overrides :meth:`features` to read the segments' pooled features.
    """
    cache: sers.cache.CacheReader
    rows: np.ndarray
    split: str
    labels: np.ndarray | None = None
    groups: np.ndarray | None = None
    vowels: np.ndarray | None = None
    speakers: np.ndarray | None = None
    by_speaker: speakers.SpeakerStandardiser | None = None  # standardise each speaker by its own statistics

    def features(self, layer: int) -> np.ndarray:
        x = self.cache.pooled(layer, rows=self.rows)
        return x if self.by_speaker is None else self.by_speaker.standardise(layer, x, self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, keep: np.ndarray) -> "Sample":
        def pick(column):
            return None if column is None else column[keep]
        return replace(self, rows=self.rows[keep], labels=pick(self.labels), groups=pick(self.groups),
                       vowels=pick(self.vowels), speakers=pick(self.speakers))

    def speaker_keys(self, positions=None) -> np.ndarray | None:
        """The speakers of the rows at ``positions`` (None: all), or None unless every one is known:
        what keeps a speaker's rows in one fold, and apart in the kernel MMD's within-side pairs."""
        if self.speakers is None:
            return None
        speakers = take(self.speakers, positions)
        return None if (speakers == "").any() else speakers


class SegmentSample(Sample):
    """Vowel segments (rows of ``cache.segments``); centroids per "emotion/vowel"."""

    def features(self, layer: int) -> np.ndarray:
        return speakers.segment_features(self.cache, layer, self.rows, self.by_speaker)


def utterance_sample(cache, split: str, *, role: str, read_labels: bool, labelled_only: bool = False,
                     max_rows: int | None = None, seed: int = 0) -> Sample:
    """Utterances of one split (a seeded sample of at most ``max_rows``), sorted by row."""
    table = cache.utterances
    rows = _choose_rows(cache, table, split, "utterances", role, labelled_only, max_rows, seed)
    labels = table.label[rows].astype(str) if read_labels else None
    return Sample(cache, rows, split, labels, labels, speakers=table.speaker[rows].astype(str))


def segment_sample(cache, split: str, *, role: str, read_labels: bool, labelled_only: bool = False,
                   max_rows: int | None = None, seed: int = 0) -> SegmentSample:
    """Vowel segments of one split's utterances (at most ``max_rows``), grouped by emotion x vowel."""
    if not cache.has_segments:
        raise SersError(f"{cache.path}: this cache has no vowel segments; extract with --alignments")
    table = cache.segments  # each segment carries its utterance's split and label
    rows = _choose_rows(cache, table, split, "vowel segments", role, labelled_only, max_rows, seed)
    vowels, speakers = table.vowel[rows].astype(str), table.speaker[rows].astype(str)
    if not read_labels:
        return SegmentSample(cache, rows, split, vowels=vowels, speakers=speakers)
    labels = table.label[rows].astype(str)
    groups = np.asarray([f"{label}/{vowel}" for label, vowel in zip(labels, vowels)])
    return SegmentSample(cache, rows, split, labels, groups, vowels, speakers)


def _choose_rows(cache, table, split, what, role, labelled_only, max_rows, seed) -> np.ndarray:
    mask = table.mask(split=split)
    if not mask.any():
        splits = sorted(set(cache.utterances.split.astype(str).tolist()))
        raise SersError(f"{cache.path}: the {role} cache has no {what} in split {split!r} "
                        f"(splits: {', '.join(splits) or 'none'})")
    if labelled_only:
        mask &= table.label != ""
        if not mask.any():
            raise SersError(f"{cache.path}: split {split!r} has no labelled {what}")
    rows = np.flatnonzero(mask)
    if max_rows is not None and len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    return rows


@locked_output("out_dir")  # one writer per similarity folder
def compute_similarity(source, target, out_dir=None, *, measures_wanted=None, layers=None,
                       source_split: str = "train", target_split: str = "train",
                       target_labels: str | None = None, level: str = "utterance",
                       max_utterances: int | None = None, seed: int = 0, n_folds: int = 5,
                       speaker_norm: str = "auto", progress: bool = False, overwrite: bool = False
                       ) -> "SimilarityResult":
    """Similarity of two caches per layer; writes the outputs to ``out_dir`` when given (an
    ``out_dir`` holding a similarity.json or .csv is refused unless ``overwrite``).

    ``speaker_norm`` ("auto", "on", "off"): compare the features `sers train` reads, each speaker
    standardised by its own statistics (:mod:`sers.pipeline.speakers`).

    Returns the dict written as similarity.json (see :func:`write_outputs`), with ``summary()``.
    """
    wanted = _check_measures(measures_wanted)
    if out_dir is not None:
        atomic.refuse_existing(*similarity_files(out_dir), overwrite=overwrite)
    if level not in LEVELS:
        raise SersError(f"--level must be one of {', '.join(LEVELS)}, not {level!r}")
    if target_labels is not None and str(target_labels).lower().startswith("test"):
        raise SersError(f"--target-labels {target_labels}: the test split must never guide a choice of layers; "
                        "name a labelled analysis split such as dev")
    with sers.cache.open(source) as src, sers.cache.open(target) as tgt:
        for cache in (src, tgt):
            cache.require_complete()
        src.check_compatible(tgt)
        by_speaker, why_not = speakers.decide(speaker_norm, [src, tgt], level=level)
        make_sample = utterance_sample if level == "utterance" else segment_sample
        options = dict(max_rows=max_utterances, seed=seed)
        source_sample = make_sample(src, source_split, role="source", read_labels=True, **options)
        target_sample = make_sample(tgt, target_split, role="target", read_labels=False, **options)
        source_by, target_by = (speakers.SpeakerStandardiser(c) if by_speaker else None for c in (src, tgt))
        source_sample = replace(source_sample, by_speaker=source_by)
        target_sample = replace(target_sample, by_speaker=target_by)
        layers = _check_layers(layers, _stored_layers(src, tgt, level))
        labelled = None
        if target_labels is not None and any(m in wanted for m in measures.LABEL_AWARE):
            labelled = make_sample(tgt, target_labels, role="target", read_labels=True,
                                   labelled_only=True, **options)
            labelled = replace(labelled, by_speaker=target_by)
        skipped, notes = {}, ([why_not] if why_not else [])
        classes = _label_plan(source_sample, labelled, wanted, skipped, notes)
        if classes:
            labelled = labelled.subset(np.isin(labelled.labels, classes))
        result = _run_layers(source_sample, target_sample, labelled, classes, wanted, layers, n_folds, seed,
                             progress, notes, skipped)
        result.update(skipped=skipped, notes=notes, speaker_standardised=by_speaker)
        result.update(_describe(src, tgt, source_sample, target_sample, labelled, target_labels,
                                level, max_utterances, seed, n_folds))
    result = SimilarityResult(_ordered(result))
    if out_dir is not None:
        result["files"] = [str(p) for p in write_outputs(result, out_dir)]
    return result


class SimilarityResult(dict):
    """What similarity.json holds (a plain dict to read), and the text `sers similarity` prints."""

    def summary(self) -> str:
        lines = [format_table(self), *(f"note: {note}" for note in self["notes"])]
        if "files" in self:
            lines.append(f"wrote {', '.join(self['files'])}")
        return "\n".join(lines)


def _run_layers(source: Sample, target: Sample, labelled: Sample | None, classes: list, wanted, layers,
                n_folds, seed, progress, notes: list, skipped: dict) -> dict:
    """Every measure at every layer, reading one layer of each sample at a time.
    ``classes`` are the emotions the label-aware measures compare ([] = skip them).
    Segment samples are also compared one vowel class at a time (``per_vowel``)."""
    label_aware = [m for m in measures.LABEL_AWARE if m in wanted] if classes else []
    label_free = [m for m in measures.LABEL_FREE if m in wanted]
    use_folds = "domain" in label_free
    for sample in (source, target):
        if len(sample) < (n_folds if use_folds else 2):
            raise SersError(f"{sample.cache.path}: split {sample.split!r} has {len(sample)} utterances; "
                            f"the measures need at least {n_folds if use_folds else 2}")
    folds = FoldRule.of(source, target, n_folds, seed) if use_folds else None
    if folds is not None and folds.refused:
        skipped["domain"] = folds.refused
        notes.append(f"skipped domain: {folds.refused}")
        label_free.remove("domain")
    elif folds is not None and folds.n_folds < n_folds:
        notes.append(f"domain: {folds.n_folds} folds of whole speakers (a side has {folds.n_folds} speakers), "
                     f"not {n_folds}")
    source_keep = np.isin(source.labels, classes) if label_aware else None
    pooled = Comparison.of(source, target, labelled, source_keep, None, label_free, label_aware, folds, seed)
    by_vowel = {} if source.vowels is None else \
        vowel_comparisons(source, target, labelled, source_keep, label_free, label_aware, folds, seed, notes)
    comparisons = [pooled, *by_vowel.values()]

    summaries_s, summaries_t = [], []
    for layer in tqdm(layers, desc="similarity", unit="layer", disable=not progress):
        xs, xt = source.features(layer), target.features(layer)
        for comparison in comparisons:
            comparison.add_label_free(xs, xt)
        del xt
        if label_aware:
            xs_labelled = xs if source_keep.all() else xs[source_keep]  # no copy when all are labelled
            del xs
            xl = labelled.features(layer)
            for comparison in comparisons:
                if comparison.keys:
                    comparison.add_label_aware(xs_labelled, xl)
            pair, (cs, cl) = pooled.pair, pooled.centroids
            summaries_s.append(measures.LayerSummary(pair.mean_s, pair.var_s, cs))
            summaries_t.append(measures.LayerSummary(pair.mean_t, pair.var_t, cl))
            del xs_labelled, xl
    matrices = {name: {"rows": "source layer", "columns": "target layer",
                       "values": measures.cross_layer_matrix(summaries_s, summaries_t, name).tolist()}
                for name, measure in measures.MEASURES.items() if measure.has_matrix and name in pooled.values}
    table = {name: {"direction": measures.MEASURES[name].direction,
                    "label_free": measures.MEASURES[name].label_free,
                    "description": measures.MEASURES[name].description,
                    "values": vals} for name, vals in pooled.values.items()}
    result = {"layers": list(layers), "classes": classes, "centroid_groups": pooled.keys,
              "measures": table, "matrices": matrices, **_ranking_record(table)}
    if "mmd" in table:
        result["mmd_rows"] = {"most_per_side": measures.MMD_ROWS, "source": min(len(source), measures.MMD_ROWS),
                              "target": min(len(target), measures.MMD_ROWS)}
    if "domain" in table:
        result["domain_folds"] = {"n_folds": folds.n_folds, "grouped_by": "speaker" if folds.by_speaker else "row",
                                  "scored_rows": {"most_per_side": measures.DOMAIN_ROWS,
                                                  "source": min(len(source), measures.DOMAIN_ROWS),
                                                  "target": min(len(target), measures.DOMAIN_ROWS)}}
        notes.extend(_below_chance(table["domain"]["values"], layers, source, target, folds))
    if source.vowels is not None:
        result["per_vowel"] = {vowel: comparison.values for vowel, comparison in by_vowel.items()}
        result["vowel_counts"] = vowel_counts(source, target, labelled)
    return result


def _below_chance(values, layers, source: Sample, target: Sample, folds: FoldRule) -> list[str]:
    """A note where the domain classifier scores below chance by more than 3 standard errors of a
    balanced accuracy: with folds of whole speakers that is a side with few speakers (a held-out
    speaker's kind of voice is then under-represented in its own side's training folds), not a
    difference between the samples."""
    floor = 0.5 - 3 * 0.25 * np.sqrt(1 / len(source) + 1 / len(target))
    low = [str(layer) for layer, value in zip(layers, values) if value is not None and value < floor]
    if not low:
        return []
    speakers = min(len(np.unique(sample.speakers)) for sample in (source, target))
    why = (f"a side has only {speakers} speakers, and a held-out speaker's kind of voice is under-represented in "
           "its own side's training folds" if folds.by_speaker else "the folds are of rows, not of whole speakers")
    return [f"domain is below chance (under {floor:.3f}, 3 standard errors) at layer{'s' if len(low) > 1 else ''} "
            f"{', '.join(low)}: {why}; read it as 'not separable' (docs/method.md)"]


def _ranking_record(table: dict) -> dict:
    """``cannot_rank`` ({measure: why}) and ``agreement`` (Kendall's tau between the layer orders of
    every two measures that can rank, +1: the same order; :func:`sers.analysis.measures.ranking_agreement`)."""
    cannot = {name: problem for name, column in table.items()
              if (problem := measures.ranking_problem(name, column["values"]))}
    return {"cannot_rank": cannot, "agreement": measures.ranking_agreement(table)}


def _label_plan(source: Sample, labelled: Sample | None, wanted, skipped: dict, notes: list) -> list:
    """The classes the label-aware measures compare, or [] with the reasons they are skipped."""
    asked = [m for m in measures.LABEL_AWARE if m in wanted]
    if not asked:
        return []
    reason = None
    source_classes = sorted(set(source.labels.tolist()) - {""})
    if labelled is None:
        reason = "needs --target-labels SPLIT (a labelled target analysis split); target labels were not read"
    elif len(source_classes) < 2:
        reason = f"the source split {source.split!r} has fewer than 2 labelled classes"
    else:
        target_classes = sorted(set(labelled.labels.tolist()))
        classes = sorted(set(source_classes) & set(target_classes))
        if len(classes) < 2:
            reason = (f"source classes {source_classes} and target classes {target_classes} "
                      f"share fewer than 2 classes")
        else:
            for side, own in (("source", source_classes), ("target", target_classes)):
                extra = sorted(set(own) - set(classes))
                if extra:
                    notes.append(f"{side} classes {extra} are not in the other corpus; left out of label-aware measures")
            if labelled.split == "test":
                notes.append("target labels come from the test split: keep these numbers out of model selection")
            return classes
    for name in asked:
        skipped[name] = reason
    notes.append(f"skipped {', '.join(asked)}: {reason}")
    return []


def _describe(src, tgt, source: Sample, target: Sample, labelled, target_labels, level,
              max_utterances, seed, n_folds) -> dict:
    source_info = {"cache": str(Path(src.path).resolve()), "model_id": src.model_id,
                   "split": source.split, "n": len(source),
                   "n_labelled": int(np.sum(source.labels != "")),
                   "class_counts": _counts(source.labels[source.labels != ""])}
    target_info = {"cache": str(Path(tgt.path).resolve()), "model_id": tgt.model_id,
                   "split": target.split, "n": len(target), "label_split": target_labels}
    if labelled is not None:
        target_info.update(n_labelled=len(labelled), class_counts=_counts(labelled.labels))
    return {"sers_version": __version__, "level": level, "source": source_info, "target": target_info,
            "labels_used": {"source": source.split, "target": labelled.split if labelled else None},
            "max_utterances": max_utterances, "seed": seed, "n_folds": n_folds}


def _ordered(result: dict) -> dict:
    order = ("sers_version", "level", "speaker_standardised", "source", "target", "labels_used", "max_utterances", "seed",
             "n_folds", "domain_folds", "mmd_rows", "classes", "centroid_groups", "layers", "measures", "cannot_rank",
             "agreement", "matrices", "per_vowel", "vowel_counts", "skipped", "notes")
    return {key: result[key] for key in order if key in result}  # per_vowel: segment level only


def _counts(labels) -> dict:
    names, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def _check_measures(wanted) -> list[str]:
    if wanted is None or list(wanted) in ([], ["all"]):
        return list(measures.MEASURE_NAMES)
    unknown = [m for m in wanted if m not in measures.MEASURE_NAMES]
    if unknown:
        raise SersError(f"unknown measure(s) {', '.join(unknown)}; choose from {', '.join(measures.MEASURE_NAMES)}")
    return [m for m in measures.MEASURE_NAMES if m in wanted]


def _stored_layers(src, tgt, level: str) -> list[int]:
    """Layers both caches hold at this level (segment features may be stored for a few layers)."""
    if level == "utterance":
        return list(range(src.num_layers))
    return sorted(set(src.segment_layers) & set(tgt.segment_layers))


def _check_layers(layers, stored: list[int]) -> list[int]:
    if layers is None:
        return stored
    bad = [layer for layer in layers if layer not in stored]
    if bad:
        raise SersError(f"layers {bad} are not stored in both caches (stored: {_ranges(stored)})")
    return sorted(set(int(layer) for layer in layers))


def _ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts, start = [], None
    for i, layer in enumerate(layers):
        if start is None:
            start = layer
        if i + 1 == len(layers) or layers[i + 1] != layer + 1:
            parts.append(f"{start}-{layer}" if layer > start else f"{start}")
            start = None
    return ", ".join(parts) or "none"
