"""A lhotse CutSet read as a manifest."""
import numpy as np
import pytest
from click.testing import CliRunner

import sers.cache
from sers.cli import main
from sers.errors import SersError
from sers.inputs.corpora import read_corpus
from sers.inputs.manifest import Utterance

from tiny_models import tiny_model  # noqa: F401  (pytest fixture)


def test_lhotse_cutset_gives_segments_labels_and_splits(tmp_path, wavs, tiny_model):
    lhotse = pytest.importorskip("lhotse")
    cuts = []
    for i, wav in enumerate(wavs):
        recording = lhotse.Recording.from_file(wav)
        start, duration = (0.0, recording.duration) if i < 2 else (0.5, 1.0)
        supervision = lhotse.SupervisionSegment(id=f"s{i}", recording_id=recording.id, start=0, duration=duration,
                                                speaker=f"spk{i % 2}", language="en",
                                                custom={"emotion": "HNA"[i], "split": "train" if i else "dev"})
        cuts.append(lhotse.MonoCut(id=f"cut{i}", start=start, duration=duration, channel=0, recording=recording,
                                   supervisions=[supervision]))
    lhotse.CutSet.from_cuts(cuts).to_file(tmp_path / "cuts.jsonl.gz")
    utterances = read_corpus(tmp_path / "cuts.jsonl.gz", format="lhotse")
    assert utterances[0] == Utterance("cut0", str(wavs[0]), label="H", split="dev", speaker="spk0", language="en")
    assert (utterances[2].start, utterances[2].end) == (0.5, 1.5) and utterances[2].label == "A"
    result = CliRunner().invoke(main, ["extract", "--model", str(tiny_model("wavlm")), "--format", "lhotse",
                                       "--manifest", str(tmp_path / "cuts.jsonl.gz"), "--out", str(tmp_path / "c.zarr"),
                                       "--workers", "0"])
    assert result.exit_code == 0, result.output
    with sers.cache.open(tmp_path / "c.zarr") as cache:
        assert sorted(cache.utterances.id) == ["cut0", "cut1", "cut2"] and cache.splits == ["dev", "train"]
        assert cache.utterances.duration[list(cache.utterances.id).index("cut2")] == pytest.approx(1.0)


def _cutset(lhotse, path, wavs, *, split=None, language="en", prefix="cut"):
    """One cut per wav, each the whole recording; ``split`` (None: no custom field) on every supervision."""
    cuts = []
    for i, wav in enumerate(wavs):
        recording = lhotse.Recording.from_file(wav, recording_id=f"{prefix}-rec{i}")
        custom = {"emotion": "HNA"[i % 3], **({"split": split} if split else {})}
        supervision = lhotse.SupervisionSegment(id=f"{prefix}-s{i}", recording_id=recording.id, start=0,
                                                duration=recording.duration, speaker=f"spk{i}", language=language,
                                                custom=custom)
        cuts.append(lhotse.MonoCut(id=f"{prefix}{i}", start=0, duration=recording.duration, channel=0,
                                   recording=recording, supervisions=[supervision]))
    lhotse.CutSet.from_cuts(cuts).to_file(path)
    return path


def _extract(model, manifest, out, *extra):
    return CliRunner().invoke(main, ["extract", "--model", str(model), "--format", "lhotse", "--manifest", str(manifest),
                                     "--out", str(out), "--workers", "0", "--quiet", *map(str, extra)])


def test_one_cutset_per_split_takes_its_split_from_the_option(tmp_path, wavs, tiny_model):
    lhotse = pytest.importorskip("lhotse")
    cuts = _cutset(lhotse, tmp_path / "cuts_train.jsonl.gz", wavs)
    assert {u.split for u in read_corpus(cuts, format="lhotse")} == {""}  # a file alone says no split
    assert {u.split for u in read_corpus(cuts, format="lhotse", split="train")} == {"train"}
    result = _extract(tiny_model("wavlm"), cuts, tmp_path / "c.zarr", "--split", "train")
    assert result.exit_code == 0, result.output
    with sers.cache.open(tmp_path / "c.zarr") as cache:
        assert cache.splits == ["train"] and len(cache.utterances) == 3


def test_a_split_the_cuts_contradict_is_refused(tmp_path, wavs, tiny_model):
    lhotse = pytest.importorskip("lhotse")
    cuts = _cutset(lhotse, tmp_path / "cuts.jsonl.gz", wavs, split="test")
    result = _extract(tiny_model("wavlm"), cuts, tmp_path / "c.zarr", "--split", "train")
    assert result.exit_code != 0
    message = result.output.strip()
    assert len(message.splitlines()) == 1 and str(cuts) in message
    assert "utterance 'cut0' has split 'test', but --split train was given" in message
    assert not (tmp_path / "c.zarr").exists()
    assert {u.split for u in read_corpus(cuts, format="lhotse", split="test")} == {"test"}  # the same split: fine


def test_a_folder_of_per_split_cutsets_is_one_corpus(tmp_path, wavs, tiny_model):
    lhotse = pytest.importorskip("lhotse")
    folder = tmp_path / "manifests"
    folder.mkdir()
    _cutset(lhotse, folder / "iemocap_cuts_train.jsonl.gz", wavs[:2], prefix="tr")
    _cutset(lhotse, folder / "iemocap_cuts_test.jsonl", wavs[2:], prefix="te")
    _cutset(lhotse, folder / "cuts_dev.jsonl.gz", wavs[:1], prefix="dv")
    (folder / "iemocap_recordings_train.jsonl.gz").write_bytes(b"")  # not a CutSet: not read
    utterances = read_corpus(folder, format="lhotse")
    assert {u.id: u.split for u in utterances} == {"tr0": "train", "tr1": "train", "te0": "test", "dv0": "dev"}
    result = _extract(tiny_model("wavlm"), folder, tmp_path / "c.zarr")
    assert result.exit_code == 0, result.output
    with sers.cache.open(tmp_path / "c.zarr") as cache:
        assert cache.splits == ["dev", "test", "train"] and len(cache.rows("train")) == 2


def test_a_folder_refuses_repeated_ids_and_cuts_in_another_split(tmp_path, wavs):
    lhotse = pytest.importorskip("lhotse")
    folder = tmp_path / "manifests"
    folder.mkdir()
    _cutset(lhotse, folder / "cuts_train.jsonl.gz", wavs[:2])
    _cutset(lhotse, folder / "cuts_test.jsonl.gz", wavs[1:])
    with pytest.raises(SersError, match=r"cut id 'cut0' is in both cuts_test.jsonl.gz and cuts_train.jsonl.gz"):
        read_corpus(folder, format="lhotse")
    (folder / "cuts_test.jsonl.gz").unlink()
    _cutset(lhotse, folder / "cuts_dev.jsonl.gz", wavs[2:], split="test", prefix="d")
    with pytest.raises(SersError, match=r"cuts_dev.jsonl.gz: utterance 'd0' has split 'test', but the file name says "
                                        r"split 'dev'"):
        read_corpus(folder, format="lhotse")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SersError, match=r"empty: no lhotse CutSet files"):
        read_corpus(tmp_path / "empty", format="lhotse")


def test_languages_become_iso_codes_with_the_original_kept(tmp_path, wavs, tiny_model):
    lhotse = pytest.importorskip("lhotse")
    cuts = _cutset(lhotse, tmp_path / "cuts_train.jsonl.gz", wavs, language="English")
    assert read_corpus(cuts, format="lhotse")[0].language_original == "English"
    result = _extract(tiny_model("wavlm"), cuts, tmp_path / "c.zarr", "--split", "train")
    assert result.exit_code == 0, result.output
    assert "note" not in result.output
    with sers.cache.open(tmp_path / "c.zarr") as cache:
        assert set(cache.utterances.language) == {"en"} and set(cache.utterances.language_original) == {"English"}


def test_an_unknown_language_is_kept_as_written_with_one_note(tmp_path, wavs, tiny_model):
    lhotse = pytest.importorskip("lhotse")
    cuts = _cutset(lhotse, tmp_path / "cuts_train.jsonl.gz", wavs, language="Klingonish")
    result = _extract(tiny_model("wavlm"), cuts, tmp_path / "c.zarr", "--split", "train")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "'Klingonish' (3 utterances)" in notes[0] and str(cuts) in notes[0]
    with sers.cache.open(tmp_path / "c.zarr") as cache:
        assert set(cache.utterances.language) == {"Klingonish"} == set(cache.utterances.language_original)


def test_cache_import_gives_its_split_and_iso_languages(tmp_path):
    X = np.random.default_rng(0).normal(size=(3, 2, 4)).astype(np.float32)
    np.savez(tmp_path / "f.npz", pooled=X, id=np.array(["a", "b", "c"]), split=np.array(["", "train", ""]),
             language=np.array(["English", "en-US", "Finnish"]))
    result = CliRunner().invoke(main, ["cache", "import", str(tmp_path / "f.npz"), "-o", str(tmp_path / "c.zarr"),
                                       "--model-id", "m", "--split", "train"])
    assert result.exit_code == 0, result.output
    with sers.cache.open(tmp_path / "c.zarr") as cache:
        assert list(cache.utterances.split) == ["train"] * 3
        assert list(cache.utterances.language) == ["en", "en", "fi"]
        assert list(cache.utterances.language_original) == ["English", "en-US", "Finnish"]
    result = CliRunner().invoke(main, ["cache", "import", str(tmp_path / "f.npz"), "-o", str(tmp_path / "d.zarr"),
                                       "--model-id", "m", "--split", "test"])
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert "utterance 'b' has split 'train', but --split test was given" in result.output
    assert str(tmp_path / "f.npz") in result.output and not (tmp_path / "d.zarr").exists()


def test_cache_import_of_a_folder_splits_rows_with_and_without_a_manifest(tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    for name in ("a", "b"):
        np.save(folder / f"{name}.npy", np.ones((2, 4), np.float32))
    args = ["cache", "import", str(folder), "--model-id", "m", "--split", "test"]
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "c.zarr")])
    assert result.exit_code == 0, result.output
    with sers.cache.open(tmp_path / "c.zarr") as cache:
        assert cache.splits == ["test"]
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,split,language\na,,Mandarin\nb,dev,zh\n")
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "d.zarr"), "--manifest", str(manifest)])
    assert result.exit_code != 0 and f"{manifest}: utterance 'b' has split 'dev'" in result.output
    manifest.write_text("id,split,language\na,,Mandarin\nb,test,zh\n")
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "d.zarr"), "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    with sers.cache.open(tmp_path / "d.zarr") as cache:
        assert list(cache.utterances.split) == ["test", "test"] and list(cache.utterances.language) == ["zh", "zh"]
        assert list(cache.utterances.language_original) == ["Mandarin", "zh"]
