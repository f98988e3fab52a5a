"""features="frames": attentive pooling over frame features (estimator, sers train/evaluate)."""
import json

import numpy as np
import pytest
import torch

import sers.cache
from sers.classifiers import InputError, LayerAnchoringClassifier
from sers.classifiers.frames import FrameFeatures
from sers.synth.planted import planted_frames
from sers.errors import SersError
from sers.pipeline.evaluate import evaluate
from sers.pipeline.train import train

FAST = dict(hidden=32, epochs=30, batch_size=32, lr=3e-3, patience=0)


@pytest.fixture(scope="module")
def planted():
    d = planted_frames(n=500, seed=1)
    return {"X": FrameFeatures.from_lists(d["frames"]), "y": d["y"], "burst": d["burst"],
            "train": np.arange(300), "test": np.arange(300, 500)}


@pytest.fixture(scope="module")
def fitted(planted):
    p = planted
    return LayerAnchoringClassifier(method="last", features="frames", **FAST).fit(p["X"].subset(p["train"]),
                                                                                 p["y"][p["train"]])


def test_attention_over_frames_finds_the_burst_that_mean_pooling_washes_out(planted, fitted):
    p = planted
    pooled = p["X"].mean_pooled()
    baseline = LayerAnchoringClassifier(method="last", **FAST).fit({l: v[p["train"]] for l, v in pooled.items()},
                                                                   p["y"][p["train"]])
    pooled_uar = baseline.score({l: v[p["test"]] for l, v in pooled.items()}, p["y"][p["test"]])
    frames_uar = fitted.score(p["X"].subset(p["test"]), p["y"][p["test"]])
    assert pooled_uar < 0.45 and frames_uar > 0.7, (pooled_uar, frames_uar)  # chance is 0.25
    weights = fitted.attention_weights(p["X"].subset(p["test"]))
    burst = np.concatenate([p["burst"][i] for i in p["test"]])
    assert weights.shape == burst.shape
    per_utterance = np.add.reduceat(weights, np.concatenate([[0], np.cumsum(p["X"].lengths[p["test"]])[:-1]]))
    np.testing.assert_allclose(per_utterance, 1.0, rtol=1e-5)
    assert weights[burst].sum() / len(p["test"]) > 0.7 and burst.mean() < 0.15  # attention mass on 10% of frames


def test_padding_does_not_change_an_utterance_s_output(planted, fitted):
    X = planted["X"]
    short = int(np.argmin(X.lengths))
    longest = np.argsort(X.lengths)[-5:]
    alone = fitted.predict_proba(X.subset([short]))
    with_longer = fitted.predict_proba(X.subset(np.concatenate([[short], longest])))[:1]
    assert X.lengths[longest].min() > X.lengths[short]
    np.testing.assert_allclose(with_longer, alone, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method, anchors, group_weights", [("lam", [0], "mean"), ("lam-gl", [[0, 1]], "mean"),
                                                            ("lam-gl", [[0, 1]], "concat"), ("lam-gl", [[0, 1]], "per-layer"),
                                                            ("dann", None, "mean"),
                                                            ("wsum", None, "mean")])
def test_every_method_trains_on_frames_deterministically(planted, method, anchors, group_weights):
    p = planted
    rows, target = p["train"][:160], p["X"].subset(p["test"])
    make = lambda: LayerAnchoringClassifier(method=method, anchors=anchors, features="frames",  # noqa: E731
                                            group_weights=group_weights,
                                            **{**FAST, "epochs": 3}).fit(p["X"].subset(rows), p["y"][rows], target)
    first, second = make(), make()
    np.testing.assert_array_equal(first.predict_proba(target), second.predict_proba(target))
    assert [r["loss_total"] for r in first.history_] == [r["loss_total"] for r in second.history_]
    assert len(first.module_.attention) == len(first.branches_)
    weights = first.attention_weights(target, branch=0)
    per_utterance = np.add.reduceat(weights, np.concatenate([[0], np.cumsum(target.lengths)[:-1]]))
    np.testing.assert_allclose(per_utterance, 1.0, rtol=1e-5)


def test_save_and_load_keep_the_attention(tmp_path, planted, fitted):
    fitted.save(tmp_path / "m.safetensors")
    loaded = LayerAnchoringClassifier.load(tmp_path / "m.safetensors")
    assert loaded.features == "frames"
    X = planted["X"].subset(planted["test"][:40])
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    assert np.abs(loaded.module_.attention[0].score.weight.detach().numpy()).sum() > 0


def test_frame_inputs_are_checked(planted):
    with pytest.raises(InputError, match="needs a FrameFeatures"):
        LayerAnchoringClassifier(method="last", features="frames").fit(planted["X"].mean_pooled(), planted["y"])
    with pytest.raises(InputError, match="inside the"):
        FrameFeatures({0: np.zeros((10, 4))}, [5, 6])
    with pytest.raises(InputError, match="align='vowel'"):
        LayerAnchoringClassifier(method="lam", anchors=[0], align="vowel", features="frames").required_layers(2)


# -- sers train / evaluate ------------------------------------------------------------------------

def write_cache(path, d, rows, splits, language, labels=None, frame_layers=(0, 1)):
    frames = {layer: [d["frames"][layer][i] for i in rows] for layer in frame_layers}
    pooled = FrameFeatures.from_lists({layer: [d["frames"][layer][i] for i in rows] for layer in d["frames"]})
    pooled = np.stack([v for _, v in sorted(pooled.mean_pooled().items())])
    labels = d["y"][rows] if labels is None else labels
    return sers.cache.from_arrays(path, pooled, {"id": [f"{language}-{i:04d}" for i in range(len(rows))],
                                                 "label": list(labels), "split": list(splits),
                                                 "language": [language] * len(rows)},
                                  frames=frames, model_id="planted", sample_rate=16000, frame_rate=50)


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frame-caches")
    d = planted_frames(n=360, seed=4)
    source, target = np.arange(200), np.arange(200, 360)
    source_splits = ["train"] * 150 + ["dev"] * 50
    # interleaved splits: the reader must gather non-adjacent utterances
    target_splits = np.where(np.arange(160) % 2 == 0, "train", "test")
    garbage = np.random.default_rng(9).choice(["A", "H", "zzz", ""], size=160)
    return {"source": write_cache(folder / "en.zarr", d, source, source_splits, "en"),
            "target": write_cache(folder / "zh.h5", d, target, target_splits, "zh"),
            "garbage": write_cache(folder / "zh-garbage.zarr", d, target, target_splits, "zh", labels=garbage),
            "no_frames": write_cache(folder / "zh-1.zarr", d, target, target_splits, "zh", frame_layers=(0,))}


TRAIN = dict(methods=["lam"], anchors=[0], seeds=[0], hidden=32, epochs=4, batch_size=32, progress=False,
             plots=False, features="frames")


def test_train_on_frames_records_it_and_evaluate_reproduces_the_predictions(caches, tmp_path):
    train(caches["source"], caches["target"], out_dir=tmp_path / "a", **TRAIN)
    run = tmp_path / "a/lam/seed0"
    config = json.loads((run / "config.json").read_text())
    assert config["features"] == "frames" and config["estimator"]["features"] == "frames"
    assert config["frame_stride"] == 1 and "stat" not in config
    train(caches["source"], caches["target"], out_dir=tmp_path / "b", **TRAIN)
    for name in ("metrics.json", "predictions.csv", "model.safetensors"):
        assert (run / name).read_bytes() == (tmp_path / "b/lam/seed0" / name).read_bytes()
    result = evaluate(run, caches["target"], split="test", out_dir=tmp_path / "eval")
    trained = json.loads((run / "metrics.json").read_text())["target_test"]
    assert result.metrics["uar"] == trained["uar"] and result.n == 80
    lines = lambda path: [l.split(",")[-4:] for l in path.read_text().splitlines()[1:]]  # noqa: E731
    train_rows = [l for l in (run / "predictions.csv").read_text().splitlines()[1:] if l.startswith("target")]
    assert [l.split(",")[-4:] for l in train_rows] == lines(tmp_path / "eval/predictions.csv")


def test_garbage_target_labels_change_nothing(caches, tmp_path):
    train(caches["source"], caches["target"], out_dir=tmp_path / "clean", **TRAIN)
    train(caches["source"], caches["garbage"], out_dir=tmp_path / "dirty", **TRAIN)
    for name in ("predictions.csv", "model.safetensors"):
        assert (tmp_path / "clean/lam/seed0" / name).read_bytes() == (tmp_path / "dirty/lam/seed0" / name).read_bytes()


def test_missing_frame_layers_are_named_with_the_fix(caches, tmp_path):
    with pytest.raises(SersError, match=r"zh-1.zarr: --features frames needs the frames of layers \[1\].*"
                                        r"extract with --frame-layers 1$"):
        # last reads layer 1 only
        train(caches["source"], caches["no_frames"], out_dir=tmp_path, **{**TRAIN, "methods": ["last"]})
