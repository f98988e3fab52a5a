"""Plan one utterance: words -> timed phones -> the control tracks of the voice.

The plan fixes every phone boundary on an exact sample, so the TextGrid written
from it is the ground truth of what the audio contains. The controls are what a
source-filter synthesiser needs per sample: F0, the amplitude of the glottal
source, the amplitude of aspiration noise (through the vocal tract), formant
targets with coarticulated transitions, and the frication bursts and hisses
that bypass the tract.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import uniform_filter1d

from sers.synth.languages import Language, Phone, Word
from sers.synth.speakers import Speaker, Style

__all__ = ["Segment", "Plan", "Frication", "Controls", "plan_utterance", "plan_controls"]


@dataclass(frozen=True)
class Segment:
    """A phone (or a pause, phone None) on the sample grid: [start, end)."""

    start: int
    end: int
    phone: Phone | None
    syllable: int = -1            # index into Plan.syllables; -1 for pauses
    word: int = -1                # index into Plan.words; -1 for pauses


@dataclass(frozen=True)
class SyllableInfo:
    stressed: bool
    tone: int
    gain: float


@dataclass
class Plan:
    sample_rate: int
    n_samples: int
    segments: list[Segment]
    words: list[Word]
    syllables: list[SyllableInfo]
    question: bool = False


@dataclass(frozen=True)
class Frication:
    start: int
    end: int
    band: tuple[float, float]
    gain: float
    burst: bool                   # a stop release (decays fast) or a fricative (flat)


@dataclass
class Controls:
    f0: np.ndarray                # (n,) Hz
    voicing: np.ndarray           # (n,) glottal source amplitude
    aspiration: np.ndarray        # (n,) noise-through-the-tract amplitude
    formant_times: np.ndarray     # (m,) samples of the formant anchors
    formants: np.ndarray          # (m, 3) F1-F3 in Hz at those anchors
    vowel_mask: np.ndarray        # (n,) bool: inside a vowel interval
    frications: list[Frication] = field(default_factory=list)


# --- timing ------------------------------------------------------------------

def _word_phones(word: Word, language: Language, style: Style, rng: np.random.Generator,
                 syllable_offset: int) -> tuple[list[tuple[Phone, float, int]], list[SyllableInfo]]:
    """Phones of one word with their durations in seconds, and its syllables."""
    phones: list[tuple[Phone, float, int]] = []
    infos: list[SyllableInfo] = []
    for s, syllable in enumerate(word.syllables):
        index = syllable_offset + s
        symbols = list(syllable.phones)
        nucleus = next(i for i, sym in enumerate(symbols) if language.phone(sym).is_vowel)
        if not language.syllable_timed and not syllable.stressed and rng.random() < 0.5:
            symbols[nucleus] = "ə"            # English-like vowel reduction
        durations = []
        for i, sym in enumerate(symbols):
            phone = language.phone(sym)
            d = phone.duration * rng.uniform(0.85, 1.15)
            if i > nucleus and phone.aspiration:
                d -= phone.aspiration         # coda stops are not aspirated
            if not phone.is_vowel and len(symbols) > 3:
                d *= 0.8                      # clusters compress
            durations.append(d)
        if language.syllable_timed:
            # Syllable timing: the vowel absorbs what the consonants leave of a
            # nearly constant syllable length (a neutral tone is short).
            target = language.syllable_seconds * rng.uniform(0.9, 1.1)
            if syllable.tone == 5:
                target *= 0.6
            consonants = sum(durations) - durations[nucleus]
            durations[nucleus] = max(0.06, target - consonants)
        elif not syllable.stressed:
            durations = [d * (0.6 if i == nucleus else 0.85) for i, d in enumerate(durations)]
        gain = (1.0 if syllable.stressed and syllable.tone != 5 else 0.6) * rng.uniform(0.85, 1.15)
        infos.append(SyllableInfo(syllable.stressed, syllable.tone, gain))
        phones += [(language.phone(sym), d / style.tempo, index) for sym, d in zip(symbols, durations)]
    return phones, infos


def plan_utterance(language: Language, lexicon: list[Word], style: Style,
                   rng: np.random.Generator, min_seconds: float, max_seconds: float,
                   sample_rate: int) -> Plan:
    """Choose words and time every phone so the utterance lasts a random length in range."""
    total = rng.uniform(min_seconds, max_seconds)
    lead, trail = rng.uniform(0.12, 0.3, size=2) * min(1.0, total / 1.5)
    budget = total - lead - trail

    # Add words until the speech fills the budget; keep the last one only if
    # that lands closer, then stretch everything slightly to fit exactly.
    words: list[Word] = []
    items: list[tuple[Phone | None, float, int, int]] = []   # phone, seconds, syllable, word
    syllables: list[SyllableInfo] = []
    spoken = 0.0
    while spoken < budget:
        word = lexicon[rng.integers(len(lexicon))]
        phones, infos = _word_phones(word, language, style, rng, len(syllables))
        new = [(p, d, s, len(words)) for p, d, s in phones]
        if words and rng.random() < style.pause_probability:
            new.insert(0, (None, rng.uniform(0.08, 0.22) / style.tempo, -1, -1))
        added = sum(item[1] for item in new)
        if words and abs(spoken + added - budget) > abs(spoken - budget):
            break
        words.append(word)
        syllables += infos
        items += new
        spoken += added

    # Phrase-final lengthening of the last syllable, then fit to the budget.
    last = items[-1][2]
    seconds = np.array([d * (1.3 if s == last else 1.0) for _, d, s, _ in items])
    seconds *= budget / seconds.sum()
    # On the sample grid, and never outside [min_seconds, max_seconds].
    n_samples = int(np.clip(round(total * sample_rate), np.ceil(min_seconds * sample_rate),
                            np.floor(max_seconds * sample_rate)))
    bounds = np.round((lead + np.concatenate([[0.0], np.cumsum(seconds)])) * sample_rate).astype(int)
    segments = [Segment(0, bounds[0], None)]
    segments += [Segment(int(b0), int(b1), p, s, w)
                 for (p, _, s, w), b0, b1 in zip(items, bounds[:-1], bounds[1:])]
    segments.append(Segment(int(bounds[-1]), n_samples, None))
    question = (not language.tonal) and rng.random() < 0.2
    return Plan(sample_rate, n_samples, segments, words, syllables, question)


# --- intonation -----------------------------------------------------------------

# Mandarin tones as (time fraction of the rhyme, semitones from the speaker's mid F0).
_TONES = {
    1: [(0.0, 3.0), (1.0, 3.0)],
    2: [(0.0, -0.5), (0.35, -1.0), (1.0, 3.5)],
    3: [(0.0, -2.0), (0.6, -5.5), (1.0, -3.0)],
    4: [(0.0, 4.0), (1.0, -3.5)],
    5: [(0.0, -1.0), (1.0, -2.0)],
}


def _rhymes(plan: Plan) -> list[tuple[int, int, int]]:
    """(syllable, vowel start, syllable end) in samples: where the tone / accent lives."""
    spans: dict[int, list[int]] = {}
    for seg in plan.segments:
        if seg.phone is not None and seg.phone.is_vowel:
            spans[seg.syllable] = [seg.start, seg.end]
        elif seg.syllable in spans and seg.phone is not None and seg.phone.kind == "nasal":
            spans[seg.syllable][1] = seg.end
    return [(s, a, b) for s, (a, b) in sorted(spans.items())]


def _f0_anchors(plan: Plan, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rhymes = _rhymes(plan)
    speech_start, speech_end = rhymes[0][1], rhymes[-1][2]

    def baseline(t, start_st, end_st):
        return start_st + (end_st - start_st) * (t - speech_start) / max(1, speech_end - speech_start)

    times, semitones = [], []
    tonal = plan.syllables[0].tone > 0
    tones = [plan.syllables[s].tone for s, _, _ in rhymes]
    for k, (s, a, b) in enumerate(rhymes):
        if tonal:
            tone = tones[k]
            if tone == 3 and k + 1 < len(tones) and tones[k + 1] == 3:
                tone = 2                              # third-tone sandhi
            shape = _TONES[tone] if tone != 3 or k + 1 == len(rhymes) else _TONES[3][:2]
            offset = rng.normal(0, 0.5)
            for frac, st in shape:
                t = a + frac * (b - a)
                times.append(t)
                semitones.append(baseline(t, 0.5, -1.5) + st + offset)
        else:
            stressed = plan.syllables[s].stressed
            accent = rng.uniform(2.0, 4.5) if stressed else 0.0
            for frac, height in [(0.0, 0.3), (0.45, 1.0), (1.0, 0.4)]:
                t = a + frac * (b - a)
                times.append(t)
                semitones.append(baseline(t, 1.0, -2.0) + accent * height - (0 if stressed else 0.4))
    if not tonal:
        # Statements fall at the end, questions rise.
        semitones[-1] += 5.0 if plan.question else -3.0
    return np.asarray(times, float), np.asarray(semitones, float)


# --- controls -------------------------------------------------------------------

def _coarticulated(segments: list[Segment], k: int, scale: float) -> np.ndarray:
    """A consonant's formant locus pulled towards the vowel of its syllable."""
    seg = segments[k]
    vowel = next((other.phone for other in segments
                  if other.syllable == seg.syllable and other.phone is not None and other.phone.is_vowel), None)
    locus = np.asarray(seg.phone.formants, float)
    if vowel is None:
        return locus * scale
    pull = np.array([0.2, 0.45, 0.45]) if seg.phone.kind != "nasal" else np.array([0.0, 0.3, 0.3])
    return (locus + pull * (np.asarray(vowel.formants) - locus)) * scale


def plan_controls(plan: Plan, speaker: Speaker, style: Style, rng: np.random.Generator) -> Controls:
    """Per-sample control tracks for the voice, from the plan and the speaking style."""
    n, sr = plan.n_samples, plan.sample_rate
    voicing, aspiration = np.zeros(n), np.zeros(n)
    vowel_mask = np.zeros(n, bool)
    frications: list[Frication] = []
    formant_times, formants = [], []
    scale = speaker.formant_scale

    for k, seg in enumerate(plan.segments):
        phone, a, b = seg.phone, seg.start, seg.end
        if phone is None:
            continue
        gain = plan.syllables[seg.syllable].gain
        kind = phone.kind
        if kind == "vowel":
            target = np.asarray(phone.formants) * scale * rng.uniform(0.97, 1.03, size=3)
            formant_times += [a + 0.25 * (b - a), b - 0.25 * (b - a)]
            formants += [target, target]
            voicing[a:b] = gain
            vowel_mask[a:b] = True
            continue
        formant_times.append((a + b) / 2)
        formants.append(_coarticulated(plan.segments, k, scale))
        if kind in ("nasal", "approximant"):
            voicing[a:b] = gain * (0.45 if kind == "nasal" else 0.65)
        elif kind == "aspirate":
            aspiration[a:b] = gain * phone.noise_gain
        elif kind == "fricative":
            voicing[a:b] = gain * (0.3 if phone.voiced else 0.0)
            frications.append(Frication(a, b, phone.frication, gain * phone.noise_gain, burst=False))
        else:                                     # stop or affricate: closure, release, aspiration
            aspirated = int(round(min(phone.aspiration, 0.6 * (b - a) / sr) * sr))
            release_end = b - aspirated
            if kind == "stop":
                release = max(a, release_end - int(0.012 * sr))
                frications.append(Frication(release, release_end, phone.frication,
                                            gain * phone.noise_gain, burst=True))
            else:
                release = a + int(0.4 * (release_end - a))
                frications.append(Frication(release, release_end, phone.frication,
                                            gain * phone.noise_gain, burst=False))
            if phone.voiced:
                voicing[a:release] = 0.12 * gain   # voice bar during the closure
                voicing[release:release_end] = 0.4 * gain
            aspiration[release_end:b] = 0.4 * gain

    # Loudness falls a little over the utterance (subglottal pressure declines).
    decline = np.linspace(1.0, 0.75, n)
    smooth = max(1, int(0.006 * sr))
    voicing = uniform_filter1d(voicing * decline, smooth)
    aspiration = uniform_filter1d(aspiration * decline, smooth)
    frications = [Frication(f.start, f.end, f.band, f.gain * decline[f.start], f.burst) for f in frications]

    anchor_t, anchor_st = _f0_anchors(plan, rng)
    semitones = np.interp(np.arange(n), anchor_t, anchor_st)
    semitones = uniform_filter1d(semitones, max(1, int(0.04 * sr)))
    # Slow random drift of F0 (about half a semitone), as no speaker holds a line.
    knots = rng.normal(0, 0.5, size=int(n / (0.25 * sr)) + 2)
    semitones += np.interp(np.arange(n), np.linspace(0, n, len(knots)), knots)
    f0 = style.f0_hz * 2.0 ** (semitones * style.f0_range / 12.0)

    return Controls(f0, voicing, aspiration, np.asarray(formant_times, float),
                    np.asarray(formants, float), vowel_mask, frications)
