"""What lets plain zarr, xarray and h5netcdf read a finished cache as sers writes it.

* zarr: **consolidated metadata** (every array's metadata copied into the root ``zarr.json``), without
  which ``xr.open_zarr`` warns on every open. It is a copy, so it goes stale when an array changes:
  a sers writer drops it when it opens a store for writing (:func:`drop_consolidated`) and writes it
  again when it leaves the store complete (:func:`consolidate`). A writer killed in between leaves
  none, never a stale one; sers itself never reads through it.
* HDF5: **dimension scales** named like zarr's ``dimension_names`` (:func:`sers.cache.schema.dimension_names`),
  so that h5netcdf/xarray name the axes ``layer``, ``utterance``, ``dim``, ... instead of
  ``phony_dim_*``. They are empty datasets at the root of the file (``/utterance``, ``/layer``, ...),
  outside the groups that hold the cache's arrays, marked as netCDF dimensions that are not variables.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from sers.cache.schema import dimension_names

# How netCDF-4 (and h5netcdf) marks a dimension scale that holds no coordinate values.
_NOT_A_VARIABLE = b"This is a netCDF dimension but not a netCDF variable."


def seal_or_note(backend, path) -> None:
    """``backend.seal()`` for the complete cache at ``path``. Failing to write (a full disk) is a note on
    stderr, not an error: the cache is complete and sers reads it the same, and the write is atomic (the
    old zarr.json stays); `sers cache upgrade` adds what is missing later."""
    try:
        backend.seal()
    except OSError as exc:
        print(f"note: {path}: could not write its consolidated metadata ({exc.strerror or exc}); the cache is "
              f"complete; `sers cache upgrade {path}` adds it later", file=sys.stderr)


# -- zarr: consolidated metadata -------------------------------------------------------------------

def consolidate(store) -> None:
    """Write the consolidated metadata of the zarr store ``store`` (a path or a zarr store)."""
    import zarr

    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not in the v3 specification; xarray and zarr-python
        # are the readers it is for, and both read it.
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(store)


def has_consolidated(store) -> bool:
    import zarr

    return zarr.open_group(store, mode="r").metadata.consolidated_metadata is not None


def drop_consolidated(root) -> None:
    """Remove the consolidated metadata of the writable zarr group ``root`` (opened with
    ``use_consolidated=False``) before anything changes, so that no reader sees it stale."""
    if has_consolidated(root.store):
        root.update_attributes({})  # rewrites zarr.json from the group's metadata, which has none


def consolidated_is_current(store) -> bool:
    """Whether the store has consolidated metadata and it matches every array's and group's own."""
    import zarr

    if not has_consolidated(store):
        return False
    stored = zarr.open_group(store, mode="r").metadata.consolidated_metadata.flattened_metadata
    actual = {name: node.metadata for name, node in
              zarr.open_group(store, mode="r", use_consolidated=False).members(max_depth=None)}
    return set(stored) == set(actual) and all(_plain(stored[name]) == _plain(actual[name]) for name in actual)


def name_zarr_dimensions(root, path, arrays) -> list[str]:
    """Store the axis names (``dimension_names``) of the arrays of zarr group ``root`` (the store at
    local ``path``) that lack them (caches of sers before it stored them, which xarray cannot open);
    returns those arrays. zarr has no call that changes them: each array's zarr.json is rewritten,
    through a temporary file and a rename, so a kill leaves the old or the new one."""
    named = []
    for name in arrays:
        if root[name].metadata.dimension_names is not None:
            continue
        target = Path(path) / name / "zarr.json"
        metadata = json.loads(target.read_text())
        metadata["dimension_names"] = list(dimension_names(name))
        partial = target.with_name(".zarr.json.partial")
        partial.write_text(json.dumps(metadata, indent=2))
        os.replace(partial, target)
        named.append(name)
    return named


def zarr_dimensions_stored(root, arrays) -> bool:
    return all(root[name].metadata.dimension_names is not None for name in arrays)


def _plain(metadata) -> dict:
    """Metadata as a dict, without the nested consolidated copy a consolidated group carries."""
    values = metadata.to_dict()
    values.pop("consolidated_metadata", None)
    return values


# -- HDF5: dimension scales ------------------------------------------------------------------------

def name_hdf5_dimensions(file, arrays) -> None:
    """Attach to every axis of ``arrays`` (``group/leaf`` names in the open, writable h5py ``file``) a
    dimension scale named as zarr names that axis; the scales are made at the root when missing."""
    sizes = _dimension_sizes(file, arrays)
    for dimid, (dim, size) in enumerate(sizes.items()):
        if dim in file:
            continue
        # Empty: HDF5 allocates no storage for a contiguous dataset never written. Size 0 needs an
        # extendable (chunked) dataset; the schema's axes of one name have one size (N, D, frames...).
        scale = file.create_dataset(dim, shape=(size,), dtype=">f4", maxshape=(None,) if size == 0 else None)
        scale.make_scale(_NOT_A_VARIABLE + f"{size:10}".encode("ascii"))
        scale.attrs["_Netcdf4Dimid"] = np.int32(dimid)  # netCDF-C orders dimensions by it
    for name in arrays:
        dataset = file[name]
        for axis, dim in enumerate(dimension_names(name)):
            if not _named(dataset, axis, dim):
                dataset.dims[axis].attach_scale(file[dim])


def hdf5_dimensions_named(file, arrays) -> bool:
    """Whether every axis of ``arrays`` has its dimension scale, of the size of the axis."""
    return all(_named(file[name], axis, dim) and file[dim].shape == (file[name].shape[axis],)
               for name in arrays for axis, dim in enumerate(dimension_names(name)))


def _named(dataset, axis: int, dim: str) -> bool:
    return any(scale.name == f"/{dim}" for scale in dataset.dims[axis].values())


def _dimension_sizes(file, arrays) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for name in arrays:
        for dim, size in zip(dimension_names(name), file[name].shape):
            sizes.setdefault(dim, int(size))
    return sizes
