"""A corpus of real synthesised speech: espeak-ng reads sentences in four emotions.

Same layout and manifest as the source-filter corpus (`sers.synth.corpus`):

    OUT_DIR/<lang>/wav/<id>.wav            16-bit PCM mono, 16 kHz (espeak's 22.05 kHz, resampled)
    OUT_DIR/<lang>/textgrid/<id>.TextGrid  tiers "words" and "phones" (IPA), from espeak's events
    OUT_DIR/<lang>/manifest.csv            id, path, label, split, speaker, language

Languages: en (English, voice en-us), zh (Mandarin in Hanzi, voice cmn), es (Spanish), and two
outside Indo-European and Sino-Tibetan, for a larger language shift: fi (Finnish, Uralic) and
tr (Turkish, Turkic).

Emotions are prosody only, as SSML `<prosody pitch range rate>` plus the level of the
recording: each emotion shifts the speaker's own baseline, and every utterance draws
its shifts around the emotion's mean, so neighbouring emotions overlap:

    emotion  pitch    pitch range  rate     level
    N        —        —            —        —
    H        higher   much wider   faster   louder
    A        higher   wider        fastest  loudest
    S        lower    narrower     slower   softer

Speakers are espeak voice variants (female f1-f5, male m1-m7) with their own pitch,
range, rate and recording level, split by speaker into train/dev/test.

Determinism. libespeak-ng keeps state between calls (see `sers.synth.espeak`), so each
language is synthesised in a fresh process, utterances in a fixed order: the same seed
gives the same bytes, and a language comes out the same whichever others are made with it.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sers.atomic import refuse_existing
from sers.inputs.audio import resample
from sers.errors import SersError
from sers.synth.corpus import (balanced_plan, check_corpus_options, corpus_rng, prepare_folder,
                               write_manifest, write_wav)
from sers.synth.sentences import draw_sentence
from sers.synth.speakers import speaker_split
from sers.inputs.textgrid import Interval, IntervalTier, TextGrid, write_textgrid

__all__ = ["ESPEAK_LANGUAGES", "EspeakSpeaker", "Prosody", "sample_espeak_speakers", "sample_prosody",
           "prosody_ssml", "speech_textgrid", "synthesize_espeak_corpus"]

# Corpus language code -> espeak-ng voice.
ESPEAK_LANGUAGES = {"en": "en-us", "zh": "cmn", "es": "es", "fi": "fi", "tr": "tr"}
_FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
_MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")

# Per emotion: mean of (pitch ratio, pitch-range ratio, rate ratio, level dB) relative to
# the speaker's baseline; and the per-utterance standard deviation of each.
_EMOTION_PROSODY = {
    "N": (1.00, 1.00, 1.00, 0.0),
    "H": (1.14, 1.45, 1.06, 2.5),
    "A": (1.10, 1.25, 1.12, 5.0),
    "S": (0.91, 0.65, 0.85, -3.0),
}
_PROSODY_SD = (0.06, 0.22, 0.07, 2.0)
# RMS of an utterance at level 0 dB (leaves headroom for loud speakers in loud emotions).
_REFERENCE_RMS_DB = -26.0
_PEAK_LIMIT = 0.98


@dataclass(frozen=True)
class EspeakSpeaker:
    id: str
    gender: str                   # "f" / "m"
    split: str                    # train / dev / test
    voice: str                    # espeak voice with variant, e.g. "en-us+f3"
    pitch: float                  # baseline ratios to the variant's own pitch, range and rate
    pitch_range: float
    rate: float
    level_db: float               # recording level of this speaker


@dataclass(frozen=True)
class Prosody:
    emotion: str
    pitch: float                  # ratios to espeak's defaults for the voice
    pitch_range: float
    rate: float
    level_db: float


def sample_espeak_speakers(language: str, count: int, rng: np.random.Generator) -> list[EspeakSpeaker]:
    """`count` speakers, genders alternating, each a voice variant with its own baselines.

    Variants are assigned from a language-dependent starting point, so the same variant
    is not the same speaker number (hence split) in every language.
    """
    voice = ESPEAK_LANGUAGES[language]
    offset = zlib.crc32(language.encode())
    speakers = []
    for index in range(count):
        gender = "f" if index % 2 == 0 else "m"
        variants = _FEMALE_VARIANTS if gender == "f" else _MALE_VARIANTS
        variant = variants[(index // 2 + offset) % len(variants)]
        speakers.append(EspeakSpeaker(
            id=f"{language}_{gender}{index:02d}", gender=gender, split=speaker_split(index, count),
            voice=f"{voice}+{variant}", pitch=rng.uniform(0.9, 1.1), pitch_range=rng.uniform(0.8, 1.2),
            rate=rng.uniform(0.92, 1.08), level_db=rng.uniform(-4.0, 4.0)))
    return speakers


def sample_prosody(emotion: str, speaker: EspeakSpeaker, rng: np.random.Generator) -> Prosody:
    """The prosody of one utterance of `emotion` by `speaker`."""
    pitch, pitch_range, rate, level = (rng.normal(mean, sd) for mean, sd in
                                       zip(_EMOTION_PROSODY[emotion], _PROSODY_SD))
    return Prosody(emotion, speaker.pitch * float(np.clip(pitch, 0.7, 1.4)),
                   speaker.pitch_range * float(np.clip(pitch_range, 0.2, 2.5)),
                   speaker.rate * float(np.clip(rate, 0.65, 1.4)), speaker.level_db + float(level))


def prosody_ssml(text: str, prosody: Prosody) -> str:
    """SSML for espeak-ng: relative pitch and range, rate in percent (level is applied after)."""
    def relative(ratio):
        return f"{(ratio - 1) * 100:+.0f}%"

    return (f'<speak><prosody pitch="{relative(prosody.pitch)}" range="{relative(prosody.pitch_range)}" '
            f'rate="{prosody.rate * 100:.0f}%">{text}</prosody></speak>')


def _apply_level(waveform: np.ndarray, level_db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(waveform.astype(np.float64) ** 2))) or 1.0
    out = waveform * (10 ** ((_REFERENCE_RMS_DB + level_db) / 20) / rms)
    peak = float(np.abs(out).max(initial=0.0))
    return (out * (_PEAK_LIMIT / peak) if peak > _PEAK_LIMIT else out).astype(np.float32)


# espeak-ng's IPA phoneme names that are not plain IPA: retroflex and aspiration written
# in ASCII (Mandarin), a velar nasal fused into the vowel, the apical vowel and [ɤ].
_ESPEAK_IPA_FIXES = (("ts.h", "ʈʂʰ"), ("ts.", "ʈʂ"), ("s.", "ʂ"), ("i.", "ɨ"), ("o-", "ɤ"),
                     ("nɡ", "ŋ"), ("tɕh", "tɕʰ"), ("tsh", "tsʰ"), ("ph", "pʰ"), ("th", "tʰ"), ("kh", "kʰ"))
_STRESS = dict.fromkeys(map(ord, "ˈˌ"))
# Names that are IPA letters but the wrong ones for one language. espeak-ng's Turkish
# writes its phoneme Y, the reduced ü (a close rounded vowel, formants vowel/u#), as "ø",
# and ö (phoneme W, the same formants as Finnish ö, which it writes "ø") as "œ"; read
# as written, küçük would be [kytʃøk]. Swapped at once (a table, not two replacements).
_LANGUAGE_IPA_FIXES = {"tr": str.maketrans({"ø": "ʏ", "œ": "ø"})}


def phone_label(espeak_name: str, language: str | None = None) -> str:
    """An espeak IPA phoneme name as an IPA phone label: stress marks dropped (they mark
    syllables, not phones), espeak's ASCII spellings replaced by IPA letters, and for
    `language` (a corpus code) the letters its espeak voice misnames."""
    label = espeak_name.translate(_STRESS).strip()
    for spelling, ipa in _ESPEAK_IPA_FIXES:
        label = label.replace(spelling, ipa)
    return label.translate(_LANGUAGE_IPA_FIXES[language]) if language in _LANGUAGE_IPA_FIXES else label


def speech_textgrid(speech, duration: float, language: str | None = None) -> TextGrid:
    """Tiers "words" and "phones" from espeak's events; times in seconds, cut at `duration`;
    phone labels by `phone_label` for `language`.

    A phone lasts until the next phone event; unnamed events (pauses) become silence.
    A word lasts from its event to the end of its last phone before the next word's event.
    """
    starts = [min(p.start, duration) for p in speech.phonemes] + [duration]
    phones = IntervalTier("phones", 0.0, duration)
    for p, start, end in zip(speech.phonemes, starts, starts[1:]):
        label = phone_label(p.name, language)
        if end > start and label:
            phones.intervals.append(Interval(start, end, label))
    words = IntervalTier("words", 0.0, duration)
    word_starts = [min(w.start, duration) for w in speech.words] + [duration]
    for w, start, next_start in zip(speech.words, word_starts, word_starts[1:]):
        inside = [iv for iv in phones.intervals if start <= iv.start < next_start]
        # espeak places a word event at its first phone, but a phone may run a little past
        # the next word's event: the word is cut there, so words never overlap.
        end = min(inside[-1].end, next_start) if inside else start
        if end > start and w.text.strip():
            words.intervals.append(Interval(start, end, w.text.strip()))
    return TextGrid(0.0, duration, [words, phones])


def _write_language(out_dir: str, code: str, count: int, n_speakers: int, seed: int, sample_rate: int,
                    report) -> str:
    from sers.synth.espeak import synthesize

    folder = Path(out_dir) / code
    speakers = sample_espeak_speakers(code, n_speakers, corpus_rng(seed, code, 0))
    plan = balanced_plan(speakers, count)
    prepare_folder(folder, {utt_id for utt_id, _, _ in plan})
    rows = []
    for i, (utt_id, speaker, emotion) in enumerate(plan):
        # Separate streams: the sentence does not depend on the emotion drawn.
        sentence = draw_sentence(code, corpus_rng(seed, code, 1, i))
        rng = corpus_rng(seed, code, 2, i)
        prosody = sample_prosody(emotion, speaker, rng)
        speech = synthesize(prosody_ssml(sentence, prosody), speaker.voice, seed=int(rng.integers(2**31)))
        audio = _apply_level(resample(speech.waveform, speech.sample_rate, sample_rate), prosody.level_db)
        wav = Path("wav") / f"{utt_id}.wav"
        write_wav(folder / wav, audio, sample_rate)
        write_textgrid(speech_textgrid(speech, len(audio) / sample_rate, code),
                       folder / "textgrid" / f"{utt_id}.TextGrid")
        rows.append({"id": utt_id, "path": wav.as_posix(), "label": emotion,
                     "split": speaker.split, "speaker": speaker.id, "language": code})
        report(1)
    return str(write_manifest(folder, rows))


def _forward_lines(code: str, stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put((code, line))
    lines.put((code, None))                # end of this child's output


def _run_language_processes(out_dir: Path, languages, options: list[str], progress) -> dict[str, Path]:
    """Run `python -m sers.synth.espeak_corpus` once per language, in parallel.

    A child reports one line per utterance written ("+1") and its manifest path last;
    an error is its last line on stderr. (A subprocess rather than multiprocessing:
    spawning would re-import the caller's __main__, which a user's script may not guard.)
    """
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    lines: queue.Queue = queue.Queue()
    children, stderrs = {}, {}
    for code in languages:
        # stderr goes to a file: a pipe read only at the end could fill up and block the child.
        stderrs[code] = tempfile.TemporaryFile("w+", encoding="utf-8")
        children[code] = subprocess.Popen(
            [sys.executable, "-m", "sers.synth.espeak_corpus", str(out_dir), code, *options],
            stdout=subprocess.PIPE, stderr=stderrs[code], text=True, encoding="utf-8", env=env)
        threading.Thread(target=_forward_lines, args=(code, children[code].stdout, lines), daemon=True).start()
    manifests, finished = {}, 0
    try:
        while finished < len(children):
            code, line = lines.get()
            if line is None:
                finished += 1
            elif line.startswith("+"):
                if progress is not None:
                    progress(int(line[1:]))
            else:
                manifests[code] = Path(line.strip())
    finally:
        for child in children.values():
            if child.poll() is None:
                child.terminate()
    errors = []
    for code, child in children.items():
        stderrs[code].seek(0)
        stderr = stderrs[code].read().strip()
        stderrs[code].close()
        if child.wait() != 0 or code not in manifests:
            errors.append(f"{code}: {stderr.splitlines()[-1] if stderr else f'exit code {child.returncode}'}")
    if errors:
        raise SersError("espeak synthesis failed for " + "; ".join(errors))
    return manifests


def synthesize_espeak_corpus(out_dir: str | Path, languages=("en", "zh"), utterances_per_language: int = 300,
                             speakers_per_language: int = 8, seed: int = 0, sample_rate: int = 16000,
                             progress=None, overwrite: bool = False) -> dict[str, Path]:
    """Generate the espeak corpus under `out_dir`; returns {language: manifest path}.

    Each language runs in its own fresh process (in parallel); progress: optional
    callable taking the number of utterances just written. A language already generated
    there is regenerated only with ``overwrite``.
    """
    from sers.synth.espeak import INSTALL_HINT, is_available

    languages = [languages] if isinstance(languages, str) else list(languages)
    check_corpus_options(languages, ESPEAK_LANGUAGES, utterances_per_language, speakers_per_language,
                         1.5, 5.0, sample_rate)
    if not is_available():
        raise SersError(f"--engine espeak needs the espeakng-loader package ({INSTALL_HINT})")
    refuse_existing(*(Path(out_dir) / code / "manifest.csv" for code in languages), overwrite=overwrite)
    options = [str(utterances_per_language), str(speakers_per_language), str(seed), str(sample_rate)]
    manifests = _run_language_processes(Path(out_dir), languages, options, progress)
    return {code: manifests[code] for code in languages}


def _main(argv: list[str]) -> int:
    """The child process: OUT_DIR LANGUAGE COUNT SPEAKERS SEED SAMPLE_RATE."""
    out_dir, code, count, n_speakers, seed, sample_rate = argv
    try:
        manifest = _write_language(out_dir, code, int(count), int(n_speakers), int(seed), int(sample_rate),
                                   report=lambda n: print(f"+{n}", flush=True))
    except SersError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(manifest, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
