"""Manifests: which audio to extract, with labels, splits, speakers and languages.

A manifest is a CSV, TSV or JSONL file with one utterance per row:

    path (required), id, label, split, speaker, language (or corpus), start, end

Other toolkits' names are read as ours when ours is absent (``wav``, ``file``, ``audio`` for
``path``; ``emotion``, ``emo`` for ``label``: see ALIASES). ``id`` defaults to the file name
without extension; ``start``/``end`` (seconds) cut a
segment out of a longer file. Relative paths resolve against ``audio_root`` or, without
one, against the manifest's own folder, so a corpus folder can be moved as a whole.
Every problem is reported as one :class:`~sers.errors.SersError` line naming the file and
the 1-based line number, because a typo on line 40 213 must be findable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sers.errors import SersError

TEXT_FIELDS = ("label", "split", "speaker", "language")
# Column names other toolkits use (SpeechBrain/EmoBox `wav`, HF `audio`, ...), read as ours
# when ours is absent.
ALIASES = {"wav": "path", "file": "path", "audio": "path", "audio_path": "path", "wav_path": "path",
           "filepath": "path", "emotion": "label", "emo": "label"}


@dataclass(frozen=True)
class Utterance:
    """One unit of extraction: a whole audio file, or the [start, end) seconds of one."""

    id: str
    path: str                   # absolute once read from a manifest
    label: str = ""             # "" = unlabelled
    split: str = ""
    speaker: str = ""
    language: str = ""
    start: float | None = None  # seconds; None = from the beginning
    end: float | None = None    # seconds; None = to the end of the file
    language_original: str = ""  # the language as the input wrote it, where that is not ``language``


def read_manifest(path, audio_root=None, language: str | None = None, *,
                  require_path: bool = True) -> list[Utterance]:
    """Read a CSV/TSV/JSONL manifest into utterances with absolute paths.

    ``language`` fills rows whose language (or corpus) column is empty or absent.
    Raises SersError for a missing file, a missing ``path`` column, an empty path,
    bad start/end, an unreadable JSON line, a duplicate id, or no rows at all.
    ``require_path=False`` reads a manifest that only labels utterances by id (what
    `sers cache import` matches feature files by): then every row needs an id, and a row
    without a path has ``path == ""``.
    """
    manifest = Path(path)
    if manifest.is_dir():
        raise SersError(f"{manifest}: is a folder, not a manifest file "
                        "(for a corpus root use --format msp-podcast or biic-podcast)")
    if not manifest.is_file():
        raise SersError(f"manifest not found: {manifest}")
    base = Path(audio_root).expanduser().absolute() if audio_root else manifest.absolute().parent
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SersError(f"{manifest}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    needed = "path" if require_path else "id"  # the column a row cannot do without
    rows = list(_json_rows(manifest, text, needed) if _is_jsonl(manifest, text) else _table_rows(manifest, text, needed))
    if not rows:
        raise SersError(f"{manifest}: no utterances (the manifest has no data rows)")

    parsed = [_parse_row(manifest, line, fields, base, language, require_path) for line, fields in rows]
    return _assign_ids(manifest, parsed)


def manifest_digest(utterances) -> str:
    """sha256 over the sorted rows, so that a cache can be tied to the manifest that made it.

    Row order does not matter; any change to an id, path, segment, label, split, speaker
    or language does.
    """
    # the language as written: caches made before languages were normalised (sers.fields) still resume
    rows = sorted(json.dumps([u.id, u.path, u.start, u.end, u.label, u.split, u.speaker,
                              u.language_original or u.language],
                             ensure_ascii=False) for u in utterances)
    # surrogateescape: a file name that is not valid UTF-8 still has a digest (extraction records it as an error)
    return hashlib.sha256("\n".join(rows).encode("utf-8", "surrogateescape")).hexdigest()


# --- reading rows -------------------------------------------------------------------

def _is_jsonl(manifest: Path, text: str) -> bool:
    suffix = manifest.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return True
    if suffix in (".csv", ".tsv"):
        return False
    return text.lstrip().startswith("{")


def _json_rows(manifest: Path, text: str, needed: str = "path"):
    """Yield (line number, {field: str}) for each non-blank JSON line."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SersError(f"{manifest} line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise SersError(f"{manifest} line {number}: expected a JSON object, got {type(record).__name__}")
        fields = {str(key).strip().lower(): "" if value is None else str(value).strip()
                  for key, value in record.items()}
        names = _canonical_names(list(fields), f"{manifest} line {number}")
        fields = {names[i]: value for i, value in enumerate(fields.values()) if names[i]}
        if "path" not in fields and needed not in fields:
            found = ", ".join(sorted(fields)) or "none"
            raise SersError(f"{manifest} line {number}: no {needed!r} field{_NO_ID.get(needed, '')} (fields found: {found})")
        yield number, fields


# Why an id is needed when the path is not (the only key read_manifest lets go of is path).
_NO_ID = {"id": " to match rows by, and no 'path' to take ids from"}


def _table_rows(manifest: Path, text: str, needed: str = "path"):
    """Yield (line number, {column: str}) for each non-blank CSV/TSV row."""
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(manifest, text))
    header = next(reader, None)
    if header is None:
        return
    names = [name.strip().lower() for name in header]
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:  # which of the two would be read is a guess: refuse
        raise SersError(f"{manifest}: column {', '.join(repr(n) for n in repeated)} appears more than once "
                        "in the header")
    columns = _canonical_names(names, str(manifest))
    if "path" not in columns and needed not in columns:
        found = ", ".join(name for name in columns if name) or "none"
        raise SersError(f"{manifest}: no {needed!r} column{_NO_ID.get(needed, '')} (columns found: {found})")
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(columns):
            raise SersError(f"{manifest} line {reader.line_num}: {len(row)} values but the header "
                            f"has {len(columns)} columns")
        yield reader.line_num, {name: cell.strip() for name, cell in zip(columns, row) if name}


def _canonical_names(names: list[str], where: str) -> list[str]:
    """Column names with aliases replaced by ours; an alias whose column is also present is
    ignored (""), two aliases of one absent column are ambiguous."""
    out = list(names)
    for canonical in sorted(set(ALIASES.values())):
        if canonical in names:
            out = ["" if ALIASES.get(name) == canonical else name for name in out]
            continue
        aliases = [name for name in names if ALIASES.get(name) == canonical]
        if len(aliases) > 1:
            raise SersError(f"{where}: columns {' and '.join(map(repr, aliases))} could both be the "
                            f"{canonical!r} column; rename one to {canonical!r}")
        out = [canonical if name in aliases else name for name in out]
    return out


def _delimiter(manifest: Path, text: str) -> str:
    suffix = manifest.suffix.lower()
    if suffix == ".tsv":
        return "\t"
    if suffix == ".csv":
        return ","
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters=",\t;").delimiter
    except csv.Error:  # a single column has no delimiter to find
        return ","


# --- turning rows into utterances ------------------------------------------------------

class _Row(NamedTuple):
    line: int
    given_id: str       # "" when the manifest has no id for this row
    stem: str           # file name without extension: the default id
    path: str
    start: float | None
    end: float | None
    text: dict          # label, split, speaker, language


def _parse_row(manifest: Path, line: int, fields: dict, base: Path, language: str | None,
               require_path: bool = True) -> _Row:
    where = f"{manifest} line {line}"
    raw_path = fields.get("path", "")
    if not raw_path and (require_path or not fields.get("id")):
        raise SersError(f"{where}: " + ("empty path" if require_path else "no id (and no path to take one from)"))
    if "\0" in raw_path:  # no file system allows it; os.stat would fail with a bare ValueError
        raise SersError(f"{where}: the path contains a NUL byte")
    audio = Path(raw_path).expanduser()
    audio = Path(os.path.abspath(audio if audio.is_absolute() else base / audio)) if raw_path else ""

    start = _seconds(where, "start", fields.get("start", ""))
    end = _seconds(where, "end", fields.get("end", ""))
    if start is not None and start < 0:
        raise SersError(f"{where}: bad start/end: start ({start:g}) must not be negative")
    if end is not None and end <= (start or 0.0):
        raise SersError(f"{where}: bad start/end: end ({end:g}) must be greater than start ({start or 0.0:g})")

    values = {name: fields.get(name, "") for name in TEXT_FIELDS}
    values["language"] = values["language"] or fields.get("corpus", "") or (language or "")
    return _Row(line, fields.get("id", ""), Path(raw_path).stem, str(audio), start, end, values)


def _seconds(where: str, name: str, value: str) -> float | None:
    if value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise SersError(f"{where}: bad start/end: {name} {value!r} is not a number of seconds") from None
    if not math.isfinite(seconds):
        raise SersError(f"{where}: bad start/end: {name} {value!r} is not a finite number of seconds")
    return seconds


def _assign_ids(manifest: Path, rows: list[_Row]) -> list[Utterance]:
    """Give rows without an id their file stem; segments sharing a stem get their times too."""
    stem_count: dict[str, int] = {}
    for row in rows:
        if not row.given_id:
            stem_count[row.stem] = stem_count.get(row.stem, 0) + 1

    utterances, line_of_id = [], {}
    for row in rows:
        utt_id = row.given_id or row.stem
        is_segment = row.start is not None or row.end is not None
        if not row.given_id and stem_count[row.stem] > 1 and is_segment:
            utt_id = f"{row.stem}_{row.start or 0.0:.3f}-" + ("end" if row.end is None else f"{row.end:.3f}")
        if utt_id in line_of_id:
            raise SersError(f"{manifest}: duplicate id {utt_id!r} on lines {line_of_id[utt_id]} and {row.line} "
                            "(give each row a unique 'id' column)")
        line_of_id[utt_id] = row.line
        utterances.append(Utterance(utt_id, row.path, start=row.start, end=row.end, **row.text))
    return utterances
