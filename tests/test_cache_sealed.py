"""sers/cache/ is sealed: the rest of sers reads and writes caches through its public API only.

Walks the source of every module under sers/ outside sers/cache/ with `ast` and fails on:

* a group path of the layout as a string ("pooled/mean", f"frames/layer_{l}", "segments/...");
  CLI option values such as ``--features pooled`` have no slash and are not flagged;
* the raw attribute dict of a reader or writer (``cache.attrs``, ``writer.attrs.get(...)``):
  every attribute a stage needs is a property (``cache.frame_stride``, ``writer.settings``);
  calling a method named ``attrs`` (``plan.attrs(...)``) is something else and is allowed;
* an import of ``sers.cache.backends`` or ``sers.cache.segments`` (back-end classes, the group
  layout), or of a private or layout name of ``sers.cache.schema``;
* a ``._private`` member of the cache's classes reached from outside (``shard._store_rows``).

Then unit tests of the public helpers that replaced those reaches.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import sers.cache
from sers.cache import backends
from sers.errors import SersError

ROOT = Path(__file__).resolve().parent.parent
SERS = ROOT / "sers"
CACHE = SERS / "cache"

GROUP_PREFIXES = ("utterances/", "pooled/", "frames/", "segments/", "errors/")
SEALED_MODULES = ("sers.cache.backends", "sers.cache.segments")
# Names of sers.cache.schema that spell the layout or its attributes (the rest, such as
# check_pool_stats or storable_text, are rules any stage may apply to its inputs).
SCHEMA_LAYOUT_NAMES = {"MODEL_DIGEST_ATTR", "MODEL_COMMIT_ATTR", "MODEL_DESCRIPTION_KEYS", "ROOT_ATTRS",
                       "UTTERANCE_COLUMNS", "ERROR_COLUMNS", "STRING_COLUMNS", "frames_name", "pooled_name",
                       "dimension_names", "whisper_input", "model_description"}

# Lines in files outside sers/cache allowed, for now, to read cache.attrs (none left).
PENDING: dict[str, set[str]] = {}


def _modules():
    for path in sorted(SERS.rglob("*.py")):
        if CACHE not in path.parents:
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), filename=str(path))


def _private_cache_members() -> set[str]:
    """``_name``s the classes of sers/cache define: methods, and attributes set on ``self``."""
    names = set()
    for path in CACHE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for item in ast.walk(node):
                    if isinstance(item, ast.FunctionDef) and item.name.startswith("_"):
                        names.add(item.name)
                    if (isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name)
                            and item.value.id == "self" and item.attr.startswith("_")):
                        names.add(item.attr)
    return {name for name in names if not (name.startswith("__") and name.endswith("__"))}


def _group_path(node) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.startswith(GROUP_PREFIXES)
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        return isinstance(first, ast.Constant) and str(first.value).startswith(GROUP_PREFIXES)
    return False


def reaches_into_the_cache(tree: ast.AST, private_members: set[str]) -> list[tuple[int, str]]:
    """(line, what) for every reach past the public cache API in one module's syntax tree."""
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    f_string_parts = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if _group_path(node) and id(node) not in f_string_parts:
            found.append((node.lineno, "group path"))
        elif isinstance(node, ast.Attribute) and node.attr == "attrs" and id(node) not in called:
            found.append((node.lineno, "attrs"))
        elif (isinstance(node, ast.Attribute) and node.attr in SCHEMA_LAYOUT_NAMES
              and isinstance(node.value, ast.Name) and node.value.id == "schema"):
            found.append((node.lineno, f"schema.{node.attr}"))
        elif (isinstance(node, ast.Attribute) and node.attr in private_members
              and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append((node.lineno, f"private .{node.attr}"))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name.startswith(SEALED_MODULES)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith(SEALED_MODULES):
                found.append((node.lineno, f"from {node.module} import"))
            elif node.module == "sers.cache":
                found += [(node.lineno, f"from sers.cache import {a.name}") for a in node.names
                          if f"sers.cache.{a.name}" in SEALED_MODULES]
            elif node.module == "sers.cache.schema":
                found += [(node.lineno, f"from sers.cache.schema import {a.name}") for a in node.names
                          if a.name.startswith("_") or a.name in SCHEMA_LAYOUT_NAMES]
    return found


def test_nothing_outside_sers_cache_knows_the_layout():
    private_members = _private_cache_members()
    assert {"_store_rows", "_backend", "_check_finite"} <= private_members  # the walk sees the classes
    problems = []
    for name, tree in _modules():
        for line, what in reaches_into_the_cache(tree, private_members):
            if what not in PENDING.get(name, ()):
                problems.append(f"{name}:{line}: {what}")
    assert not problems, "reaches into sers/cache past its public API:\n" + "\n".join(problems)


@pytest.mark.parametrize("source, what", [
    ('x = cache.attrs.get("frame_stride")', "attrs"),
    ('x = writer.attrs["settings"]', "attrs"),
    ('x = backend.array(f"frames/layer_{layer}")', "group path"),
    ('x = backend.array("segments/pooled")', "group path"),
    ("from sers.cache.backends import open_backend", "from sers.cache.backends import"),
    ("from sers.cache import segments", "from sers.cache import segments"),
    ("from sers.cache.schema import frames_name", "from sers.cache.schema import frames_name"),
    ("key = schema.MODEL_DIGEST_ATTR", "schema.MODEL_DIGEST_ATTR"),
    ("rows = shard._store_rows", "private ._store_rows"),
])
def test_the_walk_flags_each_kind_of_reach(source, what):
    assert [w for _, w in reaches_into_the_cache(ast.parse(source), {"_store_rows"})] == [what]


@pytest.mark.parametrize("source", [
    'features = "pooled"',                              # a CLI choice, not a group path
    'attrs = plan.attrs("stored frames", stride)',      # a method called attrs
    "stride = cache.frame_stride",
    "from sers.cache.schema import check_pool_stats",
    "self._store_rows = rows",
])
def test_the_walk_allows_the_public_api(source):
    assert reaches_into_the_cache(ast.parse(source), {"_store_rows"}) == []


# -- the public helpers --------------------------------------------------------------------------

def _cache_with_frames(path, lengths=(3, 0, 5, 2), layers=(0, 2), dim=4, failed_row=None):
    """A complete cache whose frames of layer l, row i are all 100 l + 10 i + frame index."""
    n = len(lengths)
    writer = sers.cache.CacheWriter.create(path, {"id": [f"u{i}" for i in range(n)], "n_frames": list(lengths),
                                                  "split": ["train"] * n},
                                           num_layers=3, hidden_size=dim, frame_layers=list(layers),
                                           model_id="m", sample_rate=16000, frame_rate=50.0)
    with writer:
        for row, length in enumerate(lengths):
            if row == failed_row:
                writer.add_failure(row, f"u{row}", "p.wav", "unreadable")
                continue
            frames = {layer: np.repeat((100 * layer + 10 * row + np.arange(length))[:, None], dim, 1)
                      .astype(np.float32) for layer in layers}
            writer.add(row, {"mean": np.full((3, dim), row, np.float32)}, frames)
        writer.finish()
    return path


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_frame_block_holds_each_rows_frames_as_frames_gives_them(tmp_path, suffix):
    path = _cache_with_frames(tmp_path / f"c{suffix}", failed_row=2)
    with sers.cache.open(path) as cache:
        assert list(cache.utterances.id) == ["u0", "u1", "u3"]  # the failed row is not a public row
        for rows in ([0, 1, 2], [2, 0], [1], [], [2]):
            block, offsets = cache.frame_block(2, rows)
            assert block.dtype == cache.frame_dtype == np.float16 and len(offsets) == len(rows)
            for row, offset in zip(rows, offsets):
                n = int(cache.utterances.n_frames[row])
                expected = cache.frames(cache.utterances.id[row], 2)
                np.testing.assert_array_equal(block[offset:offset + n].astype(np.float32), expected)
            assert len(block) == sum(int(cache.utterances.n_frames[r]) for r in rows)
        with pytest.raises(SersError, match="frames of layer 1 are not stored"):
            cache.frame_block(1, [0])


def test_segments_writer_round_trip_and_an_unfinished_one_leaves_no_group(tmp_path):
    path = _cache_with_frames(tmp_path / "c.zarr", failed_row=1)
    columns = {"utterance": [0, 2, 2], "start_frame": [0, 0, 1], "end_frame": [2, 1, 2], "start": [0.0, 0.0, 0.02],
               "end": [0.04, 0.02, 0.04], "phone": ["AA1", "IY0", "UW1"], "vowel": ["a", "i", "u"]}
    assert set(columns) == set(sers.cache.SEGMENT_COLUMNS)
    pooled = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    with sers.cache.SegmentsWriter(path, [0, 2], computed_from="test") as writer:
        writer.append(columns, pooled)
        writer.finish()
    with sers.cache.open(path) as cache:
        assert cache.segment_layers == [0, 2] and cache.segments_complete
        assert cache.segment_attrs["computed_from"] == "test"
        # public rows 0 and 2 are u0 and u3 (u1 failed): the writer speaks the reader's rows
        assert list(cache.segments.id) == ["u0", "u3", "u3"] and list(cache.segments.vowel) == ["a", "i", "u"]
        np.testing.assert_array_equal(cache.segment_pooled(2), pooled[1])
    with pytest.raises(RuntimeError), sers.cache.SegmentsWriter(path, [0]) as writer:
        writer.append(columns, pooled[:1])
        raise RuntimeError("cut off")
    with sers.cache.open(path) as cache:
        assert not cache.has_segments


def test_reader_and_writer_properties(tmp_path):
    path = tmp_path / "c.h5"
    writer = sers.cache.CacheWriter.create(path, {"id": ["a"]}, num_layers=2, hidden_size=3, model_id="m",
                                           model_revision="r1", settings={"shard": "0/2"}, whisper_input="trimmed",
                                           model_family="whisper", frame_stride=2, manifest_digest="abc")
    with writer:
        assert writer.settings == {"shard": "0/2"} and writer.whisper_input == "trimmed" and not writer.complete
        writer.add(0, {"mean": np.zeros((2, 3), np.float32)})
        writer.finish()
        assert writer.complete
    with sers.cache.open(path) as cache:
        assert (cache.model_revision, cache.model_family, cache.frame_stride) == ("r1", "whisper", 2)
        assert cache.settings == {"shard": "0/2"} and cache.whisper_input == "trimmed"
        assert cache.manifest_digest == "abc" and cache.sers_version == sers.__version__ and cache.created
        assert cache.frame_dtype == np.float16
        description = cache.model_description()
        assert description["model_id"] == "m" and description["num_layers"] == 2
        assert sers.cache.model_difference(description, dict(description, model_revision="r2")) == \
            ("model_revision", "r1", "r2")


def test_backend_name_remove_and_registry_dispatch(tmp_path):
    assert sers.cache.backend_name("a.zarr") == "zarr" and sers.cache.backend_name("dir/a.zarr/") == "zarr"
    assert sers.cache.backend_name("a.h5") == sers.cache.backend_name("a.hdf5") == "HDF5"
    # zarr replaces chunk files atomically; HDF5 is written through a zarr journal and converted whole
    assert sers.cache.survives_failed_write("a.zarr") and sers.cache.survives_failed_write("a.h5")
    for suffix, backend in backends.BACKENDS.items():
        assert issubclass(backend, backends.Backend) and backends.backend_class(f"x{suffix}") is backend
    with pytest.raises(SersError, match=r"a\.npz: a cache path must end in \.zarr .* or \.h5"):
        sers.cache.backend_name("a.npz")
    with pytest.raises(SersError, match="must end in"):
        backends.open_backend(tmp_path / "a.nc", "w")
    for name in ("c.zarr", "c.h5"):
        path = _cache_with_frames(tmp_path / name, lengths=(1, 2))
        assert isinstance(backends.open_backend(path, "r"), backends.BACKENDS[path.suffix])
        sers.cache.remove(path)
        assert not path.exists()
        sers.cache.remove(path)  # nothing there: nothing to do


def test_a_new_format_is_one_class_and_one_registry_entry(tmp_path, monkeypatch):
    class Zip(backends.ZarrBackend):  # stands in for a format: zarr's operations under another suffix
        name = "zipped"

    monkeypatch.setitem(backends.BACKENDS, ".zipped", Zip)
    path = _cache_with_frames(tmp_path / "c.zipped", lengths=(2, 1))
    with sers.cache.open(path) as cache:
        assert sers.cache.backend_name(path) == "zipped" and len(cache.utterances) == 2
        np.testing.assert_array_equal(cache.frames("u1", 0), np.zeros((1, 4)) + 10)


def test_merge_import_export_results_say_what_the_cli_prints(tmp_path):
    ids = [f"u{i}" for i in range(5)]
    np.savez(tmp_path / "f.npz", pooled=np.ones((5, 3, 4)), id=np.asarray(ids), split=np.asarray(["train"] * 5))
    imported = sers.cache.import_npz(tmp_path / "f.npz", tmp_path / "c.zarr", model_id="m")
    assert imported.summary() == f"imported 5 utterances, 3 layers x 4 -> {tmp_path / 'c.zarr'}"
    with sers.cache.open(imported) as cache:  # the result stands for the path it wrote
        exported = sers.cache.export(cache, tmp_path / "out.npz", split="train")
    assert exported.summary() == f"exported 5 utterances -> {tmp_path / 'out.npz'}"
    merged = sers.cache.merge(tmp_path / "m.zarr", [tmp_path / "c.zarr"])
    assert merged.summary() == f"merged 1 shards: 5 utterances, 0 errors -> {tmp_path / 'm.zarr'}"
