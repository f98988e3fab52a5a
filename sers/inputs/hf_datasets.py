"""A Hugging Face `datasets` corpus (``--format hf-datasets``), read as the utterances a manifest gives:

- a folder written by ``save_to_disk``: a Dataset, or a DatasetDict whose keys are the splits;
- a Parquet file (``Dataset.to_parquet``), or a folder of them as the Hub lays out a dataset
  (``data/train-00000-of-00001.parquet``, ``train.parquet``, ``default/train/0000.parquet``):
  the split is told by each file's name.

The audio column is the ``Audio()`` feature (or a column ``path``/``audio``/``wav``/``file``).
A row whose audio is embedded as bytes becomes a reference to that row (:mod:`sers.inputs.embedded`:
decoded from its bytes by the same code as files, in the extraction workers); a row that holds only
a path is that file. ``label``/``emotion`` may be a ClassLabel (its names are used). ``datasets``
is optional (the ``hf-datasets`` extra) and imported only here.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from sers.errors import SersError
from sers.inputs.embedded import audio_column, load, reference
from sers.inputs.manifest import ALIASES, Utterance
from sers.inputs.toolkits import TEXT_FIELDS, need, unique

# Rows are listed this many at a time: the Arrow slices are memory-mapped, so a batch costs its
# text columns, never its audio.
BATCH_ROWS = 4096
# What save_to_disk writes beside the data: a folder with one of these is a dataset, not Parquet.
SAVED_MARKERS = ("dataset_dict.json", "state.json")
_SHARD = re.compile(r"(?P<split>.+?)-\d{5}-of-\d{5}(?:-.*)?")


def read_hf_dataset(path, language: str | None = None) -> list[Utterance]:
    """The utterances of a save_to_disk folder, a Parquet file or a folder of Parquet files
    (see the module doc); ``language`` fills rows without one."""
    datasets = need("datasets", "hf-datasets")
    source = Path(os.path.abspath(Path(path).expanduser()))
    counters: Counter = Counter()  # rows per split so far: a row without an id or a path is '<split>-<n>'
    utterances = []
    for split, dataset, where, refer in _parts(datasets, source):
        utterances += _dataset_rows(dataset, split, where, refer, language, counters)
    return unique(utterances, source)


def _parts(datasets, source: Path):
    """(split or None, Dataset, where for errors, row -> reference) for each part of ``source``."""
    if source.is_file():
        if source.suffix != ".parquet":
            raise SersError(f"{source}: not a Parquet file or a dataset folder written by save_to_disk")
        match = _SHARD.fullmatch(source.stem)
        yield from _parquet_part(source, match["split"] if match else None)
        return
    if not source.is_dir():
        raise SersError(f"{source}: no such dataset folder or Parquet file")
    files = sorted(p for p in source.rglob("*.parquet") if not any(part.startswith(".") for part in
                                                                   p.relative_to(source).parts))
    if files and not any((source / marker).exists() for marker in SAVED_MARKERS):
        for file in files:
            yield from _parquet_part(file, _split_of(file))
        return
    loaded = load(source)
    if isinstance(loaded, datasets.DatasetDict):
        for split, dataset in loaded.items():
            yield split, dataset, f"{source} split {split}", lambda row, split=split: reference(source, row, split)
    else:
        yield None, loaded, str(source), lambda row: reference(source, row)


def _parquet_part(file: Path, split):
    yield split, load(file), str(file), lambda row: reference(file, row)


def _split_of(file: Path) -> str:
    """The split a Parquet file's name tells: train-00000-of-00002 -> train, test.parquet -> test,
    default/validation/0000.parquet (the Hub's converted layout) -> validation."""
    if file.stem.isdigit():
        return file.parent.name
    match = _SHARD.fullmatch(file.stem)
    return match["split"] if match else file.stem


def _dataset_rows(dataset, split, where, refer, language, counters) -> list[Utterance]:
    import pyarrow.compute as pc

    audio = audio_column(dataset.features)
    if audio is None:
        raise SersError(f"{where}: no audio column (columns: {', '.join(dataset.column_names)}); "
                        "give it the Audio() feature or name it audio, path, wav or file")
    names = {ALIASES.get(name, name): name for name in reversed(dataset.column_names)}
    names.update({name: name for name in dataset.column_names if name in ("path", "label")})
    fields = {field: names[field] for field in ("id", "split") + TEXT_FIELDS if field in names}
    label_names = getattr(dataset.features.get(fields.get("label")), "names", None)
    # The arrow format hands out the stored columns: the Audio() struct {bytes, path} as it is, undecoded.
    table = dataset.with_format("arrow")
    utterances = []
    for start in range(0, len(dataset), BATCH_ROWS):
        batch = table[start:start + BATCH_ROWS]
        values = {field: batch.column(column).to_pylist() for field, column in fields.items()}
        column = batch.column(audio)
        if column.type.num_fields:  # a struct: Audio() storage, or a dict of bytes and path
            files = pc.struct_field(column, "path").to_pylist() if column.type.get_field_index("path") >= 0 \
                else [None] * len(batch)
            embedded = pc.is_valid(pc.struct_field(column, "bytes")).to_pylist() \
                if column.type.get_field_index("bytes") >= 0 else [False] * len(batch)
        else:
            files, embedded = column.to_pylist(), [False] * len(batch)
        for i, (file, inside) in enumerate(zip(files, embedded)):
            row = start + i
            if not inside and not (file and Path(file).is_file()):
                raise SersError(f"{where} row {row}: audio {file!r} is not a file on disk and the row holds no "
                                "audio bytes")
            counters[split] += 1
            text = {field: values[field][i] for field in values}
            label = text.get("label")
            if label_names and isinstance(label, int):  # a ClassLabel; -1 is its 'no label'
                label = label_names[label] if label >= 0 else ""
            given = text.get("id")
            utterances.append(Utterance(
                id=str(given) if given not in (None, "") else Path(file).stem if file
                else f"{split or 'row'}-{counters[split] - 1}",
                path=refer(row) if inside else os.path.abspath(file),
                label="" if label is None else str(label), split=split or str(text.get("split") or ""),
                speaker=str(text.get("speaker") or ""), language=str(text.get("language") or language or "")))
    return utterances
