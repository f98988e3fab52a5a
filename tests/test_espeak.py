"""The espeak-ng engine: the ctypes wrapper, and the corpus it speaks (`sers synth --engine espeak`)."""
import csv
import sys
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

pytest.importorskip("espeakng_loader", reason="espeakng-loader is not installed (pip install espeakng-loader)")

from sers.cli import main  # noqa: E402
from sers.errors import SersError  # noqa: E402
from sers.synth import EMOTIONS, MANIFEST_COLUMNS, choose_engine, synthesize_espeak_corpus  # noqa: E402
from sers.synth import espeak  # noqa: E402
from sers.synth.espeak_corpus import ESPEAK_LANGUAGES, phone_label  # noqa: E402
from sers.synth.sentences import SENTENCE_SLOTS, draw_sentence, sentence_pool_size  # noqa: E402
from sers.inputs.textgrid import read_textgrid  # noqa: E402
from sers.inputs.vowels import load_vowel_map  # noqa: E402
from tiny_models import tiny_model  # noqa: E402, F401  (pytest fixture)

SENTENCE = "The old farmer walked slowly to the market this morning."
# Every word of the Finnish and Turkish sentence lists, and the consonants espeak-ng speaks in
# them: a phone outside both is a label the vowel maps do not know.
SENTENCE_ALL_WORDS = {code: {w.strip(".") for slot in SENTENCE_SLOTS[code] for e in slot for w in e.split()}
                      for code in ("fi", "tr")}
CONSONANTS = {"fi": set("bdhjklmnprstvŋ"),
              "tr": {*"bcdfhjklmnprstvzɟɡɫɾʃ", "tʃ", "dʒ"}}


def _median_f0(audio: np.ndarray, sample_rate: int) -> float:
    """Median autocorrelation F0 of the loud 40 ms frames (60-400 Hz)."""
    frame, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    f0 = []
    for start in range(0, len(audio) - frame, hop):
        x = audio[start:start + frame] - audio[start:start + frame].mean()
        if np.sqrt(np.mean(x ** 2)) < 0.3 * np.sqrt(np.mean(audio ** 2)):
            continue
        autocorr = np.correlate(x, x, "full")[frame - 1:]
        low, high = sample_rate // 400, sample_rate // 60
        lag = low + int(np.argmax(autocorr[low:high]))
        if autocorr[lag] > 0.5 * autocorr[0]:
            f0.append(sample_rate / lag)
    return float(np.median(f0))


def _read_manifest(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- the wrapper ---

def test_voices_of_the_corpus_languages_exist_and_speak():
    languages = {voice.language for voice in espeak.list_voices()}
    assert {"en-us", "cmn", "es"} <= languages
    for voice in ("en-us+m3", "cmn+f2", "es+f4"):
        speech = espeak.synthesize("<speak>Hola. 你好. Hello.</speak>", voice)
        assert speech.sample_rate == 22050 and speech.waveform.dtype == np.float32
        assert 0.5 < len(speech.waveform) / speech.sample_rate < 5
        assert 0.05 < np.abs(speech.waveform).max() <= 1.0


def test_ssml_prosody_changes_pitch_and_duration():
    def speak(attributes):
        return espeak.synthesize(f"<speak><prosody {attributes}>{SENTENCE}</prosody></speak>", "en-us+m3")

    plain, high, low = speak('pitch="+0%"'), speak('pitch="+40%"'), speak('pitch="-30%"')
    f0 = {name: _median_f0(s.waveform, s.sample_rate) for name, s in
          (("plain", plain), ("high", high), ("low", low))}
    assert f0["high"] > 1.1 * f0["plain"] > 1.1 * f0["low"], f0
    fast, slow = speak('rate="150%"'), speak('rate="70%"')
    assert len(fast.waveform) < 0.8 * len(plain.waveform) < 0.8 * len(slow.waveform)


def test_phoneme_and_word_events_give_ipa_times_inside_the_audio():
    speech = espeak.synthesize(f"<speak>{SENTENCE}</speak>", "en-us")
    duration = len(speech.waveform) / speech.sample_rate
    starts = [p.start for p in speech.phonemes]
    assert starts == sorted(starts) and 0 <= starts[0] and starts[-1] <= duration
    names = [phone_label(p.name) for p in speech.phonemes if p.name]
    assert {"ð", "ɑːɹ", "oʊ", "m"} <= set(names)          # the, market, old/slowly, morning
    assert [w.text for w in speech.words] == SENTENCE.rstrip(".").split()
    mandarin = espeak.synthesize("<speak>我们去城里银行。</speak>", "cmn")
    # espeak's dictionary splits Mandarin into words; together they cover the sentence
    assert "".join(w.text for w in mandarin.words) == "我们去城里银行" and "城里" in [w.text for w in mandarin.words]
    assert "xing" not in "".join(p.name for p in mandarin.phonemes)   # 银行 is yinhang
    assert [phone_label(p.name) for p in mandarin.phonemes if p.name][-3:] == ["χ", "ɑ", "ŋ"]


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(SersError, match=r"espeak-ng has no voice 'xx-nowhere\+m3'"):
        espeak.synthesize("<speak>Hello.</speak>", "xx-nowhere+m3")


def test_missing_package_is_a_clear_error_and_auto_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)      # import now raises ImportError
    with pytest.raises(SersError, match=r"needs the espeakng-loader package \(pip install espeakng-loader\)"):
        espeak._Engine()
    assert not espeak.is_available()
    engine, reason = choose_engine("auto")
    assert engine == "source-filter" and "pip install espeakng-loader" in reason
    with pytest.raises(SersError, match="pip install espeakng-loader"):
        choose_engine("espeak")
    result = CliRunner().invoke(main, ["synth", "-o", "unused", "--engine", "espeak"])
    assert result.exit_code == 1 and "pip install espeakng-loader" in result.output


def test_espeak_phone_names_become_ipa_the_vowel_maps_read():
    assert phone_label("ˈoʊ") == "oʊ" and phone_label("ts.h") == "ʈʂʰ" and phone_label("ˈi.") == "ɨ"
    assert phone_label("ˌonɡ") == "oŋ" and phone_label("o-") == "ɤ" and phone_label("kh") == "kʰ"
    en, cmn, es = (load_vowel_map(name) for name in ("en-ipa", "cmn-ipa", "es-ipa"))
    assert [en.classify(p) for p in ("ɑːɹ", "ɔːɹ", "ɛɹ", "iː", "oʊ")] == ["a", "o", "e", "i", "o"]
    assert en.is_vowel("ᵻ") and en.classify("ᵻ") is None
    assert [cmn.classify(p) for p in ("iɛ", "iɑ", "uo", "ɑ", "ei")] == ["e", "a", "o", "a", "e"]
    assert cmn.is_vowel("oŋ") and cmn.classify("oŋ") is None and not cmn.is_vowel("ʈʂʰ")
    assert [es.classify(p) for p in "aeiou"] == list("aeiou") and es.classify("aʊ") is None


def test_finnish_and_turkish_phone_names_become_ipa_the_vowel_maps_read():
    # espeak's Turkish misnames reduced ü "ø" and ö "œ"; Finnish ö is "ø" already
    assert phone_label("ˈø", "tr") == "ʏ" and phone_label("œ", "tr") == "ø" and phone_label("ø", "fi") == "ø"
    assert phone_label("ø") == "ø" and phone_label("ˈyø", "fi") == "yø"
    def labels(text, language):
        speech = espeak.synthesize(f"<speak>{text}</speak>", ESPEAK_LANGUAGES[language])
        return [phone_label(p.name, language) for p in speech.phonemes if p.name]

    assert labels("Hyvää yötä.", "fi") == ["h", "y", "v", "æ", "yø", "t", "æ"]     # long ää: one phone
    assert labels("Pieni kissa söi kalaa.", "fi") == ["p", "ie", "n", "ɪ", "k", "i", "s", "s", "a",
                                                       "s", "øi", "k", "a", "l", "a"]
    assert labels("Küçük kız.", "tr") == ["k", "y", "tʃ", "ʏ", "k", "k", "ɯ", "z"]
    assert labels("Gölde annem.", "tr") == ["ɟ", "ø", "l", "d", "ɛ", "a", "n", "n", "æ", "m"]
    fi, tr = load_vowel_map("fi-ipa"), load_vowel_map("tr-ipa")
    assert [fi.classify(p) for p in ("a", "æ", "e", "ei", "i", "ɪ", "ie", "o", "ou", "u", "uo")] == \
        list("aaeeiiioouu")
    assert all(fi.is_vowel(p) and fi.classify(p) is None for p in ("y", "ø", "yø", "øy", "ai", "æi", "oi", "au"))
    assert [tr.classify(p) for p in ("a", "æ", "e", "ɛ", "i", "ɪ", "o", "ɔ", "u", "ʊ")] == list("aaeeiioouu")
    assert all(tr.is_vowel(p) and tr.classify(p) is None for p in ("ɯ", "y", "ʏ", "ø", "œ"))
    assert not tr.is_vowel("ɟ") and not fi.is_vowel("ŋ")


def test_sentence_pools_are_large_and_in_language():
    assert set(SENTENCE_SLOTS) == set(ESPEAK_LANGUAGES) == {"en", "zh", "es", "fi", "tr"}
    for code in SENTENCE_SLOTS:
        assert sentence_pool_size(code) > 1000, code
    # 16 subjects, 18 predicates, 14 times or places: English's and Spanish's pool size
    assert sentence_pool_size("fi") == sentence_pool_size("tr") == sentence_pool_size("en") == 4320
    assert all("了" not in entry for slot in SENTENCE_SLOTS["zh"] for entry in slot)
    letters = {code: set("".join(e for slot in SENTENCE_SLOTS[code] for e in slot)) for code in ("fi", "tr")}
    assert {"ä", "ö", "y"} <= letters["fi"] and {"ı", "ş", "ğ", "ç", "ü", "ö"} <= letters["tr"]
    assert all("'" not in entry for slot in SENTENCE_SLOTS["tr"] for entry in slot)   # no suffix apostrophes


def test_sentences_are_deterministic_for_a_seed_and_end_in_the_verb():
    for code in ("fi", "tr"):
        draws = [draw_sentence(code, np.random.default_rng(7)) for _ in range(2)]
        assert draws[0] == draws[1] and draws[0].endswith(".") and draws[0][0].isupper(), draws
        rng = np.random.default_rng(0)
        many = [draw_sentence(code, rng) for _ in range(200)]
        assert len(set(many)) > 150, code
        # Turkish is verb-final, short sentences included; Finnish puts the verb second
        verbs = {entry.split()[-1] for entry in SENTENCE_SLOTS["tr"][2]}
        if code == "tr":
            assert all(s.rstrip(".").split()[-1] in verbs for s in many)
        # short sentences (30 %) leave out the time or place: the middle slot in Turkish, the last in Finnish
        dropped = SENTENCE_SLOTS[code][1 if code == "tr" else 2]
        short = [s for s in many if not any(entry in s for entry in dropped)]
        assert 0.2 < len(short) / len(many) < 0.4, (code, len(short))


# --- the corpus ---

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("espeak")
    manifests = synthesize_espeak_corpus(out, languages=("en", "zh"), utterances_per_language=40,
                                         speakers_per_language=5, seed=3)
    return out, {code: (path, _read_manifest(path)) for code, path in manifests.items()}


def test_corpus_layout_manifest_and_audio(corpus):
    out, manifests = corpus
    for code, (manifest, rows) in manifests.items():
        assert manifest == out / code / "manifest.csv" and not (out / code / "manifest.csv.partial").exists()
        assert tuple(rows[0]) == MANIFEST_COLUMNS and len(rows) == 40
        assert {r["language"] for r in rows} == {code}
        durations = []
        for row in rows:
            info = sf.info(manifest.parent / row["path"])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            durations.append(info.frames / info.samplerate)
        assert 1.2 < min(durations) and max(durations) < 7.0, (code, min(durations), max(durations))


def test_speakers_are_split_and_labels_balanced(corpus):
    _, manifests = corpus
    for code, (_, rows) in manifests.items():
        split_of = {}
        for row in rows:
            assert split_of.setdefault(row["speaker"], row["split"]) == row["split"], row["speaker"]
        assert sorted(Counter(split_of.values()).items()) == [("dev", 1), ("test", 1), ("train", 3)]
        for split in ("train", "dev", "test"):
            counts = Counter(r["label"] for r in rows if r["split"] == split)
            assert set(counts) == set(EMOTIONS) and max(counts.values()) - min(counts.values()) <= 1, counts
        genders = {r["speaker"].split("_")[1][0] for r in rows}
        assert genders == {"f", "m"}


def test_textgrids_have_word_and_ipa_phone_tiers_inside_the_audio(corpus):
    _, manifests = corpus
    vowel_maps = {"en": load_vowel_map("en-ipa"), "zh": load_vowel_map("cmn-ipa")}
    for code, (manifest, rows) in manifests.items():
        classes, sentences = Counter(), set()
        for row in rows:
            grid = read_textgrid(manifest.parent / "textgrid" / f"{row['id']}.TextGrid")
            assert grid.tier_names == ["words", "phones"]
            duration = sf.info(manifest.parent / row["path"]).duration
            assert abs(grid.end - duration) < 1e-3
            phones = grid.tiers[1].labelled()
            assert len(phones) >= 10 and phones[-1].end <= duration and phones[0].start >= 0
            assert all("ˈ" not in p.label and "ˌ" not in p.label and "\ufffd" not in p.label for p in phones)
            classes.update(vowel_maps[code].classify(p.label) for p in phones)
            words = [w.label for w in grid.tiers[0].labelled()]
            assert words and all(w.start < w.end for w in grid.tiers[0].labelled())
            sentences.add(" ".join(words))
        assert {"a", "e", "i", "o"} <= set(classes), (code, classes)
        assert len(sentences) >= 0.9 * len(rows)           # sentences drawn afresh per utterance


def test_emotions_are_heard_in_pitch_and_tempo(corpus):
    """Per speaker, happy is higher than sad, and sad slower than angry (in phones per second)."""
    _, manifests = corpus
    for code, (manifest, rows) in manifests.items():
        higher, slower, speakers = 0, 0, sorted({r["speaker"] for r in rows})
        for speaker in speakers:
            f0, rate = {}, {}
            for label in ("H", "A", "S"):
                mine = [r for r in rows if r["speaker"] == speaker and r["label"] == label]
                audio = [sf.read(manifest.parent / r["path"], dtype="float32")[0] for r in mine]
                f0[label] = np.mean([_median_f0(a, 16000) for a in audio])
                grids = [read_textgrid(manifest.parent / "textgrid" / f"{r['id']}.TextGrid") for r in mine]
                rate[label] = np.mean([len(g.tiers[1].labelled()) / g.end for g in grids])
            higher += f0["H"] > f0["S"]
            slower += rate["S"] < rate["A"]
        assert higher >= len(speakers) - 1 and slower >= len(speakers) - 1, (code, higher, slower)


@pytest.fixture(scope="module")
def far_corpus(tmp_path_factory):
    """Finnish and Turkish, the languages outside Indo-European and Sino-Tibetan."""
    out = tmp_path_factory.mktemp("espeak_far")
    manifests = synthesize_espeak_corpus(out, languages=("fi", "tr"), utterances_per_language=16,
                                         speakers_per_language=4, seed=5)
    return {code: (path, _read_manifest(path)) for code, path in manifests.items()}


def test_finnish_and_turkish_speak_with_female_and_male_voices_and_vowel_tiers(far_corpus):
    for code, vowel_map in (("fi", "fi-ipa"), ("tr", "tr-ipa")):
        manifest, rows = far_corpus[code]
        assert len(rows) == 16 and {r["language"] for r in rows} == {code}
        assert {r["label"] for r in rows} == set(EMOTIONS)
        vowels, classes, f0 = load_vowel_map(vowel_map), Counter(), {"f": [], "m": []}
        for row in rows:
            audio, sample_rate = sf.read(manifest.parent / row["path"], dtype="float32")
            assert sample_rate == 16000 and 1.2 < len(audio) / sample_rate < 7.0
            assert np.sqrt(np.mean(audio ** 2)) > 0.01
            f0[row["speaker"].split("_")[1][0]].append(_median_f0(audio, sample_rate))
            grid = read_textgrid(manifest.parent / "textgrid" / f"{row['id']}.TextGrid")
            phones = grid.tiers[1].labelled()
            assert len(phones) >= 10 and phones[-1].end <= grid.end
            assert all("ˈ" not in p.label and "ˌ" not in p.label for p in phones)
            if code == "tr":
                assert "œ" not in {p.label for p in phones}         # relabelled ø
            words = [w.label for w in grid.tiers[0].labelled()]
            assert words and all(w in SENTENCE_ALL_WORDS[code] for w in words), words
            labelled = [vowels.classify(p.label) for p in phones]
            classes.update(c for c in labelled if c)
            # every utterance has shared-class vowels; each other phone is a known vowel or consonant
            assert sum(map(bool, labelled)) >= 3, (row["id"], [p.label for p in phones])
            assert all(vowels.is_vowel(p.label) or p.label in CONSONANTS[code] for p in phones), \
                [p.label for p in phones if not vowels.is_vowel(p.label)]
        assert set(classes) == set("aeiou"), (code, classes)
        # espeak's f variants are women's voices, its m variants men's, in these languages too
        assert np.median(f0["f"]) > 1.4 * np.median(f0["m"]), (code, f0)


def test_same_seed_same_bytes_whatever_other_languages(corpus, tmp_path):
    out, manifests = corpus
    synthesize_espeak_corpus(tmp_path / "alone", languages="zh", utterances_per_language=40,
                             speakers_per_language=5, seed=3)
    for name in ("manifest.csv", *(f"wav/{r['id']}.wav" for r in manifests["zh"][1]),
                 *(f"textgrid/{r['id']}.TextGrid" for r in manifests["zh"][1])):
        assert (out / "zh" / name).read_bytes() == (tmp_path / "alone" / "zh" / name).read_bytes(), name
    synthesize_espeak_corpus(tmp_path / "other", languages="zh", utterances_per_language=8,
                             speakers_per_language=5, seed=4)
    first = manifests["zh"][1][0]["path"]
    assert (out / "zh" / first).read_bytes() != (tmp_path / "other" / "zh" / first).read_bytes()


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(SersError, match=r"unknown language\(s\) de; choose from en, zh, es, fi, tr"):
        synthesize_espeak_corpus(tmp_path, languages=("en", "de"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SersError, match=r"espeak synthesis failed for en: .*file/en: cannot create the corpus folders"):
        synthesize_espeak_corpus(blocker, languages="en", utterances_per_language=4, speakers_per_language=3)


def test_cli_says_which_engine_ran(tmp_path):
    result = CliRunner().invoke(main, ["synth", "-o", str(tmp_path), "--engine", "espeak", "--languages", "es",
                                       "-n", "6", "--speakers-per-language", "3"])
    assert result.exit_code == 0, result.output
    assert "engine: espeak (asked for)" in result.output and "es: 6 utterances" in result.output
    assert len(_read_manifest(tmp_path / "es" / "manifest.csv")) == 6
    assert choose_engine("auto") == ("espeak", "espeakng-loader is installed")


def test_vowel_segments_extract_from_the_espeak_textgrids(corpus, tiny_model, tmp_path):
    _, manifests = corpus
    manifest = manifests["zh"][0]
    result = CliRunner().invoke(main, ["extract", "--model", str(tiny_model("wavlm")), "--manifest", str(manifest),
                                       "--out", str(tmp_path / "zh.zarr"), "--workers", "0", "--quiet",
                                       "--alignments", str(manifest.parent / "textgrid"),
                                       "--vowel-map", "cmn-ipa"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("vowel segments:"))
    counts = dict((c, int(n)) for c, n in (part.split() for part in
                                            line.split("(")[1].split(")")[0].split(", ")))
    assert set(counts) >= {"a", "e", "i", "o"} and sum(counts.values()) > 100, line
