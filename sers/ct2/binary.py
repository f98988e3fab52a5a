"""The CTranslate2 ``model.bin`` format, read and written with numpy alone.

Layout (CTranslate2 ``python/ctranslate2/specs/model_spec.py`` ``ModelSpec._serialize``
writes it, ``src/models/model.cc`` ``Model::load`` reads it); integers are little-endian,
a string is a uint16 length counting a closing NUL byte, then the bytes and the NUL::

    uint32 binary_version                      (this reader knows 1..6)
    string spec_name, uint32 spec_revision     (binary_version >= 2)
    uint32 num_variables, then per variable, sorted by name:
        string name, uint8 rank, uint32 dims[rank],
        uint8 dtype_id, uint32 num_bytes       (binary_version >= 4)
        uint8 item_size, uint32 num_items      (binary_version < 4: dtype from the width)
        the raw bytes, C order
    uint32 num_aliases, then per alias:        (binary_version >= 3)
        string alias, string variable_name     (``alias_scale`` also aliases ``name_scale``)

Quantised weights: an int8 weight ``W`` has a float ``W_scale`` with one value per row
(scale = 127 / max|row|), an int16 weight a scalar scale; CTranslate2 dequantises as
``W * (1 / W_scale)``. numpy has no bfloat16, so bfloat16 variables are held as uint16
bit patterns (CTranslate2 has no uint16 type, so the two never clash).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sers.errors import SersError

CURRENT_BINARY_VERSION = 6

# Index = dtype id, the order of CTranslate2's DataType enum (include/ctranslate2/types.h).
DTYPE_NAMES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_STORAGE = {
    "float32": np.dtype("<f4"),
    "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
}
# binary_version < 4 stored an item width instead of a dtype id (Model::load's old logic).
_DTYPE_FROM_WIDTH = {4: "float32", 2: "int16", 1: "int8"}


@dataclass
class ModelBin:
    """A parsed model.bin: the variables exactly as stored, and the aliases."""

    path: Path
    binary_version: int
    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray]
    dtypes: dict[str, str]
    aliases: dict[str, str] = field(default_factory=dict)

    def scalar(self, name: str):
        """A stored scalar attribute (e.g. ``encoder/num_heads``) as a Python number, or None."""
        value = self.variables.get(self.aliases.get(name, name))
        if value is None or value.ndim != 0:
            return None
        return value.item()


def dtype_name(array: np.ndarray) -> str:
    """The CTranslate2 dtype name for a numpy array (uint16 means bfloat16 bits)."""
    for name, storage in _STORAGE.items():
        if array.dtype.newbyteorder("<") == storage:
            return name
    raise ValueError(f"numpy dtype {array.dtype} has no CTranslate2 equivalent ({', '.join(DTYPE_NAMES)})")


class _Cursor:
    """Walks a byte buffer, failing with the position when the file ends too early."""

    def __init__(self, buffer, path: Path):
        self.buffer, self.path, self.pos = buffer, path, 0

    def take(self, size: int, what: str):
        end = self.pos + size
        if end > len(self.buffer):
            raise SersError(
                f"{self.path}: truncated: needs {size} bytes for {what} at byte {self.pos}, "
                f"but the file has {len(self.buffer)} bytes"
            )
        chunk = self.buffer[self.pos:end]
        self.pos = end
        return chunk

    def uint(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        length = self.uint("H", f"the length of {what}")
        raw = bytes(self.take(length, what))
        return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def file_sha256(path) -> str:
    """The sha256 of a file, read a block at a time (model.bin files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_header(path) -> tuple[int, str, int]:
    """(binary_version, spec_name, spec_revision) from the first bytes of a model.bin.

    Reads a few hundred bytes at most; SersError if they are not a CTranslate2 header.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4 + 2 + 0xFFFF + 4)  # version, the longest possible spec name, revision
    cursor = _Cursor(head, path)
    version = cursor.uint("I", "the binary version")
    if not 1 <= version <= CURRENT_BINARY_VERSION:
        raise SersError(
            f"{path}: binary version {version} is not a CTranslate2 model.bin this reader "
            f"knows (versions 1 to {CURRENT_BINARY_VERSION})"
        )
    if version < 2:  # version 1 predates spec names
        return version, "", 1
    spec_name = cursor.string("the spec name")
    return version, spec_name, cursor.uint("I", "the spec revision")


def read_model_bin(path) -> ModelBin:
    """Parse a whole model.bin into numpy arrays (memory-mapped, so big files are cheap)."""
    path = Path(path)
    buffer = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else b""
    version, spec_name, spec_revision = read_header(path)
    cursor = _Cursor(buffer, path)
    cursor.take(4, "the binary version")
    if version >= 2:
        cursor.string("the spec name")
        cursor.uint("I", "the spec revision")

    variables: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for index in range(cursor.uint("I", "the number of variables")):
        name = cursor.string(f"the name of variable {index}")
        rank = cursor.uint("B", f"the rank of {name}")
        shape = tuple(cursor.uint("I", f"a dimension of {name}") for _ in range(rank))
        if version >= 4:
            type_id = cursor.uint("B", f"the dtype of {name}")
            if type_id >= len(DTYPE_NAMES):
                raise SersError(
                    f"{path}: variable {name} has unknown dtype id {type_id} "
                    f"(known: {', '.join(f'{i}={n}' for i, n in enumerate(DTYPE_NAMES))})"
                )
            dtype = DTYPE_NAMES[type_id]
            num_bytes = cursor.uint("I", f"the byte count of {name}")
        else:
            width = cursor.uint("B", f"the item size of {name}")
            if width not in _DTYPE_FROM_WIDTH:
                raise SersError(f"{path}: variable {name} has unknown item size {width}")
            dtype = _DTYPE_FROM_WIDTH[width]
            num_bytes = cursor.uint("I", f"the item count of {name}") * width
        storage = _STORAGE[dtype]
        expected = int(np.prod(shape, dtype=np.int64)) * storage.itemsize
        if num_bytes != expected:
            raise SersError(
                f"{path}: variable {name} has {num_bytes} bytes, but shape {list(shape)} "
                f"of {dtype} needs {expected}"
            )
        raw = cursor.take(num_bytes, f"the data of {name}")
        variables[name] = np.frombuffer(raw, dtype=storage).reshape(shape)
        dtypes[name] = dtype

    aliases: dict[str, str] = {}
    if version >= 3:
        for index in range(cursor.uint("I", "the number of aliases")):
            alias = cursor.string(f"alias {index}")
            aliases[alias] = cursor.string(f"the target of alias {alias}")
    return ModelBin(path, version, spec_name, spec_revision, variables, dtypes, aliases)


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the upper half of a float32."""
    return (bits.astype("<u4") << 16).view("<f4")


def float32_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """Round float32 to the nearest bfloat16 (ties to even), as torch's ``.to(bfloat16)``."""
    bits = np.ascontiguousarray(values, dtype="<f4").view("<u4")
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype("<u2")


def _to_float32(model: ModelBin, name: str) -> np.ndarray:
    array, dtype = model.variables[name], model.dtypes[name]
    if dtype in ("int8", "int16"):
        scale_name = name + "_scale"
        stored_as = model.aliases.get(scale_name, scale_name)
        if stored_as not in model.variables:
            raise SersError(f"{model.path}: {dtype} variable {name} has no {scale_name} to dequantise it")
        scale = _float32(model.variables[stored_as], model.dtypes[stored_as]).reshape(-1)
        rows = array.reshape(-1, array.shape[-1]) if dtype == "int8" else array.reshape(1, -1)
        if scale.size != rows.shape[0]:
            raise SersError(
                f"{model.path}: {scale_name} has {scale.size} values for {rows.shape[0]} rows of {name}"
            )
        reciprocal = (np.float32(1) / scale)[:, None]
        return (rows.astype(np.float32) * reciprocal).reshape(array.shape)
    return _float32(array, dtype)


def _float32(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return bfloat16_bits_to_float32(array)
    return array.astype(np.float32)


def float_weights(model: ModelBin) -> dict[str, np.ndarray]:
    """Every non-scalar variable as float32 (int8/int16 dequantised), aliases resolved.

    The ``*_scale`` variables are consumed by the weights they belong to; scalar
    attributes are left out (read them with ``ModelBin.scalar``).
    """
    weights = {}
    for name, array in model.variables.items():
        is_scale_of_weight = name.endswith("_scale") and name[: -len("_scale")] in model.variables
        if array.ndim == 0 or is_scale_of_weight:
            continue
        weights[name] = _to_float32(model, name)
    for alias, target in model.aliases.items():
        if target in weights:
            weights[alias] = weights[target]
    return weights


def write_model_bin(
    path,
    variables: dict[str, np.ndarray],
    aliases: dict[str, str] | None = None,
    *,
    spec_name: str,
    spec_revision: int,
    binary_version: int = CURRENT_BINARY_VERSION,
) -> Path:
    """Write a model.bin byte for byte as ``ModelSpec._serialize`` does (sorted by name).

    ``variables`` maps names to numpy arrays (float32, float16, int8, int16, int32, or
    uint16 holding bfloat16 bits); 0-d arrays are scalar attributes. ``binary_version``
    below 4 writes the older item-size layout (float32, int16 and int8 only).
    """
    path = Path(path)
    if not 2 <= binary_version <= CURRENT_BINARY_VERSION:
        raise ValueError(f"binary_version must be 2..{CURRENT_BINARY_VERSION}")
    if aliases and binary_version < 3:
        raise ValueError("aliases need binary_version >= 3")

    def string(text: str) -> bytes:
        raw = text.encode("utf-8")
        return struct.pack("<H", len(raw) + 1) + raw + b"\0"

    parts = [struct.pack("<I", binary_version), string(spec_name), struct.pack("<I", spec_revision)]
    parts.append(struct.pack("<I", len(variables)))
    for name in sorted(variables):
        array = np.asarray(variables[name])  # (ascontiguousarray would make scalars 1-d)
        dtype = dtype_name(array)
        data = array.astype(_STORAGE[dtype], copy=False).tobytes(order="C")
        parts += [string(name), struct.pack("<B", array.ndim)]
        parts += [struct.pack("<I", dim) for dim in array.shape]
        if binary_version >= 4:
            parts.append(struct.pack("<BI", DTYPE_NAMES.index(dtype), len(data)))
        else:
            width = {v: k for k, v in _DTYPE_FROM_WIDTH.items()}[dtype]
            parts.append(struct.pack("<BI", width, array.size))
        parts.append(data)
    if binary_version >= 3:
        parts.append(struct.pack("<I", len(aliases or {})))
        for alias in sorted(aliases or {}):
            parts += [string(alias), string(aliases[alias])]
    path.write_bytes(b"".join(parts))
    return path
