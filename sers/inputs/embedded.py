"""Audio held inside a dataset instead of in files: a Hugging Face ``datasets`` folder written by
``save_to_disk`` whose ``Audio()`` column embeds the bytes, or a Parquet export of one
(:mod:`sers.inputs.hf_datasets` lists the utterances).

Such an utterance's ``path`` is a *reference* to its row: ``SOURCE#split=SPLIT&row=N`` (a
DatasetDict folder and one of its splits) or ``SOURCE#row=N`` (a Dataset folder, a Parquet file),
SOURCE absolute. It is what the cache's path column and every error line show, so that a row
that does not decode can be found; it is what the manifest digest covers, so a rerun resumes.

The bytes are read where they are decoded (:mod:`sers.inputs.audio`, in the extraction workers),
one row at a time from a memory-mapped Arrow table: the reader lists 100 000 rows without holding
their audio, and a worker holds only the rows of its batch.

Parquet cannot be read one row at a time (a row group, up to ~100 MB as ``datasets`` writes them,
is the smallest unit), and the model sees rows in length order, not file order: a Parquet file
is converted once into datasets' memory-mapped Arrow cache (``Dataset.from_parquet``, what
``load_dataset`` does; ``HF_DATASETS_CACHE`` says where), which every worker and every resumed
run finds again instead of reading a row group per utterance.
"""
from __future__ import annotations

import functools
import os
import re
from urllib.parse import quote, unquote

from sers.errors import SersError
from sers.inputs.manifest import ALIASES

_REFERENCE = re.compile(r"(?P<source>.+)#(?:split=(?P<split>[^&#]*)&)?row=(?P<row>\d+)")
# audio_info reads a row twice (its header, then the WAV length check): the last row read is kept,
# under its reference and the dataset's signature.
_LAST: dict[tuple, bytes] = {}


def reference(source, row: int, split: str | None = None) -> str:
    """The path that names row ``row`` (of ``split``, a DatasetDict's key) of ``source``."""
    where = "" if split is None else f"split={quote(split, safe='')}&"
    return f"{source}#{where}row={row}"


def is_reference(path) -> bool:
    """Whether ``path`` names a dataset row; a real file of that name is still read as a file."""
    text = str(path)
    return "#" in text and _REFERENCE.fullmatch(text) is not None and not os.path.lexists(text)


def audio_column(features) -> str | None:
    """The column holding the audio: the first ``Audio()`` feature, else a column named ``path``
    or as other toolkits name it (audio, wav, file, ...: the manifest's aliases)."""
    import datasets

    for name, feature in features.items():
        if isinstance(feature, datasets.Audio):
            return name
    names = list(features)
    return "path" if "path" in names else next((name for name in names if ALIASES.get(name) == "path"), None)


def load(source):
    """The Dataset or DatasetDict in the ``save_to_disk`` folder ``source``, or the Dataset of the
    Parquet file ``source`` (through datasets' Arrow cache, see the module doc); memory-mapped."""
    from sers.inputs.toolkits import need

    datasets = need("datasets", "hf-datasets")
    parquet = os.path.isfile(source)
    try:
        return datasets.Dataset.from_parquet(str(source)) if parquet else datasets.load_from_disk(str(source))
    except Exception as exc:
        what = "a readable Parquet file" if parquet else "a dataset folder written by save_to_disk"
        raise SersError(f"{source}: not {what} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") \
            from None


def audio_bytes(path) -> bytes:
    """The encoded audio (WAV, FLAC, ...) of the row ``path`` names, or a SersError naming it."""
    text = str(path)
    match = _REFERENCE.fullmatch(text)
    source, row = match["source"], int(match["row"])
    if not os.path.exists(source):
        raise SersError(f"{text}: {source} is not there (moved or deleted since the utterances were listed?)")
    split = None if match["split"] is None else unquote(match["split"])
    signature = _signature(source, split)
    if (text, signature) in _LAST:
        return _LAST[text, signature]
    rows = _audio_rows(source, split, signature)
    if row >= len(rows):
        raise SersError(f"{text}: no such row (the dataset has {len(rows)} rows; changed since it was listed?)")
    value = rows[row].column(0)[0].as_py()
    data = value.get("bytes") if isinstance(value, dict) else None
    if data is None:
        raise SersError(f"{text}: the row holds no audio bytes")
    _LAST.clear()
    _LAST[text, signature] = data
    return data


def _signature(source: str, split: str | None) -> tuple:
    """What changes when ``source`` is written again (save_to_disk rewrites state.json): a dataset
    saved anew over the same folder in a long-lived process (a notebook) is opened anew, not read
    through the memory map of the files it replaced."""
    files = [source] if os.path.isfile(source) else [
        os.path.join(source, *parts) for parts in (("state.json",), ("dataset_dict.json",), (split or "", "state.json"))]
    stats = [(file, os.stat(file)) for file in files if os.path.isfile(file)]
    return tuple((file, stat.st_mtime_ns, stat.st_size, stat.st_ino) for file, stat in stats)


# Rows reach a worker in length order, so every batch may touch every Parquet shard of a corpus (the
# Hub's layout has hundreds): each stays open, a memory map and no audio in memory, not reopened per row.
@functools.lru_cache(maxsize=1024)
def _audio_rows(source: str, split: str | None, signature: tuple):
    """The audio column of ``source`` (its ``split``) as one-row Arrow tables, memory-mapped: opened
    once per process (per ``signature``), not once per row."""
    import datasets

    loaded = load(source)
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise SersError(f"{source}: no split {split!r} (splits: {', '.join(loaded)})")
        loaded = loaded[split]
    column = audio_column(loaded.features)
    if column is None:
        raise SersError(f"{source}: no audio column (columns: {', '.join(loaded.column_names)})")
    # The arrow format hands out the stored struct {bytes, path}: nothing is decoded (no torchcodec).
    return loaded.with_format("arrow", columns=[column])
