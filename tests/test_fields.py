"""sers.fields: --split for utterances without one, languages as ISO codes, the same for every format
and for imported features; caches of older sers (no language_original column) still read."""
import shutil

import h5py
import numpy as np
import pytest

import sers.cache
from sers.errors import SersError
from sers.fields import assign_split, language_code, normalise_languages
from sers.inputs.corpora import read_corpus


@pytest.mark.parametrize("written, code", [
    ("English", "en"), ("english", "en"), ("eng", "en"), ("en-US", "en"), ("en_US", "en"), ("EN", "en"),
    ("Mandarin", "zh"), ("Mandarin Chinese", "zh"), ("Chinese", "zh"), ("cmn", "zh"), ("zh-Hant-TW", "zh"),
    ("Finnish", "fi"), ("fin", "fi"), ("Deutsch", "de"), ("Urdu", "ur"),
    ("Cantonese", "yue"),  # no ISO 639-1 code: the three-letter one, not folded into zh
    ("", ""),
])
def test_language_codes(written, code):
    assert language_code(written) == code


@pytest.mark.parametrize("written", ["Klingonish", "Taiwanese Mandarin", "xx", "und", "A", "0"])
def test_names_langcodes_would_only_guess_are_unknown(written):
    # langcodes' prefix matching reads "Taiwanese Mandarin" as Taiwanese Hokkien (nan): not taken
    assert language_code(written) is None


def test_unknown_languages_are_kept_and_counted():
    codes, originals, unknown = normalise_languages(["English", "xx", " xx ", "zh"])
    assert codes == ["en", "xx", " xx ", "zh"] and originals == ["English", "xx", " xx ", "zh"]
    assert dict(unknown) == {"xx": 1, " xx ": 1}


def test_assign_split_fills_empty_and_refuses_another():
    assert assign_split(["", "train"], "train", ["a", "b"], "m.csv") == ["train", "train"]
    assert assign_split(["", "dev"], None, ["a", "b"], "m.csv") == ["", "dev"]
    with pytest.raises(SersError, match=r"^m.csv: utterance 'b' has split 'dev', but --split train was given"):
        assign_split(["", "dev"], "train", ["a", "b"], "m.csv")


def test_a_manifest_gets_the_same_rules(tmp_path):
    (tmp_path / "a.wav").touch()
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,id,split,language\na.wav,u1,,English\na.wav,u2,test,\n")
    notes = []
    utterances = read_corpus(manifest, language="Klingonish", split="test", log=notes.append)
    assert [(u.split, u.language, u.language_original) for u in utterances] == \
        [("test", "en", "English"), ("test", "Klingonish", "")]
    assert len(notes) == 1 and "'Klingonish' (1 utterances)" in notes[0]
    with pytest.raises(SersError, match=r"m.csv: utterance 'u2' has split 'test', but --split dev"):
        read_corpus(manifest, split="dev")
    with pytest.raises(SersError, match=r"--split test puts every utterance in split test, which the split filter"):
        read_corpus(manifest, split="test", splits=["train"])


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_a_cache_without_language_original_reads_its_language(tmp_path, suffix):
    path = sers.cache.from_arrays(tmp_path / f"c{suffix}", np.zeros((2, 2, 3)),
                                  {"id": ["a", "b"], "language": ["en", "zh"], "language_original": ["English", ""]},
                                  model_id="m")
    with sers.cache.open(path) as cache:
        assert list(cache.utterances.language_original) == ["English", "zh"]  # "" = as written: the code
    if suffix == ".zarr":  # as sers before the column wrote it
        shutil.rmtree(path / "utterances" / "language_original")
    else:
        with h5py.File(path, "a") as handle:
            del handle["utterances/language_original"]
    with sers.cache.open(path) as cache:
        assert list(cache.utterances.language_original) == ["en", "zh"]
