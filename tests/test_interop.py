"""`sers cache import` / `export`: npz layouts, per-utterance folders, ids, refused input, round trips."""
import json
import pathlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import sers.cache
from sers.cli import main
from sers.errors import SersError
from sers.inputs.manifest import read_manifest


def _features(n=5, layers=3, dim=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, layers, dim)).astype(np.float32)  # (N, L, D)


def _cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_npz_in_either_layout_gives_the_same_cache(tmp_path):
    X = _features()
    ids = np.array([f"u{i}" for i in range(5)])
    np.savez(tmp_path / "nld.npz", pooled=X, id=ids, label=np.array(list("NHASN")))
    np.savez(tmp_path / "lnd.npz", pooled=X.transpose(1, 0, 2), id=ids, label=np.array(list("NHASN")))
    for name in ("nld", "lnd"):
        code, output = _cli("cache", "import", tmp_path / f"{name}.npz", "-o", tmp_path / f"{name}.zarr", "--model-id", "m")
        assert code == 0 and "5 utterances, 3 layers x 4" in output
        cache = sers.cache.open(tmp_path / f"{name}.zarr")
        np.testing.assert_array_equal(cache.xy()[0], X)
        assert list(cache.utterances.label) == list("NHASN")


def test_square_npz_needs_a_layout(tmp_path):
    X = _features(n=3, layers=3)
    np.savez(tmp_path / "f.npz", pooled=X, id=np.array(["a", "b", "c"]))
    code, output = _cli("cache", "import", tmp_path / "f.npz", "-o", tmp_path / "c.zarr", "--model-id", "m")
    assert code == 1 and "--layout nld" in output and "Traceback" not in output
    code, _ = _cli("cache", "import", tmp_path / "f.npz", "-o", tmp_path / "c.zarr", "--model-id", "m", "--layout", "nld")
    np.testing.assert_array_equal(sers.cache.open(tmp_path / "c.zarr").xy()[0], X)


def test_ids_from_pandas_or_numbers_become_strings(tmp_path):
    np.savez(tmp_path / "obj.npz", pooled=_features(), id=np.array(["a", "b", "c", "d", "e"], dtype=object),
             split=np.array(["train"] * 5, dtype=object))
    np.savez(tmp_path / "int.npz", pooled=_features(), id=np.arange(100, 105))
    sers.cache.import_npz(tmp_path / "obj.npz", tmp_path / "obj.zarr", model_id="m")
    sers.cache.import_npz(tmp_path / "int.npz", tmp_path / "int.zarr", model_id="m")
    assert list(sers.cache.open(tmp_path / "obj.zarr").utterances.id) == list("abcde")
    assert sers.cache.open(tmp_path / "obj.zarr").splits == ["train"]
    assert list(sers.cache.open(tmp_path / "int.zarr").utterances.id) == ["100", "101", "102", "103", "104"]


def test_object_arrays_of_other_python_objects_are_not_unpickled(tmp_path):
    ids = np.empty(5, dtype=object)
    ids[:] = [pathlib.PurePosixPath(f"u{i}") for i in range(5)]
    np.savez(tmp_path / "f.npz", pooled=_features(), id=ids)
    with pytest.raises(SersError, match="holds Python objects sers will not unpickle"):
        sers.cache.import_npz(tmp_path / "f.npz", tmp_path / "c.zarr", model_id="m")


@pytest.mark.parametrize("arrays, message", [
    (dict(pooled=np.zeros((5, 4)), id=np.arange(5)), r"shape \(5, 4\); expected 3 axes"),
    (dict(pooled=np.zeros((5, 3, 2, 4)), id=np.arange(5)), r"shape \(5, 3, 2, 4\); expected 3 axes"),
    (dict(pooled=np.full((5, 3, 4), "0.5"), id=np.arange(5)), r"holds <U3 values; features must be numbers"),
    (dict(pooled=np.zeros((5, 3, 4)), id=np.arange(6)), r"there are 6 ids"),
    (dict(pooled=np.zeros((5, 3, 4)), id=np.arange(10).reshape(5, 2)), r"'id' has shape \(5, 2\)"),
    (dict(pooled=np.zeros((5, 3, 4)), id=np.array(["a", "b", "a", "c", "d"])), r"repeated: 'a'"),
    (dict(pooled=np.zeros((5, 3, 4)), id=np.arange(5), label=np.array(["N"] * 4)), r"'label' has shape \(4,\)"),
])
def test_bad_npz_is_one_line_on_the_command_line(tmp_path, arrays, message):
    np.savez(tmp_path / "f.npz", **arrays)
    code, output = _cli("cache", "import", tmp_path / "f.npz", "-o", tmp_path / "c.zarr", "--model-id", "m")
    assert code == 1 and "Traceback" not in output and len(output.strip().splitlines()) == 1
    assert output.startswith(f"error: {tmp_path / 'f.npz'}")
    assert pytest.importorskip("re").search(message, output), output
    assert not (tmp_path / "c.zarr").exists()


def test_nan_and_inf_features_are_refused_naming_utterances_and_layers(tmp_path):
    X = _features(n=8)
    X[2, 1, 0], X[6, 1, 3], X[6, 2, 1] = np.nan, np.inf, -np.inf
    np.savez(tmp_path / "f.npz", pooled=X, id=np.array([f"utt{i}" for i in range(8)]))
    with pytest.raises(SersError, match=r"NaN or infinite values in 2 utterances \('utt2', 'utt6'\) at layers \[1, 2\]"):
        sers.cache.import_npz(tmp_path / "f.npz", tmp_path / "c.zarr", model_id="m")
    with pytest.raises(SersError, match=r"utt2"):
        sers.cache.from_arrays(tmp_path / "d.zarr", X.transpose(1, 0, 2), {"id": [f"utt{i}" for i in range(8)]})


def test_folder_of_npy_and_pt_with_a_manifest(tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    hidden = np.random.default_rng(1).normal(size=(4, 3, 7, 2)).astype(np.float32)  # 4 utts, (L=3, T=7, D=2)
    for i in range(4):
        if i % 2:
            torch.save(torch.from_numpy(hidden[i]), folder / f"a{i}.pt")
        else:
            np.save(folder / f"a{i}.npy", hidden[i])
    (folder / "notes.txt").write_text("ignored")
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"wav": f"/audio/a{i}.wav", "emotion": "NHAS"[i],
                                                          "split": "train"}) + "\n" for i in range(4)))
    code, output = _cli("cache", "import", folder, "-o", tmp_path / "c.zarr", "--model-id", "s3prl", "--pool", "mean,std",
                        "--manifest", tmp_path / "m.jsonl")
    assert code == 0, output
    cache = sers.cache.open(tmp_path / "c.zarr")
    assert list(cache.utterances.id) == ["a0", "a1", "a2", "a3"] and list(cache.utterances.label) == list("NHAS")
    np.testing.assert_allclose(cache.xy()[0], hidden.mean(axis=2), rtol=1e-6)
    np.testing.assert_allclose(cache.pooled_layers(range(3), stat="std").transpose(1, 0, 2), hidden.std(axis=2),
                               rtol=1e-5)


def test_folder_import_matches_a_manifest_without_paths_by_id(tmp_path):
    """The audio behind dumped features is often not on the machine that imports them: ids are enough."""
    folder = tmp_path / "feats"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"u{i}.npy", np.full((2, 3), float(i), dtype=np.float32))
    (tmp_path / "labels.csv").write_text("id,label,split,speaker,language\nu0,N,train,s0,en\nu1,H,train,s1,en\n"
                                         "u2,S,test,s0,en\nunused,A,test,s2,en\n")
    code, output = _cli("cache", "import", folder, "-o", tmp_path / "c.zarr", "--model-id", "m",
                        "--manifest", tmp_path / "labels.csv")
    assert code == 0, output
    table = sers.cache.open(tmp_path / "c.zarr").utterances
    assert list(table.id) == ["u0", "u1", "u2"] and list(table.label) == list("NHS")
    assert list(table.split) == ["train", "train", "test"] and list(table.speaker) == ["s0", "s1", "s0"]
    (tmp_path / "bad.csv").write_text("label,split\nN,train\n")
    code, output = _cli("cache", "import", folder, "-o", tmp_path / "d.zarr", "--model-id", "m",
                        "--manifest", tmp_path / "bad.csv")
    assert code != 0 and "bad.csv: no 'id' column" in output and not (tmp_path / "d.zarr").exists()


def test_folder_errors_name_the_file_and_leave_nothing(tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    np.save(folder / "a.npy", np.zeros((3, 4)))
    np.save(folder / "b.npy", np.zeros((3, 5)))
    with pytest.raises(SersError, match=r"b.npy: features of 3 layers x 5, but a.npy has 3 x 4"):
        sers.cache.import_folder(folder, tmp_path / "c.zarr")
    assert not (tmp_path / "c.zarr").exists()
    np.save(folder / "b.npy", np.full((3, 4), np.nan))
    with pytest.raises(SersError, match=r"b.npy: features has NaN .* \('b'\) at layers \[0, 1, 2\]"):
        sers.cache.import_folder(folder, tmp_path / "c.zarr")
    (tmp_path / "m.csv").write_text("path,label\na.wav,N\n")
    np.save(folder / "b.npy", np.zeros((3, 4)))
    with pytest.raises(SersError, match=r"no row for 1 feature files \('b'\)"):
        sers.cache.import_folder(folder, tmp_path / "c.zarr", manifest_rows=read_manifest(tmp_path / "m.csv"))


def test_export_npz_imports_back_and_parquet_has_a_column_per_layer(tmp_path):
    X = _features(n=6, layers=4)
    sers.cache.from_arrays(tmp_path / "c.zarr", X.transpose(1, 0, 2),
                           {"id": [f"u{i}" for i in range(6)], "split": ["train"] * 4 + ["test"] * 2})
    code, output = _cli("cache", "export", tmp_path / "c.zarr", "-o", tmp_path / "out.npz", "--split", "train")
    assert code == 0 and "exported 4 utterances" in output
    sers.cache.import_npz(tmp_path / "out.npz", tmp_path / "back.zarr", model_id="m")
    np.testing.assert_array_equal(sers.cache.open(tmp_path / "back.zarr").xy()[0], X[:4])
    pq = pytest.importorskip("pyarrow.parquet")
    code, output = _cli("cache", "export", tmp_path / "c.zarr", "-o", tmp_path / "out.parquet", "--layers", "1,3")
    assert code == 0, output
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 6 and {"id", "split", "mean_layer_1", "mean_layer_3"} <= set(table.column_names)
    np.testing.assert_array_equal(np.asarray(table["mean_layer_3"].to_pylist()), X[:, 3])
    code, output = _cli("cache", "export", tmp_path / "c.zarr", "-o", tmp_path / "out.csv")
    assert code == 1 and "export to a .npz or .parquet file" in output
    code, output = _cli("cache", "export", tmp_path / "c.zarr", "-o", tmp_path / "out.npz")
    assert code == 1 and "out.npz already exists; pass --overwrite to replace it" in output
    code, output = _cli("cache", "export", tmp_path / "c.zarr", "-o", tmp_path / "out.npz", "--overwrite", "--quiet")
    assert code == 0 and output == "" and len(np.load(tmp_path / "out.npz")["id"]) == 6
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_the_old_positional_output_still_works_and_says_so(tmp_path):
    """Earlier releases took the output positionally (`cache export CACHE OUT`, `cache merge OUT SHARD...`,
    `synth OUT_DIR`, `models convert CT2_DIR OUT_DIR`): kept for a release, with a note on stderr."""
    X = _features(n=4, layers=2)
    sers.cache.from_arrays(tmp_path / "c.zarr", X.transpose(1, 0, 2), {"id": [f"u{i}" for i in range(4)]})
    runner = CliRunner()
    old = runner.invoke(main, ["cache", "export", str(tmp_path / "c.zarr"), str(tmp_path / "old.npz")])
    assert old.exit_code == 0 and (tmp_path / "old.npz").is_file()
    assert f"note: the output as a positional argument is the old spelling; write -o {tmp_path / 'old.npz'}" \
        in old.stderr
    merged = runner.invoke(main, ["cache", "merge", str(tmp_path / "m.zarr"), str(tmp_path / "c.zarr")])
    assert merged.exit_code == 0, merged.output
    np.testing.assert_array_equal(sers.cache.open(tmp_path / "m.zarr").xy()[0], X)
    twice = runner.invoke(main, ["cache", "export", str(tmp_path / "c.zarr"), str(tmp_path / "a.npz"),
                                 "-o", str(tmp_path / "b.npz")])
    assert twice.exit_code == 2 and "the output is given twice" in twice.output
    neither = runner.invoke(main, ["cache", "export", str(tmp_path / "c.zarr")])
    assert neither.exit_code == 2 and "Missing option '-o' / '--out'" in neither.output
    assert "OLD_OUT" not in runner.invoke(main, ["cache", "export", "--help"]).output
