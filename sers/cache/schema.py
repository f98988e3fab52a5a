"""The cache format, in one place: names, columns, attributes, chunking.

A cache is a zarr store (``*.zarr``) or an HDF5 file (``*.h5``) with this layout
(see docs/cache.md for the reader's view):

    attrs                 FORMAT, FORMAT_VERSION, model and extraction metadata (ROOT_ATTRS)
    utterances/<column>   one 1-D array per column, N rows (UTTERANCE_COLUMNS)
    pooled/<stat>         (L, N, D) float32, chunked (1, rows, D): one layer is one sequential read
    frames/layer_<l>      (total_frames, D) float16; utterance i is rows
                          frame_offset[i] : frame_offset[i] + n_frames[i]
    errors/<column>       id, path, reason of utterances that could not be extracted

The format knows no stage and no model: it only describes arrays.
"""
from __future__ import annotations

import numpy as np

from sers.errors import SersError  # the one leaf module of sers that cache may import

FORMAT = "sers-cache"
FORMAT_VERSION = 1

STRING_COLUMNS = ("id", "path", "label", "split", "speaker", "language", "language_original")
# Columns added after format version 1 shipped, each with the column a cache without it reads in its place
# (and a writer copies into its empty rows): caches of older sers stay readable, no version bump.
# language_original: the language as the input wrote it ("English"), language its ISO code (sers.fields).
FILLED_FROM = {"language_original": "language"}
UTTERANCE_COLUMNS: dict[str, np.dtype] = {
    **{name: np.dtype(object) for name in STRING_COLUMNS},
    "start": np.dtype("float64"),       # seconds into the file; NaN = from the beginning
    "end": np.dtype("float64"),         # NaN = to the end
    "duration": np.dtype("float64"),    # seconds of audio the model saw
    "n_samples": np.dtype("int64"),     # at the model's sample rate
    "n_frames": np.dtype("int64"),      # stored frames (after --frame-stride)
    "frame_offset": np.dtype("int64"),  # first row in frames/layer_<l>
    "done": np.dtype("bool"),           # written and flushed: what resume trusts
    "failed": np.dtype("bool"),         # could not be extracted; reason in errors/
}
ERROR_COLUMNS = ("id", "path", "reason")

POOL_STATS = ("mean", "std")

# Root attributes every cache carries; extraction adds more (model config, settings).
ROOT_ATTRS = (
    "format", "format_version", "sers_version", "created", "complete",
    "model_id", "model_revision", "model_family", "sample_rate", "frame_rate",
    "num_layers", "hidden_size", "pool_stats", "frame_layers", "frame_stride",
    "frame_dtype", "dtype", "settings", "manifest_digest", "n_utterances",
)


def whisper_input(attrs) -> str | None:
    """How Whisper's encoder saw each 30 s window, "padded" or "trimmed" (the root attribute
    "whisper_input", see sers.upstream.whisper); None for other models.

    Caches written before the choice existed have no attribute and were padded.
    """
    if attrs.get("model_family") != "whisper":
        return None
    return attrs.get("whisper_input") or "padded"


# Root attribute: every chunk of every array is in storage (zarr leaves out chunks that are all the
# fill value unless told otherwise), so a chunk that is not there was lost.
EVERY_CHUNK_ATTR = "every_chunk_stored"

POOLED_DTYPE = np.dtype("float32")
DEFAULT_FRAME_DTYPE = np.dtype("float16")


# What identifies the model a cache came from: the digest of its weight files (what the numbers
# depend on) where extraction computed one, and the hub commit; the id or folder path only
# as a fallback, because the same path can hold other weights and the same weights can move.
MODEL_DIGEST_ATTR = "model_weights_sha256"
MODEL_COMMIT_ATTR = "model_commit"


MODEL_DESCRIPTION_KEYS = ("model_id", "model_revision", "num_layers", "hidden_size", MODEL_DIGEST_ATTR,
                          MODEL_COMMIT_ATTR)


def model_description(attrs: dict) -> dict:
    """The root attributes that identify a cache's model and shape, and how Whisper saw the audio:
    what a trained run records."""
    return {**{key: attrs.get(key) for key in MODEL_DESCRIPTION_KEYS}, "whisper_input": whisper_input(attrs)}


def model_difference(mine: dict, theirs: dict) -> tuple[str, object, object] | None:
    """(attribute, mine, theirs) that shows two caches' models differ, or None when they are the same."""
    a, b = mine.get(MODEL_DIGEST_ATTR), theirs.get(MODEL_DIGEST_ATTR)
    if a and b:  # the weights themselves: wherever the folder was, whatever it was called
        return None if a == b else (MODEL_DIGEST_ATTR, a, b)
    a, b = mine.get(MODEL_COMMIT_ATTR), theirs.get(MODEL_COMMIT_ATTR)
    if a and b and a != b and mine.get("model_id") == theirs.get("model_id"):
        return MODEL_COMMIT_ATTR, a, b
    for key in ("model_id", "model_revision"):
        if mine.get(key) != theirs.get(key):
            return key, mine.get(key), theirs.get(key)
    return None


def storable_text(text) -> str:
    """A file name that is not valid UTF-8 (undecodable bytes kept as surrogates by Python)
    cannot be stored as UTF-8 text: it is stored with U+FFFD in place of the bad bytes."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def check_pool_stats(pool_stats) -> list[str]:
    """The pooled statistics asked for, or a SersError naming the ones that do not exist."""
    if not pool_stats or set(pool_stats) - set(POOL_STATS):
        raise SersError(f"--pool {','.join(pool_stats)}: choose from {', '.join(POOL_STATS)}")
    return list(pool_stats)


def dimension_names(name: str) -> tuple[str, ...]:
    """Names of the axes of array ``name``, stored with it (zarr ``dimension_names``) so that
    plain xarray opens each group: ``xr.open_zarr(path, group="pooled")``."""
    group, _, leaf = name.partition("/")
    if group == "pooled":
        return ("layer", "utterance", "dim")
    if group == "frames":
        return ("frame", "dim")
    if group == "segments":
        return ("segment_layer", "segment", "dim") if leaf == "pooled" else ("segment",)
    return {"utterances": ("utterance",), "errors": ("error",)}[group]


def frames_name(layer: int) -> str:
    return f"frames/layer_{layer}"


def pooled_name(stat: str) -> str:
    return f"pooled/{stat}"


def pooled_chunk_rows(hidden_size: int) -> int:
    """Utterances per pooled chunk: about 4 MB of float32 per chunk."""
    return int(np.clip(2**20 // max(hidden_size, 1), 256, 65536))


def frame_chunk_rows(hidden_size: int) -> int:
    """Frames per frame chunk: about 2 MB of float16 per chunk."""
    return int(np.clip(2**20 // max(hidden_size, 1), 512, 65536))


def nonfinite(values) -> tuple[np.ndarray, np.ndarray] | None:
    """(utterance positions, layer positions) holding NaN/inf in (layers, utterances, D) features;
    None when every value is finite. Readers and importers name these in their errors."""
    bad = ~np.isfinite(values).all(axis=2)
    if not bad.any():
        return None
    return np.flatnonzero(bad.any(axis=0)), np.flatnonzero(bad.any(axis=1))
