"""Corpora described by other toolkits: a lhotse CutSet here, a Hugging Face `datasets` folder in
:mod:`sers.inputs.hf_datasets`.

Both become the same utterances a manifest gives (``--format lhotse`` / ``--format hf-datasets``);
the packages are optional (the ``lhotse`` / ``datasets`` extras) and imported only where read.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import replace
from pathlib import Path

from sers.errors import SersError
from sers.fields import assign_split
from sers.inputs.manifest import Utterance

TEXT_FIELDS = ("label", "split", "speaker", "language")


def need(package: str, extra: str):
    try:
        return __import__(package)
    except ImportError:
        raise SersError(f"--format {extra} needs the {package} package: pip install 'sers-lam[{extra}]'") from None


def unique(utterances: list[Utterance], source) -> list[Utterance]:
    seen = set()
    for utterance in utterances:
        if utterance.id in seen:
            raise SersError(f"{source}: duplicate id {utterance.id!r}")
        seen.add(utterance.id)
    if not utterances:
        raise SersError(f"{source}: no utterances")
    return utterances


# -- lhotse ---------------------------------------------------------------------------------------

# lhotse keeps one CutSet per split: cuts_train.jsonl.gz, or as its recipes name them
# iemocap_cuts_train.jsonl.gz; a plain cuts.jsonl.gz has no split in its name.
CUTS_FILE = re.compile(r"^(?:.+_)?cuts(?:_(?P<split>[^.]+))?\.jsonl(?:\.gz)?$")


def read_lhotse(path, language: str | None = None) -> list[Utterance]:
    """A CutSet file (``cuts.jsonl.gz``), or a folder of them (``cuts_{split}.jsonl.gz`` or
    ``{corpus}_cuts_{split}.jsonl.gz``, ``.jsonl`` too) read as one corpus, each file's split
    from its name. One utterance per cut, its [start, start + duration) of the recording's file;
    label from the first supervision's ``emotion`` (or ``label``) custom field, split from the
    file name or else the cut's or supervision's ``split`` custom field (``--split`` fills the
    rest), language as the supervision gives it (sers.fields makes it an ISO code)."""
    path = Path(path)
    if not path.is_dir():
        return unique(_read_cutset(path, language), path)
    files = sorted(p for p in path.iterdir() if CUTS_FILE.match(p.name))
    if not files:
        raise SersError(f"{path}: no lhotse CutSet files (cuts_<split>.jsonl.gz or <corpus>_cuts_<split>.jsonl.gz); "
                        "from recordings and supervisions manifests make them with `lhotse cut simple`")
    utterances, file_of_id = [], {}
    for file in files:
        for utterance in _read_cutset(file, language, CUTS_FILE.match(file.name)["split"]):
            if utterance.id in file_of_id:
                raise SersError(f"{path}: cut id {utterance.id!r} is in both {file_of_id[utterance.id]} and "
                                f"{file.name}; one corpus needs unique ids")
            file_of_id[utterance.id] = file.name
            utterances.append(utterance)
    return unique(utterances, path)


def _read_cutset(path: Path, language: str | None, file_split: str | None = None) -> list[Utterance]:
    lhotse = need("lhotse", "lhotse")
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
    # the file's name says the split: a cut that says another one is refused, as --split refuses it
    splits = assign_split([u.split for u in utterances], file_split, [u.id for u in utterances], path,
                          f"the file name says split {file_split!r}")
    return [replace(u, split=s) for u, s in zip(utterances, splits)]
