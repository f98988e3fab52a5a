"""Corpora described by other toolkits: a lhotse CutSet, a Hugging Face `datasets` folder.

Both become the same utterances a manifest gives (``--format lhotse`` / ``--format hf-datasets``);
the packages are optional (the ``lhotse`` / ``datasets`` extras) and imported only here. sers
extracts from audio files, so cuts and rows must point at files on disk.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from sers.errors import SersError
from sers.inputs.manifest import ALIASES, Utterance

TEXT_FIELDS = ("label", "split", "speaker", "language")


def _need(package: str, extra: str):
    try:
        return __import__(package)
    except ImportError:
        raise SersError(f"--format {extra} needs the {package} package: pip install 'sers-lam[{extra}]'") from None


def _unique(utterances: list[Utterance], source) -> list[Utterance]:
    seen = set()
    for utterance in utterances:
        if utterance.id in seen:
            raise SersError(f"{source}: duplicate id {utterance.id!r}")
        seen.add(utterance.id)
    if not utterances:
        raise SersError(f"{source}: no utterances")
    return utterances


# -- lhotse ---------------------------------------------------------------------------------------

def read_lhotse(path, language: str | None = None) -> list[Utterance]:
    """A CutSet file (``cuts.jsonl.gz``): one utterance per cut, its [start, start + duration) of
    the recording's file; label from the first supervision's ``emotion`` (or ``label``) custom
    field, split from the cut's or supervision's ``split`` custom field."""
    lhotse = _need("lhotse", "lhotse")
    try:
        cuts = lhotse.CutSet.from_file(path)
    except Exception as exc:
        raise SersError(f"{path}: not a readable lhotse CutSet ({type(exc).__name__}: {exc})") from None
    utterances = []
    for cut in cuts:
        recording = getattr(cut, "recording", None)
        sources = recording.sources if recording is not None else []
        if len(sources) != 1 or sources[0].type != "file":
            raise SersError(f"{path}: cut {cut.id} is not one audio file (sources: "
                            f"{[s.type for s in sources]}); sers extracts from files")
        supervision = cut.supervisions[0] if cut.supervisions else None
        custom = {**(getattr(cut, "custom", None) or {}), **((supervision.custom or {}) if supervision else {})}
        whole = math.isclose(cut.start, 0.0) and math.isclose(cut.duration, recording.duration)
        utterances.append(Utterance(
            id=cut.id, path=os.path.abspath(sources[0].source),
            label=str(custom.get("emotion", custom.get("label", "")) or ""), split=str(custom.get("split", "") or ""),
            speaker=str(getattr(supervision, "speaker", "") or ""),
            language=str(getattr(supervision, "language", "") or language or ""),
            start=None if whole else float(cut.start), end=None if whole else float(cut.start + cut.duration)))
    return _unique(utterances, path)


# -- Hugging Face datasets ------------------------------------------------------------------------

def read_hf_dataset(path, language: str | None = None) -> list[Utterance]:
    """A folder written by ``Dataset.save_to_disk`` (or a ``DatasetDict``: its keys are the splits).
    The audio column (``audio`` feature, or ``path``/``wav``/``file``) must name files on disk;
    ``label``/``emotion`` may be a ClassLabel (its names are used)."""
    datasets = _need("datasets", "hf-datasets")
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise SersError(f"{path}: not a dataset folder written by save_to_disk ({type(exc).__name__}: {exc})") \
            from None
    parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    utterances = []
    for split, dataset in parts:
        utterances += _dataset_rows(datasets, dataset, split, path, language)
    return _unique(utterances, path)


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
