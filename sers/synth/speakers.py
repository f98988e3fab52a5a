"""Speakers, and how an emotion changes the way one of them speaks one utterance.

Emotions are realised the way the acoustic literature describes them (e.g.
Scherer 2003; Banse & Scherer 1996), as shifts of prosody and voice quality:

    emotion  F0 level  F0 range  tempo   energy  spectral tilt   voice quality
    N        —         —         —       —       —               modal
    H        higher    wider     faster  louder  brighter        modal
    A        higher    wider     faster  loudest brightest       tense, rough (jitter, shimmer)
    S        lower     narrower  slower  softer  darker          breathy, lax, pauses

Every parameter is drawn per utterance from a normal distribution around the
emotion's mean, wide enough that neighbouring emotions overlap (happy vs. angry
most of all, neutral vs. sad next), and speakers differ in their own baselines,
so an utterance-level classifier can learn the emotions but not perfectly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EMOTIONS", "Speaker", "Style", "sample_speakers", "sample_style", "speaker_split"]

EMOTIONS = ("N", "H", "A", "S")


@dataclass(frozen=True)
class Speaker:
    """A voice: habitual F0, vocal-tract length (as a formant scale) and voice quality."""

    id: str
    gender: str                   # "f" / "m"
    split: str                    # train / dev / test: each speaker in exactly one
    f0_hz: float
    formant_scale: float          # > 1: shorter vocal tract, higher formants
    open_quotient: float          # fraction of the glottal cycle the folds are open
    breathiness: float
    jitter: float                 # cycle-to-cycle F0 perturbation (relative sd)
    shimmer: float                # cycle-to-cycle amplitude perturbation (relative sd)
    tilt: float                   # one-pole low-pass coefficient on the glottal source
    rate: float                   # habitual speaking rate (1 = nominal durations)


@dataclass(frozen=True)
class Style:
    """How one utterance is spoken: the speaker's voice shifted by an emotion."""

    emotion: str
    f0_hz: float
    f0_range: float               # multiplies every intonation / tone excursion
    tempo: float                  # > 1: faster (phones shorter)
    level_db: float               # loudness relative to the corpus reference
    tilt: float
    open_quotient: float
    breathiness: float
    jitter: float
    shimmer: float
    pause_probability: float      # chance of a pause between two words


# Per emotion: (mean, sd) of each shift; F0 and tempo are ratios, level in dB,
# the voice-quality terms add to the speaker's own values.
_EMOTION_SHIFTS = {
    #      f0 ratio     f0 range     tempo         level dB    tilt           open quotient  breathiness    jitter x       shimmer x     pauses
    "N": ((1.00, .05), (1.00, .20), (1.00, .07), (0.0, 2.0), (0.00, .07), (0.00, .04), (0.00, .03), (1.0, .25), (1.0, .25), 0.15),
    "H": ((1.17, .06), (1.60, .28), (1.08, .07), (2.5, 2.0), (-0.08, .07), (-0.03, .04), (-0.01, .03), (1.0, .25), (1.0, .25), 0.10),
    "A": ((1.12, .06), (1.25, .25), (1.10, .07), (6.0, 2.0), (-0.25, .07), (-0.10, .04), (-0.02, .03), (1.8, .35), (1.8, .35), 0.10),
    "S": ((0.93, .05), (0.65, .18), (0.84, .07), (-3.0, 2.0), (0.13, .07), (0.08, .04), (0.10, .04), (1.5, .35), (1.4, .30), 0.30),
}


def speaker_split(index: int, count: int) -> str:
    """The split of speaker `index` of `count`: about 60/20/20 train/dev/test.

    The last fifth of speakers (at least one) are test, the fifth before them
    dev, so with genders alternating every split gets both genders once there
    are enough speakers.
    """
    n_test = max(1, round(0.2 * count))
    n_dev = max(1, round(0.2 * count))
    return "test" if index >= count - n_test else "dev" if index >= count - n_test - n_dev else "train"


def sample_speakers(language: str, count: int, rng: np.random.Generator) -> list[Speaker]:
    """`count` speakers, genders alternating, split by `speaker_split`."""
    speakers = []
    for index in range(count):
        gender = "f" if index % 2 == 0 else "m"
        split = speaker_split(index, count)
        female = gender == "f"
        speakers.append(Speaker(
            id=f"{language}_{gender}{index:02d}",
            gender=gender,
            split=split,
            f0_hz=rng.uniform(175, 235) if female else rng.uniform(95, 135),
            formant_scale=rng.uniform(1.12, 1.22) if female else rng.uniform(0.94, 1.04),
            open_quotient=rng.uniform(0.55, 0.65) if female else rng.uniform(0.45, 0.58),
            breathiness=rng.uniform(0.04, 0.12) if female else rng.uniform(0.01, 0.07),
            jitter=rng.uniform(0.004, 0.010),
            shimmer=rng.uniform(0.03, 0.06),
            tilt=rng.uniform(0.45, 0.65),
            rate=rng.uniform(0.92, 1.08),
        ))
    return speakers


def sample_style(emotion: str, speaker: Speaker, rng: np.random.Generator) -> Style:
    """Draw the prosody and voice quality of one utterance of `emotion` by `speaker`."""
    (f0, rng_f0, tempo, level, tilt, oq, breath, jitter, shimmer, pauses) = _EMOTION_SHIFTS[emotion]

    def draw(mean_sd):
        return rng.normal(*mean_sd)

    return Style(
        emotion=emotion,
        f0_hz=speaker.f0_hz * max(0.7, draw(f0)),
        f0_range=float(np.clip(draw(rng_f0), 0.3, 2.5)),
        tempo=speaker.rate * float(np.clip(draw(tempo), 0.65, 1.4)),
        level_db=draw(level),
        tilt=float(np.clip(speaker.tilt + draw(tilt), 0.05, 0.92)),
        open_quotient=float(np.clip(speaker.open_quotient + draw(oq), 0.3, 0.85)),
        breathiness=float(np.clip(speaker.breathiness + draw(breath), 0.0, 0.4)),
        jitter=speaker.jitter * max(0.3, draw(jitter)),
        shimmer=speaker.shimmer * max(0.3, draw(shimmer)),
        pause_probability=pauses,
    )
