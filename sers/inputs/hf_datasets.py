"""A Hugging Face `datasets` corpus (``--format hf-datasets``): a ``save_to_disk`` folder, read as the
utterances a manifest gives. ``datasets`` is optional (the ``hf-datasets`` extra) and imported only here.
"""
from __future__ import annotations

import os
from pathlib import Path

from sers.errors import SersError
from sers.inputs.manifest import ALIASES, Utterance
from sers.inputs.toolkits import TEXT_FIELDS, need, unique


def read_hf_dataset(path, language: str | None = None) -> list[Utterance]:
    """A folder written by ``Dataset.save_to_disk`` (or a ``DatasetDict``: its keys are the splits).
    The audio column (``audio`` feature, or ``path``/``wav``/``file``) must name files on disk;
    ``label``/``emotion`` may be a ClassLabel (its names are used)."""
    datasets = need("datasets", "hf-datasets")
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise SersError(f"{path}: not a dataset folder written by save_to_disk ({type(exc).__name__}: {exc})") \
            from None
    parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    utterances = []
    for split, dataset in parts:
        utterances += _dataset_rows(datasets, dataset, split, path, language)
    return unique(utterances, path)


def _dataset_rows(datasets, dataset, split, path, language) -> list[Utterance]:
    names = {ALIASES.get(name, name): name for name in reversed(dataset.column_names)}
    names.update({name: name for name in dataset.column_names if name in ("path", "label")})
    if "path" not in names:
        raise SersError(f"{path}: no audio column (columns: {', '.join(dataset.column_names)}); "
                        "name it audio, path, wav or file")
    audio = names["path"]
    if isinstance(dataset.features[audio], datasets.Audio):
        dataset = dataset.cast_column(audio, datasets.Audio(decode=False))
    label_names = getattr(dataset.features.get(names.get("label")), "names", None)
    utterances = []
    for number, row in enumerate(dataset):
        value = row[audio]
        file = value.get("path") if isinstance(value, dict) else value
        if not file or not Path(file).is_file():
            raise SersError(f"{path}: row {number}{f' of split {split}' if split else ''}: audio {file!r} is not "
                            f"a file on disk (audio embedded as bytes: write it out, or save the dataset with paths)")
        label = row.get(names["label"], "") if "label" in names else ""
        label = label_names[label] if label_names and isinstance(label, int) and label >= 0 else label
        text = {name: str(row.get(names[name], "") or "") if name in names else "" for name in TEXT_FIELDS[2:]}
        utterances.append(Utterance(
            id=str(row["id"]) if "id" in row else Path(file).stem, path=os.path.abspath(file),
            label="" if label is None else str(label), split=split or str(row.get(names.get("split", ""), "") or ""),
            speaker=text["speaker"], language=text["language"] or language or ""))
    return utterances
