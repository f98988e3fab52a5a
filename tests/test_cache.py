"""The cache format: both back-ends, the writer's done/complete rules, import, merge, reading."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import zarr

import sers.cache
from sers.cache import CacheWriter
from sers.cache import schema
from sers.errors import SersError


def _arrays(n=7, layers=3, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    pooled = {"mean": rng.normal(size=(layers, n, dim)), "std": rng.random((layers, n, dim))}
    utterances = {"id": [f"u{i}" for i in range(n)], "label": list("NHASNHA"[:n]),
                  "split": ["train"] * 4 + ["dev"] * (n - 4), "speaker": [f"s{i % 2}" for i in range(n)],
                  "language": ["en"] * n, "duration": rng.random(n) + 1}
    frames = {layer: [rng.normal(size=(k, dim)) for k in range(1, n + 1)] for layer in (0, 2)}
    return pooled, utterances, frames


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_from_arrays_round_trip(tmp_path, suffix):
    pooled, utterances, frames = _arrays()
    path = sers.cache.from_arrays(tmp_path / f"c{suffix}", pooled, utterances, frames, model_id="m",
                                  sample_rate=16000, frame_rate=50)
    with sers.cache.open(path) as cache:
        assert cache.complete and cache.num_layers == 3 and cache.hidden_size == 5
        assert cache.attrs["model_id"] == "m" and cache.attrs["pool_stats"] == ["mean", "std"]
        assert list(cache.utterances.id) == utterances["id"]
        np.testing.assert_allclose(cache.pooled(1), pooled["mean"][1], rtol=1e-6)
        np.testing.assert_allclose(cache.pooled(2, stat="std", split="dev"), pooled["std"][2, 4:], rtol=1e-6)
        np.testing.assert_allclose(cache.pooled_layers([0, 2], rows=[1, 3]), pooled["mean"][[0, 2]][:, [1, 3]],
                                   rtol=1e-6)
        # frames are float16 on disk
        np.testing.assert_allclose(cache.frames("u3", 2), frames[2][3], atol=2e-3)
        assert cache.frames("u6", 0).shape == (7, 5)
        assert cache.utterances.mask(split="dev").sum() == 3
        with pytest.raises(SersError, match="frames of layer 1 are not stored"):
            cache.frames("u0", 1)
        with pytest.raises(SersError, match="no utterance with id 'nope'"):
            cache.frames("nope", 0)
        with pytest.raises(SersError, match=r"layers \[3\] do not exist"):
            cache.pooled(3)


def test_zarr_and_hdf5_store_equal_arrays(tmp_path):
    pooled, utterances, frames = _arrays()
    a = sers.cache.open(sers.cache.from_arrays(tmp_path / "c.zarr", pooled, utterances, frames))
    b = sers.cache.open(sers.cache.from_arrays(tmp_path / "c.h5", pooled, utterances, frames))
    for stat in ("mean", "std"):
        np.testing.assert_array_equal(a.pooled_layers(range(3), stat=stat), b.pooled_layers(range(3), stat=stat))
    for name in ("id", "label", "split", "speaker", "language", "n_frames", "frame_offset", "duration"):
        np.testing.assert_array_equal(a.utterances[name], b.utterances[name])
    for uid in utterances["id"]:
        np.testing.assert_array_equal(a.frames(uid, 2), b.frames(uid, 2))


def test_plain_h5py_and_zarr_can_read_the_layout(tmp_path):
    """docs/cache.md promises that no sers code is needed to read a cache."""
    pooled, utterances, frames = _arrays()
    sers.cache.from_arrays(tmp_path / "c.h5", pooled, utterances, frames)
    sers.cache.from_arrays(tmp_path / "c.zarr", pooled, utterances, frames)
    with h5py.File(tmp_path / "c.h5") as f:
        assert f.attrs["format"] == "sers-cache" and json.loads(f.attrs["pool_stats"]) == ["mean", "std"]
        ids = f["utterances/id"].asstr()[:]
        offset, n = f["utterances/frame_offset"][4], f["utterances/n_frames"][4]
        np.testing.assert_allclose(f["frames/layer_0"][offset:offset + n], frames[0][4], atol=2e-3)
        np.testing.assert_allclose(f["pooled/mean"][1], pooled["mean"][1], rtol=1e-6)
    root = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    assert list(root["utterances/id"][:]) == list(ids) == utterances["id"]
    assert root.attrs["num_layers"] == 3
    np.testing.assert_allclose(root["pooled/mean"][2], pooled["mean"][2], rtol=1e-6)


def test_unfinished_cache_is_never_complete_and_resume_fills_it(tmp_path):
    pooled, utterances, _ = _arrays(n=7)
    columns = dict(utterances, n_frames=[0] * 7)
    writer = CacheWriter.create(tmp_path / "c.zarr", columns, num_layers=3, hidden_size=5, model_id="m")
    for row in range(3):
        writer.add(row, {"mean": pooled["mean"][:, row]})
    writer.flush()
    writer.close()  # as if the process stopped here
    cache = sers.cache.open(tmp_path / "c.zarr")
    assert not cache.complete and len(cache.utterances) == 3
    with pytest.raises(SersError, match="not finished .3 of 7"):
        cache.require_complete()
    writer = CacheWriter.resume(tmp_path / "c.zarr")
    assert list(writer.pending_rows()) == [3, 4, 5, 6]
    with pytest.raises(SersError, match="4 utterances are not extracted yet"):
        writer.finish()
    for row in writer.pending_rows():
        writer.add(row, {"mean": pooled["mean"][:, row]})
    writer.finish()
    cache = sers.cache.open(tmp_path / "c.zarr").require_complete()
    np.testing.assert_allclose(cache.pooled_layers(range(3)), pooled["mean"], rtol=1e-6)


def test_failed_rows_are_hidden_and_listed_in_errors(tmp_path):
    pooled, utterances, _ = _arrays(n=4)
    writer = CacheWriter.create(tmp_path / "c.h5", dict(utterances, n_frames=[0] * 4), num_layers=3,
                                hidden_size=5)
    writer.add(0, {"mean": pooled["mean"][:, 0]})
    writer.add_failure(1, "u1", "/a/u1.wav", "cannot decode")
    writer.add(2, {"mean": pooled["mean"][:, 2]})
    writer.add(3, {"mean": pooled["mean"][:, 3]})
    writer.record_error("gone", "/a/gone.wav", "no such file")
    writer.finish()
    writer.close()
    cache = sers.cache.open(tmp_path / "c.h5")
    assert cache.complete and list(cache.utterances.id) == ["u0", "u2", "u3"]
    assert cache.errors == [{"id": "u1", "path": "/a/u1.wav", "reason": "cannot decode"},
                            {"id": "gone", "path": "/a/gone.wav", "reason": "no such file"}]
    np.testing.assert_allclose(cache.pooled(1), pooled["mean"][1, [0, 2, 3]], rtol=1e-6)


def test_hard_kill_leaves_a_resumable_cache(tmp_path):
    """SIGKILL between flushes: the rows marked done are intact, the cache is not complete."""
    script = f"""
import os, numpy as np, signal
from sers.cache import CacheWriter
n = 600
w = CacheWriter.create({str(tmp_path / 'k.zarr')!r}, {{'id': [str(i) for i in range(n)], 'n_frames': [3] * n}},
                       num_layers=2, hidden_size=4096, frame_layers=[1])
for row in range(n):
    w.add(row, {{'mean': np.full((2, 4096), row, np.float32)}}, {{1: np.full((3, 4096), row, np.float32)}})
    if row == 400:
        os.kill(os.getpid(), signal.SIGKILL)
"""
    result = subprocess.run([sys.executable, "-c", script])
    assert result.returncode == -9
    cache = sers.cache.open(tmp_path / "k.zarr")
    assert not cache.complete
    done = cache.utterances
    assert len(done) == 256  # one pooled chunk (2**20 // 4096 rows) was flushed before the kill
    np.testing.assert_array_equal(cache.pooled(1)[:, 0], done.id.astype(float))
    np.testing.assert_array_equal(cache.frames("255", 1), np.full((3, 4096), 255, np.float32))


def test_import_npz(tmp_path):
    pooled, utterances, _ = _arrays()
    np.savez(tmp_path / "f.npz", pooled_mean=pooled["mean"], pooled_std=pooled["std"],
             id=np.array(utterances["id"]), label=np.array(utterances["label"]))
    sers.cache.import_npz(tmp_path / "f.npz", tmp_path / "c.zarr", model_id="s3prl-wavlm")
    cache = sers.cache.open(tmp_path / "c.zarr")
    assert cache.model_id == "s3prl-wavlm" and cache.pool_stats == ["mean", "std"]
    assert list(cache.utterances.label) == utterances["label"]
    np.save(tmp_path / "bad.npy", pooled["mean"])
    np.savez(tmp_path / "bad.npz", features=pooled["mean"])
    with pytest.raises(SersError, match="needs an array 'pooled' or 'pooled_mean'"):
        sers.cache.import_npz(tmp_path / "bad.npz", tmp_path / "d.zarr", model_id="x")
    with pytest.raises(SersError, match="already exists"):
        sers.cache.import_npz(tmp_path / "f.npz", tmp_path / "c.zarr", model_id="x")


def test_open_refuses_what_is_not_a_cache(tmp_path):
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(SersError, match="not a sers cache"):
        sers.cache.open(tmp_path / "other.zarr")
    with pytest.raises(SersError, match="must end in .zarr"):
        sers.cache.from_arrays(tmp_path / "c.npy", np.zeros((1, 1, 1)), {"id": ["a"]})
    with pytest.raises(SersError, match="ids must be unique; repeated: a"):
        sers.cache.from_arrays(tmp_path / "c.zarr", np.zeros((1, 2, 1)), {"id": ["a", "a"]})


def test_check_compatible_names_the_difference(tmp_path):
    pooled, utterances, _ = _arrays()
    a = sers.cache.open(sers.cache.from_arrays(tmp_path / "a.zarr", pooled, utterances, model_id="wavlm"))
    b = sers.cache.open(sers.cache.from_arrays(tmp_path / "b.zarr", pooled, utterances, model_id="hubert"))
    with pytest.raises(SersError, match="model_id is 'wavlm' in .*a.zarr but 'hubert'"):
        a.check_compatible(b)


def test_caches_of_different_whisper_inputs_are_not_compared(tmp_path):
    pooled, utterances, _ = _arrays()

    def whisper_cache(name, **attrs):
        path = sers.cache.from_arrays(tmp_path / name, pooled, utterances, model_id="whisper-tiny",
                                      model_family="whisper", **attrs)
        return sers.cache.open(path)

    old, padded, trimmed = whisper_cache("old.zarr"), whisper_cache("p.zarr", whisper_input="padded"), \
        whisper_cache("t.h5", whisper_input="trimmed")
    assert [schema.whisper_input(c.attrs) for c in (old, padded, trimmed)] == ["padded", "padded", "trimmed"]
    old.check_compatible(padded)  # written before the option existed: padded, as sers did then
    with pytest.raises(SersError, match=r"different Whisper inputs: .*p.zarr was extracted with "
                                        r"--whisper-input padded, .*t.h5 with trimmed"):
        padded.check_compatible(trimmed)
    assert schema.whisper_input({"model_family": "wavlm"}) is None


def _shard(tmp_path, name, index, count, pooled, utterances, frames):
    rows = list(range(index, len(utterances["id"]), count))
    path = sers.cache.from_arrays(
        tmp_path / name, {k: v[:, rows] for k, v in pooled.items()},
        {k: [v[r] for r in rows] for k, v in utterances.items()},
        {layer: [f[r] for r in rows] for layer, f in frames.items()},
        model_id="m", settings={"shard": f"{index}/{count}"})
    return path


def test_merge_shards_equals_the_whole(tmp_path):
    pooled, utterances, frames = _arrays()
    whole = sers.cache.open(sers.cache.from_arrays(tmp_path / "whole.zarr", pooled, utterances, frames,
                                                   model_id="m"))
    shards = [_shard(tmp_path, f"s{i}.zarr", i, 2, pooled, utterances, frames) for i in range(2)]
    merged = sers.cache.open(sers.cache.merge(tmp_path / "merged.h5", shards))
    assert merged.complete and sorted(merged.utterances.id) == sorted(whole.utterances.id)
    order = [list(merged.utterances.id).index(uid) for uid in whole.utterances.id]
    for stat in ("mean", "std"):
        np.testing.assert_array_equal(merged.pooled_layers(range(3), stat=stat)[:, order],
                                      whole.pooled_layers(range(3), stat=stat))
    for uid in utterances["id"]:
        np.testing.assert_array_equal(merged.frames(uid, 0), whole.frames(uid, 0))
    with pytest.raises(SersError, match=r"shard\(s\) \[1\] of 2 are missing"):
        sers.cache.merge(tmp_path / "m2.zarr", shards[:1])
    other = sers.cache.from_arrays(tmp_path / "o.zarr", pooled, utterances, frames, model_id="other",
                                   settings={"shard": "1/2"})
    with pytest.raises(SersError, match="does not belong with .*model_id"):
        sers.cache.merge(tmp_path / "m3.zarr", [shards[0], other])


def test_to_xarray(tmp_path):
    xr = pytest.importorskip("xarray")
    pooled, utterances, _ = _arrays()
    cache = sers.cache.open(sers.cache.from_arrays(tmp_path / "c.zarr", pooled, utterances))
    dataset = cache.to_xarray(layers=[0, 2])
    assert isinstance(dataset, xr.Dataset)
    assert dataset["pooled_mean"].shape == (2, 7, 5)
    assert list(dataset["label"].values) == utterances["label"]
    np.testing.assert_allclose(dataset["pooled_mean"].sel(layer=2).values, pooled["mean"][2], rtol=1e-6)


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_segments_are_stored_with_their_rows_and_dropped_when_unfinished(tmp_path, suffix):
    pooled, utterances, _ = _arrays(n=4, dim=5)
    path = tmp_path / f"c{suffix}"
    writer = CacheWriter.create(path, dict(utterances, n_frames=[0] * 4), num_layers=3, hidden_size=5,
                                segment_layers=[0, 1, 2], segment_attrs={"alignments": "tg/"}, pooled_chunk_rows=2)

    def segs(row, n):
        columns = {"start_frame": list(range(n)), "end_frame": list(range(1, n + 1)), "start": [0.0] * n,
                   "end": [0.02] * n, "phone": ["AA1"] * n, "vowel": ["a"] * n}
        return columns, np.full((3, n, 5), row, np.float32)

    writer.add(0, {"mean": pooled["mean"][:, 0]}, segments=segs(0, 2))
    writer.add(1, {"mean": pooled["mean"][:, 1]}, segments=segs(1, 3))  # chunk of rows 0-1 flushed
    writer.add(2, {"mean": pooled["mean"][:, 2]}, segments=segs(2, 1))  # buffered, never flushed
    writer.close()
    writer = CacheWriter.resume(path)  # as after a crash
    cache = sers.cache.open(path)
    assert cache.has_segments and cache.segment_layers == [0, 1, 2]
    assert list(cache.segments.id) == ["u0", "u0", "u1", "u1", "u1"]
    writer.add(2, {"mean": pooled["mean"][:, 2]}, segments=segs(2, 1))
    writer.add_failure(3, "u3", "u3.wav", "bad")
    writer.finish()
    writer.close()
    cache = sers.cache.open(path)
    table = cache.segments
    assert list(table.id) == ["u0", "u0", "u1", "u1", "u1", "u2"] and set(table.vowel) == {"a"}
    assert list(table.utterance) == [0, 0, 1, 1, 1, 2] and list(table.label) == ["N", "N", "H", "H", "H", "A"]
    np.testing.assert_array_equal(cache.segment_pooled(1)[:, 0], [0, 0, 1, 1, 1, 2])
    np.testing.assert_array_equal(cache.segment_pooled(2, rows=[5]), np.full((1, 5), 2, np.float32))


def _shard_with_segments(path, index, rows, pooled):
    utterances = {"id": [f"u{r}" for r in rows], "label": ["N"] * len(rows), "n_frames": [0] * len(rows)}
    writer = CacheWriter.create(path, utterances, num_layers=3, hidden_size=5, segment_layers=[0, 2],
                                segment_attrs={"missing_alignments": [f"gone{index}"]},
                                settings={"shard": f"{index}/2"}, model_id="m")
    for i, r in enumerate(rows):
        n = r % 3  # 0, 1 or 2 segments
        columns = {"start_frame": list(range(n)), "end_frame": list(range(1, n + 1)), "start": [0.0] * n,
                   "end": [0.02] * n, "phone": [f"p{r}"] * n, "vowel": ["a"] * n}
        writer.add(i, {"mean": pooled[:, r]}, segments=(columns, np.full((2, n, 5), r, np.float32)))
    writer.finish()
    writer.close()
    return path


def test_merge_keeps_vowel_segments(tmp_path):
    pooled = np.random.default_rng(0).normal(size=(3, 6, 5))
    shards = [_shard_with_segments(tmp_path / "s0.zarr", 0, [0, 2, 4], pooled),
              _shard_with_segments(tmp_path / "s1.h5", 1, [1, 3, 5], pooled)]
    merged = sers.cache.open(sers.cache.merge(tmp_path / "m.zarr", shards))
    table = merged.segments
    assert merged.segment_layers == [0, 2]
    assert sorted(table.id) == ["u1", "u2", "u2", "u4", "u5", "u5"]
    assert all(phone == f"p{uid[1:]}" for phone, uid in zip(table.phone, table.id))
    np.testing.assert_array_equal(merged.segment_pooled(2)[:, 0], [float(uid[1:]) for uid in table.id])
    assert merged.segment_attrs["missing_alignments"] == ["gone0", "gone1"]
    lone = sers.cache.from_arrays(tmp_path / "plain.zarr", pooled[:, :3], {"id": ["x", "y", "z"]}, model_id="m",
                                  settings={"shard": "1/2"})
    with pytest.raises(SersError, match="some shards have vowel segments"):
        sers.cache.merge(tmp_path / "m2.zarr", [shards[0], lone])


def test_resume_forgets_failures_of_rows_that_were_not_flushed(tmp_path):
    pooled, utterances, _ = _arrays(n=4)
    writer = CacheWriter.create(tmp_path / "c.zarr", dict(utterances, n_frames=[0] * 4), num_layers=3,
                                hidden_size=5, pooled_chunk_rows=4)
    writer.record_error("planned", "/a/p.wav", "no such file")  # a planning error: never a row
    writer.add(0, {"mean": pooled["mean"][:, 0]})
    writer.add_failure(1, "u1", "/a/u1.wav", "cannot decode")  # recorded, but row 1 not flushed yet
    writer.close()  # interrupted
    writer = CacheWriter.resume(tmp_path / "c.zarr")
    assert [e["id"] for e in sers.cache.open(tmp_path / "c.zarr").errors] == ["planned"]
    writer.add(0, {"mean": pooled["mean"][:, 0]})
    writer.add_failure(1, "u1", "/a/u1.wav", "cannot decode")
    for row in (2, 3):
        writer.add(row, {"mean": pooled["mean"][:, row]})
    writer.finish()
    writer.close()
    assert [e["id"] for e in sers.cache.open(tmp_path / "c.zarr").errors] == ["planned", "u1"]
