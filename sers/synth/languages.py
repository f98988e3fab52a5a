"""Two made-up languages: phone inventories, syllable structure, timing, tone.

`en` is English-like: eleven full vowels plus schwa, CVC / CCVC syllables with
clusters, stress timing (stressed syllables long and accented, unstressed ones
short and often reduced to schwa), aspirated voiceless stops, dental and
palato-alveolar fricatives. `zh` is Mandarin-like: seven vowels, CV / CVN
syllables, syllable timing (every syllable about as long as the next), aspirated
vs. unaspirated stops and affricates, retroflex and alveolo-palatal fricatives,
and four lexical tones plus the neutral tone, each a per-syllable F0 contour.

Both languages share the vowel classes a, e, i, o, u with *different* formant
targets, as real languages do (Mandarin /a/ is more open and central than
English /ɑ/ or /æ/). Formants are for an adult male vocal tract (after
Hillenbrand et al. 1995 for English; a speaker's tract length scales them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Phone", "Language", "Syllable", "Word", "LANGUAGES", "make_lexicon", "vowel_classes"]


@dataclass(frozen=True)
class Phone:
    """One phone and how the synthesiser makes it.

    kind: vowel | stop | affricate | fricative | aspirate | nasal | approximant.
    formants: F1-F3 targets in Hz (consonants: their locus, pulled towards the
    neighbouring vowel when spoken). frication: the noise band in Hz of a burst
    or fricative, with `noise_gain` its level. aspiration: seconds of breathy
    noise after a stop's release.
    """

    symbol: str
    kind: str
    formants: tuple[float, float, float]
    duration: float
    voiced: bool = True
    frication: tuple[float, float] | None = None
    noise_gain: float = 0.0
    aspiration: float = 0.0
    vowel_class: str | None = None

    @property
    def is_vowel(self) -> bool:
        return self.kind == "vowel"


def _vowel(symbol, f1, f2, f3, duration, vowel_class=None):
    return Phone(symbol, "vowel", (f1, f2, f3), duration, vowel_class=vowel_class)


def _stop(symbol, f2, f3, band, voiced, aspiration=0.0):
    return Phone(symbol, "stop", (250, f2, f3), 0.075 + aspiration, voiced, band, 0.6, aspiration)


def _fric(symbol, f2, f3, band, gain, voiced=False, duration=0.10):
    return Phone(symbol, "fricative", (250, f2, f3), duration, voiced, band, gain)


def _affricate(symbol, f2, f3, band, aspiration=0.0):
    return Phone(symbol, "affricate", (250, f2, f3), 0.11 + aspiration, False, band, 0.8, aspiration)


def _sonorant(symbol, kind, f1, f2, f3, duration):
    return Phone(symbol, kind, (f1, f2, f3), duration)


# Noise bands shared by both languages (Hz).
_LABIAL, _ALVEOLAR, _VELAR = (500, 2000), (3000, 6500), (1500, 3500)
_SIBILANT, _POSTALVEOLAR = (4000, 7500), (2200, 5000)

_EN_PHONES = [
    _vowel("i", 342, 2322, 3000, 0.17, "i"), _vowel("ɪ", 427, 2034, 2684, 0.11, "i"),
    _vowel("e", 476, 2089, 2691, 0.17, "e"), _vowel("ɛ", 580, 1799, 2605, 0.12, "e"),
    _vowel("æ", 588, 1952, 2601, 0.17, "a"), _vowel("ɑ", 768, 1333, 2522, 0.17, "a"),
    _vowel("ɔ", 652, 997, 2538, 0.17, "o"), _vowel("o", 497, 910, 2459, 0.17, "o"),
    _vowel("ʊ", 469, 1122, 2434, 0.11, "u"), _vowel("u", 378, 997, 2343, 0.17, "u"),
    _vowel("ʌ", 623, 1200, 2550, 0.11), _vowel("ə", 500, 1500, 2500, 0.06),
    _stop("p", 900, 2300, _LABIAL, False, 0.04), _stop("b", 900, 2300, _LABIAL, True),
    _stop("t", 1800, 2700, _ALVEOLAR, False, 0.04), _stop("d", 1800, 2700, _ALVEOLAR, True),
    _stop("k", 2000, 2500, _VELAR, False, 0.04), _stop("g", 2000, 2500, _VELAR, True),
    _fric("f", 1000, 2300, (1200, 7000), 0.25), _fric("v", 1000, 2300, (1200, 7000), 0.2, True),
    _fric("θ", 1500, 2600, (1500, 7500), 0.2), _fric("s", 1700, 2700, _SIBILANT, 1.0),
    _fric("z", 1700, 2700, _SIBILANT, 0.7, True), _fric("ʃ", 1900, 2500, _POSTALVEOLAR, 1.0),
    Phone("h", "aspirate", (500, 1500, 2500), 0.07, False, noise_gain=0.35),
    _sonorant("m", "nasal", 250, 1100, 2300, 0.07), _sonorant("n", "nasal", 250, 1600, 2600, 0.065),
    _sonorant("ŋ", "nasal", 250, 2000, 2600, 0.07),
    _sonorant("l", "approximant", 360, 1200, 2700, 0.06),
    _sonorant("r", "approximant", 350, 1150, 1550, 0.065),
    _sonorant("w", "approximant", 300, 700, 2200, 0.05),
    _sonorant("j", "approximant", 280, 2200, 2950, 0.05),
]

_ZH_PHONES = [
    _vowel("a", 880, 1350, 2800, 0.15, "a"), _vowel("i", 300, 2350, 3200, 0.15, "i"),
    _vowel("u", 370, 650, 2500, 0.15, "u"), _vowel("y", 300, 1900, 2350, 0.15),
    _vowel("ə", 560, 1250, 2600, 0.15), _vowel("o", 530, 850, 2600, 0.15, "o"),
    _vowel("e", 470, 2050, 2750, 0.15, "e"),
    _stop("p", 900, 2300, _LABIAL, False), _stop("pʰ", 900, 2300, _LABIAL, False, 0.07),
    _stop("t", 1800, 2700, _ALVEOLAR, False), _stop("tʰ", 1800, 2700, _ALVEOLAR, False, 0.07),
    _stop("k", 2000, 2500, _VELAR, False), _stop("kʰ", 2000, 2500, _VELAR, False, 0.07),
    _fric("f", 1000, 2300, (1200, 7000), 0.25), _fric("s", 1700, 2700, _SIBILANT, 1.0),
    _fric("ʂ", 1600, 2000, (1800, 4200), 0.9), _fric("ɕ", 2100, 2900, (2800, 6000), 0.9),
    _fric("x", 1500, 2500, (900, 3000), 0.45),
    _affricate("ts", 1700, 2700, _SIBILANT), _affricate("tsʰ", 1700, 2700, _SIBILANT, 0.06),
    _affricate("tʂ", 1600, 2000, (1800, 4200)), _affricate("tʂʰ", 1600, 2000, (1800, 4200), 0.06),
    _sonorant("m", "nasal", 250, 1100, 2300, 0.07), _sonorant("n", "nasal", 250, 1600, 2600, 0.065),
    _sonorant("ŋ", "nasal", 250, 2000, 2600, 0.07),
    _sonorant("l", "approximant", 360, 1200, 2700, 0.06),
]


@dataclass(frozen=True)
class Syllable:
    phones: tuple[str, ...]
    stressed: bool = True
    tone: int = 0                 # 0: no lexical tone; 1-4 Mandarin tones; 5 neutral


@dataclass(frozen=True)
class Word:
    syllables: tuple[Syllable, ...]
    text: str


@dataclass
class Language:
    """What makes a language sound like itself, as far as the synthesiser goes."""

    code: str
    phones: dict[str, Phone]
    onsets: list[tuple[str, ...]]
    codas: list[tuple[str, ...]]
    vowels: list[str]
    onset_weights: list[float]    # P(no onset), P(one consonant), P(cluster)
    coda_weights: list[float]     # P(no coda), P(one consonant), P(cluster)
    syllables_per_word: list[float]
    syllable_timed: bool
    syllable_seconds: float = 0.0  # syllable-timed languages: the nominal syllable length
    tonal: bool = False
    vowel_weights: list[float] = field(default_factory=list)

    def phone(self, symbol: str) -> Phone:
        return self.phones[symbol]


def _split(units: str) -> list[tuple[str, ...]]:
    return [tuple(unit.split("+")) for unit in units.split()]


EN = Language(
    code="en",
    phones={p.symbol: p for p in _EN_PHONES},
    onsets=_split("p t k b d g f v θ s z ʃ h m n l r w j "
                  "p+l p+r t+r k+l k+r b+l b+r d+r g+r f+l f+r s+p s+t s+k s+l s+m s+n"),
    codas=_split("p t k b d g f v θ s z ʃ m n ŋ l r s+t n+t n+d k+s t+s l+t m+p ŋ+k"),
    vowels=["i", "ɪ", "e", "ɛ", "æ", "ɑ", "ɔ", "o", "ʊ", "u", "ʌ"],
    onset_weights=[0.15, 0.60, 0.25],
    coda_weights=[0.20, 0.65, 0.15],
    syllables_per_word=[0.5, 0.35, 0.15],
    syllable_timed=False,
)

ZH = Language(
    code="zh",
    phones={p.symbol: p for p in _ZH_PHONES},
    onsets=_split("p pʰ t tʰ k kʰ m n f s ʂ ɕ x l ts tsʰ tʂ tʂʰ"),
    codas=_split("n ŋ"),
    vowels=["a", "i", "u", "y", "ə", "o", "e"],
    vowel_weights=[0.25, 0.2, 0.15, 0.07, 0.15, 0.09, 0.09],
    onset_weights=[0.1, 0.9, 0.0],
    coda_weights=[0.65, 0.35, 0.0],
    syllables_per_word=[0.35, 0.55, 0.10],
    syllable_timed=True,
    syllable_seconds=0.23,
    tonal=True,
)

LANGUAGES: dict[str, Language] = {"en": EN, "zh": ZH}


def vowel_classes(language: Language) -> dict[str, str]:
    """Vowel symbol -> shared class (a, e, i, o, u) for the vowels that have one."""
    return {p.symbol: p.vowel_class for p in language.phones.values() if p.vowel_class}


def _pick(rng: np.random.Generator, items, weights=None):
    weights = None if not weights else np.asarray(weights) / np.sum(weights)
    return items[rng.choice(len(items), p=weights)]


def _syllable(language: Language, rng: np.random.Generator, stressed: bool, tone: int) -> Syllable:
    def margin(options, weights):
        size = rng.choice(3, p=weights)
        matching = [o for o in options if len(o) == size]
        return _pick(rng, matching) if size and matching else ()

    onset = margin(language.onsets, language.onset_weights)
    vowel = _pick(rng, language.vowels, language.vowel_weights)
    if language.code == "zh":
        # Mandarin phonotactics, roughly: alveolo-palatals only before high front
        # vowels, and /y/ only after them, /n/, /l/ or no initial.
        if onset == ("ɕ",):
            vowel = _pick(rng, ["i", "y", "e"])
        elif vowel == "y" and onset not in [(), ("n",), ("l",)]:
            onset = ("ɕ",)
    coda = margin(language.codas, language.coda_weights)
    return Syllable(onset + (vowel,) + coda, stressed, tone)


def _word(language: Language, rng: np.random.Generator) -> Word:
    n = 1 + rng.choice(len(language.syllables_per_word), p=language.syllables_per_word)
    if language.tonal:
        tones = [int(t) for t in rng.choice([1, 2, 3, 4], size=n, p=[0.22, 0.26, 0.18, 0.34])]
        if n > 1 and rng.random() < 0.3:
            tones[-1] = 5                        # a neutral-tone suffix
        syllables = [_syllable(language, rng, True, tone) for tone in tones]
        text = "".join("".join(s.phones) + str(s.tone) for s in syllables)
    else:
        stress = 0 if n == 1 or rng.random() < 0.7 else 1
        syllables = [_syllable(language, rng, i == stress, 0) for i in range(n)]
        text = "".join("".join(s.phones) for s in syllables)
    return Word(tuple(syllables), text)


def make_lexicon(language: Language, size: int, rng: np.random.Generator) -> list[Word]:
    """`size` distinct made-up words; utterances draw from it, so words recur."""
    words: dict[str, Word] = {}
    while len(words) < size:
        word = _word(language, rng)
        words.setdefault(word.text, word)
    return list(words.values())
