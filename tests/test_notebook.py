"""The notebook bridge: cache.xy() feeds the estimator, to_pandas(), to_xarray(), unknown splits."""
import numpy as np
import pytest

import sers.cache
from sers.classifiers.estimator import LayerAnchoringClassifier
from sers.synth.planted import planted_corpora
from sers.errors import SersError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = planted_corpora(n_source=120, n_target=40, seed=2)
    n, num_layers, _ = d["X_source"].shape
    path = sers.cache.from_arrays(tmp_path_factory.mktemp("nb") / "en.zarr", d["X_source"].transpose(1, 0, 2),
                                  {"id": [f"en-{i}" for i in range(n)], "label": list(d["y_source"]),
                                   "split": ["train"] * 80 + ["dev"] * 40})
    return sers.cache.open(path), d


def test_xy_is_the_estimators_layout(cache):
    cache, d = cache
    X, y, ids = cache.xy(split="train")
    assert X.shape == (80, cache.num_layers, cache.hidden_size)
    np.testing.assert_allclose(X, d["X_source"][:80], rtol=1e-6)
    assert list(y) == list(d["y_source"][:80]) and ids[0] == "en-0"
    X_dev, y_dev, _ = cache.xy(split="dev", layers=[2, 3])
    assert sorted(X_dev) == [2, 3] and X_dev[3].shape == (40, cache.hidden_size)
    model = LayerAnchoringClassifier(method="last", hidden=16, epochs=2, batch_size=32).fit(X, y)
    assert model.predict(X).shape == (80,)
    last = cache.num_layers - 1
    X_layers, y_train, _ = cache.xy(split="train", layers=[2, last])
    X_dev_layers, _, _ = cache.xy(split="dev", layers=[2, last])
    dict_model = LayerAnchoringClassifier(method="last", hidden=16, epochs=2, batch_size=32).fit(X_layers, y_train)
    np.testing.assert_allclose(dict_model.predict_proba(X_dev_layers, domain="source"),
                               dict_model.predict_proba(cache.xy(split="dev")[0], domain="source"), rtol=1e-5)

def test_unknown_split_lists_the_splits(cache):
    cache, _ = cache
    for call in (lambda: cache.pooled(4, split="typo"), lambda: cache.xy(split="tset"),
                 lambda: cache.to_xarray(split=["train", "typo"])):
        with pytest.raises(SersError, match=r"no split 't.*' \(splits: dev, train\)"):
            call()


def test_to_pandas_and_to_xarray_are_indexed_by_id(cache):
    pytest.importorskip("xarray")
    cache, d = cache
    table = cache.utterances.to_pandas()
    assert table.shape[0] == 120 and table.index[5] == "en-5" and table.loc["en-5", "label"] == d["y_source"][5]
    ds = cache.to_xarray(split="dev", layers=[0, 4])
    assert ds["pooled_mean"].dims == ("layer", "utterance", "dim") and ds.sizes["utterance"] == 40
    np.testing.assert_allclose(ds["pooled_mean"].sel(layer=4, utterance="en-85").values, d["X_source"][85, 4],
                               rtol=1e-6)
    assert str(ds["split"].values[0]) == "dev"
