"""Vowel maps: an aligner's phone labels onto vowel classes both languages share.

The layer-anchoring analysis compares source and target features on sounds the two
languages have in common. English and Mandarin aligners label phones differently
(ARPAbet "AA1", pinyin finals "ao3", IPA "a˥˩"), so each notation has a map onto the
shared classes a, e, i, o, u:

    vowel_map = load_vowel_map("en-arpabet")      # or cmn-pinyin, cmn-ipa, en-ipa, es-ipa, fi-ipa,
                                                  # tr-ipa, a JSON file
    vowel_map.classify("AA1")   # "a"
    vowel_map.classify("AH0")   # None: a vowel, but of no shared class (counted as skipped)
    vowel_map.is_vowel("T")     # False: a consonant (counted as skipped)

What maps where, and why (the same choices for every notation):

* monophthongs map by quality: i ɪ -> i, e ɛ -> e, æ ɑ a ɒ -> a, ɔ o -> o, ʊ u -> u;
* narrow diphthongs map to their first target: eɪ (EY, pinyin ei) -> e, oʊ (OW, pinyin ou) -> o;
* a glide before a vowel does not change its class (pinyin ia ua -> a, ie üe -> e, uo -> o);
* vowels with no shared class are skipped: the central and reduced vowels ʌ ə ɐ ɚ ɜ
  (AH, ER), wide diphthongs whose quality crosses classes (aɪ aʊ ɔɪ; AY AW OY; pinyin
  ai ao), triphthongs (iao, iu, uai, ui), front rounded y / ü, Mandarin [ɤ] (pinyin e),
  the apical vowels of zi / zhi, and pinyin finals with a nasal coda (an, ing, ...), whose
  segment includes the nasal (English aligners give the nasal its own interval).

The IPA maps read the TextGrids of `sers synth --engine espeak` (espeak-ng's phone names,
stress marks dropped) as well as MFA's. The English maps agree with the source-filter corpus
of `sers synth` (`sers.synth.vowel_classes`), whose English-like vowels are i ɪ e ɛ æ ɑ ɔ o
ʊ u plus ʌ ə, and whose Mandarin-like vowels a i u y ə o e are covered by cmn-ipa.

Labels are normalised before lookup: Kaldi word-position suffixes (_B _I _E _S) are
dropped everywhere; ARPAbet is upper-cased and loses its stress digit; pinyin is
lower-cased, loses its tone digit and writes ü as v; IPA loses tone letters (˥˦˧˨˩),
tone digits, length marks (ː ˑ) and the non-syllabic / raised / lowered diacritics.

A user map is a JSON object ``{"phone": "class" or null}``: null marks a vowel without a
class; phones not in the file are consonants. Its labels are matched as written (after
dropping position suffixes), then without a trailing stress/tone digit.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from sers.errors import SersError

__all__ = ["VowelMap", "load_vowel_map", "BUILTIN_MAPS", "CLASSES", "SILENCE"]

CLASSES = ("a", "e", "i", "o", "u")

# Labels aligners give to silence and noise: not phones, so neither vowels nor skipped phones.
SILENCE = frozenset({"", "sil", "sp", "spn", "<eps>", "<sil>", "<unk>", "<sp>", "sil_b", "sil_e", "sil_i",
                     "sil_s", "nsn", "lau", "noi"})


def _table(spec: dict[str | None, str]) -> dict[str, str | None]:
    """{"a": "AA AE", None: "AH ER"} -> {"AA": "a", "AE": "a", "AH": None, "ER": None}."""
    return {label: vowel_class for vowel_class, labels in spec.items() for label in labels.split()}


_ARPABET = _table({
    "a": "AA AE", "e": "EH EY", "i": "IH IY", "o": "AO OW", "u": "UH UW UX",
    None: "AH AX AXR ER AW AY OY IX",
})

_PINYIN = _table({
    "a": "a ia ua", "e": "ê ie ve ue ei", "i": "i", "o": "o uo io ou", "u": "u",
    None: "e v er ai ao uai iao iu iou ui uei "
          "an en ang eng ong in ing ian iang uan uang un uen ueng van vn iong "
          "ii iii ix iy ih -i",
})

# The r-coloured vowels written vowel + ɹ (espeak-ng: ɑːɹ ɔːɹ ɛɹ ɪɹ ʊɹ) keep their vowel's
# class, as ARPAbet's AA R does; ᵻ (reduced i), syllabic əl and triphthongs are skipped.
_EN_IPA = _table({
    "a": "æ ɑ a ɒ ɑɹ", "e": "e eɪ ej ɛ ɛɹ", "i": "i ɪ ɪɹ iɹ", "o": "o oʊ ow əʊ ɔ ɔɹ oɹ",
    "u": "u ʊ ʉ ʊɹ uɹ",
    None: "ʌ ə ɐ ɚ ɝ ɜ ɪə eə ɛə ʊə ɪɚ ɛɚ ʊɚ aɪ aj aʊ aw ɔɪ ɔj ᵻ əl iə aɪə aɪɚ aʊə",
})

# espeak-ng writes Mandarin finals with their glide (iɛ iɑ uo yɛ yæ) and ong as oŋ.
_CMN_IPA = _table({
    "a": "a ä ɑ ɐ iɑ ia uɑ ua yæ", "e": "e ɛ ei eɪ ej iɛ ie yɛ", "i": "i",
    "o": "o ɔ ou oʊ ow ɤʊ uo", "u": "u ʊ",
    None: "y ə ɤ ɚ ɨ ɯ ɿ ʅ ɹ̩ ɻ̩ z̩ ʐ̩ ɻ̍ i̪ ai aɪ aj au aʊ aw ɑʊ ɑu ɑw iou uei uai iɑu oŋ",
})

_ES_IPA = _table({
    "a": "a", "e": "e eɪ ej", "i": "i", "o": "o", "u": "u",
    None: "aɪ aj aʊ aw eʊ ew oɪ oj",
})

# Finnish (espeak-ng's fi): ä [æ] maps by quality, as English æ does; the narrow diphthongs
# ei ou and the opening ie uo (Finnish stresses their first part) map to their first target;
# front rounded y ö and every diphthong with one, and the wide ai äi oi ui au eu iu, are
# skipped. espeak-ng writes long vowels as the short one (the phone lasts longer).
_FI_IPA = _table({
    "a": "a ɑ æ", "e": "e ɛ ei", "i": "i ɪ ie", "o": "o ɔ ou", "u": "u ʊ uo",
    None: "y ʏ ø œ yø øy æy ey iy yi øi ai æi oi ui au eu iu",
})

# Turkish (espeak-ng's tr, relabelled by `sers.synth.espeak_corpus.phone_label`): the lax
# allophones ɪ ɛ ɔ ʊ keep their vowel's class, and æ, the open allophone of e before a
# sonorant, maps by quality, as English æ does; ı [ɯ] (close back unrounded, no shared
# class, as in cmn-ipa) and front rounded ü [y ʏ] and ö [ø œ] are skipped.
_TR_IPA = _table({
    "a": "a ɑ æ", "e": "e ɛ", "i": "i ɪ", "o": "o ɔ", "u": "u ʊ",
    None: "ɯ ɨ y ʏ ø œ ə",
})

_POSITION_SUFFIX = re.compile(r"_[BIES]$")
_TRAILING_DIGITS = re.compile(r"\d+$")
# Tone letters, length marks, and diacritics that do not change a vowel's class.
_IPA_DROPPED = dict.fromkeys(map(ord, "˥˦˧˨˩ːˑ\u032f\u031e\u031d0123456789"))


def _normalise_arpabet(label: str) -> str:
    return _TRAILING_DIGITS.sub("", label.upper())


def _normalise_pinyin(label: str) -> str:
    label = _TRAILING_DIGITS.sub("", label.lower())
    return label.replace("ü", "v").replace("u:", "v")


def _normalise_ipa(label: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", label).translate(_IPA_DROPPED))


def _normalise_user(label: str) -> str:
    return label


@dataclass(frozen=True)
class VowelMap:
    """Phone label -> shared vowel class. ``classes`` holds normalised labels; a value of
    None marks a vowel that has no shared class."""

    name: str
    classes: dict[str, str | None] = field(repr=False)
    notation: str = "user"  # arpabet | pinyin | ipa | user

    def normalise(self, label: str) -> str:
        label = _POSITION_SUFFIX.sub("", label.strip())
        return _NORMALISERS[self.notation](label)

    def _lookup(self, label: str):
        key = self.normalise(label)
        if key in self.classes:
            return True, self.classes[key]
        if self.notation == "user":  # user maps may list labels with or without the digit
            bare = _TRAILING_DIGITS.sub("", key)
            if bare in self.classes:
                return True, self.classes[bare]
        return False, None

    def classify(self, label: str) -> str | None:
        """The shared class of a phone label, or None (consonant, silence, vowel without class)."""
        return self._lookup(label)[1]

    def is_vowel(self, label: str) -> bool:
        return self._lookup(label)[0]

    @property
    def vowel_classes(self) -> list[str]:
        return sorted({c for c in self.classes.values() if c})


_NORMALISERS = {"arpabet": _normalise_arpabet, "pinyin": _normalise_pinyin, "ipa": _normalise_ipa,
                "user": _normalise_user}


def _builtin(name, table, notation) -> VowelMap:
    return VowelMap(name, {_NORMALISERS[notation](k): v for k, v in table.items()}, notation)


BUILTIN_MAPS: dict[str, VowelMap] = {
    "en-arpabet": _builtin("en-arpabet", _ARPABET, "arpabet"),
    "en-ipa": _builtin("en-ipa", _EN_IPA, "ipa"),
    "cmn-pinyin": _builtin("cmn-pinyin", _PINYIN, "pinyin"),
    "cmn-ipa": _builtin("cmn-ipa", _CMN_IPA, "ipa"),
    "es-ipa": _builtin("es-ipa", _ES_IPA, "ipa"),
    "fi-ipa": _builtin("fi-ipa", _FI_IPA, "ipa"),
    "tr-ipa": _builtin("tr-ipa", _TR_IPA, "ipa"),
}


def load_vowel_map(spec: str | Path | VowelMap) -> VowelMap:
    """A built-in map by name (en-arpabet, en-ipa, cmn-pinyin, cmn-ipa, es-ipa, fi-ipa, tr-ipa) or a JSON file."""
    if isinstance(spec, VowelMap):
        return spec
    if str(spec) in BUILTIN_MAPS:
        return BUILTIN_MAPS[str(spec)]
    path = Path(spec)
    if path.suffix.lower() != ".json" or not path.is_file():
        raise SersError(f"--vowel-map {spec}: not a built-in map ({', '.join(BUILTIN_MAPS)}) "
                        "nor an existing .json file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SersError(f"{path}: cannot read the vowel map ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise SersError(f'{path}: a vowel map is a JSON object {{"phone": "class" or null}}')
    bad = {k: v for k, v in data.items() if not (v is None or (isinstance(v, str) and v.strip()))}
    if bad:
        first = next(iter(bad.items()))
        raise SersError(f"{path}: phone {first[0]!r} maps to {first[1]!r}; a class is a non-empty "
                        "string (e.g. one of a e i o u) or null for a vowel without a class")
    classes = {_POSITION_SUFFIX.sub("", str(k).strip()): (v.strip() if v else None) for k, v in data.items()}
    return VowelMap(str(path), classes, "user")
