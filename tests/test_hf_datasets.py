"""Hugging Face datasets both ways: a save_to_disk folder or Parquet export read as a corpus (paths, or
audio embedded as bytes), and a cache exported as a folder datasets.load_from_disk opens."""
import numpy as np
import pytest
from click.testing import CliRunner

import sers.cache
import sers.pipeline.extract_run as extract_run
from sers.cli import main
from sers.errors import SersError
from sers.inputs.audio import load_audio, load_batch
from sers.inputs.corpora import read_corpus
from sers.inputs.manifest import Utterance
from sers.pipeline.extract import extract

from tiny_models import tiny_model  # noqa: F401  (pytest fixture)

datasets = pytest.importorskip("datasets")


@pytest.fixture()
def hf_cache(tmp_path, monkeypatch):
    """Parquet is converted into datasets' Arrow cache: a temporary one, not the home folder's."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def _embedded(wavs, rows, payload=None):
    """A Dataset whose Audio() column holds each file's bytes (as save_to_disk keeps a dataset built
    with Audio()); cast from the stored struct, since encoding through Audio() needs torchcodec."""
    audio = [{"bytes": (payload or {}).get(i, wavs[i].read_bytes()), "path": wavs[i].name} for i in rows]
    dataset = datasets.Dataset.from_dict({"audio": audio, "emotion": list(rows), "speaker": [f"s{i}" for i in rows]})
    return dataset.cast_column("audio", datasets.Audio()).cast_column(
        "emotion", datasets.ClassLabel(names=["N", "H", "A"]))


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_hf_datasets_folder_with_splits_and_class_labels(tmp_path, wavs):
    # a path column (`wav`, as EmoBox names it)
    features = datasets.Features({"wav": datasets.Value("string"), "emotion": datasets.ClassLabel(names=["N", "H", "A"]),
                                  "speaker": datasets.Value("string")})
    part = lambda rows: datasets.Dataset.from_dict(  # noqa: E731
        {"wav": [str(wavs[i]) for i in rows], "emotion": [i for i in rows], "speaker": [f"s{i}" for i in rows]},
        features=features)
    datasets.DatasetDict({"train": part([0, 1]), "test": part([2])}).save_to_disk(str(tmp_path / "ds"))
    utterances = read_corpus(tmp_path / "ds", format="hf-datasets", language="en")
    assert utterances == [Utterance("rec0", str(wavs[0]), label="N", split="train", speaker="s0", language="en"),
                          Utterance("rec1", str(wavs[1]), label="H", split="train", speaker="s1", language="en"),
                          Utterance("rec2", str(wavs[2]), label="A", split="test", speaker="s2", language="en")]
    datasets.Dataset.from_dict({"text": ["x"]}).save_to_disk(str(tmp_path / "no-audio"))
    with pytest.raises(SersError, match="no audio column"):
        read_corpus(tmp_path / "no-audio", format="hf-datasets")
    # the struct an Audio() column stores, as a plain one: save_to_disk would embed an Audio() column's files
    datasets.Dataset.from_dict({"audio": [{"bytes": None, "path": str(tmp_path / "gone.wav")}]}).save_to_disk(
        str(tmp_path / "gone"))
    with pytest.raises(SersError, match=r"gone row 0: audio '.*gone.wav' is not a file on disk and the row holds no "
                                        "audio bytes"):
        read_corpus(tmp_path / "gone", format="hf-datasets")


def test_embedded_audio_extracts_as_its_files_do_in_workers_too(tmp_path, wavs, tiny_model):
    model = tiny_model("wavlm")
    folder = tmp_path / "ds"
    datasets.DatasetDict({"train": _embedded(wavs, [0, 1]), "test": _embedded(wavs, [2])}).save_to_disk(str(folder))
    (tmp_path / "m.csv").write_text("path,label,split,speaker\n" + "".join(
        f"{wav},{'NHA'[i]},{'train' if i < 2 else 'test'},s{i}\n" for i, wav in enumerate(wavs)))
    common = ["--model", model, "--batch-seconds", "1.5", "--quiet"]
    assert _run("extract", *common, "--manifest", tmp_path / "m.csv", "-o", tmp_path / "files.zarr",
                "--workers", "0").exit_code == 0
    for workers in ("0", "1"):  # 1: the bytes are read and decoded in a worker process
        result = _run("extract", *common, "--format", "hf-datasets", "--manifest", folder,
                      "-o", tmp_path / f"ds{workers}.zarr", "--workers", workers)
        assert result.exit_code == 0, result.output
    files = sers.cache.open(tmp_path / "files.zarr")
    for workers in ("0", "1"):
        cache = sers.cache.open(tmp_path / f"ds{workers}.zarr")
        assert list(cache.utterances.id) == list(files.utterances.id) == ["rec0", "rec1", "rec2"]
        assert list(cache.utterances.label) == ["N", "H", "A"] and list(cache.utterances.split) == list(files.utterances.split)
        # the path column says where the audio came from: the folder, the split and the row
        assert list(cache.utterances.path) == [f"{folder}#split=train&row=0", f"{folder}#split=train&row=1",
                                               f"{folder}#split=test&row=0"]
        np.testing.assert_allclose(cache.pooled_layers(range(cache.num_layers)),
                                   files.pooled_layers(range(files.num_layers)), rtol=1e-6, atol=1e-7)
    again = _run("extract", *common[:-1], "--format", "hf-datasets", "--manifest", folder, "-o", tmp_path / "ds0.zarr",
                 "--workers", "0")  # the same references, the same manifest digest: nothing left to do
    assert again.exit_code == 0 and "is already complete (3 utterances)" in again.output, again.output


def test_an_interrupted_extraction_of_embedded_audio_resumes(tmp_path, wavs, tiny_model, monkeypatch):
    model = str(tiny_model("wavlm"))
    _embedded(wavs, [0, 1, 2]).save_to_disk(str(tmp_path / "ds"))
    real, calls = extract_run._extract_batch, []

    def stopping(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    settings = dict(batch_seconds=1.5, workers=0, progress=False, pooled_chunk_rows=1)
    monkeypatch.setattr(extract_run, "_extract_batch", stopping)
    with pytest.raises(KeyboardInterrupt):
        extract(read_corpus(tmp_path / "ds", format="hf-datasets"), model, tmp_path / "c.zarr", log=print, **settings)
    monkeypatch.setattr(extract_run, "_extract_batch", real)
    log = []
    extract(read_corpus(tmp_path / "ds", format="hf-datasets"), model, tmp_path / "c.zarr", log=log.append, **settings)
    assert "resuming" in " ".join(log) and "2 of 3 utterances left" in " ".join(log)
    extract(read_corpus(tmp_path / "ds", format="hf-datasets"), model, tmp_path / "whole.zarr", log=log.append,
            **settings)
    resumed, whole = sers.cache.open(tmp_path / "c.zarr"), sers.cache.open(tmp_path / "whole.zarr")
    assert resumed.complete and list(resumed.utterances.path) == [f"{tmp_path / 'ds'}#row={i}" for i in range(3)]
    np.testing.assert_array_equal(resumed.pooled_layers(range(3)), whole.pooled_layers(range(3)))


def test_parquet_file_and_folder_of_splits(tmp_path, wavs, hf_cache, tiny_model):
    _embedded(wavs, [0, 1, 2]).to_parquet(str(tmp_path / "corpus.parquet"))
    one = read_corpus(tmp_path / "corpus.parquet", format="hf-datasets")
    assert [(u.id, u.path, u.label, u.split, u.speaker) for u in one] == [
        (f"rec{i}", f"{tmp_path / 'corpus.parquet'}#row={i}", "NHA"[i], "", f"s{i}") for i in range(3)]
    for utterance, wav in zip(one, wavs):  # the bytes decode as the file does
        np.testing.assert_array_equal(load_audio(utterance.path, 8000), load_audio(wav, 8000))
    # an Audio() column holding paths (as datasets before 4 wrote them): the files themselves
    paths = datasets.Dataset.from_dict({"audio": [str(wav) for wav in wavs]}).cast_column("audio", datasets.Audio())
    pytest.importorskip("pyarrow.parquet").write_table(paths.data.table, tmp_path / "paths.parquet")
    assert [(u.id, u.path) for u in read_corpus(tmp_path / "paths.parquet", format="hf-datasets")] == [
        (f"rec{i}", str(wav)) for i, wav in enumerate(wavs)]
    # the Hub's layout: data/{split}-00000-of-00001.parquet, the split told by the file name
    (tmp_path / "hub" / "data").mkdir(parents=True)
    (tmp_path / "hub" / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n")
    _embedded(wavs, [0, 1]).to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    _embedded(wavs, [2]).to_parquet(str(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet"))
    hub = read_corpus(tmp_path / "hub", format="hf-datasets")
    data = tmp_path / "hub" / "data"
    assert [(u.id, u.path, u.split) for u in hub] == [
        ("rec2", f"{data / 'test-00000-of-00001.parquet'}#row=0", "test"),
        ("rec0", f"{data / 'train-00000-of-00001.parquet'}#row=0", "train"),
        ("rec1", f"{data / 'train-00000-of-00001.parquet'}#row=1", "train")]
    waves = load_batch([u.path for u in hub], [np.nan] * 3, [np.nan] * 3, [48000, 16000, 32000], 16000)
    for wave, wav in zip(waves, [wavs[2], wavs[0], wavs[1]]):
        np.testing.assert_array_equal(wave, load_audio(wav, 16000))
    result = _run("extract", "--model", tiny_model("wavlm"), "--format", "hf-datasets", "--manifest", tmp_path / "hub",
                  "-o", tmp_path / "hub.zarr", "--workers", "0", "--quiet")
    assert result.exit_code == 0, result.output
    cache = sers.cache.open(tmp_path / "hub.zarr")
    assert sorted(cache.utterances.id) == ["rec0", "rec1", "rec2"] and cache.splits == ["test", "train"]
    assert cache.utterances.duration.tolist() == [1.0, 2.0, 3.0]


def test_a_row_whose_bytes_do_not_decode_is_one_line_naming_it(tmp_path, wavs, tiny_model):
    _embedded(wavs, [0, 1, 2], payload={1: b"not audio at all"}).save_to_disk(str(tmp_path / "ds"))
    result = _run("extract", "--model", tiny_model("wavlm"), "--format", "hf-datasets", "--manifest", tmp_path / "ds",
                  "-o", tmp_path / "c.zarr", "--workers", "0")
    assert result.exit_code == 0, result.output
    named = [line for line in result.output.splitlines() if "#row=1" in line]
    assert len(named) == 1 and f"{tmp_path / 'ds'}#row=1: cannot read audio" in named[0], result.output
    cache = sers.cache.open(tmp_path / "c.zarr")
    assert sorted(cache.utterances.id) == ["rec0", "rec2"]
    assert [(e["id"], e["path"]) for e in cache.errors] == [("rec1", f"{tmp_path / 'ds'}#row=1")]


def test_export_as_a_datasets_folder_has_a_column_per_layer(tmp_path):
    X = np.random.default_rng(0).normal(size=(4, 6, 5)).astype(np.float32)  # (L, N, D)
    sers.cache.from_arrays(tmp_path / "c.zarr", {"mean": X, "std": np.abs(X)},
                           {"id": [f"u{i}" for i in range(6)], "label": list("NHASNH"),
                            "split": ["train"] * 4 + ["test"] * 2, "speaker": list("aabbcc"), "language": ["en"] * 6})
    out = tmp_path / "features"
    result = _run("cache", "export", tmp_path / "c.zarr", "-o", out, "--format", "hf-datasets", "--layers", "1,3")
    assert result.exit_code == 0 and "exported 6 utterances" in result.output, result.output
    dataset = datasets.load_from_disk(str(out))
    assert {"id", "label", "split", "speaker", "language", "mean_layer_1", "mean_layer_3", "std_layer_3"} \
        <= set(dataset.column_names) and "mean_layer_0" not in dataset.column_names
    assert dataset["id"] == [f"u{i}" for i in range(6)] and dataset["label"] == list("NHASNH")
    assert dataset.features["mean_layer_3"].length == 5  # a fixed-size list: each row one vector
    with sers.cache.open(tmp_path / "c.zarr") as cache:
        for layer in (1, 3):
            np.testing.assert_array_equal(np.asarray(dataset[f"mean_layer_{layer}"], np.float32), cache.pooled(layer))
            np.testing.assert_array_equal(np.asarray(dataset[f"std_layer_{layer}"], np.float32),
                                          cache.pooled(layer, stat="std"))
    refused = _run("cache", "export", tmp_path / "c.zarr", "-o", out, "--format", "hf-datasets")
    assert refused.exit_code == 1 and "already exists; pass --overwrite" in refused.output
    replaced = _run("cache", "export", tmp_path / "c.zarr", "-o", out, "--format", "hf-datasets", "--split", "test",
                    "--overwrite", "--quiet")
    assert replaced.exit_code == 0 and replaced.output == ""
    assert datasets.load_from_disk(str(out))["id"] == ["u4", "u5"]
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name or ".old-" in p.name] == []


def test_a_reference_reads_the_dataset_as_it_is_now_and_says_what_is_wrong(tmp_path, wavs):
    folder = tmp_path / "ds"
    _embedded(wavs, [0]).save_to_disk(str(folder))
    (utterance,) = read_corpus(folder, format="hf-datasets")
    np.testing.assert_array_equal(load_audio(utterance.path, 16000), load_audio(wavs[0], 16000))
    # saved again over the same folder in the same process (a notebook): the new rows, not the old memory map
    datasets.Dataset.from_dict({"audio": [{"bytes": wavs[1].read_bytes(), "path": "rec0.wav"}]}).cast_column(
        "audio", datasets.Audio()).save_to_disk(str(folder))
    np.testing.assert_array_equal(load_audio(utterance.path, 16000), load_audio(wavs[1], 16000))
    with pytest.raises(SersError, match=r"ds#row=5: no such row \(the dataset has 1 rows"):
        load_audio(f"{folder}#row=5", 16000)
    with pytest.raises(SersError, match=r"gone#row=0: .*gone is not there"):
        load_audio(f"{tmp_path / 'gone'}#row=0", 16000)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SersError, match="empty: not a dataset folder written by save_to_disk"):
        read_corpus(tmp_path / "empty", format="hf-datasets")
    (tmp_path / "list.txt").write_text("rec0.wav\n")
    with pytest.raises(SersError, match="list.txt: not a Parquet file or a dataset folder written by save_to_disk"):
        read_corpus(tmp_path / "list.txt", format="hf-datasets")
