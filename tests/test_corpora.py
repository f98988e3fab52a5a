"""The MSP-Podcast / BIIC-Podcast reader on a miniature layout written by the test."""

import json

import numpy as np
import pytest
import soundfile

from sers.inputs.audio import audio_info
from sers.inputs.corpora import DEFAULT_LABEL_MAP, load_label_map, read_corpus, read_msp_podcast
from sers.errors import SersError

HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
ROWS = [
    ("MSP-PODCAST_0001_0008.wav", "N", "Train", "127"),
    ("MSP-PODCAST_0001_0019.wav", "H", "Train", "127"),
    ("MSP-PODCAST_0002_0001.wav", "A", "Development", "Unknown"),
    ("MSP-PODCAST_0003_0004.wav", "S", "Test1", "9"),
    ("MSP-PODCAST_0004_0002.wav", "C", "Train", "9"),
    ("MSP-PODCAST_0005_0007.wav", "U", "Test2", "12"),
    ("MSP-PODCAST_0005_0008.wav", "U", "Train", "12"),
    ("MSP-PODCAST_0006_0001.wav", "X", "Test1", "30"),
    ("MSP-PODCAST_0007_0003.wav", "", "Test3", "Unknown"),
]


@pytest.fixture
def corpus(tmp_path):
    """ROOT/Labels/labels_consensus.csv and ROOT/Audios/*.wav; one listed file is missing."""
    root = tmp_path / "MSP-Podcast"
    (root / "Labels").mkdir(parents=True)
    (root / "Audios").mkdir()
    lines = [HEADER] + [f"{name},{code},3.2,4.0,3.8,{speaker},Female,{split}" for name, code, split, speaker in ROWS]
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(lines) + "\n")
    for name, *_ in ROWS[1:]:
        soundfile.write(str(root / "Audios" / name), np.zeros(16000, dtype=np.float32), 16000)
    return root


def test_default_map_keeps_neutral_happy_angry_sad_and_counts_the_rest(corpus):
    utterances, summary = read_msp_podcast(corpus)
    assert [(u.id, u.label, u.split, u.speaker) for u in utterances] == [
        ("MSP-PODCAST_0001_0008", "N", "train", "127"),
        ("MSP-PODCAST_0001_0019", "H", "train", "127"),
        ("MSP-PODCAST_0002_0001", "A", "dev", "Unknown"),
        ("MSP-PODCAST_0003_0004", "S", "test1", "9"),
        ("MSP-PODCAST_0007_0003", "", "test3", "Unknown"),
    ]
    assert {u.language for u in utterances} == {"en"}
    assert utterances[0].path == str(corpus / "Audios" / "MSP-PODCAST_0001_0008.wav")
    assert dict(summary.dropped) == {"C": 1, "U": 2, "X": 1}
    assert dict(summary.kept) == {"N": 1, "H": 1, "A": 1, "S": 1, "": 1}
    assert summary.dropped_line() == "dropped 4 utterances with classes outside the label map: C 1, U 2, X 1"


def test_listed_audio_that_is_missing_is_not_an_error_here(corpus):
    utterances, _ = read_msp_podcast(corpus)
    missing = utterances[0]
    assert not (corpus / "Audios" / "MSP-PODCAST_0001_0008.wav").exists()
    with pytest.raises(SersError, match="audio file not found"):   # extraction records this one
        audio_info(missing.path)
    assert audio_info(utterances[1].path)[0] == 16000


def test_label_map_from_a_dict_or_a_json_file(corpus, tmp_path):
    mapping = {"N": "neutral", "H": "positive", "U": "positive", "A": "negative", "S": "negative", "C": None}
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    for label_map in (mapping, tmp_path / "map.json", str(tmp_path / "map.json")):
        utterances, summary = read_msp_podcast(corpus, label_map=label_map)
        assert [u.label for u in utterances] == ["neutral", "positive", "negative", "negative", "positive",
                                                 "positive", ""]
        assert dict(summary.dropped) == {"C": 1, "X": 1}  # mapped to None, and absent from the map


def test_split_filter_and_language(corpus):
    utterances, summary = read_msp_podcast(corpus, splits=["Train", "dev"], language="en-US")
    assert [u.split for u in utterances] == ["train", "train", "dev"]
    assert {u.language for u in utterances} == {"en-US"}
    assert summary.other_splits == 4 and dict(summary.dropped) == {"C": 1, "U": 1}


def test_read_corpus_dispatches_and_logs_what_was_dropped(corpus, tmp_path):
    logged = []
    msp = read_corpus(corpus, format="msp-podcast", log=logged.append)
    biic = read_corpus(corpus, format="biic-podcast")
    assert logged == ["dropped 4 utterances with classes outside the label map: C 1, U 2, X 1"]
    assert {u.language for u in msp} == {"en"} and {u.language for u in biic} == {"zh"}
    assert [u.id for u in biic] == [u.id for u in msp]

    (tmp_path / "m.csv").write_text("path,label,split\na.wav,neutral,train\nb.wav,fear,train\nc.wav,,test\n")
    assert [u.label for u in read_corpus(tmp_path / "m.csv", language="en")] == ["neutral", "fear", ""]
    relabelled = read_corpus(tmp_path / "m.csv", label_map={"neutral": "N"}, splits=["train"], log=logged.append)
    assert [(u.id, u.label) for u in relabelled] == [("a", "N")]
    assert logged[-1] == "dropped 1 utterances with classes outside the label map: fear 1"


def test_default_label_map_covers_every_msp_class():
    assert set(DEFAULT_LABEL_MAP) == set("NHASUCDFOX")
    assert {code: label for code, label in DEFAULT_LABEL_MAP.items() if label} == {c: c for c in "NHAS"}


def test_missing_labels_file(tmp_path):
    with pytest.raises(SersError, match=r"Labels/labels_consensus.csv: labels file not found"):
        read_msp_podcast(tmp_path)


def test_missing_columns_name_the_file_and_the_columns_found(corpus):
    (corpus / "Labels" / "labels_consensus.csv").write_text("FileName,Emotion,SpkrID\na.wav,N,1\n")
    with pytest.raises(SersError) as error:
        read_msp_podcast(corpus)
    assert str(error.value) == (f"{corpus / 'Labels' / 'labels_consensus.csv'}: missing column(s) EmoClass, "
                                "Split_Set (columns found: FileName, Emotion, SpkrID)")


def test_duplicate_file_names_name_both_lines(corpus):
    labels = corpus / "Labels" / "labels_consensus.csv"
    labels.write_text(labels.read_text() + "MSP-PODCAST_0001_0019.wav,N,3,3,3,1,Male,Train\n")
    with pytest.raises(SersError, match="FileName 'MSP-PODCAST_0001_0019.wav' listed twice, on lines 3 and 11"):
        read_msp_podcast(corpus)


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "expected a JSON object"),
    ('{"N": 3}', "label for 'N' must be a string or null, got 3"),
    ("{N: neutral}", "not a JSON label map"),
])
def test_bad_label_map_files(tmp_path, content, message):
    (tmp_path / "map.json").write_text(content)
    with pytest.raises(SersError, match=message):
        load_label_map(tmp_path / "map.json")
    with pytest.raises(SersError, match="label map not found"):
        load_label_map(tmp_path / "none.json")


def test_read_corpus_errors(corpus, tmp_path):
    with pytest.raises(SersError, match="unknown corpus format 'iemocap'; choose one of: manifest, msp-podcast"):
        read_corpus(corpus, format="iemocap")
    with pytest.raises(SersError, match="--audio-root does not apply to msp-podcast"):
        read_corpus(corpus, format="msp-podcast", audio_root=tmp_path)
    for toolkit in ("lhotse", "hf-datasets"):  # refused before the package is even imported
        with pytest.raises(SersError, match=f"--audio-root does not apply to {toolkit}: its cuts or rows name"):
            read_corpus(tmp_path / "cuts.jsonl.gz", format=toolkit, audio_root=tmp_path)
    with pytest.raises(SersError, match="no utterances left to extract"):
        read_corpus(corpus, format="msp-podcast", splits=["test2"])   # only a surprise utterance there
