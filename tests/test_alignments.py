"""Alignments (TextGrid folders, CTM), vowel maps, and the frame rule; no model needed."""
import json
import math

import pytest
import soundfile as sf

from sers.inputs.alignments import OutsideAudioError, frame_span, open_alignments, read_ctm, utterance_phones
from sers.errors import SersError
from sers.pipeline.segments import SegmentSource, open_segment_source, plan_segments
from sers.synth import LANGUAGES, synthesize_corpus, vowel_classes
from sers.inputs.textgrid import read_textgrid
from sers.inputs.vowels import BUILTIN_MAPS, load_vowel_map

# What MFA 2.x writes for a speaker folder: long format, "<speaker> - <tier>" names,
# silence as empty intervals, ARPAbet phones with stress digits, "spn" for unknown words.
MFA_TEXTGRID = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 1.2
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "spk1 - words"
        xmin = 0
        xmax = 1.2
        intervals: size = 4
        intervals [1]:
            xmin = 0
            xmax = 0.3
            text = ""
        intervals [2]:
            xmin = 0.3
            xmax = 0.81
            text = "father"
        intervals [3]:
            xmin = 0.81
            xmax = 1.0
            text = "<unk>"
        intervals [4]:
            xmin = 1.0
            xmax = 1.2
            text = ""
    item [2]:
        class = "IntervalTier"
        name = "spk1 - phones"
        xmin = 0
        xmax = 1.2
        intervals: size = 7
        intervals [1]:
            xmin = 0
            xmax = 0.3
            text = ""
        intervals [2]:
            xmin = 0.3
            xmax = 0.41
            text = "F"
        intervals [3]:
            xmin = 0.41
            xmax = 0.6
            text = "AA1"
        intervals [4]:
            xmin = 0.6
            xmax = 0.66
            text = "DH"
        intervals [5]:
            xmin = 0.66
            xmax = 0.81
            text = "ER0"
        intervals [6]:
            xmin = 0.81
            xmax = 1.0
            text = "spn"
        intervals [7]:
            xmin = 1.0
            xmax = 1.2
            text = ""
"""


def _table(ids, paths=None, starts=None, ends=None, durations=None):
    n = len(ids)
    return {"id": list(ids), "path": paths or [f"/audio/{i}.wav" for i in ids],
            "start": starts or [math.nan] * n, "end": ends or [math.nan] * n,
            "duration": durations or [1.2] * n}


def test_mfa_textgrid_folder_gives_phones_and_vowel_segments(tmp_path):
    (tmp_path / "tg" / "spk1").mkdir(parents=True)  # MFA writes one folder per speaker
    (tmp_path / "tg" / "spk1" / "utt1.TextGrid").write_text(MFA_TEXTGRID)
    alignments = open_alignments(tmp_path / "tg")
    assert alignments.format == "textgrid" and alignments.names() == ["utt1"]
    labels = [(iv.start, iv.end, iv.label) for iv in alignments.phones("utt1")]
    assert labels[1:3] == [(0.3, 0.41, "F"), (0.41, 0.6, "AA1")] and len(labels) == 7
    assert alignments.phones("utt2") is None

    source = SegmentSource(alignments, load_vowel_map("en-arpabet"))
    plan = plan_segments(source, _table(["utt1", "utt2"]), [0, 1], 50, [59, 59])
    assert plan.missing == ["utt2"]
    # AA1 is [0.41, 0.6) s: frame 20's centre is 0.41 s exactly (a boundary frame goes to the later
    # phone), frame 29's is 0.59 s, frame 30's 0.61 s.
    assert plan.columns[0] == {"start_frame": [20], "end_frame": [30], "start": [0.41], "end": [0.6],
                               "phone": ["AA1"], "vowel": ["a"]}
    # F and DH are consonants, ER0 a vowel without a class; silence and spn are not phones.
    assert plan.unclassed == {"ER0": 1} and plan.n_other == 2
    line = plan.summary()
    assert "vowel segments: 1 (a 1)" in line and "skipped 1 vowels without a class (ER0 1) and 2 other phones" in line
    assert "utterances without an alignment: 1 (utt2;" in line


def test_missing_tier_names_the_tiers_that_exist(tmp_path):
    (tmp_path / "utt1.TextGrid").write_text(MFA_TEXTGRID)
    source = open_segment_source(tmp_path, phone_tier="segments", vowel_map="en-arpabet")
    with pytest.raises(SersError, match=r"no tier 'segments'; tiers are 'spk1 - words', 'spk1 - phones'"):
        plan_segments(source, _table(["utt1"]), [0], 50, [59])


def test_ctm_file_with_comments_confidences_and_position_suffixes(tmp_path):
    ctm = tmp_path / "align.ctm"
    ctm.write_text(";; made by kaldi\n"
                   "utt2 A 0.10 0.20 IY1_B\n"
                   "utt1 1 0.41 0.19 AA1 0.98\n"
                   "utt1 1 0.30 0.11 F\n"
                   "\n"
                   "utt2 A 0.00 0.10 SIL\n")
    phones = read_ctm(ctm)
    assert [(iv.label, iv.start) for iv in phones["utt1"]] == [("F", 0.30), ("AA1", 0.41)]  # sorted by start
    assert phones["utt1"][1].end == pytest.approx(0.60)
    alignments = open_alignments(ctm)
    assert alignments.format == "ctm" and alignments.names() == ["utt1", "utt2"]
    plan = plan_segments(SegmentSource(alignments, load_vowel_map("en-arpabet")), _table(["utt1", "utt2"]),
                         [0, 1], 50, [59, 59])
    assert plan.columns[1]["vowel"] == ["i"] and plan.columns[1]["phone"] == ["IY1_B"]
    assert plan.n_other == 1  # F; SIL is silence

    ctm.write_text("utt1 1 0.30 F\n")
    with pytest.raises(SersError, match=r"align.ctm:1: expected 'name channel start duration phone"):
        read_ctm(ctm)
    ctm.write_text("utt1 1 0.30 0.1 F\nutt1 1 zero 0.1 AA1\n")
    with pytest.raises(SersError, match=r"align.ctm:2: start and duration must be numbers"):
        read_ctm(ctm)
    with pytest.raises(SersError, match="is a folder; a CTM alignment is one file"):
        open_alignments(tmp_path, format="ctm")
    with pytest.raises(SersError, match="no such file or folder"):
        open_alignments(tmp_path / "nope")


def test_file_alignments_are_cut_to_each_utterance_and_id_alignments_are_not_shifted(tmp_path):
    ctm = tmp_path / "a.ctm"
    ctm.write_text("rec 1 0.5 0.2 AA1\nrec 1 0.9 0.2 IY1\nrec 1 1.5 0.1 UW1\nu3 1 0.5 0.1 EH1\n")
    alignments = open_alignments(ctm)
    # u1 and u2 are [0, 1) and [1, 2) s of rec.wav, aligned as one file: times are file times.
    u1 = utterance_phones(alignments, "u1", "/x/rec.wav", 0.0, 1.0, 1.0)
    u2 = utterance_phones(alignments, "u2", "/x/rec.wav", 1.0, 2.0, 1.0)
    assert [(iv.label, iv.start, iv.end) for iv in u1] == [("AA1", 0.5, pytest.approx(0.7)), ("IY1", 0.9, 1.0)]
    assert [(iv.label, iv.start, iv.end) for iv in u2] == [("IY1", 0.0, pytest.approx(0.1)),
                                                          ("UW1", 0.5, pytest.approx(0.6))]
    # u3 is [2, 3) s of rec.wav but aligned under its own id: its times are already its own.
    u3 = utterance_phones(alignments, "u3", "/x/rec.wav", 2.0, 3.0, 1.0)
    assert [(iv.label, iv.start) for iv in u3] == [("EH1", 0.5)]
    assert utterance_phones(alignments, "u4", "/x/other.wav", None, None, 1.0) is None


def test_a_phone_outside_the_audio_is_an_error_beyond_the_tolerance(tmp_path):
    ctm = tmp_path / "a.ctm"
    ctm.write_text("utt1 1 0.5 0.2 AA1\nutt1 1 0.7 0.31 IY1\n")  # ends at 1.01 s
    alignments = open_alignments(ctm)
    phones = utterance_phones(alignments, "utt1", "/x/utt1.wav", None, None, 1.0)
    assert phones[-1].end == 1.0  # 10 ms over: rounding, clipped
    with pytest.raises(OutsideAudioError, match=r"utterance utt1: phone 'IY1' at 0.700-1.010 s lies outside "
                                                r"its audio \(0-0.900 s\)"):
        utterance_phones(alignments, "utt1", "/x/utt1.wav", None, None, 0.9)
    source = SegmentSource(alignments, load_vowel_map("en-arpabet"))
    table = _table(["utt1", "utt1b"], paths=["/x/utt1.wav", "/x/utt1.wav"], durations=[0.9, 0.9])
    with pytest.raises(SersError, match=r"utterance utt1: .* \(and 1 more utterances\)"):
        plan_segments(source, table, [0, 1], 50, [44, 44])


def test_no_alignment_at_all_and_a_map_that_fits_nothing_are_errors(tmp_path):
    (tmp_path / "utt1.TextGrid").write_text(MFA_TEXTGRID)
    source = open_segment_source(tmp_path, phone_tier="phones", vowel_map="en-arpabet")
    with pytest.raises(SersError, match=r"none of the 2 utterances has an alignment in .*looked for <utterance id> "
                                        r"or <audio file name>, e.g. 'a'; the alignments are named e.g. utt1"):
        plan_segments(source, _table(["a", "b"]), [0, 1], 50, [59, 59])
    source = open_segment_source(tmp_path, vowel_map="cmn-ipa")
    with pytest.raises(SersError, match=r"the vowel map cmn-ipa knows none of the aligned phones \(e.g. F, AA1"):
        plan_segments(source, _table(["utt1"]), [0], 50, [59])
    with pytest.raises(SersError, match="--alignments needs --vowel-map"):
        open_segment_source(tmp_path)


# --- vowel maps ---------------------------------------------------------------------------------

@pytest.mark.parametrize("code, map_name", [("en", "en-ipa"), ("zh", "cmn-ipa")])
def test_ipa_maps_agree_with_the_generated_corpus(code, map_name):
    language, vowel_map = LANGUAGES[code], BUILTIN_MAPS[map_name]
    expected = vowel_classes(language)
    for symbol, phone in language.phones.items():
        assert vowel_map.classify(symbol) == expected.get(symbol), symbol
        assert vowel_map.is_vowel(symbol) == phone.is_vowel, symbol  # ʌ ə y: vowels without a class


def test_arpabet_map():
    arpabet = BUILTIN_MAPS["en-arpabet"]
    expected = {"AA1": "a", "AE0": "a", "AO2": "o", "EH1": "e", "EY1": "e", "IH0": "i", "IY1": "i",
                "OW1": "o", "UH1": "u", "UW0": "u", "aa1": "a", "IY1_E": "i"}
    assert {label: arpabet.classify(label) for label in expected} == expected
    for skipped in ("AH0", "AH1", "ER0", "AW1", "AY2", "OY1"):
        assert arpabet.classify(skipped) is None and arpabet.is_vowel(skipped), skipped
    for consonant in ("T", "NG", "HH", "Y", "W"):
        assert not arpabet.is_vowel(consonant)


def test_pinyin_map():
    pinyin = BUILTIN_MAPS["cmn-pinyin"]
    expected = {"a1": "a", "ia3": "a", "ua4": "a", "o2": "o", "uo3": "o", "ou4": "o", "ie3": "e", "ve2": "e",
                "üe4": "e", "ei1": "e", "i4": "i", "u3": "u", "ê1": "e"}
    assert {label: pinyin.classify(label) for label in expected} == expected
    for skipped in ("e4", "v3", "ü2", "ai4", "ao3", "an1", "ing2", "iang1", "er2", "ii4", "iii1", "iu2"):
        assert pinyin.classify(skipped) is None and pinyin.is_vowel(skipped), skipped
    for initial in ("b", "zh", "x", "r"):
        assert not pinyin.is_vowel(initial)


def test_cmn_ipa_strips_tone_letters_and_mfa_style_labels():
    ipa = BUILTIN_MAPS["cmn-ipa"]
    assert [ipa.classify(x) for x in ("a˥˩", "i˧˥", "u˨˩˦", "ej˥", "ow˧", "o", "e")] == ["a", "i", "u", "e", "o",
                                                                                         "o", "e"]
    assert ipa.is_vowel("ɤ˥˩") and ipa.classify("ɤ˥˩") is None and ipa.classify("aj˥") is None
    assert not ipa.is_vowel("tɕʰ") and not ipa.is_vowel("ʂ")
    en = BUILTIN_MAPS["en-ipa"]
    assert [en.classify(x) for x in ("iː", "ɑː", "ɔː", "uː", "ej", "ow", "ɒ")] == ["i", "a", "o", "u", "e", "o", "a"]
    assert en.is_vowel("aj") and en.classify("aj") is None


def test_user_json_map(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"a": "a", "ɯ": "u", "ə": None}, ensure_ascii=False))
    user = load_vowel_map(str(path))
    assert user.classify("a") == "a" and user.classify("ɯ") == "u" and user.classify("a3") == "a"
    assert user.is_vowel("ə") and user.classify("ə") is None and not user.is_vowel("k")
    assert user.vowel_classes == ["a", "u"]
    path.write_text(json.dumps({"a": 1}))
    with pytest.raises(SersError, match=r"phone 'a' maps to 1; a class is a non-empty string"):
        load_vowel_map(path)
    path.write_text("{not json")
    with pytest.raises(SersError, match="cannot read the vowel map"):
        load_vowel_map(path)
    with pytest.raises(SersError, match="not a built-in map .*en-arpabet.* nor an existing .json file"):
        load_vowel_map("klingon")


# --- frames -------------------------------------------------------------------------------------

def test_frame_rule_takes_the_frames_whose_centre_is_inside():
    assert frame_span(0.03, 0.05, 50, 100) == (1, 2)      # centres at 0.01, 0.03, 0.05: only 0.03
    assert frame_span(0.0, 0.1, 50, 100) == (0, 5)
    assert frame_span(0.031, 0.045, 50, 100) == (1, 2)    # no centre inside: the frame of the midpoint
    assert frame_span(0.95, 1.5, 50, 50) == (47, 50)      # clipped to the frames the model made
    assert frame_span(1.0, 1.02, 50, 50) == (49, 50)      # past the last frame: still one frame
    assert frame_span(0.0, 0.1, 25, 100) == (0, 2)        # another rate (e.g. a stride of 2)


def test_frame_rule_against_the_generated_corpus_boundaries(tmp_path):
    """Synth phone boundaries are exact samples: check the float rule against integer arithmetic."""
    manifest = synthesize_corpus(tmp_path, languages="en", utterances_per_language=4, speakers_per_language=3)["en"]
    checked = 0
    for grid_path in sorted((manifest.parent / "textgrid").glob("*.TextGrid")):
        n_samples = sf.info(manifest.parent / "wav" / f"{grid_path.stem}.wav").frames
        n_frames = (n_samples - 400) // 320 + 1  # the wav2vec2 conv stack: 25 ms window, 20 ms hop
        tiled_to = 0  # the spans of phones longer than a frame tile the frames in order
        for iv in read_textgrid(grid_path).tier("phones").intervals:
            first_sample, stop_sample = round(iv.start * 16000), round(iv.end * 16000)
            assert first_sample / 16000 == iv.start  # the TextGrid holds the exact sample times
            # frame f's centre is sample 320 f + 160: the frames with a centre in [first, stop) samples
            first, stop = -(-(first_sample - 160) // 320), -(-(stop_sample - 160) // 320)
            span = frame_span(iv.start, iv.end, 50, n_frames)
            if first >= n_frames:  # after the last frame's centre: the last frame
                assert span == (n_frames - 1, n_frames)
            elif stop > first:
                assert span == (first, min(stop, n_frames)), (grid_path.name, iv)
                assert span[0] == tiled_to
                tiled_to = span[1]
                checked += 1
            else:  # no frame centre inside: the frame holding its midpoint
                middle = (first_sample + stop_sample) // 2 // 320
                assert span == (middle, middle + 1), (grid_path.name, iv)
        assert tiled_to == n_frames
    assert checked > 40
