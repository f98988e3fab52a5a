"""`sers cache upgrade`: give a finished cache of an older sers what this one writes for readers
without sers (:mod:`sers.cache.readable`): zarr axis names and consolidated metadata, HDF5
dimension scales. Idempotent: a cache that has them is left as it is.

It takes the writer lock, so a cache being written is refused, and refuses an unfinished cache
(sealing one would only be dropped by the writer that finishes it). An HDF5 file is never changed
in place (libhdf5 survives neither a kill nor a full disk, :mod:`sers.cache.journal`): it is
copied with its scales by a helper process and the copy renamed over it.
"""
from __future__ import annotations

import os
from pathlib import Path

from sers.cache import journal, readable
from sers.cache.backends import open_backend, remove_store
from sers.cache.lock import WriterLock
from sers.cache.reader import CacheReader
from sers.cache.results import UpgradeResult
from sers.errors import SersError


def upgrade(path) -> UpgradeResult:
    """Add what the finished cache at ``path`` lacks for plain zarr/xarray/h5netcdf readers."""
    if not journal.exists(path):
        raise SersError(f"{path}: no such cache")
    with WriterLock(path):
        store = journal.live_store(path)
        if store != Path(path):
            raise SersError(f"{path}: extraction is not finished (its rows are in {store}); rerun the same "
                            "`sers extract` to finish it, then upgrade")
        with CacheReader(path) as reader:  # a sers cache of a format this sers reads, and complete
            reader.require_complete()
        backend = open_backend(path, "r")
        try:
            if backend.sealed():
                return UpgradeResult(path, None)
            name = backend.name
        finally:
            backend.close()
        if journal.journaled(path):
            _rewrite_hdf5(Path(path))
            return UpgradeResult(path, "wrote HDF5 dimension scales; xarray (h5netcdf) names the axes as in zarr")
        stale = readable.has_consolidated(str(path))
        backend = open_backend(path, "a")  # drops the stale copy first
        try:
            wrote = backend.seal()
        finally:
            backend.close()
        replaced = ", replacing a stale copy" if stale else ""
        return UpgradeResult(path, f"wrote {name} {' and '.join(wrote)}{replaced}; xr.open_zarr opens it "
                                   "without a warning")


def _rewrite_hdf5(path: Path) -> None:
    need = int(path.stat().st_size * journal.SIZE_MARGIN) + journal.SIZE_SLACK
    free = journal._free_bytes(path.resolve().parent)
    if free < need:
        raise SersError(f"{path}: not enough space for the upgraded copy ({journal._size(free)} free, about "
                        f"{journal._size(need)} needed); the cache is unchanged")
    partial = journal.partial_path(path)
    remove_store(partial)
    try:
        failure = journal.copy_in_helper(path, partial)
        if failure:
            raise SersError(f"{path}: {failure} while writing the upgraded copy; the cache is unchanged")
        os.replace(partial, path)
    finally:
        remove_store(partial)
