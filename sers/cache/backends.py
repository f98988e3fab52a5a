"""Storage back-ends: the same array/attribute operations on zarr and HDF5.

Every back-end is a :class:`Backend`: ``create``, ``array``, ``has``, ``attrs``/``set_attrs``,
group attributes, string columns, ``delete``, ``flush`` and ``close``. Arrays returned by
``array`` support numpy slicing for reads and writes, and ``resize`` along every axis.
The cache's path suffix picks the back-end (:data:`BACKENDS`); adding a format is one
subclass and one entry there.
"""
from __future__ import annotations

import abc
import json
import shutil
from pathlib import Path

import numpy as np

from sers.cache import readable
from sers.cache.schema import dimension_names
from sers.errors import SersError


class Backend(abc.ABC):
    """One storage format. ``mode``: 'r' read, 'a' read/write existing, 'w' create (replacing)."""

    name: str  # what `sers inspect` calls the format
    survives_failed_write: bool  # is every finished row still readable after a write failed (full disk)?
    # Written through a zarr journal (sers.cache.journal) and converted whole when complete, because
    # the format itself keeps no finished row safe through a kill or a failed write.
    journaled: bool = False

    @abc.abstractmethod
    def __init__(self, path, mode: str): ...

    @abc.abstractmethod
    def create(self, name: str, shape: tuple, dtype, chunks: tuple):
        """A new array ``name`` (``group/leaf``); object dtype means UTF-8 strings."""

    @abc.abstractmethod
    def array(self, name: str):
        """The array ``name``: numpy slicing reads and writes, ``shape``, ``chunks``, ``resize``."""

    @abc.abstractmethod
    def has(self, name: str) -> bool:
        """Whether an array or group ``name`` exists."""

    @abc.abstractmethod
    def arrays(self) -> list[str]:
        """Every array of the store, as ``group/leaf`` names."""

    @abc.abstractmethod
    def is_strings(self, name: str) -> bool:
        """Whether array ``name`` holds UTF-8 strings."""

    def missing_chunks(self, name: str, coords) -> list[tuple[int, ...]]:
        """The chunk grid coordinates among ``coords`` that are not in storage. A missing chunk
        reads as the fill value (zeros) without an error, so readers ask before they read.
        None missing for a format that cannot lose one chunk alone (HDF5: one file, one index)."""
        return []

    def delete_chunks(self, name: str, coords) -> None:
        """Remove damaged chunks, so that rewriting part of one starts from the fill value instead of
        failing to decode the rest (zarr); formats that cannot do so are copied without them."""
        raise NotImplementedError(f"{self.name} cannot delete single chunks")

    @abc.abstractmethod
    def read_strings(self, name: str) -> np.ndarray:
        """A string column as an object array of str."""

    @abc.abstractmethod
    def write_strings(self, name: str, values, start: int = 0) -> None:
        """Write ``values`` into a string column from row ``start``."""

    @property
    @abc.abstractmethod
    def attrs(self) -> dict:
        """The root attributes as plain JSON types."""

    @abc.abstractmethod
    def set_attrs(self, values: dict) -> None:
        """Add or replace root attributes (JSON-able values)."""

    @abc.abstractmethod
    def group_attrs(self, name: str) -> dict:
        """The attributes of group ``name``."""

    @abc.abstractmethod
    def set_group_attrs(self, name: str, values: dict) -> None:
        """Add or replace attributes of group ``name``."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove an array or group, if there is one."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Make what was written so far durable."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store (closing twice is allowed)."""

    def seal(self) -> list[str]:
        """Write what plain readers need to open the complete store without sers (zarr: consolidated
        metadata; HDF5: dimension scales; :mod:`sers.cache.readable`); returns what it wrote, in words."""
        return []

    def sealed(self) -> bool:
        """Whether what :meth:`seal` writes is there and up to date."""
        return True

    @staticmethod
    def remove(path) -> None:
        """Delete the store at ``path`` (a folder or a file), if there is one."""
        path = Path(path)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


class ZarrBackend(Backend):
    name = "zarr"
    survives_failed_write = True  # each chunk file is replaced atomically

    def __init__(self, path, mode: str):
        import zarr

        self.path = Path(path)
        self._writable = mode != "r"
        self._listing: dict[str, set[str]] = {}
        # sers reads each array's own metadata: the consolidated copy is for other readers, and stale
        # if anything changed the store after it was written.
        self._root = zarr.open_group(str(path), mode={"r": "r", "a": "r+", "w": "w"}[mode], use_consolidated=False)
        if mode == "a":  # about to change: no reader may see the old copy (sealing writes it again)
            readable.drop_consolidated(self._root)

    def create(self, name, shape, dtype, chunks):
        from zarr.codecs import ZstdCodec

        dtype = str if np.dtype(dtype) == np.dtype(object) else dtype
        # The zstd frame checksum makes a damaged chunk fail to decode instead of reading as other
        # numbers; every chunk is stored, even all zeros (a failed row), so a missing one is damage.
        return self._root.create_array(name, shape=shape, dtype=dtype, chunks=chunks,
                                       fill_value=None if dtype is str else 0,
                                       compressors=ZstdCodec(level=0, checksum=True),
                                       config=_WRITE_EVERY_CHUNK, dimension_names=dimension_names(name))

    def array(self, name):
        array = self._root[name]
        # write_empty_chunks is a runtime setting, not stored with the array: set it on every write.
        return array.with_config(_WRITE_EVERY_CHUNK) if self._writable else array

    def has(self, name) -> bool:
        return name in self._root

    def arrays(self) -> list[str]:
        return sorted(f"{group_name}/{name}" for group_name, group in self._root.groups()
                      for name, _ in group.arrays())

    def is_strings(self, name) -> bool:
        return np.dtype(self._root[name].dtype).kind in "OTU"

    def missing_chunks(self, name, coords) -> list[tuple[int, ...]]:
        array = self._root[name]
        stored = self._listing.get(name)
        if stored is None:
            from zarr.core.sync import sync  # as zarr's own Array.nchunks_initialized lists the store

            prefix = array.store_path.path + "/"
            stored = {key[len(prefix):] for key in sync(_listed(array.store_path.store, prefix))}
            if not self._writable:  # a reader's store does not change under it; a writer's does
                self._listing[name] = stored
        return [c for c in coords if array.metadata.encode_chunk_key(tuple(int(x) for x in c)) not in stored]

    def delete_chunks(self, name, coords) -> None:
        from zarr.core.sync import sync

        array = self._root[name]
        for c in coords:
            sync(array.store_path.store.delete(
                f"{array.store_path.path}/{array.metadata.encode_chunk_key(tuple(int(x) for x in c))}"))

    def read_strings(self, name) -> np.ndarray:
        return np.asarray(self._root[name][:], dtype=object)

    def write_strings(self, name, values, start: int = 0) -> None:
        values = np.asarray([str(v) for v in values], dtype=str)
        self.array(name)[start:start + len(values)] = values

    @property
    def attrs(self) -> dict:
        return dict(self._root.attrs)

    def set_attrs(self, values: dict) -> None:
        self._root.attrs.update(_jsonable(values))

    def group_attrs(self, name) -> dict:
        return dict(self._root[name].attrs)

    def set_group_attrs(self, name, values: dict) -> None:
        self._root[name].attrs.update(_jsonable(values))

    def delete(self, name) -> None:
        if name in self._root:
            del self._root[name]

    def flush(self) -> None:
        pass  # zarr writes each chunk atomically as it goes

    def close(self) -> None:
        pass

    def seal(self) -> list[str]:
        named = readable.name_zarr_dimensions(self._root, self.path, self.arrays())  # caches of older sers lack them
        readable.consolidate(self._root.store)
        return ["axis names"] * bool(named) + ["consolidated metadata"]

    def sealed(self) -> bool:
        return readable.zarr_dimensions_stored(self._root, self.arrays()) and \
            readable.consolidated_is_current(self._root.store)


class HDF5Backend(Backend):
    name = "HDF5"
    survives_failed_write = False  # libhdf5 leaves its file inconsistent after a failed write

    journaled = True  # see sers.cache.journal: written whole from a zarr journal, in a helper process

    def __init__(self, path, mode: str):
        import h5py

        self.path = Path(path)
        self._file = h5py.File(str(path), {"r": "r", "a": "r+", "w": "w"}[mode])

    def create(self, name, shape, dtype, chunks):
        import h5py

        string = np.dtype(dtype) == np.dtype(object)
        dtype = h5py.string_dtype("utf-8") if string else dtype
        return self._file.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks,
                                         maxshape=tuple(None for _ in shape), compression="gzip",
                                         compression_opts=1, shuffle=True)

    def array(self, name):
        return self._file[name]

    def has(self, name) -> bool:
        return name in self._file

    def arrays(self) -> list[str]:
        import h5py

        return sorted(f"{group_name}/{name}" for group_name, group in self._file.items()
                      if isinstance(group, h5py.Group)
                      for name, item in group.items() if isinstance(item, h5py.Dataset))

    def is_strings(self, name) -> bool:
        import h5py

        return h5py.check_string_dtype(self._file[name].dtype) is not None

    def read_strings(self, name) -> np.ndarray:
        dataset = self._file[name]
        if len(dataset) == 0:
            return np.empty(0, dtype=object)
        return np.asarray(dataset.asstr()[:], dtype=object)

    def write_strings(self, name, values, start: int = 0) -> None:
        values = [str(v) for v in values]
        self._file[name][start:start + len(values)] = np.asarray(values, dtype=object)

    @property
    def attrs(self) -> dict:
        return self.group_attrs("/")

    def group_attrs(self, name) -> dict:
        out = {}
        for key, value in self._file[name].attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if value == "null":
                value = None
            elif isinstance(value, str) and value[:1] in "[{":
                value = json.loads(value)  # HDF5 attributes hold no nested types: JSON text
            elif isinstance(value, np.generic):
                value = value.item()
            out[key] = value
        return out

    def set_attrs(self, values: dict) -> None:
        self.set_group_attrs("/", values)

    def set_group_attrs(self, name, values: dict) -> None:
        for key, value in _jsonable(values).items():
            if isinstance(value, (dict, list)):
                value = json.dumps(value)
            elif value is None:
                value = "null"
            self._file[name].attrs[key] = value

    def delete(self, name) -> None:
        if name in self._file:
            del self._file[name]

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def seal(self) -> list[str]:
        readable.name_hdf5_dimensions(self._file, self.arrays())
        return ["dimension scales"]

    def sealed(self) -> bool:
        return readable.hdf5_dimensions_named(self._file, self.arrays())


_WRITE_EVERY_CHUNK = {"write_empty_chunks": True}


async def _listed(store, prefix: str) -> list[str]:
    return [key async for key in store.list_prefix(prefix)]


def _jsonable(values: dict) -> dict:
    """Round-trip through JSON so that both back-ends store the same plain types."""
    return json.loads(json.dumps(values, default=_json_default))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in cache attributes")


# The registry: a cache path's suffix names its back-end.
BACKENDS: dict[str, type[Backend]] = {".zarr": ZarrBackend, ".h5": HDF5Backend, ".hdf5": HDF5Backend}


def backend_class(path) -> type[Backend]:
    """The back-end of a cache path, by its suffix; a SersError for any other suffix."""
    name = str(path).rstrip("/")
    for suffix, backend in BACKENDS.items():
        if name.endswith(suffix):
            return backend
    raise SersError(f"{path}: a cache path must end in .zarr (zarr store) or .h5 (HDF5 file)")


def open_backend(path, mode: str) -> Backend:
    """mode: 'r' read, 'a' read/write existing, 'w' create (replacing)."""
    return backend_class(path)(path, mode)


def remove_store(path) -> None:
    """Delete the cache at ``path`` with its back-end's own rule."""
    backend_class(path).remove(path)
