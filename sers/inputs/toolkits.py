"""Corpora described by other toolkits: a lhotse CutSet here, a Hugging Face `datasets` folder in
:mod:`sers.inputs.hf_datasets`.

Both become the same utterances a manifest gives (``--format lhotse`` / ``--format hf-datasets``);
the packages are optional (the ``lhotse`` / ``datasets`` extras) and imported only where read.
"""
from __future__ import annotations

import math
import os

from sers.errors import SersError
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

def read_lhotse(path, language: str | None = None) -> list[Utterance]:
    """A CutSet file (``cuts.jsonl.gz``): one utterance per cut, its [start, start + duration) of
    the recording's file; label from the first supervision's ``emotion`` (or ``label``) custom
    field, split from the cut's or supervision's ``split`` custom field."""
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
    return unique(utterances, path)
