"""Write a corpus: WAVs, TextGrids and a manifest per language.

    OUT_DIR/<lang>/wav/<id>.wav            16-bit PCM mono
    OUT_DIR/<lang>/textgrid/<id>.TextGrid  tiers "words" and "phones" (MFA's shape)
    OUT_DIR/<lang>/manifest.csv            id, path, label, split, speaker, language

Every utterance has its own random generator seeded from (seed, language,
utterance number), so a corpus is the same byte for byte for a seed, and a
language comes out the same whichever other languages are generated with it.
"""
from __future__ import annotations

import csv
import wave
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sers.atomic import refuse_existing
from sers.errors import SersError
from sers.synth.languages import LANGUAGES, Language, Word, make_lexicon
from sers.synth.speakers import EMOTIONS, Speaker, sample_speakers, sample_style
from sers.synth.utterance import Plan, plan_controls, plan_utterance
from sers.synth.voice import render
from sers.inputs.textgrid import Interval, IntervalTier, TextGrid, write_textgrid

__all__ = ["Utterance", "synthesize_utterance", "synthesize_corpus", "corpus_summary",
           "MANIFEST_COLUMNS", "corpus_rng", "write_wav", "check_corpus_options", "prepare_folder",
           "write_manifest", "balanced_plan"]

MANIFEST_COLUMNS = ("id", "path", "label", "split", "speaker", "language")
_LEXICON_SIZE = 300


@dataclass
class Utterance:
    id: str
    audio: np.ndarray             # float in [-1, 1]
    textgrid: TextGrid
    label: str
    speaker: Speaker
    language: str


def corpus_rng(seed: int, language: str, *stream: int) -> np.random.Generator:
    """The generator of one stream (speakers, sentences, utterance i, ...) of a language."""
    # crc32 rather than hash(): str hashes change between Python processes.
    return np.random.default_rng([seed, zlib.crc32(language.encode()), *stream])


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono WAV (the stdlib writer: soundfile's fsync on close costs more
    than synthesising the utterance)."""
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


def _textgrid(plan: Plan) -> TextGrid:
    sr = plan.sample_rate
    end = plan.n_samples / sr
    phones, words = IntervalTier("phones", 0.0, end), IntervalTier("words", 0.0, end)
    word_span: dict[int, list[int]] = {}
    for seg in plan.segments:
        label = seg.phone.symbol if seg.phone is not None else ""
        phones.intervals.append(Interval(seg.start / sr, seg.end / sr, label))
        if seg.word >= 0:
            word_span.setdefault(seg.word, [seg.start, seg.end])[1] = seg.end
    words.intervals = [Interval(a / sr, b / sr, plan.words[w].text) for w, (a, b) in word_span.items()]
    return TextGrid(0.0, end, [words, phones])


def synthesize_utterance(language: Language, lexicon: list[Word], speaker: Speaker, emotion: str,
                         rng: np.random.Generator, utterance_id: str, min_seconds: float = 1.5,
                         max_seconds: float = 4.0, sample_rate: int = 16000) -> Utterance:
    """One utterance of `emotion` by `speaker`: its audio and its exact alignment."""
    style = sample_style(emotion, speaker, rng)
    plan = plan_utterance(language, lexicon, style, rng, min_seconds, max_seconds, sample_rate)
    controls = plan_controls(plan, speaker, style, rng)
    audio = render(controls, speaker, style, sample_rate, rng)
    return Utterance(utterance_id, audio, _textgrid(plan), emotion, speaker, language.code)


def check_corpus_options(languages, known_languages, utterances_per_language, speakers_per_language,
                         min_seconds, max_seconds, sample_rate) -> None:
    """One clear error for options no engine can honour."""
    unknown = [code for code in languages if code not in known_languages]
    if unknown or not languages:
        raise SersError(f"unknown language(s) {', '.join(unknown) or '(none given)'}; "
                        f"choose from {', '.join(known_languages)}")
    if speakers_per_language < 3:
        raise SersError(f"--speakers-per-language {speakers_per_language}: need at least 3 "
                        "(train, dev and test speakers are disjoint)")
    if utterances_per_language < speakers_per_language:
        raise SersError(f"--utterances-per-language {utterances_per_language} is fewer than "
                        f"--speakers-per-language {speakers_per_language}")
    if not 0.8 <= min_seconds <= max_seconds:
        raise SersError(f"durations {min_seconds}-{max_seconds} s: need 0.8 <= min-seconds <= max-seconds")
    if sample_rate < 8000:
        raise SersError(f"--sample-rate {sample_rate}: need at least 8000 Hz")


def _remove_previous(folder: Path, keep: set[str]) -> None:
    """Delete the files of an earlier run in `folder` that this run does not rewrite."""
    manifest = folder / "manifest.csv"
    if not manifest.exists():
        return
    with manifest.open(newline="", encoding="utf-8") as f:
        old_ids = {row["id"] for row in csv.DictReader(f) if row.get("id")}
    for utt_id in old_ids - keep:
        (folder / "wav" / f"{utt_id}.wav").unlink(missing_ok=True)
        (folder / "textgrid" / f"{utt_id}.TextGrid").unlink(missing_ok=True)


def _write_language(out_dir: Path, language: Language, count: int, n_speakers: int,
                    min_seconds: float, max_seconds: float, seed: int, sample_rate: int,
                    progress) -> Path:
    code = language.code
    folder = out_dir / code
    speakers = sample_speakers(code, n_speakers, corpus_rng(seed, code, 0))
    lexicon = make_lexicon(language, _LEXICON_SIZE, corpus_rng(seed, code, 1))
    plan = balanced_plan(speakers, count)
    prepare_folder(folder, {utt_id for utt_id, _, _ in plan})
    rows = []
    for i, (utt_id, speaker, emotion) in enumerate(plan):
        utt = synthesize_utterance(language, lexicon, speaker, emotion, corpus_rng(seed, code, 2, i),
                                   utt_id, min_seconds, max_seconds, sample_rate)
        wav = Path("wav") / f"{utt_id}.wav"
        write_wav(folder / wav, utt.audio, sample_rate)
        write_textgrid(utt.textgrid, folder / "textgrid" / f"{utt_id}.TextGrid")
        rows.append({"id": utt_id, "path": wav.as_posix(), "label": emotion,
                     "split": speaker.split, "speaker": speaker.id, "language": code})
        if progress is not None:
            progress(1)

    return write_manifest(folder, rows)


def balanced_plan(speakers, count: int) -> list[tuple[str, object, str]]:
    """(utterance id, speaker, emotion) for `count` utterances.

    Round-robin over speakers; each speaker cycles through the emotions from its
    own starting point, so every speaker (hence every split) is balanced.
    """
    plan = []
    for i in range(count):
        s = i % len(speakers)
        emotion = EMOTIONS[(i // len(speakers) + s) % len(EMOTIONS)]
        plan.append((f"{speakers[s].id}_{i:05d}", speakers[s], emotion))
    return plan


def prepare_folder(folder: Path, keep: set[str]) -> None:
    """Create <lang>/wav and <lang>/textgrid, deleting an earlier run's files not in `keep`."""
    try:
        (folder / "wav").mkdir(parents=True, exist_ok=True)
        (folder / "textgrid").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SersError(f"{folder}: cannot create the corpus folders ({exc.strerror or exc})") from None
    _remove_previous(folder, keep)


def write_manifest(folder: Path, rows: list[dict]) -> Path:
    """The manifest is written last, through a temporary name: a corpus with a manifest
    is a complete corpus."""
    manifest = folder / "manifest.csv"
    partial = folder / "manifest.csv.partial"
    with partial.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(manifest)
    return manifest


def synthesize_corpus(out_dir: str | Path, languages=("en", "zh"), utterances_per_language: int = 120,
                      speakers_per_language: int = 8, min_seconds: float = 1.5,
                      max_seconds: float = 4.0, seed: int = 0, sample_rate: int = 16000,
                      progress=None, overwrite: bool = False) -> dict[str, Path]:
    """Generate the corpus under `out_dir`; returns {language: manifest path}.

    progress: optional callable taking the number of utterances just written
    (e.g. a tqdm bar's `update`). A language already generated there is regenerated (its
    stale files removed) only with ``overwrite``.
    """
    languages = [languages] if isinstance(languages, str) else list(languages)
    check_corpus_options(languages, LANGUAGES, utterances_per_language, speakers_per_language,
                   min_seconds, max_seconds, sample_rate)
    out_dir = Path(out_dir)
    refuse_existing(*(out_dir / code / "manifest.csv" for code in languages), overwrite=overwrite)
    return {code: _write_language(out_dir, LANGUAGES[code], utterances_per_language,
                                  speakers_per_language, min_seconds, max_seconds, seed,
                                  sample_rate, progress)
            for code in languages}


def corpus_summary(manifests: dict[str, Path]) -> str:
    """A table of utterance counts by split x label for each language."""
    lines = []
    for code, manifest in manifests.items():
        with Path(manifest).open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        counts = Counter((row["split"], row["label"]) for row in rows)
        present = {label for _, label in counts}
        labels = [label for label in EMOTIONS if label in present] + sorted(present - set(EMOTIONS))
        speakers = {split: len({r["speaker"] for r in rows if r["split"] == split})
                    for split in ("train", "dev", "test")}
        lines.append(f"{code}: {len(rows)} utterances -> {manifest}")
        lines.append("  split  speakers " + "".join(f"{label:>6}" for label in labels) + "   total")
        for split in ("train", "dev", "test"):
            row_counts = [counts[(split, label)] for label in labels]
            lines.append(f"  {split:<6} {speakers[split]:>8} " + "".join(f"{c:>6}" for c in row_counts)
                         + f"{sum(row_counts):>8}")
    return "\n".join(lines)
