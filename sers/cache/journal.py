"""HDF5 caches are written through a zarr journal and converted whole when complete.

libhdf5 keeps no finished row safe through a hard kill or a failed write. It caches chunks and
its index in memory and writes them back in its own order, and it moves a rewritten compressed
chunk to new space and reuses the old space in the same session. A SIGKILL therefore leaves an
index pointing at space that now holds another chunk (frames that read as other numbers, from a
chunk boundary on, with no error) or at half-written bytes (a file the resume cannot write to).
On a full disk h5py's objects cannot be released any more and the process dies with a
segmentation fault when they are (at exit at the latest).

So an ``X.h5`` cache is extracted into ``X.h5.journal.zarr`` beside it, which has zarr's
guarantees (each chunk file replaced atomically: a kill or a full disk loses only unfinished
rows). When the journal is complete it is copied into ``.X.creating.h5`` by a helper process
(where a crash of libhdf5 harms nothing but that file), renamed to ``X.h5`` and removed.

Which store holds a cache at a given moment (:func:`live_store`): the journal while it is being
written, the HDF5 file otherwise. Both exist only briefly: after the rename and before the
journal is removed (then the file is the cache), or while a finished file that must change
(a repair, an unfinished file of an older sers) is copied into a journal (then the journal is).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from sers.cache.backends import backend_class, open_backend, remove_store
from sers.errors import SersError

BLOCK_BYTES = 64 * 2**20  # memory for one block of a copy
# The HDF5 copy (gzip level 1 + shuffle) of a zarr journal (zstd level 0) is about as large; a
# margin for the index and float data that gzip compresses less well than zstd.
SIZE_MARGIN, SIZE_SLACK = 1.25, 2 * 2**20
HELPER = "import sys; from sers.cache.journal import _helper; _helper(sys.argv[1], sys.argv[2])"


def journaled(path) -> bool:
    return backend_class(path).journaled


def journal_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".journal.zarr")


def partial_path(path) -> Path:
    """Where a store is laid out or converted before it is renamed into place."""
    path = Path(path)
    return path.with_name(f".{path.stem}.creating{path.suffix}")


def journal_complete(journal: Path) -> bool | None:
    """The journal's ``complete`` attribute; None when it cannot be read (cut off while created)."""
    try:
        backend = open_backend(journal, "r")
    except Exception:  # noqa: BLE001 - any store zarr cannot open is no journal
        return None
    try:
        return bool(backend.attrs.get("complete"))
    finally:
        backend.close()


def live_store(path) -> Path:
    """The store that holds the cache at ``path`` now: ``path`` itself, or its journal."""
    path = Path(path)
    if not journaled(path):
        return path
    journal = journal_path(path)
    if not journal.exists():
        return path
    if not path.exists():
        return journal
    # Both: a finished journal whose copy is in place (left before its removal), or a journal a
    # finished file is being copied into (the file is removed once the copy is whole).
    return path if journal_complete(journal) in (True, None) else journal


def exists(path) -> bool:
    return live_store(path).exists()


def remove(path) -> None:
    """Delete the cache at ``path``: the store, its journal and anything half-made of either."""
    remove_store(path)
    if journaled(path):
        remove_store(journal_path(path))
    remove_partials(path)


def remove_partials(path) -> None:
    """What a run killed while laying out or converting the cache at ``path`` left."""
    remove_store(partial_path(path))
    if journaled(path):
        remove_store(partial_path(journal_path(path)))


def settle(path) -> Path:
    """Under the writer lock: leave one store for the cache at ``path`` and return it. A finished
    journal is converted (its conversion was cut off), a journal left beside its converted file is
    removed, and a file whose copy into a journal is whole is removed."""
    path = Path(path)
    journal = journal_path(path)
    if not journaled(path) or not journal.exists():
        return path
    complete = journal_complete(journal)
    if path.exists():
        if complete in (True, None):
            remove_store(journal)
            return path
        remove_store(path)
        return journal
    if complete:
        convert(journal, path)
        return path
    return journal


# -- copying a store ------------------------------------------------------------------------------

def copy_store(source, target, *, skip_unreadable: bool = False) -> list[tuple[str, tuple]]:
    """Copy every array, attribute and group attribute of backend ``source`` into ``target`` with the
    same chunks. ``skip_unreadable``: a chunk that cannot be read is left out (and returned as
    (array, chunk coordinates)) instead of failing the copy."""
    skipped = []
    for name in source.arrays():
        array = source.array(name)
        strings = source.is_strings(name)
        target.create(name, tuple(array.shape), object if strings else array.dtype, tuple(array.chunks))
        if strings:
            if array.shape[0]:
                target.write_strings(name, source.read_strings(name))
            continue
        out = target.array(name)
        for block in _blocks(array.shape, array.chunks, np.dtype(array.dtype).itemsize):
            try:
                out[block] = array[block]
            except Exception:  # noqa: BLE001 - zarr and h5py raise many types for a damaged chunk
                if not skip_unreadable:
                    raise
                for chunk in _chunks_in(block, array.chunks):
                    try:
                        out[chunk] = array[chunk]
                    except Exception:  # noqa: BLE001
                        skipped.append((name, tuple(s.start // c for s, c in zip(chunk, array.chunks))))
    for group in sorted({name.split("/")[0] for name in source.arrays()}):
        attrs = source.group_attrs(group)
        if attrs:
            target.set_group_attrs(group, attrs)
    target.set_attrs(source.attrs)
    target.flush()
    return skipped


def _blocks(shape, chunks, itemsize: int):
    """Chunk-aligned blocks of at most about BLOCK_BYTES along the first two axes, whole along the rest."""
    if not shape or 0 in shape:
        return
    rest = int(np.prod(shape[2:], dtype=np.int64)) * itemsize
    if len(shape) == 1:
        step = max(1, BLOCK_BYTES // (chunks[0] * itemsize)) * chunks[0]
        for lo in range(0, shape[0], step):
            yield (slice(lo, min(lo + step, shape[0])),)
        return
    step1 = max(1, BLOCK_BYTES // (chunks[0] * chunks[1] * rest)) * chunks[1]
    step1 = min(step1, -(-shape[1] // chunks[1]) * chunks[1])
    step0 = max(1, BLOCK_BYTES // (step1 * rest * chunks[0])) * chunks[0]
    for lo0 in range(0, shape[0], step0):
        for lo1 in range(0, shape[1], step1):
            yield (slice(lo0, min(lo0 + step0, shape[0])), slice(lo1, min(lo1 + step1, shape[1]))) + \
                tuple(slice(0, n) for n in shape[2:])


def _chunks_in(block, chunks):
    """The chunk-sized pieces of a chunk-aligned block."""
    import itertools

    ranges = [[slice(lo, min(lo + c, s.stop)) for lo in range(s.start, s.stop, c)] for s, c in zip(block, chunks)]
    return [tuple(piece) for piece in itertools.product(*ranges)]


# -- converting a finished journal ----------------------------------------------------------------

def convert(journal: Path, path: Path) -> None:
    """Copy the complete ``journal`` into the HDF5 file ``path`` (written under a temporary name by a
    helper process, then renamed) and remove the journal. A SersError, with the journal kept,
    when the copy cannot be made: no space, or libhdf5 failing."""
    journal, path = Path(journal), Path(path)
    from sers.cache import size_on_disk  # the package's helper (a store folder or a file)

    need = int(size_on_disk(journal) * SIZE_MARGIN) + SIZE_SLACK
    free = _free_bytes(path.resolve().parent)
    keep = (f"every utterance is kept in {journal}: free space and rerun the same command to convert it")
    if free < need:
        raise SersError(f"{path}: not enough space to write the HDF5 file from its finished journal "
                        f"({_size(free)} free, about {_size(need)} needed); {keep}")
    partial = partial_path(path)
    remove_store(partial)
    try:
        failure = copy_in_helper(journal, partial)
        if failure:
            raise SersError(f"{path}: {failure} while writing the HDF5 file from its finished journal; {keep}")
        os.replace(partial, path)  # replaces an older file at the path (--overwrite)
    finally:
        remove_store(partial)
    remove_store(journal)


def copy_in_helper(source: Path, target: Path) -> str | None:
    """Copy the store ``source`` into a new HDF5 file ``target`` (with its dimension scales) in a helper
    process, where a crash of libhdf5 harms nothing but ``target``; what went wrong, in words, or None."""
    root = str(Path(__file__).resolve().parents[2])  # where the sers package is, for the helper's import
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", HELPER, str(source), str(target)], env=env,
                          capture_output=True, text=True)
    return _helper_failure(done) if done.returncode != 0 else None


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _helper_failure(done: subprocess.CompletedProcess) -> str:
    """What went wrong in the helper, in words: its report line, or how it died."""
    report = {}
    for line in reversed(done.stderr.strip().splitlines()):
        try:
            report = json.loads(line)
            break
        except ValueError:
            continue
    code = report.get("errno")
    if code is None:  # libhdf5 names the errno in its message text: "errno = 28"
        found = re.search(r"errno = (\d+)", report.get("message", "") + done.stderr)
        code = int(found.group(1)) if found else None
    if code in (28, 122):  # ENOSPC, EDQUOT
        return "no space left on the device" if code == 28 else "disk quota exceeded"
    if done.returncode < 0:
        return f"the HDF5 library crashed (signal {-done.returncode})"
    message = " ".join(str(report.get("message") or done.stderr.strip() or "no message").split())[:300]
    return f"{report.get('type', 'error')}: {message}"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def _helper(journal: str, partial: str) -> None:
    """In the helper process: copy, close, fsync. On any failure, report one JSON line and leave at
    once: after a failed write h5py's objects crash the process when they are released."""
    from sers.workers import exit_with_parent

    exit_with_parent(os.getppid())
    try:
        source = open_backend(journal, "r")
        target = open_backend(partial, "w")
        copy_store(source, target)
        target.seal()  # dimension scales: h5netcdf/xarray name the axes as zarr does
        target.close()
        with open(partial, "rb+") as handle:  # on disk before the rename makes it the cache
            os.fsync(handle.fileno())
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        print(json.dumps({"type": type(exc).__name__, "errno": getattr(exc, "errno", None),
                          "message": str(exc)}), file=sys.stderr, flush=True)
        os._exit(1)
