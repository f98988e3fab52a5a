"""The `segments/` group: pooled features of aligned phone (vowel) segments.

    segments/utterance             (S,) int64   row of the utterance in utterances/
    segments/start_frame, end_frame (S,) int64  frames [start, end) at the model's frame rate
    segments/start, end            (S,) float64 seconds into the utterance's audio
    segments/phone, vowel          (S,) strings phone label as aligned; shared vowel class (a e i o u)
    segments/pooled                (L_seg, S, D) float32, mean over the segment's frames

``segments`` attributes name the layers stored (all layers when computed during extraction;
the frame layers when computed later from stored frames) and the alignment source.
Segments are appended with the rows they belong to, before those rows are marked done,
so a resumed extraction drops the segments of rows that are not done (not finished, or to be
extracted again after a repair).

Extraction writes segments through :class:`~sers.cache.writer.CacheWriter` (``segment_layers``,
``add(..., segments=...)``); a finished cache gets them, or new ones, from :class:`SegmentsWriter`.
"""
from __future__ import annotations

import numpy as np

from pathlib import Path

from sers.cache import journal, readable, schema
from sers.cache.backends import open_backend, remove_store
from sers.cache.lock import WriterLock

STRING_COLUMNS = ("phone", "vowel")
COLUMNS = {"utterance": "int64", "start_frame": "int64", "end_frame": "int64",
           "start": "float64", "end": "float64", "phone": object, "vowel": object}
GROUP = "segments"


def create(backend, layers: list[int], hidden_size: int, **attrs) -> None:
    for name, dtype in COLUMNS.items():
        backend.create(f"{GROUP}/{name}", (0,), np.dtype(dtype), chunks=(8192,))
    rows = schema.pooled_chunk_rows(hidden_size)
    backend.create(f"{GROUP}/pooled", (len(layers), 0, hidden_size), schema.POOLED_DTYPE,
                   chunks=(1, rows, hidden_size))
    backend.set_group_attrs(GROUP, {"layers": [int(x) for x in layers], **attrs})


def exists(backend) -> bool:
    return backend.has(f"{GROUP}/pooled")


def layers(backend) -> list[int]:
    return [int(x) for x in backend.group_attrs(GROUP).get("layers", [])]


def count(backend) -> int:
    return int(backend.array(f"{GROUP}/utterance").shape[0])


def append(backend, columns: dict, pooled: np.ndarray) -> None:
    """Add S segments: ``columns`` of S values each, ``pooled`` (L_seg, S, D)."""
    n_new = len(columns["utterance"])
    if n_new == 0:
        return
    start = count(backend)
    for name, dtype in COLUMNS.items():
        array = backend.array(f"{GROUP}/{name}")
        array.resize((start + n_new,))
        if dtype is object:
            backend.write_strings(f"{GROUP}/{name}", columns[name], start=start)
        else:
            array[start:] = np.asarray(columns[name], dtype=dtype)
    array = backend.array(f"{GROUP}/pooled")
    array.resize((array.shape[0], start + n_new, array.shape[2]))
    array[:, start:] = pooled


def drop_rows(backend, rows) -> None:
    """Remove the segments of ``rows`` (extracted again after a repair); the others keep their order.
    Only chunks holding a kept segment are read: a damaged one holds segments of redone rows."""
    if not exists(backend) or count(backend) == 0:
        return
    owners = backend.array(f"{GROUP}/utterance")[:]
    keep = np.flatnonzero(~np.isin(owners, np.asarray(rows)))
    if len(keep) == len(owners):
        return
    n = len(keep)
    for name, dtype in COLUMNS.items():  # compacted into the front, then cut: one pass, no copy of the rest
        if dtype is object:
            values = backend.read_strings(f"{GROUP}/{name}")[keep]
            if n:
                backend.write_strings(f"{GROUP}/{name}", values)
        else:
            values = np.asarray(backend.array(f"{GROUP}/{name}")[:])[keep]
            backend.array(f"{GROUP}/{name}")[:n] = values
        backend.array(f"{GROUP}/{name}").resize((n,))
    array = backend.array(f"{GROUP}/pooled")
    chunk = int(array.chunks[1])
    for position in range(array.shape[0]):
        kept = np.empty((n, array.shape[2]), array.dtype)
        for c in np.unique(keep // chunk):
            mine = np.flatnonzero(keep // chunk == c)
            kept[mine] = np.asarray(array[position, c * chunk:(c + 1) * chunk])[keep[mine] - c * chunk]
        if n:
            array[position, :n] = kept
    array.resize((array.shape[0], n, array.shape[2]))


def read_columns(backend) -> dict[str, np.ndarray]:
    return {name: (backend.read_strings(f"{GROUP}/{name}") if dtype is object
                   else np.asarray(backend.array(f"{GROUP}/{name}")[:])) for name, dtype in COLUMNS.items()}


def remove(backend) -> None:
    backend.delete(GROUP)


def attrs(backend) -> dict:
    """The group's attributes: layers, the alignment source, and what the writer added."""
    return backend.group_attrs(GROUP)


def set_attrs(backend, **values) -> None:
    backend.set_group_attrs(GROUP, values)


class SegmentsWriter:
    """Replace the `segments/` group of a finished cache, a block of segments at a time.

        with SegmentsWriter(path, layers=[6, 12], **where_they_came_from) as segments:
            segments.append(columns, pooled)    # rows of sers.cache.open(path).utterances
            segments.finish()

    Holds the cache's writer lock while open. The group is marked complete only by
    :meth:`finish`; leaving the block without it (an error, Ctrl-C) removes the group, so
    half the segments never look whole. An HDF5 file is never written in place (libhdf5 survives
    neither a kill nor a full disk, :mod:`sers.cache.journal`): the segments are added to a zarr
    copy of it, which replaces it whole in :meth:`finish`; until then readers read the file as it was.
    """

    def __init__(self, path, layers, **attrs):
        self.path = Path(path)
        self.layers = [int(layer) for layer in layers]
        self._lock = WriterLock(path).acquire()
        self._finished = False
        try:
            store = journal.settle(self.path)
            if store == self.path and journal.journaled(self.path):
                store = _copy_into_journal(self.path)
            self._backend = open_backend(store, "a")
        except BaseException:
            self._lock.release()
            raise
        try:
            # Rows of the public table (extracted, not failed) in the order the reader gives them.
            good = self._backend.array("utterances/done")[:] & ~self._backend.array("utterances/failed")[:]
            self._store_row = np.flatnonzero(good)
            remove(self._backend)
            hidden_size = int(self._backend.attrs["hidden_size"])
            create(self._backend, self.layers, hidden_size, **attrs, complete=False)
        except BaseException:
            self.close()
            raise

    def append(self, columns: dict, pooled: np.ndarray) -> None:
        """S segments: ``columns`` (COLUMNS, ``utterance`` a row of the reader's ``utterances``)
        of S values each, ``pooled`` (len(layers), S, D)."""
        stored = dict(columns)
        stored["utterance"] = self._store_row[np.asarray(columns["utterance"], dtype=np.int64)]
        append(self._backend, stored, pooled)

    def finish(self) -> None:
        set_attrs(self._backend, complete=True)  # last: a partial group is replaced on rerun
        self._backend.flush()
        if self._backend.path != self.path:  # the copy of an HDF5 file: it replaces the file
            self._backend.close()
            journal.convert(self._backend.path, self.path)
        self._finished = True

    def close(self) -> None:
        try:
            if not self._finished:
                if self._backend.path != self.path:
                    remove_store(self._backend.path)  # the file is as it was
                else:
                    remove(self._backend)
            if self._backend.path == self.path and self._backend.attrs.get("complete"):
                readable.seal_or_note(self._backend, self.path)  # zarr: opening it to write dropped it
            self._backend.close()
        finally:
            self._lock.release()

    def __enter__(self) -> "SegmentsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _copy_into_journal(path: Path) -> Path:
    """A zarr copy of the finished HDF5 file ``path``, beside it. It is complete like the file, so a
    kill before :meth:`SegmentsWriter.finish` leaves it to be removed and the file to be read."""
    target = journal.journal_path(path)
    partial = journal.partial_path(target)
    remove_store(partial)
    source = open_backend(path, "r")
    try:
        journal.copy_store(source, open_backend(partial, "w"))
    finally:
        source.close()
    partial.rename(target)
    return target
