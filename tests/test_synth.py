"""The generated corpus: structure, exact alignments, determinism, and learnable emotions."""
import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sers.cli import main
from sers.errors import SersError
from sers.synth import EMOTIONS, LANGUAGES, MANIFEST_COLUMNS, synthesize_corpus, vowel_classes
from sers.inputs.textgrid import read_textgrid


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The default-size corpus (120 utterances x 2 languages, 8 speakers each)."""
    out = tmp_path_factory.mktemp("corpus")
    manifests = synthesize_corpus(out, seed=0)
    return {code: (path, _read_manifest(path)) for code, path in manifests.items()}


def _read_manifest(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _audio(manifest, row):
    return sf.read(Path(manifest).parent / row["path"])


def test_corpus_structure(corpus, tmp_path):
    assert set(corpus) == {"en", "zh"}
    for code, (manifest, rows) in corpus.items():
        assert manifest == manifest.parent.parent / code / "manifest.csv"
        assert tuple(rows[0]) == MANIFEST_COLUMNS
        assert len(rows) == 120
        assert {r["language"] for r in rows} == {code}
        speakers_by_split = {}
        for split in ("train", "dev", "test"):
            in_split = [r for r in rows if r["split"] == split]
            assert {r["label"] for r in in_split} == set(EMOTIONS), (code, split)
            speakers_by_split[split] = {r["speaker"] for r in in_split}
        assert [len(s) for s in speakers_by_split.values()] == [4, 2, 2]
        train, dev, test = speakers_by_split.values()
        assert not (train & dev or train & test or dev & test)
        durations = []
        for row in rows:
            info = sf.info(manifest.parent / row["path"])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert (manifest.parent / "textgrid" / f"{row['id']}.TextGrid").is_file()
            durations.append(info.frames / info.samplerate)
        assert 1.5 <= min(durations) and max(durations) <= 4.0
        assert max(durations) - min(durations) > 1.5          # lengths really vary


def test_textgrids_are_exact_vowel_alignments(corpus):
    for code, (manifest, rows) in corpus.items():
        classes = vowel_classes(LANGUAGES[code])
        inventory = set(LANGUAGES[code].phones)
        seen_classes = set()
        for row in rows[:40]:
            audio, sr = _audio(manifest, row)
            grid = read_textgrid(manifest.parent / "textgrid" / f"{row['id']}.TextGrid")
            assert grid.tier_names == ["words", "phones"]
            assert grid.end == len(audio) / sr
            phones = grid.tier("phones")
            assert {p.label for p in phones.labelled()} <= inventory
            assert len(grid.tier("words").labelled()) >= 1
            vowels = [p for p in phones.labelled() if LANGUAGES[code].phone(p.label).is_vowel]
            assert vowels and all(0 < v.start < v.end < grid.end for v in vowels)
            seen_classes |= {classes[v.label] for v in vowels if v.label in classes}

            def level_db(start, end):
                segment = audio[int(round(start * sr)):int(round(end * sr))]
                return 10 * np.log10(np.mean(segment ** 2) + 1e-12)

            silence = phones.intervals[0]
            assert silence.label == "" and silence.start == 0
            vowel_level = np.median([level_db(v.start, v.end) for v in vowels])
            assert vowel_level > level_db(silence.start, silence.end) + 25, row["id"]
        assert seen_classes == {"a", "e", "i", "o", "u"}, code


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_languages_independent(tmp_path):
    options = dict(utterances_per_language=6, speakers_per_language=3, seed=3)
    synthesize_corpus(tmp_path / "a", languages=("en", "zh"), **options)
    synthesize_corpus(tmp_path / "b", languages=("en", "zh"), **options)
    synthesize_corpus(tmp_path / "zh_only", languages=("zh",), **options)
    first, second = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert len(first) == 2 * (1 + 6 + 6) and first == second
    assert _tree(tmp_path / "zh_only" / "zh") == _tree(tmp_path / "a" / "zh")
    synthesize_corpus(tmp_path / "c", languages=("en",), **{**options, "seed": 4})
    assert _tree(tmp_path / "c" / "en")["wav/en_f00_00000.wav"] != first["en/wav/en_f00_00000.wav"]


def test_rerun_with_fewer_utterances_removes_stale_files(tmp_path):
    synthesize_corpus(tmp_path, languages="en", utterances_per_language=8, speakers_per_language=4,
                      sample_rate=8000, min_seconds=1.0, max_seconds=1.5)
    with pytest.raises(SersError, match=r"en/manifest.csv exists: pass --overwrite to replace it"):
        synthesize_corpus(tmp_path, languages="en", utterances_per_language=4, speakers_per_language=4)
    manifest = synthesize_corpus(tmp_path, languages="en", utterances_per_language=4,
                                 speakers_per_language=4, sample_rate=8000, overwrite=True)["en"]
    assert len(list((tmp_path / "en" / "wav").glob("*.wav"))) == 4
    assert len(list((tmp_path / "en" / "textgrid").glob("*.TextGrid"))) == 4
    assert sf.info(manifest.parent / _read_manifest(manifest)[0]["path"]).samplerate == 8000


@pytest.mark.parametrize("options, message", [
    (dict(languages=("en", "fr")), "unknown language.*fr; choose from en, zh"),
    (dict(speakers_per_language=2), "need at least 3"),
    (dict(utterances_per_language=5, speakers_per_language=6), "fewer than"),
    (dict(min_seconds=3.0, max_seconds=2.0), "min-seconds <= max-seconds"),
])
def test_bad_options_are_sers_errors(tmp_path, options, message):
    with pytest.raises(SersError, match=message):
        synthesize_corpus(tmp_path, **options)
    assert not any(tmp_path.iterdir())


def test_output_folder_that_is_a_file_is_a_sers_error(tmp_path):
    (tmp_path / "en").write_text("not a folder")
    with pytest.raises(SersError, match="cannot create the corpus folders"):
        synthesize_corpus(tmp_path, languages="en", utterances_per_language=3, speakers_per_language=3)


# --- learnability: simple acoustic statistics, computed here with numpy ----------------

def _frames(x, sr, seconds, hop_seconds):
    size, hop = int(seconds * sr), int(hop_seconds * sr)
    count = 1 + (len(x) - size) // hop
    return x[np.arange(size)[None, :] + hop * np.arange(count)[:, None]] * np.hanning(size)


def _prosody_stats(x, sr):
    """F0 (autocorrelation), energy, spectral centroid and tilt statistics."""
    frames = _frames(x, sr, 0.04, 0.02)
    energy = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-10)
    speech = energy > energy.max() - 35
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(frames.shape[1], 1 / sr)
    centroid = (power * freqs).sum(1) / (power.sum(1) + 1e-12)
    tilt = 10 * np.log10((power[:, freqs > 1000].sum(1) + 1e-12) / (power[:, freqs <= 1000].sum(1) + 1e-12))
    autocorr = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * frames.shape[1], axis=1)) ** 2, axis=1)
    lo, hi = int(sr / 400), int(sr / 60)
    lag = lo + np.argmax(autocorr[:, lo:hi], axis=1)
    periodicity = autocorr[np.arange(len(lag)), lag] / (autocorr[:, 0] + 1e-12)
    voiced = speech & (periodicity > 0.5)
    semitones = 12 * np.log2(sr / lag[voiced])
    e = energy[speech]
    return np.array([semitones.mean(), semitones.std(), np.ptp(np.percentile(semitones, [10, 90])),
                     e.mean(), e.std(), np.percentile(e, 95), centroid[speech].mean(),
                     tilt[voiced].mean(), tilt[voiced].std(), voiced.mean(), speech.mean(),
                     periodicity[voiced].mean()])


def _spectral_stats(x, sr, n_bands=24):
    """Log mel-band energies: mean shape, spread and frame-to-frame change."""
    frames = _frames(x, sr, 0.025, 0.01)
    power = np.abs(np.fft.rfft(frames, 512, axis=1)) ** 2
    mel = 2595 * np.log10(1 + np.fft.rfftfreq(512, 1 / sr) / 700)
    band = np.minimum((mel / mel[-1] * n_bands).astype(int), n_bands - 1)
    log_mel = np.log(np.stack([power[:, band == b].sum(1) for b in range(n_bands)], 1) + 1e-10)
    speech = log_mel.max(1) > log_mel.max() - 8
    shape = log_mel[speech].mean(0)
    change = np.abs(np.diff(log_mel, axis=0))[speech[1:]].mean(0)
    return np.concatenate([shape - shape.mean(), log_mel[speech].std(0), change])


def _speaker_cv_predictions(features, labels, speakers):
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_predict(probe, features, labels, groups=speakers, cv=GroupKFold(n_splits=4))


def test_linear_probe_learns_emotions_but_not_perfectly(corpus):
    for code, (manifest, rows) in corpus.items():
        features = np.stack([_prosody_stats(*_audio(manifest, r)) for r in rows])
        labels = np.array([r["label"] for r in rows])
        predicted = _speaker_cv_predictions(features, labels, np.array([r["speaker"] for r in rows]))
        uar = recall_score(labels, predicted, average="macro")
        print(f"{code}: emotion UAR of a linear probe, cross-validated by speaker = {uar:.3f}")
        assert 0.45 < uar < 0.95, code


def test_languages_are_acoustically_distinct(corpus):
    features, languages, speakers = [], [], []
    for code, (manifest, rows) in corpus.items():
        features += [_spectral_stats(*_audio(manifest, r)) for r in rows]
        languages += [code] * len(rows)
        speakers += [r["speaker"] for r in rows]
    predicted = _speaker_cv_predictions(np.stack(features), np.array(languages), np.array(speakers))
    accuracy = np.mean(predicted == np.array(languages))
    print(f"language accuracy of a linear probe, cross-validated by speaker = {accuracy:.3f}")
    assert accuracy > 0.9


def test_cli_writes_corpus_and_prints_counts(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["synth", "-o", str(tmp_path), "--engine", "source-filter", "--languages", "zh", "-n", "8",
                                  "--speakers-per-language", "4", "--max-seconds", "2",
                                  "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "zh: 8 utterances" in result.output
    # 4 speakers x 2 utterances; each speaker starts the N, H, A, S cycle one step later.
    assert "split  speakers      N     H     A     S   total" in result.output
    assert "train         2      1     2     1     0       4" in result.output
    assert "test          1      1     0     0     1       2" in result.output
    assert len(_read_manifest(tmp_path / "zh" / "manifest.csv")) == 8

    result = runner.invoke(main, ["synth", "-o", str(tmp_path), "--engine", "source-filter", "--languages", "en,xx"])
    assert result.exit_code == 1
    assert "error: unknown language(s) xx" in result.output
