"""The on-disk feature cache: one schema, zarr and HDF5 back-ends.

    >>> import sers.cache
    >>> with sers.cache.open("en.zarr") as cache:
    ...     x = cache.pooled(layer=6, split="train")    # (n, D)

The format itself is documented in docs/cache.md and in :mod:`sers.cache.schema`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sers.cache import journal
from sers.cache.backends import backend_class
from sers.cache.reader import CacheReader, UtteranceTable
from sers.cache.results import ExportResult, ImportResult, MergeResult, UpgradeResult
from sers.cache.schema import FORMAT, FORMAT_VERSION, model_difference
from sers.cache.segments import COLUMNS as SEGMENT_COLUMNS, SegmentsWriter
from sers.cache.writer import CacheWriter
from sers.errors import SersError

__all__ = ["open", "from_arrays", "import_npz", "import_folder", "export", "CacheReader", "CacheWriter",
           "SegmentsWriter", "SEGMENT_COLUMNS", "UtteranceTable", "FORMAT", "FORMAT_VERSION", "size_on_disk",
           "merge", "remove", "exists", "backend_name", "survives_failed_write", "model_difference",
           "MergeResult", "ImportResult", "ExportResult", "upgrade", "UpgradeResult"]

from sers.cache.merge import merge  # noqa: E402  (merge uses the reader and writer above)
from sers.cache.interop import check_features, export, import_folder, import_npz  # noqa: E402
from sers.cache.upgrade import upgrade  # noqa: E402


def size_on_disk(path) -> int:
    """Bytes a cache takes: the file, or every file of the store folder (of an HDF5 cache's journal
    while it is written)."""
    try:
        path = journal.live_store(path)
    except SersError:  # not a cache's suffix: the path as it is
        path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def backend_name(path) -> str:
    """The storage format a cache path names by its suffix ("zarr", "HDF5"); a SersError
    naming the suffixes there are for any other path (check a path before long work)."""
    return backend_class(path).name


def survives_failed_write(path) -> bool:
    """Whether every finished row of the cache at ``path`` stays readable after a write failed
    (a full disk) or a kill: true for zarr (one file per chunk, each replaced atomically) and for
    HDF5 (written into a zarr journal and converted whole, :mod:`sers.cache.journal`)."""
    backend = backend_class(path)
    return backend.survives_failed_write or backend.journaled


def exists(path) -> bool:
    """Whether there is a cache at ``path``: the store, or the journal of an HDF5 cache being written."""
    return journal.exists(path)


def remove(path) -> None:
    """Delete the cache at ``path`` (a store folder or a file, and an HDF5 cache's journal and
    half-made copies); nothing when there is none."""
    journal.remove(path)


def open(path) -> CacheReader:  # noqa: A001 - mirrors zarr.open / h5py.File
    return CacheReader(path)


def from_arrays(path, pooled, utterances: dict, frames: dict | None = None, *,
                overwrite: bool = True, **attrs) -> Path:
    """Write a complete cache from features computed anywhere.

    ``pooled``: (L, N, D) array (the mean) or ``{"mean": ..., "std": ...}``.
    ``utterances``: columns with N rows (a dict, or a pandas DataFrame such as
    ``cache.utterances.to_pandas()``, with ``id`` as its index or a column); ``id`` required, then
    label, split, speaker, language, duration. ``frames``: ``{layer: [array (T_i, D) per utterance]}``.
    ``attrs``: model_id, sample_rate, frame_rate, ... stored as root attributes.
    """
    pooled = {"mean": pooled} if not isinstance(pooled, dict) else dict(pooled)
    utterances = _columns(utterances)
    ids = list(utterances.get("id", []))
    pooled = {stat: check_features(values, f"pooled {stat}", ids, path) for stat, values in pooled.items()}
    num_layers, n_rows, hidden_size = next(iter(pooled.values())).shape
    for stat, values in pooled.items():
        if values.shape != (num_layers, n_rows, hidden_size):
            raise SersError(f"pooled {stat} has shape {values.shape}, expected {(num_layers, n_rows, hidden_size)}")
    columns = dict(utterances)
    frames = frames or {}
    if frames:
        lengths = {layer: [len(f) for f in per_utt] for layer, per_utt in frames.items()}
        first = next(iter(lengths.values()))
        if any(v != first for v in lengths.values()) or len(first) != n_rows:
            raise SersError("frames must give one array per utterance, of equal length across layers")
        columns["n_frames"] = first
    else:
        columns["n_frames"] = np.zeros(n_rows, "int64")
    attrs.setdefault("model_id", "imported")
    attrs.setdefault("pool_stats", list(pooled))
    pool_stats = attrs.pop("pool_stats")
    writer = CacheWriter.create(path, columns, num_layers=num_layers, hidden_size=hidden_size,
                                pool_stats=pool_stats, frame_layers=sorted(frames), overwrite=overwrite,
                                **attrs)
    with writer:
        for row in range(n_rows):
            writer.add(row, {stat: values[:, row] for stat, values in pooled.items()},
                       {layer: np.asarray(per_utt[row]) for layer, per_utt in frames.items()})
        writer.finish()
    return Path(path)


def _columns(utterances) -> dict:
    """The columns of a dict or of a pandas DataFrame: to_pandas() gives the ids as the index, and
    after reset_index() as a column."""
    if not (hasattr(utterances, "columns") and hasattr(utterances, "reset_index")):
        return dict(utterances)
    if "id" not in utterances.columns and utterances.index.name == "id":
        utterances = utterances.reset_index()
    return {str(name): utterances[name].to_numpy(copy=True) for name in utterances.columns}  # copies: laid out in place
