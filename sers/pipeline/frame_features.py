"""`sers train --features frames`: reading the cached frames of the layers a run needs.

Frames are read once per corpus for the union of the needed layers and the rows of every
part (train, dev, test), with :meth:`sers.cache.CacheReader.frame_block`: utterances that lie
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


def read_frames(cache, layers, parts: dict[str, np.ndarray], log=None,
                share=lambda block, name: block, by_speaker=None) -> dict[str, FrameFeatures]:
    """{part name: FrameFeatures of ``layers``} for the utterance rows of each part, read in one pass.

    ``share(block, name)`` may put each layer's (frames, D) block where worker processes can map it.
    ``by_speaker``: a :class:`~sers.pipeline.speakers.SpeakerStandardiser` of ``cache``, which
    standardises each frame by its utterance's speaker statistics.
    """
    check_frame_layers(cache, layers)
    rows = np.unique(np.concatenate(list(parts.values())))
    lengths = cache.utterances.n_frames[rows].astype(np.int64)
    total = int(lengths.sum())
    if log:
        log(f"reading frames of {len(layers)} layers x {len(rows)} utterances ({total} frames, "
            f"{total * cache.hidden_size * cache.frame_dtype.itemsize * len(layers) / 1e6:.0f} MB) from {cache.path}")
    blocks = {}
    offsets = np.cumsum(lengths) - lengths  # rows end to end, as in each block
    for layer in layers:
        block, _ = cache.frame_block(layer, rows)
        if by_speaker is not None:
            block = by_speaker.frames(layer, block, rows, lengths)
        blocks[layer] = share(block, f"frames_{next(iter(parts))}_{layer}")
    position_of_row = dict(zip(rows.tolist(), range(len(rows))))
    out = {}
    for name, part in parts.items():
        index = np.asarray([position_of_row[r] for r in part.tolist()], dtype=np.int64)
        out[name] = FrameFeatures(blocks, lengths[index], offsets[index], name=name)
    return out
