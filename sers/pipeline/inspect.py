"""`sers inspect`: what is in a cache, as text a person reads in a terminal."""
from __future__ import annotations

import numpy as np

import sers.cache
from sers.cache import size_on_disk
from sers.display.tables import format_bytes, format_table


def describe_cache(path) -> str:
    with sers.cache.open(path) as cache:
        table = cache.utterances
        status = "complete" if cache.complete else (
            f"NOT FINISHED: {int(cache.all_utterances.done.sum())} of {len(cache.all_utterances)} "
            "utterances extracted; rerun the same `sers extract` to finish")
        frames = cache.frame_layers
        lines = [
            f"cache       {cache.path} ({sers.cache.backend_name(cache.path)}, "
            f"{format_bytes(size_on_disk(cache.path))})",
            f"status      {status}",
            f"model       {cache.model_id} (revision {cache.model_revision or '-'}, "
            f"family {cache.model_family or '-'})",
            f"layers      {cache.num_layers} hidden states (0 = embedding output) x {cache.hidden_size} dims",
            f"pooled      {', '.join(cache.pool_stats)} over frames, padding excluded",
            "frames      " + (f"layers {_ranges(frames)}, stride {cache.frame_stride}, "
                               f"{cache.frame_dtype}, {int(table.n_frames.sum())} frames"
                               if frames else "none stored"),
            f"audio       {len(table)} utterances, {float(np.nansum(table.duration)) / 3600:.3f} h, "
            f"sample rate {cache.sample_rate} Hz, frame rate {cache.frame_rate} /s",
            f"errors      {len(cache.errors)}",
            "",
            _count_table(table),
        ]
        if cache.has_segments:
            lines += ["", *_segment_lines(cache)]
        errors = cache.errors
        if errors:
            lines += ["", "errors (first 10):"] + [f"  {e['id']}: {e['reason']}" for e in errors[:10]]
        return "\n".join(lines)


def describe_utterance(path, utterance_id: str, layer: int) -> str:
    with sers.cache.open(path) as cache:
        frames = cache.frames(utterance_id, layer)
        row = int(np.flatnonzero(cache.utterances.id == utterance_id)[0])
        pooled = cache.pooled(layer, rows=[row])[0]
        info = {name: cache.utterances[name][row] for name in ("label", "split", "speaker", "language")}
        norms = np.linalg.norm(frames, axis=1) if len(frames) else np.zeros(1)
        return "\n".join([
            f"utterance   {utterance_id} ({', '.join(f'{k} {v or chr(45)}' for k, v in info.items())}), "
            f"{cache.utterances.duration[row]:.2f} s",
            f"frames      layer {layer}: shape {frames.shape}",
            f"values      mean {frames.mean():.4f}  std {frames.std():.4f}  min {frames.min():.4f}  "
            f"max {frames.max():.4f}",
            f"frame norm  mean {norms.mean():.4f}  min {norms.min():.4f}  max {norms.max():.4f}",
            f"pooled      mean-pooled norm {np.linalg.norm(pooled):.4f}",
        ])


def _count_table(table) -> str:
    """Counts by split x language (rows) and label (columns)."""
    if len(table) == 0:
        return "no utterances"
    labels = sorted(set(table.label.astype(str))) or [""]
    keys = sorted(set(zip(table.split.astype(str), table.language.astype(str))))
    counts = table.counts("split", "language", "label")
    header = ["split", "language"] + [label or "(none)" for label in labels] + ["total"]
    rows = []
    for split, language in keys:
        cells = [counts.get((split, language, label), 0) for label in labels]
        rows.append([split or "-", language or "-"] + cells + [sum(cells)])
    return format_table(header, rows)


def _segment_lines(cache) -> list[str]:
    """What the vowel segments came from, then their counts by language x vowel (rows) and label."""
    attrs, segments = cache.segment_attrs, cache.segments
    missing = len(attrs.get("missing_alignments") or [])
    lines = [f"segments    {len(segments)} vowel segments, layers {_ranges(cache.segment_layers) or '-'} "
             f"(from {attrs.get('computed_from', '?')}); alignments {attrs.get('alignments')} "
             f"({attrs.get('alignment_format')}), vowel map {attrs.get('vowel_map')}; "
             f"{missing} utterances without alignment"]
    if not cache.segments_complete:
        lines.append("            NOT FINISHED: rerun `sers segments` to write them again")
    if len(segments) == 0:
        return lines
    labels = sorted(set(segments.label.astype(str)))
    counts = segments.counts("language", "vowel", "label")
    header = ["language", "vowel"] + [label or "(none)" for label in labels] + ["total"]
    rows = []
    for language, vowel in sorted({(k[0], k[1]) for k in counts}):
        cells = [counts.get((language, vowel, label), 0) for label in labels]
        rows.append([language or "-", vowel] + cells + [sum(cells)])
    return lines + ["", "vowel segments by language x vowel x emotion:", format_table(header, rows)]


def _ranges(layers) -> str:
    layers = sorted(layers)
    if not layers:
        return ""
    if layers == list(range(layers[0], layers[-1] + 1)) and len(layers) > 2:
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(map(str, layers))

