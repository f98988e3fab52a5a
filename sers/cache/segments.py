"""The `segments/` group: pooled features of aligned phone (vowel) segments.

    segments/utterance             (S,) int64   row of the utterance in utterances/
    segments/start_frame, end_frame (S,) int64  frames [start, end) at the model's frame rate
    segments/start, end            (S,) float64 seconds into the utterance's audio
    segments/phone, vowel          (S,) strings phone label as aligned; shared vowel class (a e i o u)
    segments/pooled                (L_seg, S, D) float32, mean over the segment's frames

``segments`` attributes name the layers stored (all layers when computed during extraction;
the frame layers when computed later from stored frames) and the alignment source.
Segments are appended with the rows they belong to, before those rows are marked done,
so a resumed extraction drops the segments of rows that were not finished.
"""
from __future__ import annotations

import numpy as np

from sers.cache import schema

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


def drop_unfinished(backend, done: np.ndarray) -> None:
    """Forget trailing segments of rows not marked done (an interrupted flush)."""
    if not exists(backend) or count(backend) == 0:
        return
    owners = backend.array(f"{GROUP}/utterance")[:]
    keep = int(np.argmin(done[owners])) if not done[owners].all() else len(owners)
    if keep < len(owners):
        for name in COLUMNS:
            backend.array(f"{GROUP}/{name}").resize((keep,))
        array = backend.array(f"{GROUP}/pooled")
        array.resize((array.shape[0], keep, array.shape[2]))


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
