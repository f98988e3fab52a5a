"""`sers similarity`: how alike are source and target at each layer of the model?

Reads two caches one layer at a time (memory stays near one layer's features),
computes the measures of :mod:`sers.measures` per layer, and writes
``similarity.json``, ``similarity.csv`` and PNG plots to an output folder.

Label discipline: the target's label column is read only when the user names a
labelled target analysis split (``target_labels``); without it the label-aware
measures are skipped with a note and no output depends on target labels.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import sers.cache
from sers import __version__, measures, plots
from sers.errors import SersError

LEVELS = ("utterance", "segment")
LABEL_AWARE = ("centroid-cos", "cka", "probe")


@dataclass
class Sample:
    """The rows of one cache that act as one side of the comparison.

    ``groups`` is the centroid key per row: the emotion label at utterance level;
    at segment level it becomes "emotion/vowel", so centroid measures compare
    matched (emotion x vowel) centroids without changing anything downstream.
    ``labels`` (the emotion, what the probe learns) is None where labels may not be read.
    A segment-level sample overrides :meth:`features` to read the segments' pooled features.
    """
    cache: sers.cache.CacheReader
    rows: np.ndarray
    split: str
    labels: np.ndarray | None = None
    groups: np.ndarray | None = None

    def features(self, layer: int) -> np.ndarray:
        return self.cache.pooled(layer, rows=self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, keep: np.ndarray) -> "Sample":
        return replace(self, rows=self.rows[keep], labels=self.labels[keep], groups=self.groups[keep])


class SegmentSample(Sample):
    """Vowel segments (rows of ``cache.segments``); centroids per "emotion/vowel"."""

    def features(self, layer: int) -> np.ndarray:
        return self.cache.segment_pooled(layer, rows=self.rows)


def utterance_sample(cache, split: str, *, role: str, read_labels: bool, labelled_only: bool = False,
                     max_rows: int | None = None, seed: int = 0) -> Sample:
    """Utterances of one split (a seeded sample of at most ``max_rows``), sorted by row."""
    table = cache.utterances
    rows = _choose_rows(cache, table, split, "utterances", role, labelled_only, max_rows, seed)
    labels = table.label[rows].astype(str) if read_labels else None
    return Sample(cache, rows, split, labels, labels)


def segment_sample(cache, split: str, *, role: str, read_labels: bool, labelled_only: bool = False,
                   max_rows: int | None = None, seed: int = 0) -> SegmentSample:
    """Vowel segments of one split's utterances (at most ``max_rows``), grouped by emotion x vowel."""
    if not cache.has_segments:
        raise SersError(f"{cache.path}: this cache has no vowel segments; extract with --alignments")
    table = cache.segments  # each segment carries its utterance's split and label
    rows = _choose_rows(cache, table, split, "vowel segments", role, labelled_only, max_rows, seed)
    if not read_labels:
        return SegmentSample(cache, rows, split)
    labels = table.label[rows].astype(str)
    groups = np.asarray([f"{label}/{vowel}" for label, vowel in zip(labels, table.vowel[rows])])
    return SegmentSample(cache, rows, split, labels, groups)


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


def compute_similarity(source, target, out_dir=None, *, measures_wanted=None, layers=None,
                       source_split: str = "train", target_split: str = "train",
                       target_labels: str | None = None, level: str = "utterance",
                       max_utterances: int | None = None, seed: int = 0, n_folds: int = 5,
                       progress: bool = False) -> dict:
    """Similarity of two caches per layer; writes the outputs to ``out_dir`` when given.

    Returns the dict written as similarity.json (see :func:`write_outputs`).
    """
    wanted = _check_measures(measures_wanted)
    if level not in LEVELS:
        raise SersError(f"--level must be one of {', '.join(LEVELS)}, not {level!r}")
    with sers.cache.open(source) as src, sers.cache.open(target) as tgt:
        for cache in (src, tgt):
            cache.require_complete()
        src.check_compatible(tgt)
        make_sample = utterance_sample if level == "utterance" else segment_sample
        options = dict(max_rows=max_utterances, seed=seed)
        source_sample = make_sample(src, source_split, role="source", read_labels=True, **options)
        target_sample = make_sample(tgt, target_split, role="target", read_labels=False, **options)
        layers = _check_layers(layers, _stored_layers(src, tgt, level))
        labelled = None
        if target_labels is not None and any(m in wanted for m in LABEL_AWARE):
            labelled = make_sample(tgt, target_labels, role="target", read_labels=True,
                                   labelled_only=True, **options)
        skipped, notes = {}, []
        classes = _label_plan(source_sample, labelled, wanted, skipped, notes)
        if classes:
            labelled = labelled.subset(np.isin(labelled.labels, classes))
        result = _run_layers(source_sample, target_sample, labelled, classes, wanted, layers, n_folds, seed,
                             progress)
        result.update(skipped=skipped, notes=notes)
        result.update(_describe(src, tgt, source_sample, target_sample, labelled, target_labels,
                                level, max_utterances, seed, n_folds))
    result = _ordered(result)
    if out_dir is not None:
        result["files"] = [str(p) for p in write_outputs(result, out_dir)]
    return result


def _run_layers(source: Sample, target: Sample, labelled: Sample | None, classes: list, wanted, layers,
                n_folds, seed, progress) -> dict:
    """Every measure at every layer, reading one layer of each sample at a time.
    ``classes`` are the emotions the label-aware measures compare ([] = skip them)."""
    label_aware = [m for m in LABEL_AWARE if m in wanted] if classes else []
    use_folds = "domain" in wanted
    for sample in (source, target):
        if len(sample) < (n_folds if use_folds else 2):
            raise SersError(f"{sample.cache.path}: split {sample.split!r} has {len(sample)} utterances; "
                            f"the measures need at least {n_folds if use_folds else 2}")
    k = n_folds if use_folds else 1
    folds_s = measures.fold_assignment(len(source), k, seed)
    folds_t = measures.fold_assignment(len(target), k, seed + 1)
    source_keep = np.isin(source.labels, classes) if label_aware else None
    # centroid keys present on both sides (the emotions themselves at utterance level)
    groups = (sorted(set(source.groups[source_keep].tolist()) & set(labelled.groups.tolist()))
              if label_aware else [])

    columns = [c for c in ("coral", "mmd", "domain", "proxy-a-distance") if c in wanted or
               (c == "proxy-a-distance" and "domain" in wanted)] + label_aware
    values = {name: [] for name in columns}
    summaries_s, summaries_t = [], []
    for layer in tqdm(layers, desc="similarity", unit="layer", disable=not progress):
        xs, xt = source.features(layer), target.features(layer)
        ms, mt = measures.compute_moments(xs, folds_s, k), measures.compute_moments(xt, folds_t, k)
        s, t = ms.stats(), mt.stats()
        centre, scale = measures.standardiser_of(s, t)
        if "coral" in values:
            values["coral"].append(measures.coral_from_stats(s, t, centre, scale))
        if "mmd" in values:
            values["mmd"].append(measures.mmd_from_stats(s, t, centre, scale))
        if "domain" in values:
            accuracy, pad = measures.domain_from_moments(xs, ms, folds_s, xt, mt, folds_t, centre, scale)
            values["domain"].append(accuracy)
            values["proxy-a-distance"].append(pad)
        del xt, ms, mt
        if label_aware:
            xs_labelled = xs if source_keep.all() else xs[source_keep]  # no copy when all are labelled
            ys = source.labels[source_keep]
            del xs
            xl = labelled.features(layer)
            cs = measures.class_centroids(xs_labelled, source.groups[source_keep], groups)
            cl = measures.class_centroids(xl, labelled.groups, groups)
            summaries_s.append(measures.LayerSummary(s.mean, np.diag(s.cov).copy(), cs))
            summaries_t.append(measures.LayerSummary(t.mean, np.diag(t.cov).copy(), cl))
            for name in ("centroid-cos", "cka"):
                if name in values:
                    values[name].append(measures.CENTROID_MEASURES[name](cs, cl, centre, scale))
            if "probe" in values:
                values["probe"].append(measures.probe_uar(xs_labelled, ys, xl, labelled.labels))
            del xs_labelled, xl
    matrices = {name: {"rows": "source layer", "columns": "target layer",
                       "values": measures.cross_layer_matrix(summaries_s, summaries_t, name).tolist()}
                for name in ("centroid-cos", "cka") if name in values}
    table = {name: {"direction": measures.MEASURES[name].direction,
                    "label_free": measures.MEASURES[name].label_free,
                    "description": measures.MEASURES[name].description,
                    "values": vals} for name, vals in values.items()}
    return {"layers": list(layers), "classes": classes, "centroid_groups": groups,
            "measures": table, "matrices": matrices}


def _label_plan(source: Sample, labelled: Sample | None, wanted, skipped: dict, notes: list) -> list:
    """The classes the label-aware measures compare, or [] with the reasons they are skipped."""
    asked = [m for m in LABEL_AWARE if m in wanted]
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
    order = ("sers_version", "level", "source", "target", "labels_used", "max_utterances", "seed",
             "n_folds", "classes", "centroid_groups", "layers", "measures", "matrices", "skipped", "notes")
    return {key: result[key] for key in order}


# -- outputs --------------------------------------------------------------------------------

def write_outputs(result: dict, out_dir) -> list[Path]:
    """similarity.json, similarity.csv, similarity.png (curves) and one heatmap per matrix form."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "similarity.json"
    json_path.write_text(json.dumps(_json_safe(result), indent=2) + "\n")
    csv_path = out_dir / "similarity.csv"
    csv_path.write_text(to_csv(result))
    written = [json_path, csv_path]
    table = result["measures"]
    if table:
        written.append(plots.layer_curves(
            result["layers"], {n: m["values"] for n, m in table.items()}, out_dir / "similarity.png",
            directions={n: m["direction"] for n, m in table.items()},
            title=f"{Path(result['source']['cache']).name} vs {Path(result['target']['cache']).name}"))
    for name, matrix in result["matrices"].items():
        written.append(plots.layer_heatmap(matrix["values"], out_dir / f"similarity_{name}.png",
                                           title=f"{name}: source layer vs target layer"))
    return written


def to_csv(result: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(result["measures"])
    writer.writerow(["layer", *names])
    for i, layer in enumerate(result["layers"]):
        writer.writerow([layer, *(_number(result["measures"][n]["values"][i]) for n in names)])
    return buffer.getvalue()


def format_table(result: dict) -> str:
    """Layers x measures for the terminal; '*' marks the best layer of each measure."""
    names = list(result["measures"])
    best = {}
    for name in names:
        vals = np.array([np.nan if v is None else v for v in result["measures"][name]["values"]], float)
        if np.isfinite(vals).any():
            lower = result["measures"][name]["direction"] == "lower"
            best[name] = int(np.nanargmin(vals) if lower else np.nanargmax(vals))
    widths = [max(len(n), 9) for n in names]
    lines = ["layer  " + "  ".join(n.rjust(w) for n, w in zip(names, widths))]
    arrows = ["lower" if result["measures"][n]["direction"] == "lower" else "higher" for n in names]
    lines.append("       " + "  ".join(f"({a})".rjust(w) for a, w in zip(arrows, widths)))
    for i, layer in enumerate(result["layers"]):
        cells = []
        for name, w in zip(names, widths):
            value = result["measures"][name]["values"][i]
            text = "nan" if value is None or not math.isfinite(value) else f"{value:.4g}"
            cells.append((text + ("*" if best.get(name) == i else " ")).rjust(w + 1))
        lines.append(f"{layer:>5} " + " ".join(cells))
    return "\n".join(lines)


def _number(value) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _json_safe(value):
    """NaN/inf become null (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


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
