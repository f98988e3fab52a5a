"""Readers for corpus layouts researchers already have on disk.

MSP-Podcast (English) and BIIC-Podcast (Taiwanese Mandarin) share one layout:

    ROOT/Labels/labels_consensus.csv   FileName, EmoClass, EmoAct, EmoVal, EmoDom,
                                       SpkrID, Gender, Split_Set
    ROOT/Audios/<FileName>

EmoClass codes are N neutral, H happy, A angry, S sad, U surprise, C contempt, D disgust,
F fear, O other, X no agreement. The default label map keeps the shared 4-class set
N/H/A/S (the classes both corpora have enough of) and drops the rest, counting what it
dropped so that the user sees it. An empty EmoClass is kept as an unlabelled utterance
(label ""), which is what an unlabelled target corpus looks like.

Listed audio that is missing on disk is not an error here: extraction records it in the
cache's errors table, so one lost file does not stop a corpus.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from sers.errors import SersError
from sers.fields import settle
from sers.jsonfile import read_json
from sers.inputs.manifest import Utterance, read_manifest

EMOTION_CLASSES = {"N": "neutral", "H": "happy", "A": "angry", "S": "sad", "U": "surprise",
                   "C": "contempt", "D": "disgust", "F": "fear", "O": "other", "X": "no agreement"}
DEFAULT_LABEL_MAP = {code: (code if code in "NHAS" else None) for code in EMOTION_CLASSES}
SPLIT_NAMES = {"train": "train", "development": "dev", "dev": "dev", "validation": "dev"}
REQUIRED_COLUMNS = ("FileName", "EmoClass", "Split_Set")


@dataclass
class CorpusSummary:
    """What a reader kept and dropped, for the one line the caller prints."""

    kept: Counter = field(default_factory=Counter)       # label -> utterances ("" = unlabelled)
    dropped: Counter = field(default_factory=Counter)    # class outside the label map -> utterances
    other_splits: int = 0                                 # rows skipped by the ``splits`` filter

    def dropped_line(self) -> str:
        """e.g. 'dropped 123 utterances with classes outside the label map: C 40, U 50, X 33'."""
        if not self.dropped:
            return ""
        counts = ", ".join(f"{code} {n}" for code, n in sorted(self.dropped.items()))
        return f"dropped {sum(self.dropped.values())} utterances with classes outside the label map: {counts}"


def load_label_map(source) -> dict:
    """A label map from a dict or a JSON file: {code: label, or null to drop the class}."""
    if isinstance(source, dict):
        mapping, where = source, "label map"
    else:
        where = str(source)
        mapping = read_json(source, missing="label map not found", invalid="not a JSON label map")
    if not isinstance(mapping, dict):
        raise SersError(f"{where}: expected a JSON object like {{\"N\": \"N\", \"C\": null}}")
    for code, label in mapping.items():
        if label is not None and not isinstance(label, str):
            raise SersError(f"{where}: label for {code!r} must be a string or null, got {label!r}")
    return {str(code): label for code, label in mapping.items()}


def read_msp_podcast(root, label_map=DEFAULT_LABEL_MAP, language: str | None = None,
                     splits=None, default_language: str = "en") -> tuple[list[Utterance], CorpusSummary]:
    """Utterances of an MSP-Podcast-layout corpus, labels mapped, plus what was dropped.

    ``label_map``: dict or JSON file path, EmoClass code -> label (None or absent: drop).
    ``splits``: keep only these splits (train, dev, test1, ...); None keeps all.
    ``language``: recorded for every utterance (default ``default_language``).
    """
    root = Path(root).expanduser().absolute()
    labels_file = root / "Labels" / "labels_consensus.csv"
    if not labels_file.is_file():
        raise SersError(f"{labels_file}: labels file not found (is {root} an MSP-Podcast-layout corpus root?)")
    wanted_splits = None if splits is None else {_split_name(s) for s in splits}
    language = language or default_language

    utterances, line_of_file, other_splits = [], {}, 0
    for line, row in _label_rows(labels_file):
        file_name = row["FileName"]
        if not file_name:
            raise SersError(f"{labels_file} line {line}: empty FileName")
        if file_name in line_of_file:
            raise SersError(f"{labels_file}: FileName {file_name!r} listed twice, on lines "
                            f"{line_of_file[file_name]} and {line}")
        line_of_file[file_name] = line
        split = _split_name(row.get("Split_Set", ""))
        if wanted_splits is not None and split not in wanted_splits:
            other_splits += 1
            continue
        utterances.append(Utterance(Path(file_name).stem, str(root / "Audios" / file_name),
                                    label=row.get("EmoClass", ""), split=split,
                                    speaker=row.get("SpkrID", ""), language=language))
    utterances, summary = map_labels(utterances, label_map)
    summary.other_splits = other_splits
    return utterances, summary


def map_labels(utterances: list[Utterance], label_map) -> tuple[list[Utterance], CorpusSummary]:
    """Relabel through ``label_map``; drop (and count) labels it maps to None or lacks.

    Unlabelled utterances (label "") are kept as they are.
    """
    mapping = load_label_map(label_map)
    kept, summary = [], CorpusSummary()
    for utterance in utterances:
        label = mapping.get(utterance.label) if utterance.label else ""
        if label is None:
            summary.dropped[utterance.label] += 1
            continue
        summary.kept[label] += 1
        kept.append(replace(utterance, label=label))
    return kept, summary


@dataclass(frozen=True)
class CorpusReader:
    """One ``--format``: ``read(source, audio_root=, language=, label_map=, splits=)`` returns the
    utterances and a :class:`CorpusSummary`; ``help`` is its line in `sers extract --help`."""

    name: str
    read: Callable[..., tuple[list[Utterance], CorpusSummary]]
    help: str


def _listing(read_list):
    """A reader for formats that list utterances as they are (a manifest, another toolkit's
    corpus): the split filter, then the label map only when one is given."""
    def read(source, *, audio_root, language, label_map, splits):
        utterances = read_list(source, audio_root=audio_root, language=language)
        if splits is not None:
            wanted = set(splits)
            utterances = [u for u in utterances if u.split in wanted]
        summary = CorpusSummary(kept=Counter(u.label for u in utterances))
        if label_map is not None:
            utterances, summary = map_labels(utterances, label_map)
        return utterances, summary
    return read


def _podcast_layout(name: str, default_language: str):
    """The MSP-Podcast layout reader (audio under ROOT/Audios, default label map N/H/A/S)."""
    def read(source, *, audio_root, language, label_map, splits):
        if audio_root is not None:
            raise SersError(f"--audio-root does not apply to {name}: audio is read from {source}/Audios")
        return read_msp_podcast(source, DEFAULT_LABEL_MAP if label_map is None else label_map,
                                language=language, splits=splits, default_language=default_language)
    return read


def _toolkit(name: str, module_name: str, function_name: str):
    """A reader of another toolkit's corpus, imported when used (lhotse, datasets are optional)."""
    def read_list(source, *, audio_root, language):
        import importlib

        if audio_root is not None:  # refused, not ignored: the audio would silently come from elsewhere
            raise SersError(f"--audio-root does not apply to {name}: its cuts or rows name their audio "
                            "(relative paths are read from the current folder)")

        return getattr(importlib.import_module(module_name), function_name)(source, language=language)
    return read_list


# The registry of corpus formats, in the order `--format` lists them. Adding a layout is one
# entry here: a name, a reader with the signature above, one line of help.
READERS = {reader.name: reader for reader in (
    CorpusReader("manifest", _listing(read_manifest), "a CSV/TSV/JSONL manifest"),
    CorpusReader("msp-podcast", _podcast_layout("msp-podcast", "en"),
                 "an MSP-Podcast corpus root, with Labels/labels_consensus.csv and Audios/"),
    CorpusReader("biic-podcast", _podcast_layout("biic-podcast", "zh"),
                 "a BIIC-Podcast corpus root, the MSP-Podcast layout in language zh"),
    CorpusReader("lhotse", _listing(_toolkit("lhotse", "sers.inputs.toolkits", "read_lhotse")), "a lhotse CutSet file"),
    CorpusReader("hf-datasets", _listing(_toolkit("hf-datasets", "sers.inputs.hf_datasets", "read_hf_dataset")),
                 "a datasets save_to_disk folder, or a Parquet file or folder of them"),
)}


def read_corpus(source, format: str = "manifest", *, audio_root=None, language: str | None = None,
                label_map=None, splits=None, split: str | None = None, log=None) -> list[Utterance]:
    """Read a manifest file or a corpus root, by ``format``, a name in :data:`READERS`: manifest,
    msp-podcast, biic-podcast, lhotse (a CutSet file or a folder of per-split ones), hf-datasets
    (a ``save_to_disk`` folder, a Parquet file or a folder of them).

    biic-podcast is the MSP-Podcast reader with Chinese ("zh") as the default language.
    ``label_map`` (podcast layouts; default N/H/A/S) and ``splits`` (a filter: the splits to keep)
    select utterances; ``split`` (``--split``) is not a filter but the split of every utterance the
    input gives none, and an utterance with another split is refused. Languages become ISO codes
    with what the input wrote kept in ``language_original`` (:mod:`sers.fields`, for every format).
    The lines about dropped classes and unknown languages go to ``log`` (e.g. ``click.echo``).
    """
    if format not in READERS:
        raise SersError(f"unknown corpus format {format!r}; choose one of: {', '.join(READERS)}")
    if split is not None and splits is not None:  # every utterance ends up in `split`, or is refused
        if split not in set(splits):
            raise SersError(f"--split {split} puts every utterance in split {split}, which the split filter "
                            f"({', '.join(map(str, splits))}) leaves out")
        splits = None
    utterances, summary = READERS[format].read(source, audio_root=audio_root, language=language,
                                               label_map=label_map, splits=splits)
    utterances = settle_fields(utterances, split, source, log)
    if log is not None and summary.dropped:
        log(summary.dropped_line())
    if not utterances:
        raise SersError(f"{source}: no utterances left to extract (after the label map and split filter)")
    return utterances


def settle_fields(utterances: list[Utterance], split: str | None, source, log=None) -> list[Utterance]:
    """The rules of :mod:`sers.fields` on what a reader gave: ``split`` where none is given (another
    one refused), languages as ISO codes (the one note naming unknown ones goes to ``log``)."""
    splits, codes, originals = settle([u.id for u in utterances], [u.split for u in utterances],
                                      [u.language_original or u.language for u in utterances], split, source, log)
    settled = []
    for utterance, split_name, code, original in zip(utterances, splits, codes, originals):
        fields = dict(split=split_name, language=code, language_original="" if original == code else original)
        same = all(getattr(utterance, name) == value for name, value in fields.items())
        settled.append(utterance if same else replace(utterance, **fields))  # most rows change nothing
    return settled


def _split_name(value: str) -> str:
    """Train -> train, Development -> dev, Test1 -> test1; anything else lower-cased."""
    name = value.strip().lower()
    return SPLIT_NAMES.get(name, name)


def _label_rows(labels_file: Path):
    """Yield (line number, {column: stripped value}) for every non-blank row."""
    try:
        text = labels_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SersError(f"{labels_file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text))
    header = [name.strip() for name in next(reader, [])]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        found = ", ".join(name for name in header if name) or "none"
        raise SersError(f"{labels_file}: missing column(s) {', '.join(missing)} (columns found: {found})")
    for row in reader:
        if any(cell.strip() for cell in row):
            yield reader.line_num, {name: cell.strip() for name, cell in zip(header, row)}
