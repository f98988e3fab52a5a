"""Opening caches without sers: zarr consolidated metadata (fresh, upgraded, never stale after a resume),
HDF5 dimension scales named as zarr's axes, `sers cache upgrade`, and to_pandas() round trips."""
import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

import sers.cache
from sers.cache import CacheWriter
from sers.cache.lock import WriterLock
from sers.cli import main
from sers.errors import SersError

xr = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")

GROUPS = ("utterances", "pooled", "frames", "errors", "segments")


def _arrays(n=6, layers=3, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    pooled = rng.normal(size=(layers, n, dim)).astype(np.float32)
    utterances = {"id": [f"u{i}" for i in range(n)], "label": list("NHASNH"[:n]),
                  "split": ["train"] * 4 + ["dev"] * (n - 4), "speaker": [f"s{i % 2}" for i in range(n)],
                  "language": ["en"] * n, "duration": rng.random(n) + 1}
    frames = {1: [rng.normal(size=(k, dim)) for k in range(2, n + 2)]}
    return pooled, utterances, frames


def _cache(path, **kwargs):
    pooled, utterances, frames = _arrays(**kwargs)
    return sers.cache.from_arrays(path, pooled, utterances, frames, model_id="m")


def _with_segments(path):
    """Add a segments/ group (with one segment per good utterance) through the SegmentsWriter."""
    with sers.cache.open(path) as cache:
        n, dim = len(cache.utterances), cache.hidden_size
    with sers.cache.SegmentsWriter(path, layers=[1], alignments="a") as writer:
        columns = {"utterance": np.arange(n), "start_frame": np.zeros(n, int), "end_frame": np.ones(n, int),
                   "start": np.zeros(n), "end": np.full(n, 0.02), "phone": ["AA1"] * n, "vowel": ["a"] * n}
        writer.append(columns, np.ones((1, n, dim), np.float32))
        writer.finish()


def _open_zarr_strictly(path, group):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the "no consolidated metadata" warning fails the test
        return xr.open_zarr(path, group=group)


def _zarr_dims(path) -> dict:
    """{group: {variable: dims}} as xarray opens each group of the zarr cache."""
    root = zarr.open_group(str(path), mode="r", use_consolidated=False)
    return {group: {name: var.dims for name, var in _open_zarr_strictly(path, group).variables.items()}
            for group in GROUPS if group in root}


def _consolidated_matches_the_arrays(path) -> bool:
    """What a reader that trusts the consolidated copy sees equals each array's own metadata."""
    seen = zarr.open_group(str(path), mode="r")
    own = zarr.open_group(str(path), mode="r", use_consolidated=False)
    names = [f"{g}/{a}" for g, group in own.groups() for a, _ in group.arrays()]
    return all(seen[name].shape == own[name].shape for name in names) and dict(seen.attrs) == dict(own.attrs)


def _make_old(path: Path) -> None:
    """Make a zarr cache look written by an older sers: no consolidated metadata, no axis names."""
    root = json.loads((path / "zarr.json").read_text())
    root.pop("consolidated_metadata", None)
    (path / "zarr.json").write_text(json.dumps(root))
    for meta in path.glob("*/*/zarr.json"):
        array = json.loads(meta.read_text())
        array.pop("dimension_names", None)
        meta.write_text(json.dumps(array))


# -- zarr: consolidated metadata --------------------------------------------------------------------

def test_a_fresh_zarr_cache_opens_in_xarray_and_zarr_without_a_warning(tmp_path):
    path = _cache(tmp_path / "c.zarr")
    dims = _zarr_dims(path)
    assert dims["pooled"] == {"mean": ("layer", "utterance", "dim")}
    assert dims["frames"] == {"layer_1": ("frame", "dim")} and dims["utterances"]["label"] == ("utterance",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert zarr.open_group(str(path), mode="r").metadata.consolidated_metadata is not None
        xr.open_zarr(path)  # the root too
    assert _open_zarr_strictly(path, "pooled").sizes == {"layer": 3, "utterance": 6, "dim": 4}


def test_merge_and_segments_leave_consolidated_metadata_that_matches(tmp_path):
    shard = _cache(tmp_path / "s.zarr")
    merged = Path(sers.cache.merge(tmp_path / "m.zarr", [shard]))
    assert _open_zarr_strictly(merged, "utterances").sizes["utterance"] == 6
    _with_segments(merged)  # a finished cache extended: the segments group is in the new copy
    assert _open_zarr_strictly(merged, "segments").sizes == {"segment_layer": 1, "segment": 6, "dim": 4}
    assert _consolidated_matches_the_arrays(merged)


def test_a_resume_that_changes_arrays_never_leaves_stale_consolidated_metadata(tmp_path):
    path = _cache(tmp_path / "c.zarr")
    writer = CacheWriter.resume(path)  # a finished cache reopened (as `sers extract` does)
    # From the moment a writer has it open, there is no copy to go stale: readers see what is there.
    assert zarr.open_group(str(path), mode="r").metadata.consolidated_metadata is None
    writer.record_errors([("late", "/a/late.wav", "cannot decode")])  # errors/ grows: new shapes
    assert _consolidated_matches_the_arrays(path)  # as if the writer were killed here
    writer.close()
    assert _open_zarr_strictly(path, "errors").sizes["error"] == 1
    assert _consolidated_matches_the_arrays(path)


def test_an_unfinished_cache_resumed_and_finished_opens_without_a_warning(tmp_path):
    pooled, utterances, _ = _arrays()
    writer = CacheWriter.create(tmp_path / "c.zarr", dict(utterances, n_frames=[0] * 6), num_layers=3,
                                hidden_size=4, pooled_chunk_rows=2)
    for row in range(2):
        writer.add(row, {"mean": pooled[:, row]})
    writer.close()  # stopped before it was finished: no consolidated metadata for an unfinished cache
    assert zarr.open_group(str(tmp_path / "c.zarr"), mode="r").metadata.consolidated_metadata is None
    with CacheWriter.resume(tmp_path / "c.zarr") as writer:
        for row in writer.pending_rows():
            writer.add(row, {"mean": pooled[:, row]})
        writer.finish()
    pooled_read = _open_zarr_strictly(tmp_path / "c.zarr", "pooled")["mean"].values
    np.testing.assert_array_equal(pooled_read, pooled)
    assert _consolidated_matches_the_arrays(tmp_path / "c.zarr")


def test_a_stale_copy_written_by_another_tool_is_not_what_sers_reads_and_upgrade_replaces_it(tmp_path):
    path = _cache(tmp_path / "c.zarr")
    root = zarr.open_group(str(path), mode="r+")  # zarr itself, through the consolidated copy
    for column in ("id", "path", "reason"):
        array = root[f"errors/{column}"]
        array.resize((2,))
        array[:] = ["a", "b"]
    assert zarr.open_group(str(path), mode="r")["errors/id"].shape == (0,)  # stale: zarr does not update it
    with sers.cache.open(path) as cache:  # sers reads each array's own metadata
        assert [error["id"] for error in cache.errors] == ["a", "b"]
    assert sers.cache.upgrade(path).summary() == (
        f"{path}: wrote zarr consolidated metadata, replacing a stale copy; xr.open_zarr opens it without a warning")
    assert zarr.open_group(str(path), mode="r")["errors/id"].shape == (2,)


def test_a_full_disk_while_consolidating_is_a_note_and_upgrade_adds_it_later(tmp_path, monkeypatch, capsys):
    from sers.cache import readable

    def full(store):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(readable, "consolidate", full)
    path = _cache(tmp_path / "c.zarr")  # finishes: the cache is complete, only the copy is missing
    assert "could not write its consolidated metadata (No space left on device)" in capsys.readouterr().err
    with sers.cache.open(path) as cache:
        assert cache.complete and len(cache.utterances) == 6
    monkeypatch.undo()
    assert sers.cache.upgrade(path).summary().startswith(f"{path}: wrote zarr consolidated metadata;")
    assert _open_zarr_strictly(path, "pooled").sizes["utterance"] == 6


# -- HDF5: dimension scales ------------------------------------------------------------------------

def test_hdf5_opens_in_xarray_with_the_dimension_names_of_zarr(tmp_path):
    zarr_cache, h5_cache = _cache(tmp_path / "c.zarr"), _cache(tmp_path / "c.h5")
    _with_segments(zarr_cache)
    _with_segments(h5_cache)  # converted again from a zarr copy: the scales come with it
    expected = _zarr_dims(zarr_cache)
    assert set(expected) == set(GROUPS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no phony_dims warning, no phony_dim_* names
        for group, dims in expected.items():
            ds = xr.open_dataset(h5_cache, engine="h5netcdf", group=group)
            assert {name: var.dims for name, var in ds.variables.items()} == dims, group
            assert dict(ds.sizes) == dict(_open_zarr_strictly(zarr_cache, group).sizes)
    with xr.open_dataset(h5_cache, engine="h5netcdf", group="pooled") as ds:
        with sers.cache.open(h5_cache) as cache:
            np.testing.assert_array_equal(ds["mean"].values, cache.pooled_layers(range(3)))
    with h5py.File(h5_cache) as f:  # the scales are root datasets, outside the cache's groups
        assert {"utterance", "layer", "dim", "frame", "error", "segment"} <= set(f)
    with sers.cache.open(h5_cache) as cache:  # and sers sees only its arrays
        assert len(cache.utterances) == 6 and len(cache.segments) == 6


# -- sers cache upgrade -----------------------------------------------------------------------------

def test_upgrade_gives_an_old_zarr_cache_what_it_lacks_once(tmp_path):
    path = _cache(tmp_path / "c.zarr")
    _make_old(path)
    with pytest.raises(KeyError, match="dimension_names"):  # what users of caches of older sers get
        xr.open_zarr(path, group="pooled", consolidated=False)
    result = CliRunner().invoke(main, ["cache", "upgrade", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output == (f"{path}: wrote zarr axis names and consolidated metadata; xr.open_zarr opens it "
                             "without a warning\n")
    assert _zarr_dims(path)["pooled"] == {"mean": ("layer", "utterance", "dim")}
    again = CliRunner().invoke(main, ["cache", "upgrade", str(path)])
    assert again.output == f"{path}: up to date, nothing to do\n"
    with sers.cache.open(path) as cache:
        np.testing.assert_array_equal(cache.pooled_layers(range(3)), _arrays()[0])


def test_upgrade_gives_an_old_hdf5_file_dimension_scales_once(tmp_path):
    new = _cache(tmp_path / "new.h5")
    old = tmp_path / "old.h5"
    with h5py.File(new) as source, h5py.File(old, "w") as target:  # as an older sers wrote it: no scales
        for key, value in source.attrs.items():
            target.attrs[key] = value
        for group in ("utterances", "pooled", "frames", "errors"):
            for name, data in source[group].items():
                target.create_dataset(f"{group}/{name}", data=data[()], maxshape=(None,) * data.ndim,
                                      chunks=data.chunks, dtype=data.dtype)
    with xr.open_dataset(old, engine="h5netcdf", group="pooled", phony_dims="sort") as ds:  # as users saw it
        assert all(dim.startswith("phony_dim_") for dim in ds["mean"].dims)
    assert sers.cache.upgrade(old).summary() == (
        f"{old}: wrote HDF5 dimension scales; xarray (h5netcdf) names the axes as in zarr")
    with xr.open_dataset(old, engine="h5netcdf", group="frames") as ds:
        assert ds["layer_1"].dims == ("frame", "dim")
    assert sers.cache.upgrade(old).summary() == f"{old}: up to date, nothing to do"
    with sers.cache.open(old) as cache, sers.cache.open(new) as fresh:
        np.testing.assert_array_equal(cache.frame_block(1, range(6))[0], fresh.frame_block(1, range(6))[0])
        assert cache.attrs == fresh.attrs


def test_upgrade_refuses_a_cache_being_written_and_an_unfinished_one(tmp_path):
    path = _cache(tmp_path / "c.zarr")
    _make_old(path)
    with WriterLock(path):
        with pytest.raises(SersError, match=r"c\.zarr is being written by another sers command"):
            sers.cache.upgrade(path)
    assert zarr.open_group(str(path), mode="r").metadata.consolidated_metadata is None  # untouched
    pooled, utterances, _ = _arrays()
    for name in ("u.zarr", "u.h5"):
        writer = CacheWriter.create(tmp_path / name, dict(utterances, n_frames=[0] * 6), num_layers=3,
                                    hidden_size=4)
        writer.close()
        with pytest.raises(SersError, match=rf"{name}: extraction is not finished"):
            sers.cache.upgrade(tmp_path / name)
    with pytest.raises(SersError, match="nothing.zarr: no such cache"):
        sers.cache.upgrade(tmp_path / "nothing.zarr")


# -- to_pandas -----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_to_pandas_resets_and_round_trips_through_from_arrays(tmp_path, suffix):
    pooled, utterances, _ = _arrays()
    with sers.cache.open(sers.cache.from_arrays(tmp_path / f"a{suffix}", pooled, utterances)) as cache:
        table = cache.utterances.to_pandas()
    assert table.index.name == "id" and "id" not in table.columns
    flat = table.reset_index()
    assert list(flat["id"]) == utterances["id"] and list(flat.columns[:2]) == ["id", "path"]
    for i, given in enumerate((table, flat)):
        again = sers.cache.from_arrays(tmp_path / f"b{i}{suffix}", pooled, given)
        with sers.cache.open(again) as cache:
            back = cache.utterances.to_pandas()
            np.testing.assert_array_equal(cache.pooled_layers(range(3)), pooled)
        assert back.equals(table), i
