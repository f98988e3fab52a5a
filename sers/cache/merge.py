"""`sers cache merge`: join per-shard caches of one extraction into one cache.

Shards belong together when every setting but the shard index matches, each is
complete, and together they are shards 0..N-1 of the same N. Rows are concatenated
shard after shard; each utterance keeps its features bit for bit.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sers.cache import schema
from sers.cache import segments as segment_store
from sers.cache.reader import CacheReader
from sers.cache.results import MergeResult
from sers.cache.writer import CacheWriter
from sers.errors import SersError

# Attributes that must agree between shards (the rest, such as timings, may differ).
_MUST_MATCH = ("model_id", "model_revision", "model_family", "num_layers", "hidden_size", "pool_stats",
               "frame_layers", "frame_stride", "frame_dtype", "dtype", "manifest_digest", "sample_rate",
               schema.MODEL_DIGEST_ATTR)


def merge(out, shard_paths, *, overwrite: bool = False) -> MergeResult:
    for shard in shard_paths:  # --overwrite would delete that input before it is read
        if Path(shard).resolve() == Path(out).resolve():
            raise SersError(f"{out} is also one of the shards to merge; write the merged cache to a new path")
    shards = [CacheReader(p) for p in shard_paths]
    try:
        _check_shards(shards)
        first = shards[0]
        columns = {name: np.concatenate([s.utterances[name] for s in shards])
                   for name in schema.UTTERANCE_COLUMNS if name not in ("done", "failed", "frame_offset")}
        settings = first.settings
        settings["shard"] = None
        keep = {k: v for k, v in first.attrs.items() if k not in (
            "num_layers", "hidden_size", "pool_stats", "frame_layers", "frame_dtype", "complete",
            "n_utterances", "format", "format_version", "sers_version", "created", "settings")}
        segment_layers, segment_attrs = _segment_layout(shards)
        writer = CacheWriter.create(out, columns, num_layers=first.num_layers, hidden_size=first.hidden_size,
                                    pool_stats=first.pool_stats, frame_layers=first.frame_layers,
                                    frame_dtype=first.frame_dtype,
                                    segment_layers=segment_layers, segment_attrs=segment_attrs,
                                    overwrite=overwrite, settings=settings,
                                    merged_from=[str(s.path) for s in shards], **keep)
        with writer:
            _copy_rows(writer, shards)
            for shard in shards:
                for error in shard.errors:
                    writer.record_error(error["id"], error["path"], error["reason"])
            n_errors = sum(len(s.errors) for s in shards)
            writer.finish(n_failed=n_errors, audio_hours=float(columns["duration"].sum()) / 3600)
    finally:
        for shard in shards:
            shard.close()
    return MergeResult(out, n_shards=len(shards), n_utterances=len(columns["id"]), n_errors=n_errors)


def _check_shards(shards: list[CacheReader]) -> None:
    if not shards:
        raise SersError("cache merge needs at least one shard")
    for shard in shards:
        shard.require_complete()
    first = shards[0]
    for shard in shards[1:]:
        for key in _MUST_MATCH:
            if first.attrs.get(key) != shard.attrs.get(key):
                raise SersError(f"{shard.path} does not belong with {first.path}: {key} is "
                                f"{shard.attrs.get(key)!r} there and {first.attrs.get(key)!r} here")
        if schema.whisper_input(first.attrs) != schema.whisper_input(shard.attrs):
            raise SersError(f"{shard.path} does not belong with {first.path}: extracted with --whisper-input "
                            f"{schema.whisper_input(shard.attrs)} there and {schema.whisper_input(first.attrs)} here")
        mine, theirs = (first.attrs.get("settings") or {}), (shard.attrs.get("settings") or {})
        if mine.get("alignments") != theirs.get("alignments"):
            raise SersError(f"{shard.path} does not belong with {first.path}: extracted with different --alignments")
    labels = [(shard.attrs.get("settings") or {}).get("shard") for shard in shards]
    if all(label is None for label in labels):
        return  # caches with no shard label (e.g. made by from_arrays): ids must still be unique
    if any(label is None for label in labels):
        raise SersError("mixing sharded and unsharded caches; merge the shards of one extraction")
    counts = {int(label.split("/")[1]) for label in labels}
    indices = sorted(int(label.split("/")[0]) for label in labels)
    if len(counts) != 1:
        raise SersError(f"shards come from different --shard totals: {sorted(counts)}")
    total = counts.pop()
    missing = sorted(set(range(total)) - set(indices))
    repeated = sorted({i for i in indices if indices.count(i) > 1})
    if repeated:
        raise SersError(f"shard(s) {repeated} given more than once")
    if missing:
        raise SersError(f"shard(s) {missing} of {total} are missing; pass all {total} shards")


def _segment_layout(shards: list[CacheReader]):
    """Segment layers and attributes of the merged cache; shards must all have segments or none."""
    with_segments = [shard.has_segments for shard in shards]
    if not any(with_segments):
        return None, None
    if not all(with_segments):
        lacking = [str(s.path) for s in shards if not s.has_segments]
        raise SersError(f"some shards have vowel segments and {', '.join(lacking)} do not; "
                        "extract every shard with the same --alignments")
    attrs = dict(shards[0].segment_attrs)
    for shard in shards[1:]:
        if shard.segment_layers != shards[0].segment_layers:
            raise SersError(f"{shard.path} stores segments of layers {shard.segment_layers}, "
                            f"{shards[0].path} of {shards[0].segment_layers}")
    missing = [uid for shard in shards for uid in shard.segment_attrs.get("missing_alignments") or []]
    attrs.pop("layers", None)
    if "missing_alignments" in attrs:
        attrs["missing_alignments"] = missing
    return shards[0].segment_layers, attrs


def _row_segments(shard: CacheReader, rows: np.ndarray):
    """For each row: (columns, pooled (L_seg, s, D)) of its segments, read a block at a time."""
    table = shard.segments
    wanted = np.flatnonzero(np.isin(table.utterance, rows))
    pooled = np.stack([shard.segment_pooled(layer, rows=wanted) for layer in shard.segment_layers])
    out = {}
    for row in rows:
        mine = np.flatnonzero(table.utterance[wanted] == row)
        columns = {name: table[name][wanted[mine]] for name in segment_store.COLUMNS if name != "utterance"}
        out[int(row)] = (columns, pooled[:, mine])
    return out


def _block_frames(shard: CacheReader, layer: int, rows: np.ndarray) -> list[np.ndarray]:
    """Each row's frames, from contiguous reads spanning the block (not one read per utterance)."""
    block, offsets = shard.frame_block(layer, rows)
    return [block[o:o + n] for o, n in zip(offsets, shard.utterances.n_frames[rows])]


def _copy_rows(writer: CacheWriter, shards: list[CacheReader]) -> None:
    row = 0
    for shard in shards:
        n = len(shard.utterances)
        if n == 0:
            continue
        block = 4096  # utterances per copy step: bounded memory, contiguous reads
        for lo in range(0, n, block):
            rows = np.arange(lo, min(lo + block, n))
            pooled = {stat: shard.pooled_layers(range(shard.num_layers), stat=stat, rows=rows)
                      for stat in shard.pool_stats}
            frames = {layer: _block_frames(shard, layer, rows) for layer in shard.frame_layers}
            segments = _row_segments(shard, rows) if shard.has_segments else {}
            for i in range(len(rows)):
                writer.add(row, {stat: values[:, i] for stat, values in pooled.items()},
                           {layer: per_utt[i] for layer, per_utt in frames.items()},
                           segments=segments.get(int(rows[i])))
                row += 1
