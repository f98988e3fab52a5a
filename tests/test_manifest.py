"""Manifests: formats, path resolution, ids, segments, digests and every user-facing error."""

import json
from pathlib import Path

import pytest

from sers.errors import SersError
from sers.inputs.manifest import Utterance, manifest_digest, read_manifest


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_reads_every_column_and_resolves_relative_paths_against_the_manifest(tmp_path):
    manifest = write(tmp_path / "m.csv",
                     "path,label,split,speaker,language,start,end\n"
                     "audio/a.wav,N,train,spk1,en,,\n"
                     "/abs/b.flac,H,dev,spk2,zh,1.5,3.25\n")
    first, second = read_manifest(manifest)
    assert first == Utterance("a", str(tmp_path / "audio" / "a.wav"), "N", "train", "spk1", "en")
    assert second == Utterance("b", "/abs/b.flac", "H", "dev", "spk2", "zh", 1.5, 3.25)


def test_tsv_and_jsonl_give_the_same_utterances_as_csv(tmp_path):
    rows = [{"path": "x.wav", "label": "A", "split": "test", "id": "u1"},
            {"path": "y.wav", "label": "S", "split": "test", "id": "u2", "start": 0.5, "end": 2}]
    write(tmp_path / "m.csv", "id,path,label,split,start,end\nu1,x.wav,A,test,,\nu2,y.wav,S,test,0.5,2\n")
    write(tmp_path / "m.tsv", "id\tpath\tlabel\tsplit\tstart\tend\n"
                              "u1\tx.wav\tA\ttest\t\t\nu2\ty.wav\tS\ttest\t0.5\t2\n")
    write(tmp_path / "m.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    from_csv = read_manifest(tmp_path / "m.csv")
    assert read_manifest(tmp_path / "m.tsv") == from_csv
    assert read_manifest(tmp_path / "m.jsonl") == from_csv
    assert from_csv[1].start == 0.5 and from_csv[1].end == 2.0


def test_format_is_sniffed_when_the_extension_says_nothing(tmp_path):
    tabbed = write(tmp_path / "list.txt", "path\tlabel\na.wav\tN\n")
    jsonish = write(tmp_path / "list.manifest", '{"path": "a.wav", "label": "N"}\n')
    single_column = write(tmp_path / "paths.lst", "path\na.wav\nb.wav\n")
    assert [u.label for u in read_manifest(tabbed)] == ["N"]
    assert [u.label for u in read_manifest(jsonish)] == ["N"]
    assert [u.id for u in read_manifest(single_column)] == ["a", "b"]


def test_audio_root_overrides_the_manifest_folder(tmp_path):
    (tmp_path / "lists").mkdir()
    manifest = write(tmp_path / "lists" / "m.csv", "path\nsub/a.wav\n")
    root = tmp_path / "corpus"
    assert read_manifest(manifest)[0].path == str(tmp_path / "lists" / "sub" / "a.wav")
    assert read_manifest(manifest, audio_root=root)[0].path == str(root / "sub" / "a.wav")


def test_corpus_column_and_language_argument_fill_the_language(tmp_path):
    manifest = write(tmp_path / "m.csv", "path,corpus,language\na.wav,zh,\nb.wav,,en\nc.wav,,\n")
    assert [u.language for u in read_manifest(manifest, language="de")] == ["zh", "en", "de"]
    assert [u.language for u in read_manifest(manifest)] == ["zh", "en", ""]


def test_segments_of_one_file_get_time_suffixed_ids(tmp_path):
    manifest = write(tmp_path / "m.csv", "path,start,end\nlong.wav,0,2.5\nlong.wav,2.5,\nother.wav,1,2\n")
    assert [u.id for u in read_manifest(manifest)] == ["long_0.000-2.500", "long_2.500-end", "other"]


def test_digest_ignores_row_order_but_sees_every_field(tmp_path):
    manifest = write(tmp_path / "m.csv", "path,label\na.wav,N\nb.wav,H\n")
    reordered = write(tmp_path / "r.csv", "path,label\nb.wav,H\na.wav,N\n")
    relabelled = write(tmp_path / "l.csv", "path,label\na.wav,N\nb.wav,S\n")
    digest = manifest_digest(read_manifest(manifest))
    assert len(digest) == 64
    assert manifest_digest(read_manifest(reordered)) == digest
    assert manifest_digest(read_manifest(relabelled)) != digest
    utterances = read_manifest(manifest)
    segmented = [Utterance(u.id, u.path, u.label, start=0.0) if u.id == "a" else u for u in utterances]
    assert manifest_digest(segmented) != digest


@pytest.mark.parametrize("header", ["wav,emotion", "file,emotion", "audio,emo", "path,emotion"])
def test_other_toolkits_column_names_are_read_as_path_and_label(tmp_path, header):
    manifest = write(tmp_path / "m.csv", f"{header},split\na.wav,H,train\n")
    assert read_manifest(manifest) == [Utterance("a", str(tmp_path / "a.wav"), label="H", split="train")]
    jsonl = write(tmp_path / "m.jsonl", json.dumps(dict(zip(header.split(","), ["a.wav", "H"]))) + "\n")
    assert read_manifest(jsonl)[0].label == "H" and read_manifest(jsonl)[0].path == str(tmp_path / "a.wav")


def test_our_column_wins_over_an_alias(tmp_path):
    manifest = write(tmp_path / "m.csv", "path,wav,label,emotion\na.wav,x.wav,H,sad\n")
    assert read_manifest(manifest)[0] == Utterance("a", str(tmp_path / "a.wav"), label="H")


@pytest.mark.parametrize("name, text, message", [
    ("m.csv", "name,label\na.wav,N\n", "m.csv: no 'path' column (columns found: name, label)"),
    ("m.csv", "wav,file\na.wav,b.wav\n", "m.csv: columns 'wav' and 'file' could both be the 'path' column"),
    ("m.csv", "path,label\na.wav,N\n,H\n", "m.csv line 3: empty path"),
    ("m.csv", "path\na.wav\nsub/a.wav\n", "m.csv: duplicate id 'a' on lines 2 and 3"),
    ("m.csv", "id,path\nx,a.wav\ny,b.wav\nx,c.wav\n", "m.csv: duplicate id 'x' on lines 2 and 4"),
    ("m.csv", "path,start,end\na.wav,2,1\n", "m.csv line 2: bad start/end: end (1) must be greater than start (2)"),
    ("m.csv", "path,start,end\na.wav,1,1\n", "m.csv line 2: bad start/end: end (1) must be greater than start (1)"),
    ("m.csv", "path,start\na.wav,-0.5\n", "m.csv line 2: bad start/end: start (-0.5) must not be negative"),
    ("m.csv", "path,start\na.wav,abc\n", "m.csv line 2: bad start/end: start 'abc' is not a number of seconds"),
    ("m.csv", "path,end\na.wav,nan\n", "m.csv line 2: bad start/end: end 'nan' is not a finite number"),
    ("m.csv", "path,label\na.wav,N,extra\n", "m.csv line 2: 3 values but the header has 2 columns"),
    ("m.jsonl", '{"path": "a.wav"}\n{"path": "b.wav",\n', "m.jsonl line 2: not valid JSON"),
    ("m.jsonl", '{"path": "a.wav"}\n["b.wav"]\n', "m.jsonl line 2: expected a JSON object, got list"),
    ("m.jsonl", '{"name": "a.wav", "label": "N"}\n', "m.jsonl line 1: no 'path' field (fields found: label, name)"),
    ("m.csv", "path,label\n", "m.csv: no utterances"),
    ("m.csv", "", "m.csv: no utterances"),
    ("m.jsonl", "\n\n", "m.jsonl: no utterances"),
])
def test_errors_name_the_file_and_line(tmp_path, name, text, message):
    manifest = write(tmp_path / name, text)
    with pytest.raises(SersError) as error:
        read_manifest(manifest)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_and_non_utf8_manifests_are_reported(tmp_path):
    with pytest.raises(SersError, match="manifest not found: .*nope.csv"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(SersError, match="is a folder, not a manifest file .*--format msp-podcast"):
        read_manifest(tmp_path)
    (tmp_path / "latin1.csv").write_bytes("path,speaker\na.wav,J\xfcrgen\n".encode("latin-1"))
    with pytest.raises(SersError, match="latin1.csv: not UTF-8 text"):
        read_manifest(tmp_path / "latin1.csv")


def test_quoted_multiline_fields_keep_line_numbers_honest(tmp_path):
    manifest = write(tmp_path / "m.csv", 'path,speaker\na.wav,"two\nlines"\n,x\n')
    assert read_manifest(write(tmp_path / "ok.csv", 'path,speaker\na.wav,"two\nlines"\n'))[0].speaker == "two\nlines"
    with pytest.raises(SersError, match="m.csv line 4: empty path"):
        read_manifest(manifest)


def test_without_require_path_rows_are_read_by_id_and_keep_a_path_when_given(tmp_path):
    """What `sers cache import --manifest` reads: labels by id, for features whose audio is elsewhere."""
    csv_manifest = write(tmp_path / "labels.csv", "id,label,split,speaker,corpus\nu1,N,train,s1,en\nu2,H,test,s2,en\n")
    assert read_manifest(csv_manifest, require_path=False) == [
        Utterance("u1", "", "N", "train", "s1", "en"), Utterance("u2", "", "H", "test", "s2", "en")]
    mixed = write(tmp_path / "m.jsonl", '{"id": "u1", "emotion": "A"}\n{"wav": "a/u2.wav", "label": "S"}\n')
    first, second = read_manifest(mixed, require_path=False)
    assert (first.id, first.path, first.label) == ("u1", "", "A")
    assert (second.id, second.path, second.label) == ("u2", str(tmp_path / "a" / "u2.wav"), "S")  # id from the path
    with pytest.raises(SersError, match="no 'path' column"):  # extraction still needs the audio
        read_manifest(csv_manifest)


@pytest.mark.parametrize("name, text, message", [
    ("m.csv", "label,split\nN,train\n",
     "m.csv: no 'id' column to match rows by, and no 'path' to take ids from (columns found: label, split)"),
    ("m.csv", "id,label\nu1,N\n,H\n", "m.csv line 3: no id (and no path to take one from)"),
    ("m.csv", "id,path,label\nu1,,N\n,,H\n", "m.csv line 3: no id (and no path to take one from)"),
    ("m.jsonl", '{"id": "u1"}\n{"label": "N"}\n', "m.jsonl line 2: no 'id' field to match rows by"),
    ("m.csv", "id,label\nu1,N\nu1,H\n", "m.csv: duplicate id 'u1' on lines 2 and 3"),
])
def test_without_require_path_an_id_is_needed(tmp_path, name, text, message):
    with pytest.raises(SersError) as error:
        read_manifest(write(tmp_path / name, text), require_path=False)
    assert message in str(error.value) and "\n" not in str(error.value)
