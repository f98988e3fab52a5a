"""Praat TextGrid reading and writing: long and short format, MFA's shape, errors."""
import pytest

from sers.errors import SersError
from sers.inputs.textgrid import Interval, IntervalTier, TextGrid, parse_textgrid, read_textgrid, write_textgrid

# What the Montreal Forced Aligner writes for one utterance: long format,
# tiers "words" and "phones", silence as empty intervals, ARPAbet with stress.
MFA_TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0 
xmax = 1.25 
tiers? <exists> 
size = 2 
item []:
    item [1]:
        class = "IntervalTier" 
        name = "words" 
        xmin = 0 
        xmax = 1.25 
        intervals: size = 4 
        intervals [1]:
            xmin = 0 
            xmax = 0.21 
            text = "" 
        intervals [2]:
            xmin = 0.21 
            xmax = 0.52 
            text = "hello" 
        intervals [3]:
            xmin = 0.52 
            xmax = 0.98 
            text = "world" 
        intervals [4]:
            xmin = 0.98 
            xmax = 1.25 
            text = "" 
    item [2]:
        class = "IntervalTier" 
        name = "phones" 
        xmin = 0 
        xmax = 1.25 
        intervals: size = 10 
        intervals [1]:
            xmin = 0 
            xmax = 0.21 
            text = "" 
        intervals [2]:
            xmin = 0.21 
            xmax = 0.28 
            text = "HH" 
        intervals [3]:
            xmin = 0.28 
            xmax = 0.36 
            text = "AH0" 
        intervals [4]:
            xmin = 0.36 
            xmax = 0.43 
            text = "L" 
        intervals [5]:
            xmin = 0.43 
            xmax = 0.52 
            text = "OW1" 
        intervals [6]:
            xmin = 0.52 
            xmax = 0.6 
            text = "W" 
        intervals [7]:
            xmin = 0.6 
            xmax = 0.77 
            text = "ER1" 
        intervals [8]:
            xmin = 0.77 
            xmax = 0.85 
            text = "L" 
        intervals [9]:
            xmin = 0.85 
            xmax = 0.98 
            text = "D" 
        intervals [10]:
            xmin = 0.98 
            xmax = 1.25 
            text = "" 
'''

# Praat's short text format: the same values, no labels.
SHORT_TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

0
1.5
<exists>
2
"IntervalTier"
"words"
0
1.5
3
0
0.4
""
0.4
1.1
"ni3hao3"
1.1
1.5
""
"TextTier"
"events"
0
1.5
1
0.75
"click ""here"""
'''


def test_mfa_shaped_textgrid_reads_words_and_phones():
    grid = parse_textgrid(MFA_TEXTGRID)
    assert grid.tier_names == ["words", "phones"]
    assert (grid.start, grid.end) == (0.0, 1.25)
    words = grid.tier("words")
    assert [w.label for w in words.labelled()] == ["hello", "world"]
    assert (words.labelled()[1].start, words.labelled()[1].end) == (0.52, 0.98)
    phones = grid.tier("phones")
    assert len(phones) == 10
    assert [p.label for p in phones.labelled()] == ["HH", "AH0", "L", "OW1", "W", "ER1", "L", "D"]
    assert phones.intervals[6] == Interval(0.6, 0.77, "ER1")
    assert phones.intervals[6].duration == pytest.approx(0.17)


def test_short_format_and_point_tier_and_escaped_quotes():
    grid = parse_textgrid(SHORT_TEXTGRID)
    assert grid.tier_names == ["words", "events"]
    assert grid.tier("words").intervals == [Interval(0.0, 0.4, ""), Interval(0.4, 1.1, "ni3hao3"),
                                            Interval(1.1, 1.5, "")]
    events = grid.tier("events")
    assert events.is_point_tier
    assert events.intervals == [Interval(0.75, 0.75, 'click "here"')]
    # Older Praat versions name the short format in the header.
    old_header = parse_textgrid(SHORT_TEXTGRID.replace('"ooTextFile"', '"ooTextFile short"'))
    assert old_header.tiers == grid.tiers


def test_write_read_round_trip_is_exact_and_fills_gaps(tmp_path):
    end = 2.0 / 3.0 + 1.0                      # needs every digit to survive
    words = IntervalTier("words", 0.0, end, [Interval(0.1, 0.7, 'say "ʂə"'),
                                             Interval(0.9, 1.6, "<unk>")])
    phones = IntervalTier("phones", 0.0, end, [Interval(0.1, 0.3, "ʂ"), Interval(0.3, 0.7, "ə"),
                                               Interval(0.9, 1.1, "tʰ"), Interval(1.1, 1.6, "a")])
    path = write_textgrid(TextGrid(0.0, end, [words, phones]), tmp_path / "u.TextGrid")
    back = read_textgrid(path)
    assert back.end == end
    assert back.tier("words").intervals == [
        Interval(0.0, 0.1, ""), Interval(0.1, 0.7, 'say "ʂə"'), Interval(0.7, 0.9, ""),
        Interval(0.9, 1.6, "<unk>"), Interval(1.6, end, "")]
    assert back.tier("phones").labelled() == phones.intervals
    # Writing what was read gives the same file.
    again = write_textgrid(back, tmp_path / "again.TextGrid")
    assert again.read_bytes() == path.read_bytes()


def test_utf16_file_as_praat_writes_it(tmp_path):
    path = tmp_path / "utf16.TextGrid"
    path.write_text(SHORT_TEXTGRID.replace("ni3hao3", "你好"), encoding="utf-16")
    assert read_textgrid(path).tier("words").labelled()[0].label == "你好"


def test_multi_speaker_tier_names_and_missing_tier_message():
    grid = parse_textgrid(MFA_TEXTGRID.replace('name = "phones"', 'name = "spk1 - phones"'))
    assert grid.tier("phones").name == "spk1 - phones"
    with pytest.raises(SersError, match=r"no tier 'segments'; tiers are 'words', 'spk1 - phones'"):
        grid.tier("segments")


@pytest.mark.parametrize("text, message", [
    ('File type = "ooTextFile"\nObject class = "Sound"\n', "not a Praat TextGrid"),
    (MFA_TEXTGRID[:MFA_TEXTGRID.index("intervals [3]")], "ends early"),
    (MFA_TEXTGRID.replace("xmin = 0.36", "xmin = 0.30"), "overlaps or runs backwards"),
    (MFA_TEXTGRID.replace('"IntervalTier" \n        name = "words"', '"Tier" \n        name = "words"'),
     "unknown class 'Tier'"),
    (MFA_TEXTGRID.replace("xmin = 0.21", "xmin = -0.21", 1), r"bad.TextGrid:20: a negative time"),
])
def test_malformed_textgrids_name_the_file_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.TextGrid"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SersError, match=message) as err:
        read_textgrid(path)
    assert str(path) in str(err.value)


def test_missing_file_is_a_sers_error(tmp_path):
    with pytest.raises(SersError, match="cannot read TextGrid"):
        read_textgrid(tmp_path / "nope.TextGrid")


def test_what_praatio_alone_would_get_wrong(tmp_path):
    """Praat's 6.25e-05, numpy times, zero-length intervals, quotes in a long-format point mark."""
    import numpy as np
    tiers = [IntervalTier("phones", 0.0, 1.0, [Interval(np.float64(1 / 16000), 0.5, "a"),
                                                Interval(0.5, 0.5, "z"), Interval(0.5, 0.7, "b")]),
             IntervalTier("events", 0.0, 1.0, [Interval(0.3, 0.3, 'q"x')], is_point_tier=True)]
    path = write_textgrid(TextGrid(0.0, 1.0, tiers), tmp_path / "p.TextGrid")
    assert "xmax = 6.25e-05 " in path.read_text() and "np.float64" not in path.read_text()
    back = read_textgrid(path)
    assert back.tier("phones").intervals[:3] == [Interval(0.0, 6.25e-05, ""), Interval(6.25e-05, 0.5, "a"),
                                                 Interval(0.5, 0.5, "z")]
    assert back.tier("events").intervals == [Interval(0.3, 0.3, 'q"x')]


def test_a_last_tier_cut_short_is_refused_in_both_formats():
    with pytest.raises(SersError, match="ends early: tier 'events' declares 1 entries and holds 0"):
        parse_textgrid(SHORT_TEXTGRID[:SHORT_TEXTGRID.index("0.75")])
    cut = MFA_TEXTGRID[:MFA_TEXTGRID.index("        intervals [10]:")]
    with pytest.raises(SersError, match="ends early: tier 'phones' declares 10 entries and holds 9"):
        parse_textgrid(cut, source="cut.TextGrid")
