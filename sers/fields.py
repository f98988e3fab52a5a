"""Rules for an utterance's split and language, the same for every way into a cache: the corpus
readers of `sers extract` (manifest, podcast layouts, lhotse, hf-datasets, through
:func:`sers.inputs.corpora.read_corpus`) and `sers cache import`.

* ``--split NAME`` names the split of utterances whose input gives none (lhotse keeps one CutSet
  per split, so its cuts rarely carry one); an utterance whose input names another split is a
  mistake in the command, and is refused.
* Languages become ISO 639-1 codes ("English", "eng", "en-US" -> "en"; "Mandarin", "cmn",
  "Chinese" -> "zh"), three-letter ISO 639 codes for languages without one ("Cantonese" -> "yue"),
  because a cross-lingual run groups and standardises by language and "English" next to "en"
  would be two languages. What the input said is kept beside it (``language_original``). The
  table is langcodes' (CLDR and the IANA subtag registry), not ours.
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache

from sers.errors import SersError


def assign_split(splits, split: str | None, ids, where, said_by: str | None = None) -> list[str]:
    """``splits`` with ``split`` in place of every empty one; a SersError naming the first
    utterance (and ``where``, its file) that carries a different split. ``split`` None: unchanged.
    ``said_by``: who named ``split``, for the error (default: the ``--split`` option)."""
    splits = [str(s) for s in splits]
    if split is None:
        return splits
    said_by = said_by or (f"--split {split} was given (it names the split of utterances that have none; "
                          f"drop it, or fix the input)")
    for uid, given in zip(ids, splits):
        if given and given != split:
            raise SersError(f"{where}: utterance {str(uid)!r} has split {given!r}, but {said_by}")
    return [split] * len(splits)


@lru_cache(maxsize=4096)  # a corpus repeats a handful of names; langcodes' name lookup is not free
def language_code(value: str) -> str | None:
    """The ISO 639 code of a language code, tag or English/native name ("" for ""), or None when
    langcodes knows no such language. Only exact names count: langcodes' fuzzy matching would
    read "Taiwanese Mandarin" as Taiwanese Hokkien (nan), and a wrong language is worse than a note."""
    text = str(value).strip()
    if not text:
        return ""
    import langcodes

    try:
        tag = langcodes.Language.get(langcodes.standardize_tag(text, macro=True))
        if tag.is_valid() and tag.language and tag.language != "und":
            return tag.language  # a region or script ("en-US", "zh-Hant-TW") is not the language
    except (ValueError, LookupError):  # not a tag: maybe a name
        pass
    if len(text) < 3:  # "A" is the name of a language of New Guinea (auq): one or two letters were meant as a code
        return None
    try:
        found = langcodes.find(text)
    except LookupError:
        return None
    if not _exact_name(text):
        return None
    return langcodes.Language.get(langcodes.standardize_tag(found.to_tag(), macro=True)).language


def _exact_name(text: str) -> bool:
    """Whether ``text`` is a language name as written in language_data's table (case and
    punctuation aside), not a name with a known prefix ("Klingonish" for "Klingon")."""
    from language_data import names

    trie = names.TRIES.get("und/name_to_language")  # loaded by the langcodes.find just before
    return trie is not None and names.normalize_name(text) in trie


def normalise_languages(values) -> tuple[list[str], list[str], Counter]:
    """(codes, originals, unknown): each value's ISO code, or the value itself when it is no
    language langcodes knows; the values as written; and how many rows each unknown value has."""
    originals = ["" if v is None else str(v) for v in values]  # as written, spaces too
    codes, unknown = [], Counter()
    for original in originals:
        code = language_code(original)
        if code is None:
            unknown[original] += 1
        codes.append(original if code is None else code)
    return codes, originals, unknown


def settle(ids, splits, languages, split: str | None, where, log=None) -> tuple[list[str], list[str], list[str]]:
    """(splits, codes, originals) of one corpus: ``split`` (``--split``) where a row has none, another
    refused (:func:`assign_split`); each language as its ISO code and as written
    (:func:`normalise_languages`); the one note naming unknown languages goes to ``log``. What
    `sers extract`'s readers and `sers cache import` both apply."""
    splits = assign_split(splits, split, ids, where)
    codes, originals, unknown = normalise_languages(languages)
    if log is not None and unknown:
        log(unknown_languages_note(unknown, where))
    return splits, codes, originals


def unknown_languages_note(unknown: Counter, where) -> str:
    """The one line that names the languages kept as written, or "" when there are none."""
    if not unknown:
        return ""
    listed = ", ".join(f"{name!r} ({n} utterances)" for name, n in sorted(unknown.items()))
    return (f"note: {where}: language {listed} is no language name or code langcodes knows; kept as written "
            f"(give an ISO 639 code such as en or zh to compare it with other corpora)")
