"""`sers train --features frames`: reading the cached frames of the layers a run needs.

Frames are read once per corpus for the union of the needed layers and the rows of every
part (train, dev, test), as contiguous slices of ``frames/layer_<l>``: utterances that lie
next to each other in the cache are read in one slice. They stay in the stored dtype
(float16), ``frames x D x 2 bytes x layers`` in all; batches are converted to float32.
"""
from __future__ import annotations

import numpy as np

from sers.classifiers.frames import FrameFeatures
from sers.errors import SersError


def check_frame_layers(cache, layers) -> None:
    """Refuse, before anything is read, a cache that lacks the frames of some of ``layers``."""
    missing = sorted(set(int(layer) for layer in layers) - set(cache.frame_layers))
    if missing:
        needed = ",".join(str(layer) for layer in sorted(set(int(layer) for layer in layers)))
        raise SersError(f"{cache.path}: --features frames needs the frames of layers {missing}, but the cache "
                        f"stores frames of layers {cache.frame_layers or 'none'}; extract with --frame-layers {needed}")


def _runs(starts: np.ndarray, stops: np.ndarray) -> list[tuple[int, int]]:
    """Merge [start, stop) ranges (sorted by start) that touch into maximal slices."""
    merged = []
    for start, stop in zip(starts.tolist(), stops.tolist()):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return [(a, b) for a, b in merged]


def read_frames(cache, layers, parts: dict[str, np.ndarray], log=None,
                share=lambda block, name: block) -> dict[str, FrameFeatures]:
    """{part name: FrameFeatures of ``layers``} for the utterance rows of each part, read in one pass.

    ``share(block, name)`` may put each layer's (frames, D) block where worker processes can map it.
    """
    check_frame_layers(cache, layers)
    rows = np.unique(np.concatenate(list(parts.values())))
    offsets = cache.utterances.frame_offset[rows].astype(np.int64)
    lengths = cache.utterances.n_frames[rows].astype(np.int64)
    order = np.argsort(offsets, kind="stable")
    slices = _runs(offsets[order], offsets[order] + lengths[order])
    # Where each cache frame row lands in the compact block: slices are laid end to end.
    slice_starts = np.asarray([a for a, _ in slices])
    slice_positions = np.concatenate([[0], np.cumsum([b - a for a, b in slices])[:-1]])
    which = np.searchsorted(slice_starts, offsets, side="right") - 1
    compact_offsets = slice_positions[which] + offsets - slice_starts[which]
    total = int(sum(b - a for a, b in slices))
    if log:
        itemsize = np.dtype(cache.attrs.get("frame_dtype", "float16")).itemsize
        log(f"reading frames of {len(layers)} layers x {len(rows)} utterances ({total} frames, "
            f"{total * cache.hidden_size * itemsize * len(layers) / 1e6:.0f} MB) from {cache.path}")
    blocks = {}
    for layer in layers:
        block = np.empty((total, cache.hidden_size), dtype=np.dtype(cache.attrs.get("frame_dtype", "float16")))
        for (start, stop), position in zip(slices, slice_positions):
            block[position:position + stop - start] = cache.frame_rows(layer, start, stop)
        blocks[layer] = share(block, f"frames_{next(iter(parts))}_{layer}")
    position_of_row = dict(zip(rows.tolist(), range(len(rows))))
    out = {}
    for name, part in parts.items():
        index = np.asarray([position_of_row[r] for r in part.tolist()], dtype=np.int64)
        out[name] = FrameFeatures(blocks, lengths[index], compact_offsets[index], name=name)
    return out
