"""Laying out a new cache: the empty arrays, the utterance table, the errors known before
extraction and the root attributes (what :meth:`sers.cache.CacheWriter.create` writes under a
temporary name before it renames the store into place)."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from sers.cache import schema
from sers.cache import segments as segment_store
from sers.cache.backends import open_backend
from sers.errors import SersError


def lay_out(path: Path, utterances, num_layers, hidden_size, pool_stats, frame_layers, frame_dtype,
             pooled_chunk_rows, segment_layers, segment_attrs, errors, attrs) -> None:
    """Write the empty arrays, the utterance table, the known errors and the root attributes."""
    columns = _complete_columns(utterances)
    n_rows = len(columns["id"])
    schema.check_pool_stats(pool_stats)
    bad_layers = [layer for layer in frame_layers if not 0 <= layer < num_layers]
    if bad_layers:
        raise SersError(f"frame layers {bad_layers} do not exist: the model has layers 0-{num_layers - 1}")
    columns["frame_offset"] = np.concatenate([[0], np.cumsum(columns["n_frames"])[:-1]]).astype("int64") \
        if n_rows else np.zeros(0, "int64")
    total_frames = int(columns["n_frames"].sum())

    backend = open_backend(path, "w")
    for name, dtype in schema.UTTERANCE_COLUMNS.items():
        backend.create(f"utterances/{name}", (n_rows,), dtype, chunks=(max(n_rows, 1),))
        if name in schema.STRING_COLUMNS:
            backend.write_strings(f"utterances/{name}", columns[name])
        elif n_rows:
            backend.array(f"utterances/{name}")[:] = columns[name]
    for name in schema.ERROR_COLUMNS:
        backend.create(f"errors/{name}", (0,), object, chunks=(1024,))
    append_errors(backend, errors)
    chunk_rows = pooled_chunk_rows or schema.pooled_chunk_rows(hidden_size)
    for stat in pool_stats:
        backend.create(schema.pooled_name(stat), (num_layers, n_rows, hidden_size),
                       schema.POOLED_DTYPE, chunks=(1, max(1, min(chunk_rows, n_rows)), hidden_size))
    frame_rows = schema.frame_chunk_rows(hidden_size)
    for layer in frame_layers:
        backend.create(schema.frames_name(layer), (total_frames, hidden_size), np.dtype(frame_dtype),
                       chunks=(max(1, min(frame_rows, total_frames)), hidden_size))
    if segment_layers is not None:
        segment_store.create(backend, list(segment_layers), hidden_size, **(segment_attrs or {}))
    backend.set_attrs({
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **attrs,
        "format": schema.FORMAT, "format_version": schema.FORMAT_VERSION,
        "sers_version": _sers_version(), "complete": False,
        "num_layers": int(num_layers), "hidden_size": int(hidden_size),
        "pool_stats": list(pool_stats), "frame_layers": [int(x) for x in frame_layers],
        "frame_dtype": str(np.dtype(frame_dtype)), "n_utterances": n_rows, schema.EVERY_CHUNK_ATTR: True,
    })
    backend.flush()
    backend.close()


def append_errors(backend, errors) -> None:
    errors = [[schema.storable_text(value) for value in error] for error in errors]
    if not errors:
        return
    n = backend.array("errors/id").shape[0]
    for name, values in zip(schema.ERROR_COLUMNS, zip(*errors)):
        backend.array(f"errors/{name}").resize((n + len(values),))
        backend.write_strings(f"errors/{name}", values, start=n)


def _complete_columns(utterances: dict) -> dict:
    if "id" not in utterances:
        raise SersError("utterances need an 'id' column")
    ids = [str(x) for x in utterances["id"]]
    n = len(ids)
    if len(set(ids)) != n:
        duplicates = sorted({x for x in ids if ids.count(x) > 1})[:5]
        raise SersError(f"utterance ids must be unique; repeated: {', '.join(duplicates)}")
    columns = {}
    for name, dtype in schema.UTTERANCE_COLUMNS.items():
        values = utterances.get(name)
        if name == "id":
            columns[name] = np.asarray(ids, dtype=object)
        elif dtype == np.dtype(object):
            columns[name] = np.asarray(["" if v is None else str(v) for v in values] if values is not None
                                       else [""] * n, dtype=object)
        elif values is None:
            columns[name] = np.full(n, np.nan if dtype.kind == "f" else 0, dtype=dtype)
        else:
            columns[name] = np.asarray(values, dtype=dtype)
        if len(columns[name]) != n:
            raise SersError(f"utterance column {name!r} has {len(columns[name])} rows, 'id' has {n}")
    for name, source in schema.FILLED_FROM.items():  # "" there means "as in the source column"
        columns[name] = np.where(columns[name] == "", columns[source], columns[name]).astype(object)
    columns["done"][:] = False
    columns["failed"][:] = False
    return columns


def _sers_version() -> str:
    from sers import __version__

    return __version__
