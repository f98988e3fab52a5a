"""Property-based tests of the .npz importer: any valid npz round-trips exactly; any broken one is
a SersError (the one-line `error:` of the CLI), never another exception."""
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sers.cache
from sers.errors import SersError
from sers.fields import language_code

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# No NUL: numpy's fixed-width strings drop trailing NULs, so "a\x00" cannot be saved as such.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12)


@st.composite
def valid_npz(draw):
    """Arrays of a valid .npz: pooled in either layout, ids as strings, numbers or objects."""
    n, layers, dim = draw(st.integers(1, 6)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    features = draw(hnp.arrays(np.float32, (n, layers, dim), elements=st.floats(-1e6, 1e6, width=32)))
    layout = draw(st.sampled_from(["nld", "lnd"]))
    id_kind = draw(st.sampled_from(["str", "int", "object"]))
    if id_kind == "int":
        ids = np.asarray(draw(st.lists(st.integers(-10**9, 10**9), min_size=n, max_size=n, unique=True)))
    else:
        ids = np.asarray(draw(st.lists(TEXT, min_size=n, max_size=n, unique=True)),
                         dtype=object if id_kind == "object" else str)
    arrays = {"pooled": features if layout == "nld" else features.transpose(1, 0, 2), "id": ids}
    for column in draw(st.sets(st.sampled_from(["label", "split", "speaker", "language"]))):
        arrays[column] = np.asarray(draw(st.lists(TEXT, min_size=n, max_size=n)))
    if draw(st.booleans()):
        arrays["duration"] = np.asarray(draw(st.lists(st.floats(0, 1e4), min_size=n, max_size=n)))
    return arrays, features, layout


def _save(arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _import(data: bytes, layout=None):
    folder = Path(tempfile.mkdtemp(prefix="sers-hyp-"))
    try:
        (folder / "f.npz").write_bytes(data)
        sers.cache.import_npz(folder / "f.npz", folder / "c.zarr", model_id="m", layout=layout)
        with sers.cache.open(folder / "c.zarr") as cache:
            return cache.xy()[0], cache.utterances
    finally:
        shutil.rmtree(folder)


@SETTINGS
@given(valid_npz())
def test_valid_npz_round_trips(case):
    arrays, features, layout = case
    n, layers = features.shape[:2]
    X, table = _import(_save(arrays), layout if n == layers else None)
    np.testing.assert_array_equal(X, features)
    assert list(table.id) == [str(v) for v in arrays["id"].tolist()]
    for column in ("label", "split", "speaker"):
        if column in arrays:
            assert list(table[column]) == arrays[column].tolist()
    if "language" in arrays:  # stored as an ISO code where it is one langcodes knows, as written beside it
        written = arrays["language"].tolist()
        assert list(table.language_original) == written
        assert list(table.language) == [value if language_code(value) is None else language_code(value)
                                        for value in written]
    if "duration" in arrays:
        np.testing.assert_array_equal(table.duration, arrays["duration"])


def _break(draw, arrays):
    """One way users' files go wrong."""
    arrays = dict(arrays)
    n = len(arrays["id"])
    how = draw(st.sampled_from(["ndim", "strings", "nan", "inf", "complex", "bool", "id_length", "id_2d",
                                "no_id", "no_pooled", "empty_id", "duplicate_id", "column_length",
                                "duration_text", "bytes", "truncated", "float_ids", "pickled_object"]))
    pooled = arrays["pooled"]
    if how == "ndim":
        arrays["pooled"] = pooled.reshape(pooled.shape[0], -1) if draw(st.booleans()) else pooled[..., None]
    elif how == "strings":
        arrays["pooled"] = pooled.astype(str)
    elif how in ("nan", "inf"):
        pooled = pooled.copy()
        pooled.flat[draw(st.integers(0, pooled.size - 1))] = np.nan if how == "nan" else -np.inf
        arrays["pooled"] = pooled
    elif how == "complex":
        arrays["pooled"] = pooled.astype(np.complex64)
    elif how == "bool":
        arrays["pooled"] = pooled > 0
    elif how == "id_length":
        # a length that neither of the first two axes has (either could be the utterance axis)
        arrays["id"] = np.asarray([f"x{i}" for i in range(max(pooled.shape[:2]) + draw(st.integers(1, 3)))])
    elif how == "id_2d":
        arrays["id"] = np.asarray([[f"x{i}", "y"] for i in range(n)])
    elif how == "no_id":
        del arrays["id"]
    elif how == "no_pooled":
        arrays["features"] = arrays.pop("pooled")
    elif how == "empty_id":
        ids = np.asarray([str(v) for v in arrays["id"].tolist()], dtype=object)
        ids[draw(st.integers(0, n - 1))] = ""
        arrays["id"] = ids.astype(str)
    elif how == "duplicate_id":
        if n == 1:
            arrays["id"] = np.asarray([])
        else:
            ids = np.asarray([str(v) for v in arrays["id"].tolist()], dtype=object)
            ids[-1] = ids[0]
            arrays["id"] = ids.astype(str)
    elif how == "column_length":
        arrays[draw(st.sampled_from(["label", "split", "duration"]))] = np.asarray(["a"] * (n + 1))
    elif how == "duration_text":
        arrays["duration"] = np.asarray(["long"] * n)
    elif how == "float_ids":
        arrays["id"] = np.linspace(0, 1, n)
    elif how == "pickled_object":
        ids = np.empty(n, dtype=object)
        ids[:] = [Path(f"u{i}") for i in range(n)]
        arrays["id"] = ids
    data = _save(arrays)
    if how == "bytes":
        data = draw(st.binary(max_size=200))
    elif how == "truncated":
        data = data[:draw(st.integers(0, len(data) - 1))]
    return data, how


@SETTINGS
@given(valid_npz(), st.data())
def test_invalid_npz_is_a_sers_error(case, data):
    arrays, features, layout = case
    broken, how = _break(data.draw, arrays)
    n, layers = features.shape[:2]
    try:
        _import(broken, layout if n == layers else None)
    except SersError as error:
        assert "\n" not in str(error), how
    else:
        pytest.fail(f"{how}: imported without an error")
