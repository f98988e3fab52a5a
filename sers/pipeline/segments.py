"""Vowel segments: aligned vowels of each utterance, and their mean features per layer.

Used two ways:

* during `sers extract --alignments ...`: :func:`plan_segments` before the model runs
  (it checks every alignment first, so a wrong folder fails in seconds, not hours), then
  :meth:`SegmentPlan.features` per utterance on the full-rate hidden states of every layer;
* `sers segments CACHE --alignments ...` (:func:`add_segments`): the same segments, from the
  frames already in a cache, for its frame layers, without running the model.

Each vowel segment keeps the phone as aligned, its shared class (see :mod:`sers.inputs.vowels`),
its times in seconds into the utterance, and its model frames [start_frame, end_frame)
(the frame rule of :func:`sers.inputs.alignments.frame_span`). Its features are the mean over
those frames. The cache layout is in :mod:`sers.cache.segments`.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import sers.cache
from sers.inputs.alignments import Alignments, OutsideAudioError, frame_span, open_alignments, utterance_phones
from sers.errors import SersError
from sers.inputs.vowels import BUILTIN_MAPS, SILENCE, VowelMap, load_vowel_map

__all__ = ["SegmentSource", "SegmentPlan", "open_segment_source", "plan_segments", "segment_means",
           "add_segments", "read_segment_attrs"]

_SHOWN = 5  # ids or labels named in a message before "..."


@dataclass
class SegmentSource:
    """Where the alignments are and how their phones map to vowel classes."""

    alignments: Alignments
    vowel_map: VowelMap

    def settings(self) -> dict:
        """What decides the segments: stored with the extraction settings (resume compares it)."""
        return {"alignments": str(self.alignments.source.resolve()), "alignment_format": self.alignments.format,
                "phone_tier": self.alignments.phone_tier, "vowel_map": self.vowel_map.name}


def open_segment_source(alignments, alignment_format=None, phone_tier: str = "phones",
                        vowel_map=None) -> SegmentSource:
    if vowel_map is None:
        raise SersError(f"--alignments needs --vowel-map: one of {', '.join(BUILTIN_MAPS)}, or a JSON file "
                        '{"phone": "class" or null}')
    vowels = load_vowel_map(vowel_map)  # first: a typo in the map name fails before a folder scan
    return SegmentSource(open_alignments(alignments, alignment_format, phone_tier), vowels)


@dataclass
class SegmentPlan:
    """The vowel segments of each row of a cache, before any feature is computed."""

    source: SegmentSource
    columns: dict[int, dict[str, list]]   # row -> start_frame, end_frame, start, end, phone, vowel
    missing: list[str]                    # ids of utterances with no alignment
    vowels: Counter = field(default_factory=Counter)          # class -> segments
    unclassed: Counter = field(default_factory=Counter)       # vowel label -> skipped count
    n_other: int = 0                                          # consonants and other phones skipped

    def features(self, row: int, states) -> tuple[dict, np.ndarray] | None:
        """(columns, (L, s, D) means) of a row's segments from its (L, T, D) full-rate hidden
        states; None when the utterance has no alignment."""
        columns = self.columns.get(row)
        if columns is None:
            return None
        return columns, segment_means(states, columns["start_frame"], columns["end_frame"])

    def attrs(self, computed_from: str, frame_stride: int = 1) -> dict:
        """The `segments/` group attributes: where the segments came from, and what was skipped."""
        return {**self.source.settings(), "computed_from": computed_from, "feature_frame_stride": frame_stride,
                "frame_rule": "frames whose centre (f + 0.5) / frame_rate lies in [start, end); at least one",
                "vowel_classes": self.source.vowel_map.vowel_classes,
                "missing_alignments": list(self.missing),
                "skipped_unclassed_vowels": dict(self.unclassed), "skipped_other_phones": self.n_other}

    def summary(self, stored: Counter | None = None) -> str:
        """One line: vowel segments by class, what was skipped, utterances without alignment."""
        counts = self.vowels if stored is None else stored
        by_class = ", ".join(f"{c} {counts[c]}" for c in sorted(counts))
        unclassed = sum(self.unclassed.values())
        common = ", ".join(f"{label} {n}" for label, n in self.unclassed.most_common(_SHOWN))
        line = (f"vowel segments: {sum(counts.values())} ({by_class or 'none'}); skipped {unclassed} vowels "
                f"without a class{f' ({common})' if common else ''} and {self.n_other} other phones")
        if self.missing:
            shown = ", ".join(self.missing[:_SHOWN]) + (", ..." if len(self.missing) > _SHOWN else "")
            line += (f"; utterances without an alignment: {len(self.missing)} ({shown}; all listed in the "
                     "segments attribute missing_alignments)")
        return line


def plan_segments(source: SegmentSource, table, rows, frame_rate: float, n_frames) -> SegmentPlan:
    """Vowel segments of ``rows`` of ``table`` (columns id, path, start, end, duration: a cache's
    utterance table or extraction's columns). ``n_frames[i]``: model frames of ``rows[i]``.

    Raises SersError when phones lie outside the audio, when no utterance has an alignment,
    or when the vowel map knows none of the aligned phones.
    """
    plan = SegmentPlan(source, {}, [])
    outside, labels_seen = [], Counter()
    for row, frames in zip(rows, n_frames):
        utterance_id = str(table["id"][row])
        try:
            phones = utterance_phones(source.alignments, utterance_id, table["path"][row], table["start"][row],
                                      table["end"][row], float(table["duration"][row]))
        except OutsideAudioError as exc:  # collected: the message says how many
            outside.append(str(exc))
            continue
        if phones is None:
            plan.missing.append(utterance_id)
            continue
        plan.columns[row] = _vowel_columns(plan, phones, frame_rate, int(frames), labels_seen)
    if outside:
        more = f" (and {len(outside) - 1} more utterances)" if len(outside) > 1 else ""
        raise SersError(outside[0] + more)
    if rows and not plan.columns:
        raise SersError(f"none of the {len(rows)} utterances has an alignment in {source.alignments.describe()}; "
                        f"looked for <utterance id> or <audio file name>, e.g. {table['id'][rows[0]]!r}; "
                        f"the alignments are named e.g. {', '.join(source.alignments.names()[:3])}")
    if labels_seen and not plan.vowels and not plan.unclassed:
        raise SersError(f"the vowel map {source.vowel_map.name} knows none of the aligned phones (e.g. "
                        f"{', '.join(label for label, _ in labels_seen.most_common(8))}); choose another --vowel-map")
    return plan


def _vowel_columns(plan: SegmentPlan, phones, frame_rate, n_frames, labels_seen) -> dict[str, list]:
    columns = {name: [] for name in ("start_frame", "end_frame", "start", "end", "phone", "vowel")}
    vowel_map = plan.source.vowel_map
    for phone in phones:
        if phone.label.strip().lower() in SILENCE:
            continue
        labels_seen[phone.label] += 1
        vowel_class = vowel_map.classify(phone.label)
        if vowel_class is None:
            if vowel_map.is_vowel(phone.label):
                plan.unclassed[phone.label] += 1
            else:
                plan.n_other += 1
            continue
        first, stop = frame_span(phone.start, phone.end, frame_rate, n_frames)
        for name, value in zip(columns, (first, stop, phone.start, phone.end, phone.label, vowel_class)):
            columns[name].append(value)
        plan.vowels[vowel_class] += 1
    return columns


def segment_means(states, first_frames, stop_frames) -> np.ndarray:
    """(L, s, D) float32: the mean of states[:, first:stop] for each segment; states (L, T, D)."""
    states = np.asarray(states)
    means = np.empty((states.shape[0], len(first_frames), states.shape[2]), np.float32)
    for i, (first, stop) in enumerate(zip(first_frames, stop_frames)):
        means[:, i] = states[:, first:stop].mean(axis=1, dtype=np.float64)
    return means


# --- `sers segments`: from the frames of an existing cache ---------------------------------------

@dataclass
class SegmentsSummary:
    path: Path
    layers: list[int]
    frame_stride: int
    n_segments: int
    plan: SegmentPlan

    def summary(self) -> str:
        coarse = (f"; frames are stored {self.frame_stride} model frames apart, so each segment averages the "
                  f"stored frames start_frame // {self.frame_stride} to ceil(end_frame / {self.frame_stride})"
                  if self.frame_stride > 1 else "")
        return (f"wrote {self.n_segments} vowel segments for layers {','.join(map(str, self.layers))} "
                f"from stored frames -> {self.path}{coarse}\n{self.plan.summary()}")


def add_segments(path, source: SegmentSource, *, overwrite: bool = False, progress: bool = True) -> SegmentsSummary:
    """Compute the vowel segments of a complete cache from its stored frames (its frame layers),
    writing the cache's `segments/` group; an existing group is replaced only with ``overwrite``."""
    from tqdm.auto import tqdm

    path = Path(path)
    with sers.cache.open(path) as cache:
        cache.require_complete()
        layers, stride, frame_rate = cache.frame_layers, cache.frame_stride, float(cache.frame_rate)
        if not layers:
            raise SersError(f"{path} stores no frames, so its segments cannot be computed afterwards; "
                            "extract again with --alignments (or with --frame-layers)")
        existing = cache.segment_attrs
        if existing and not overwrite and cache.segments_complete:
            raise SersError(f"{path} already has vowel segments (from {existing.get('alignments')}); "
                            "pass --overwrite to replace them")
        table = cache.utterances
        rows = np.arange(len(table))
        # Frame spans are model frames; the model made at most stride x stored frames.
        plan = plan_segments(source, table, rows.tolist(), frame_rate, [int(n) * stride for n in table.n_frames])
    # The writer first: an HDF5 file open read-only cannot be opened for writing as well.
    with sers.cache.SegmentsWriter(path, layers, **plan.attrs("stored frames", stride)) as writer, \
            sers.cache.open(path) as cache:
        stored = Counter()
        for block in tqdm(_row_blocks(rows, plan, table.n_frames), unit="block", disable=not progress,
                          desc="segments"):
            columns, pooled = _block_segments(cache, block, plan, layers, stride)
            writer.append(columns, pooled)
            stored.update(columns["vowel"])
        writer.finish()
    return SegmentsSummary(path, layers, stride, sum(stored.values()), plan)


def _row_blocks(rows, plan: SegmentPlan, n_frames, max_frames: int = 1 << 16):
    """Consecutive rows with segments, about ``max_frames`` stored frames per block (one read per layer)."""
    block, frames = [], 0
    for row in rows:
        if row not in plan.columns:
            continue
        block.append(int(row))
        frames += int(n_frames[row])
        if frames >= max_frames:
            yield block
            block, frames = [], 0
    if block:
        yield block


def _block_segments(cache, block, plan, layers, stride):
    """Columns and (L, s, D) means of the segments of a block of neighbouring rows."""
    blocks = [cache.frame_block(layer, block) for layer in layers]
    stored = np.stack([values.astype(np.float32) for values, _ in blocks])
    offsets, n_frames = blocks[0][1], cache.utterances.n_frames
    columns = {name: [] for name in sers.cache.SEGMENT_COLUMNS}
    pooled = []
    for row, start in zip(block, offsets):
        row_columns = plan.columns[row]
        frames = stored[:, start:start + int(n_frames[row])]
        first = [f // stride for f in row_columns["start_frame"]]
        stop = [math.ceil(f / stride) for f in row_columns["end_frame"]]
        pooled.append(segment_means(frames, first, stop))
        columns["utterance"] += [row] * len(first)
        for name, values in row_columns.items():
            columns[name] += values
    return columns, np.concatenate(pooled, axis=1)


def read_segment_attrs(path) -> dict:
    """The `segments/` group attributes of a cache ({} when it has none)."""
    with sers.cache.open(path) as cache:
        return cache.segment_attrs
