"""Missing and damaged chunks: found on every read, and all of them before a resume.

A zarr chunk file that is gone reads as the fill value (zeros) without an error, and a damaged
one fails deep inside a codec ("Zstd decompression error") naming neither the cache nor the
array. Every read of features therefore goes through :func:`read`: it asks the store whether
each chunk covering the rows wanted is there, and turns a failure to decode into
:class:`ChunkProblem` with the array and the chunks, which the reader words as one line naming
the cache, the array and the utterances. (New zarr arrays store every chunk, zeros too, and
carry a zstd checksum, so neither a missing chunk nor changed bytes can pass as data.)

Before a resume, :func:`scan` reads every chunk that holds a finished row, and checks each
stored frame layer against the pooled mean of the same hidden states: the mean of an utterance's
stored frames equals its pooled mean up to float16 rounding, so frames that were replaced by
other numbers (as libhdf5 left them after a kill) cannot pass. The rows it names are extracted
again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sers.cache import schema

BLOCK_BYTES = 32 * 2**20  # memory for one block of a scan
# float16 keeps 11 significant bits: each stored value is within 2^-11 of its size, and so is the
# mean of stored values of the mean of their magnitudes. Twice that, plus a floor for values near 0.
FLOAT16_RELATIVE, ABSOLUTE_FLOOR = 2.0**-10, 1e-6


class ChunkProblem(Exception):
    """Chunks of one array that are missing or cannot be decoded."""

    def __init__(self, name: str, chunks: list[tuple[int, ...]], what: str):
        super().__init__(f"{name}: {len(chunks)} chunk(s) {what}")
        self.name, self.chunks, self.what = name, chunks, what


def read(backend, name: str, selection: tuple, chunks, *, strings: bool = False) -> np.ndarray:
    """``backend.array(name)[selection]`` (``strings``: the whole column as str objects), after checking
    that the chunks (grid coordinates) holding the wanted values exist; a ChunkProblem when one is
    missing or cannot be decoded."""
    chunks = [tuple(int(x) for x in c) for c in chunks]
    missing = backend.missing_chunks(name, chunks) if _must_be_stored(backend, name) else []
    if missing:
        raise ChunkProblem(name, missing, "missing (deleted?)")
    array = backend.array(name)
    try:
        return backend.read_strings(name) if strings else np.asarray(array[selection])
    except Exception as exc:  # noqa: BLE001 - zstd, gzip, crc, h5py: each raises its own type
        bad, first = [], exc
        for chunk in chunks:  # which of them: each chunk alone
            try:
                np.asarray(array[_chunk_selection(chunk, array.chunks, array.shape)])
            except Exception as chunk_exc:  # noqa: BLE001
                bad.append(chunk)
                first = chunk_exc
        if not bad:
            raise
        text = " ".join(str(first).split())[:160]
        raise ChunkProblem(name, bad, f"cannot be decoded ({type(first).__name__}: {text})") from None


FEATURES = ("pooled/", "frames/", "segments/pooled")


def _must_be_stored(backend, name: str) -> bool:
    """Whether every chunk of ``name`` holding a finished row is in storage. Caches laid out by this
    sers store all chunks (root attribute ``every_chunk_stored``); older zarr caches left out chunks
    that were all zeros or empty strings, which features of an extracted utterance never are."""
    if name.startswith(FEATURES):
        return True
    if not hasattr(backend, "_sers_every_chunk_stored"):
        backend._sers_every_chunk_stored = bool(backend.attrs.get(schema.EVERY_CHUNK_ATTR))
    return backend._sers_every_chunk_stored


def column_chunks(array) -> list[tuple[int]]:
    """Every chunk of a 1-D array."""
    return [(c,) for c in range(-(-int(array.shape[0]) // int(array.chunks[0])))]


def _chunk_selection(chunk, chunk_shape, shape) -> tuple:
    return tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(chunk, chunk_shape, shape))


# -- which chunks hold which rows ------------------------------------------------------------

def pooled_chunks(layer: int, rows, chunk_rows: int) -> list[tuple[int, int, int]]:
    return [(int(layer), int(c), 0) for c in np.unique(np.asarray(rows, np.int64) // chunk_rows)]


def frame_chunks(starts, lengths, chunk_frames: int) -> list[tuple[int, int]]:
    """Chunks of a frames array holding the frames ``[start, start + length)`` of each row."""
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
    keep = lengths > 0
    first, last = starts[keep] // chunk_frames, (starts[keep] + lengths[keep] - 1) // chunk_frames
    ids = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last)])) if keep.any() else []
    return [(int(c), 0) for c in ids]


def rows_of_frame_chunks(starts, lengths, chunk_frames: int, chunks) -> np.ndarray:
    """Positions of the rows whose frames lie (partly) in the given chunks."""
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
    hit = np.zeros(len(starts), bool)
    for c, *_ in chunks:
        lo, hi = c * chunk_frames, (c + 1) * chunk_frames
        hit |= (lengths > 0) & (starts < hi) & (starts + lengths > lo)
    return np.flatnonzero(hit)


# -- the scan before a resume ----------------------------------------------------------------------

@dataclass
class Damage:
    array: str
    rows: np.ndarray   # rows of utterances/ whose features are wrong or unreadable
    what: str
    chunks: tuple = ()  # the chunks (grid coordinates) that are missing or cannot be decoded


def scan(backend, rows, *, frames_match_pooled: bool) -> list[Damage]:
    """Every chunk of pooled, frame and segment features that holds one of ``rows`` (finished rows),
    read once; with ``frames_match_pooled`` (frames and pooled means come from the same hidden
    states) each row's frames are checked against its pooled mean. Raises ChunkProblem for damage
    that no re-extraction of rows can repair (the utterance table)."""
    attrs = backend.attrs
    for name in backend.arrays():
        if name.startswith(("utterances/", "errors/")):  # what says which rows there are at all
            read(backend, name, (slice(None),), column_chunks(backend.array(name)))
    rows = np.asarray(rows, np.int64)
    damage: list[Damage] = []
    stats = [stat for stat in attrs.get("pool_stats") or [] if backend.has(schema.pooled_name(stat))]
    for stat in stats:
        damage += _scan_pooled(backend, schema.pooled_name(stat), rows)
    if backend.has("segments/pooled"):
        damage += _scan_segments(backend, rows)
    unreadable_pooled = np.unique(np.concatenate([d.rows for d in damage])) if damage else np.zeros(0, np.int64)
    offsets = backend.array("utterances/frame_offset")[:]
    lengths = backend.array("utterances/n_frames")[:]
    check_means = frames_match_pooled and "mean" in stats
    for layer in attrs.get("frame_layers") or []:
        damage += _scan_frames(backend, int(layer), rows, offsets, lengths, unreadable_pooled,
                               check_means, int(attrs.get("frame_stride") or 1))
    return damage


def _scan_pooled(backend, name: str, rows) -> list[Damage]:
    array = backend.array(name)
    chunk_rows = int(array.chunks[1])
    per_block = max(1, BLOCK_BYTES // (chunk_rows * int(array.shape[2]) * 4))
    damage = []
    for layer in range(int(array.shape[0])):
        chunks = sorted({c for _, c, _ in pooled_chunks(layer, rows, chunk_rows)})
        for block in _runs(chunks, per_block):
            lo, hi = block[0] * chunk_rows, min((block[-1] + 1) * chunk_rows, int(array.shape[1]))
            try:
                read(backend, name, (layer, slice(lo, hi)), [(layer, c, 0) for c in block])
            except ChunkProblem as problem:
                hit = np.isin(rows // chunk_rows, [c for _, c, _ in problem.chunks])
                damage.append(Damage(name, rows[hit], problem.what, tuple(problem.chunks)))
    return damage


def _scan_segments(backend, rows) -> list[Damage]:
    for name in [n for n in backend.arrays() if n.startswith("segments/") and n != "segments/pooled"]:
        array = backend.array(name)  # the columns: whole, and unrepairable by re-extracting rows
        values = read(backend, name, (slice(None),), column_chunks(array))
        if name == "segments/utterance":
            owners = values
    mine = np.flatnonzero(np.isin(owners, rows))
    if not len(mine):
        return []
    array = backend.array("segments/pooled")
    chunk_rows = int(array.chunks[1])
    damage = []
    for position in range(int(array.shape[0])):
        for block in _runs(sorted({c for _, c, _ in pooled_chunks(position, mine, chunk_rows)}), 16):
            lo, hi = block[0] * chunk_rows, min((block[-1] + 1) * chunk_rows, int(array.shape[1]))
            try:
                read(backend, "segments/pooled", (position, slice(lo, hi)), [(position, c, 0) for c in block])
            except ChunkProblem as problem:
                hit = np.isin(np.arange(len(owners)) // chunk_rows, [c for _, c, _ in problem.chunks])
                damage.append(Damage("segments/pooled", np.unique(owners[hit]), problem.what, tuple(problem.chunks)))
    return damage


def _scan_frames(backend, layer, rows, offsets, lengths, skip, check_means, stride) -> list[Damage]:
    name = schema.frames_name(layer)
    array = backend.array(name)
    chunk_frames, dim = int(array.chunks[0]), int(array.shape[1])
    rows = rows[lengths[rows] > 0]
    per_block = max(1, BLOCK_BYTES // (dim * 8))  # frames, read as float16 and summed as float64
    damage, wrong = [], []
    start = 0
    while start < len(rows):
        stop, total = start, 0
        while stop < len(rows) and (stop == start or total + lengths[rows[stop]] <= per_block) \
                and (stop == start or rows[stop] == rows[stop - 1] + 1):  # contiguous rows: one read
            total += lengths[rows[stop]]
            stop += 1
        block = rows[start:stop]
        lo, hi = int(offsets[block[0]]), int(offsets[block[-1]] + lengths[block[-1]])
        try:
            frames = read(backend, name, (slice(lo, hi),), frame_chunks(offsets[block], lengths[block], chunk_frames))
        except ChunkProblem as problem:
            hit = rows_of_frame_chunks(offsets[block], lengths[block], chunk_frames, problem.chunks)
            damage.append(Damage(name, block[hit], problem.what, tuple(problem.chunks)))
        else:
            checked = ~np.isin(block, skip)  # rows whose pooled chunks could not be read are redone anyway
            pooled = _pooled_rows(backend, layer, block) if check_means and checked.any() else None
            if pooled is not None:
                agree = frames_agree(frames, offsets[block] - lo, lengths[block], pooled, stride)
                wrong += block[checked & ~agree].tolist()
        start = stop
    if wrong:
        damage.append(Damage(name, np.asarray(wrong, np.int64), "do not average to the stored pooled mean"))
    return damage


def _pooled_rows(backend, layer: int, block) -> np.ndarray | None:
    """The pooled means of consecutive rows at one layer; None when a chunk of them cannot be read
    (those rows are among the damaged ones already)."""
    try:
        return np.asarray(backend.array("pooled/mean")[layer, int(block[0]):int(block[-1]) + 1])
    except Exception:  # noqa: BLE001 - reported by the pooled scan
        return None


def _runs(sorted_ids, most: int):
    """Consecutive ids in runs of at most ``most``."""
    run = []
    for i in sorted_ids:
        if run and (i != run[-1] + 1 or len(run) == most):
            yield run
            run = []
        run.append(i)
    if run:
        yield run


def frames_agree(frames, starts, lengths, pooled, stride: int = 1) -> np.ndarray:
    """Per row: whether the mean of its stored frames is its pooled mean up to float16 rounding.
    Rows lie end to end in ``frames`` (row i is ``frames[starts[i]:starts[i] + lengths[i]]``, the last
    ending at the end). With ``stride`` K > 1 each stored frame is the mean of K frames and the last
    of 1 to K (how many is not stored): a row agrees when one of the K weights fits."""
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
    n = lengths[:, None].astype(np.float64)
    sums = np.add.reduceat(frames, starts, axis=0, dtype=np.float64)
    tolerance = FLOAT16_RELATIVE * np.add.reduceat(np.abs(frames), starts, axis=0, dtype=np.float64) / n \
        + ABSOLUTE_FLOOR
    unbounded = ~np.isfinite(sums)  # float16 overflow (inf) is the store's limit, not damage: not compared
    pooled = np.asarray(pooled, np.float64)
    last = frames[starts + lengths - 1].astype(np.float64)
    agree = np.zeros(len(starts), bool)
    for weight in range(1, stride + 1):
        # the first length-1 stored frames hold K frames each, the last `weight` of them
        mean = sums / n if stride == 1 else (stride * (sums - last) + weight * last) / (stride * (n - 1) + weight)
        agree |= (unbounded | (np.abs(mean - pooled) <= tolerance)).all(axis=1)
    return agree
