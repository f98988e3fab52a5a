"""Writing a cache: create it from a plan, add utterances in row order, finish.

The writer never lets an unfinished cache look finished:

* every row has a ``done`` flag, set only after that row's features are on disk;
* the root attribute ``complete`` becomes true only in :meth:`CacheWriter.finish`,
  after every row is done (failed rows count as done; their reason is in ``errors/``);
* pooled rows are buffered and written a whole chunk at a time, then their ``done``
  flags; frames are written as they come (zarr replaces each chunk file atomically).

Reopening an unfinished cache with :meth:`CacheWriter.resume` gives back the rows
still to do; writing them yields the same arrays as an uninterrupted run.

A writer holds the cache's lock file (:mod:`sers.cache.lock`) from create/resume to close,
so two writers never share a cache. A new cache is laid out (with the errors known before
extraction) under a temporary name and renamed into place: a kill during creation leaves
no half-made store at the cache's path.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from sers.cache import schema
from sers.cache import segments as segment_store
from sers.cache.backends import backend_class, open_backend, remove_store
from sers.cache.lock import WriterLock
from sers.errors import SersError


class CacheWriter:
    def __init__(self, backend, lock: WriterLock | None = None):
        self._backend = backend
        self._lock = lock
        attrs = backend.attrs
        self.path = backend.path
        self.num_layers = int(attrs["num_layers"])
        self.hidden_size = int(attrs["hidden_size"])
        self.pool_stats = list(attrs["pool_stats"])
        self.frame_layers = list(attrs.get("frame_layers") or [])
        self.n_rows = int(attrs["n_utterances"])
        self._frame_offset = backend.array("utterances/frame_offset")[:]
        self._n_frames = backend.array("utterances/n_frames")[:]
        self._done = backend.array("utterances/done")[:]
        # Rows per pooled chunk, as laid out on disk (a chunk is written once it is whole).
        self._chunk_rows = int(backend.array(schema.pooled_name(self.pool_stats[0])).chunks[1])
        self._buffer: dict[int, tuple[dict, bool, tuple | None]] = {}
        self._forget_errors_of_pending_rows()
        self.segment_layers = segment_store.layers(backend) if segment_store.exists(backend) else None
        if self.segment_layers is not None:
            segment_store.drop_unfinished(backend, self._done)
        # Rows still to write per pooled chunk: a chunk is written once all of them are buffered.
        chunks, counts = np.unique(self.pending_rows() // self._chunk_rows, return_counts=True)
        self._pending_per_chunk = dict(zip(chunks.tolist(), counts.tolist()))
        self._buffered_per_chunk: dict[int, int] = {}

    # -- creating and reopening -------------------------------------------------------

    @classmethod
    def create(cls, path, utterances: dict, *, num_layers: int, hidden_size: int,
               pool_stats=("mean",), frame_layers=(), frame_dtype="float16",
               pooled_chunk_rows: int | None = None, segment_layers=None, segment_attrs=None,
               overwrite: bool = False, errors=(), whisper_input: str | None = None,
               **attrs) -> "CacheWriter":
        """Lay out an empty cache for the utterances (columns in row order).

        ``utterances`` needs ``id``; ``n_frames`` (stored frames per utterance)
        when ``frame_layers`` is not empty; other columns default to empty/NaN/0.
        ``pooled_chunk_rows``: utterances per pooled chunk (default about 4 MB); rows
        become ``done`` a whole chunk at a time, so it is also the resume granularity.
        ``segment_layers``: layers whose aligned-segment features ``add`` will receive.
        ``errors``: (id, path, reason) of utterances that failed before extraction (unreadable
        files): stored with the layout, so that no manifest row is ever neither a row nor an error.
        ``whisper_input``: how a Whisper encoder saw its windows ("padded"/"trimmed"; None for
        other models, stored only when given). ``attrs``: more root attributes (model_id, ...).
        """
        path = Path(path)
        if whisper_input is not None:
            attrs["whisper_input"] = whisper_input
        backend_class(path)  # a wrong suffix fails before the lock file is made
        lock = WriterLock(path).acquire()
        partial = path.with_name(f".{path.stem}.creating{path.suffix}")
        try:
            if path.exists() and not overwrite:
                raise SersError(f"{path} already exists; pass --overwrite to replace it")
            remove_store(partial)  # left by a run killed while creating
            _lay_out(partial, utterances, num_layers, hidden_size, pool_stats, frame_layers, frame_dtype,
                     pooled_chunk_rows, segment_layers, segment_attrs, errors, attrs)
            remove_store(path)
            partial.rename(path)
            return cls(open_backend(path, "a"), lock)
        except BaseException:
            remove_store(partial)
            lock.release()
            raise

    @classmethod
    def resume(cls, path) -> "CacheWriter":
        lock = WriterLock(path).acquire()
        try:
            backend = open_backend(path, "a")
        except Exception as exc:  # noqa: BLE001 - h5py/zarr raise OSError, KeyError, ... for a damaged store
            lock.release()
            raise SersError(f"{path} exists but cannot be opened as a cache ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'damaged'}); it was probably cut off "
                            "while being created: pass --overwrite to start it again") from None
        if backend.attrs.get("format") != schema.FORMAT:
            backend.close()
            lock.release()
            raise SersError(f"{path} exists and is not a sers cache; choose another --out or pass --overwrite")
        return cls(backend, lock)

    @property
    def attrs(self) -> dict:
        return self._backend.attrs

    @property
    def settings(self) -> dict:
        """The extraction settings stored when the cache was laid out ({} when none)."""
        return dict(self.attrs.get("settings") or {})

    @property
    def whisper_input(self) -> str | None:
        """"padded" or "trimmed" for a Whisper cache (old ones: padded); None for other models."""
        return schema.whisper_input(self.attrs)

    @property
    def complete(self) -> bool:
        """Every row is written and :meth:`finish` marked the cache complete."""
        return bool(self.attrs.get("complete"))

    @property
    def chunk_rows(self) -> int:
        """Rows per pooled chunk: rows are flushed (and become done) a whole chunk at a time."""
        return self._chunk_rows

    def pending_rows(self) -> np.ndarray:
        """Rows not yet on disk, in increasing order."""
        return np.flatnonzero(~self._done)

    def frame_span(self, row: int) -> tuple[int, int]:
        start = int(self._frame_offset[row])
        return start, start + int(self._n_frames[row])

    # -- adding rows --------------------------------------------------------------------

    def add(self, row: int, pooled: dict[str, np.ndarray], frames: dict[int, np.ndarray] | None = None,
            segments: tuple[dict, np.ndarray] | None = None):
        """Store one utterance: ``pooled[stat]`` is (L, D); ``frames[layer]`` is (n_frames, D);
        ``segments`` is (columns of its s segments, pooled (len(segment_layers), s, D))."""
        for stat in self.pool_stats:
            if pooled[stat].shape != (self.num_layers, self.hidden_size):
                raise ValueError(f"row {row}: pooled {stat} has shape {pooled[stat].shape}, "
                                 f"expected {(self.num_layers, self.hidden_size)}")
        start, stop = self.frame_span(row)
        for layer in self.frame_layers:
            values = frames[layer]
            if values.shape != (stop - start, self.hidden_size):
                raise ValueError(f"row {row}: frames of layer {layer} have shape {values.shape}, "
                                 f"expected {(stop - start, self.hidden_size)}")
            if stop > start:
                self._backend.array(schema.frames_name(layer))[start:stop] = values
        self._buffer_row(row, pooled, failed=False, segments=segments)

    def add_failure(self, row: int, utterance_id: str, path: str, reason: str) -> None:
        """The utterance could not be extracted: zero features, ``failed``, and an errors/ row."""
        self.record_error(utterance_id, path, reason)
        zeros = np.zeros((self.num_layers, self.hidden_size), schema.POOLED_DTYPE)
        self._buffer_row(row, {stat: zeros for stat in self.pool_stats}, failed=True)

    def record_error(self, utterance_id: str, path: str, reason: str) -> None:
        self.record_errors([(utterance_id, path, reason)])

    def record_errors(self, errors) -> None:
        """Append (id, path, reason) rows to ``errors/``, one resize per column."""
        _append_errors(self._backend, errors)

    def _forget_errors_of_pending_rows(self) -> None:
        """A failure is recorded at once but its row is done only at the next flush: after an
        interruption the row is extracted again, so its earlier error row must go."""
        pending = self.pending_rows()
        errors = {name: self._backend.read_strings(f"errors/{name}") for name in schema.ERROR_COLUMNS}
        if not len(pending) or not len(errors["id"]):
            return
        pending_ids = set(self._backend.read_strings("utterances/id")[pending])
        keep = np.asarray([uid not in pending_ids for uid in errors["id"]], bool)
        if keep.all():
            return
        for name, values in errors.items():
            self._backend.array(f"errors/{name}").resize((int(keep.sum()),))
            if keep.any():
                self._backend.write_strings(f"errors/{name}", values[keep])

    def flush(self) -> None:
        """Write every buffered row and mark it done."""
        rows = sorted(self._buffer)
        if not rows:
            return
        # Contiguous runs keep each write a slice, which both back-ends do fastest.
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(np.asarray(rows), breaks):
            first, last = int(run[0]), int(run[-1]) + 1
            for stat in self.pool_stats:
                block = np.stack([self._buffer[r][0][stat] for r in run], axis=1)
                self._backend.array(schema.pooled_name(stat))[:, first:last] = block
        self._append_segments(rows)
        failed = [r for r in rows if self._buffer[r][1]]
        if failed:
            failed_column = self._backend.array("utterances/failed")
            flags = failed_column[:]
            flags[failed] = True
            failed_column[:] = flags
        self._backend.flush()
        self._done[rows] = True
        self._backend.array("utterances/done")[:] = self._done  # last: what resume trusts
        self._backend.flush()
        for chunk, count in self._buffered_per_chunk.items():
            self._pending_per_chunk[chunk] -= count
        self._buffer.clear()
        self._buffered_per_chunk.clear()

    def _append_segments(self, rows: list[int]) -> None:
        with_segments = [r for r in rows if self._buffer[r][2] is not None and len(self._buffer[r][2][1][0])]
        if self.segment_layers is None or not with_segments:
            return
        columns = {name: [] for name in segment_store.COLUMNS}
        for row in with_segments:
            row_columns, row_pooled = self._buffer[row][2]
            n = row_pooled.shape[1]
            columns["utterance"] += [row] * n
            for name in segment_store.COLUMNS:
                if name != "utterance":
                    columns[name] += list(row_columns[name])
        pooled = np.concatenate([self._buffer[r][2][1] for r in with_segments], axis=1)
        segment_store.append(self._backend, columns, pooled)

    def _buffer_row(self, row: int, pooled: dict, failed: bool, segments=None) -> None:
        if self._done[row] or row in self._buffer:
            raise ValueError(f"row {row} is already written")
        self._buffer[row] = (pooled, failed, segments)
        chunk = row // self._chunk_rows
        self._buffered_per_chunk[chunk] = self._buffered_per_chunk.get(chunk, 0) + 1
        if self._buffered_per_chunk[chunk] == self._pending_per_chunk.get(chunk):
            self.flush()

    # -- finishing ----------------------------------------------------------------------

    def finish(self, **summary) -> None:
        """Flush, check that every row is done, and mark the cache complete."""
        self.flush()
        missing = self.pending_rows()
        if len(missing):
            raise SersError(f"{self.path}: {len(missing)} utterances are not extracted yet; "
                            "rerun the same command to finish")
        self._backend.set_attrs({**summary, "complete": True})
        self._backend.flush()

    def set_attrs(self, **values) -> None:
        self._backend.set_attrs(values)

    def close(self) -> None:
        try:
            self._backend.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a close failing after a failed write (full disk) must not hide it
            if exc_type is None:
                raise


def _lay_out(path: Path, utterances, num_layers, hidden_size, pool_stats, frame_layers, frame_dtype,
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
    _append_errors(backend, errors)
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
        "frame_dtype": str(np.dtype(frame_dtype)), "n_utterances": n_rows,
    })
    backend.flush()
    backend.close()


def _append_errors(backend, errors) -> None:
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
    columns["done"][:] = False
    columns["failed"][:] = False
    return columns


def _sers_version() -> str:
    from sers import __version__

    return __version__
