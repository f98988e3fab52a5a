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
no half-made store at the cache's path. An HDF5 cache is written into a zarr journal and
converted when complete (:mod:`sers.cache.journal`): libhdf5 survives neither a kill nor a full disk.
:meth:`CacheWriter.verify` reads every finished row before a resume and marks the rows whose
chunks are missing, damaged or inconsistent as not done, so that the resume extracts them again.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sers.cache import integrity, journal, readable, schema
from sers.cache import segments as segment_store
from sers.cache.backends import backend_class, open_backend, remove_store
from sers.cache.layout import append_errors, lay_out
from sers.cache.lock import WriterLock
from sers.errors import SersError


class CacheWriter:
    def __init__(self, backend, lock: WriterLock | None = None, path=None):
        self._backend = backend
        self._lock = lock
        self.path = Path(path or backend.path)  # the cache as its user names it
        self._load()

    @property
    def store(self) -> Path:
        """Where the rows are written: the cache itself, or the journal of an HDF5 cache."""
        return self._backend.path

    def _load(self) -> None:
        """The state of the store: shapes, done rows, and what is pending per pooled chunk."""
        backend = self._backend
        attrs = backend.attrs
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
        self.segment_layers = segment_store.layers(backend) if segment_store.exists(backend) else None
        if len(self.pending_rows()):  # (a finished HDF5 file is open read-only: nothing to change)
            self._forget_errors_of_pending_rows()
            if self.segment_layers is not None:  # written before their rows were marked done, or of redone rows
                segment_store.drop_rows(backend, self.pending_rows())
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
        store = journal.journal_path(path) if journal.journaled(path) else path
        partial = journal.partial_path(store)
        try:
            if journal.exists(path) and not overwrite:
                raise SersError(f"{path} already exists; pass --overwrite to replace it")
            journal.remove_partials(path)  # left by a run killed while creating or converting
            lay_out(partial, utterances, num_layers, hidden_size, pool_stats, frame_layers, frame_dtype,
                    pooled_chunk_rows, segment_layers, segment_attrs, errors, attrs)
            remove_store(path)  # the cache replaced (--overwrite), and its journal
            remove_store(journal.journal_path(path)) if store != path else None
            partial.rename(store)
            return cls(open_backend(store, "a"), lock, path)
        except BaseException:
            remove_store(partial)
            lock.release()
            raise

    @classmethod
    def resume(cls, path) -> "CacheWriter":
        """Reopen the cache at ``path`` to go on writing it (or to :meth:`verify` a finished one)."""
        path = Path(path)
        lock = WriterLock(path).acquire()
        try:
            store = journal.settle(path)  # a journal converted, or a leftover one removed
            # A finished HDF5 file is only read; it is copied into a journal if it must change.
            mode = "r" if store == path and journal.journaled(path) else "a"
            backend = _open(store, mode)
            if backend.attrs.get("format") != schema.FORMAT:
                backend.close()
                raise SersError(f"{path} exists and is not a sers cache; choose another --out or pass --overwrite")
            writer = cls(backend, lock, path)
        except BaseException:
            lock.release()
            raise
        if mode == "r" and not writer.complete:  # an unfinished HDF5 file of an older sers: go on in a journal
            writer._into_journal()
        return writer

    # -- checking finished rows ----------------------------------------------------------

    def verify(self, *, frames_match_pooled: bool = False) -> list[integrity.Damage]:
        """Read every chunk holding a finished row (and, with ``frames_match_pooled``, check each row's
        stored frames against its pooled mean); rows found missing, damaged or inconsistent are marked
        not done, and the cache not complete, so that extracting again redoes exactly them. Returns what
        was found ([] when every finished row is sound)."""
        failed = self._backend.array("utterances/failed")[:]
        done = np.flatnonzero(self._done & ~failed)  # failed rows hold zeros and no frames: nothing to check
        try:
            damage = integrity.scan(self._backend, done, frames_match_pooled=frames_match_pooled)
        except integrity.ChunkProblem as problem:  # the table itself: no row can be trusted
            raise SersError(f"{self.path}: {problem}; the utterance table cannot be repaired by extracting rows "
                            "again: extract the cache anew with --overwrite") from None
        if damage:
            redo = np.unique(np.concatenate([d.rows for d in damage]))
            if self._backend.path == self.path and self._backend.journaled:
                self._into_journal(skip_unreadable=True)  # the copy leaves the damaged chunks out
            else:
                for found in damage:
                    if found.chunks:  # redone rows rewrite part of them: from zeros, not from bad bytes
                        self._backend.delete_chunks(found.array, found.chunks)
            self._redo(redo)
        return damage

    def _redo(self, rows: np.ndarray) -> None:
        """Mark ``rows`` not done (first: a kill after it leaves them to redo), forget their failures
        and segments, and the cache not complete."""
        self._done[rows] = False
        self._backend.array("utterances/done")[:] = self._done
        failed = self._backend.array("utterances/failed")[:]
        failed[rows] = False
        self._backend.array("utterances/failed")[:] = failed
        self._backend.set_attrs({"complete": False})
        self._backend.flush()
        self._load()  # drops the segments and errors of the rows not done

    def _into_journal(self, skip_unreadable: bool = False) -> None:
        """Copy the HDF5 file into a journal and go on there (the file goes once the copy is whole);
        chunks that cannot be read are left out (their rows are redone)."""
        target = journal.journal_path(self.path)
        partial = journal.partial_path(target)
        remove_store(partial)
        copy = open_backend(partial, "w")
        skipped = journal.copy_store(self._backend, copy, skip_unreadable=skip_unreadable)
        table = sorted({name for name, _ in skipped if not name.startswith(integrity.FEATURES)})
        if table:  # no row can be redone without the table that says which rows there are
            remove_store(partial)
            raise SersError(f"{self.path}: {', '.join(table)} cannot be read: the utterance table is damaged, which "
                            "no re-extraction of rows repairs; extract the cache anew with --overwrite")
        copy.set_attrs({"complete": False})  # marks the journal as the live store while both exist
        self._backend.close()
        partial.rename(target)
        remove_store(self.path)
        self._backend = open_backend(target, "a")
        self._load()

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
    def frame_dtype(self) -> np.dtype:
        """The dtype frames are stored in (float16 unless the cache was laid out otherwise)."""
        return np.dtype(self.attrs.get("frame_dtype") or schema.DEFAULT_FRAME_DTYPE)

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

    def ids(self, rows) -> list[str]:
        """The utterance ids of ``rows``."""
        return [str(uid) for uid in self._backend.read_strings("utterances/id")[np.asarray(rows, np.int64)]]

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
        append_errors(self._backend, errors)

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
        """Flush, check that every row is done, and mark the cache complete (an HDF5 cache is converted;
        :meth:`close` gives a zarr cache its consolidated metadata, :mod:`sers.cache.readable`)."""
        self.flush()
        missing = self.pending_rows()
        if len(missing):
            raise SersError(f"{self.path}: {len(missing)} utterances are not extracted yet; "
                            "rerun the same command to finish")
        self._backend.set_attrs({**summary, "complete": True})
        self._backend.flush()
        if self.store != self.path:  # an HDF5 cache: converted from its journal, now complete
            self._backend.close()
            journal.convert(self.store, self.path)
            self._backend = _open(self.path, "r")

    def set_attrs(self, **values) -> None:
        self._backend.set_attrs(values)

    def close(self) -> None:
        try:
            # A complete zarr cache gets its consolidated metadata (again: opening it to write dropped it);
            # an HDF5 file got its dimension scales when it was converted, and is open read-only now.
            if self.store == self.path and not self._backend.journaled and self.complete:
                readable.seal_or_note(self._backend, self.path)
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


def _open(store: Path, mode: str):
    try:
        return open_backend(store, mode)
    except Exception as exc:  # noqa: BLE001 - h5py/zarr raise OSError, KeyError, ... for a damaged store
        raise SersError(f"{store} exists but cannot be opened as a cache ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'damaged'}); it was probably cut off "
                        "while being created: pass --overwrite to start it again") from None
