"""Speaker standardisation (sers.pipeline.speakers): the statistics, when it applies, and that train,
evaluate and similarity read the same standardised features without reading a label."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import sers.cache
from sers.cache import CacheWriter
from sers.cli import main
from sers.errors import SersError
from sers.pipeline import speakers
from sers.pipeline.evaluate import evaluate
from sers.pipeline.similarity import compute_similarity
from sers.pipeline.train import train
from sers.pipeline.train_data import Parts, Splits, read_data
from sers.pipeline.frame_features import read_frames
from sers.synth.planted import planted_corpora, planted_frames

FAST = dict(hidden=32, epochs=4, batch_size=32, progress=False, plots=False, coral_scale="4d2", lambda_=1.0)


def write_cache(path, X, labels, splits, language, speaker_names):
    """(n, layers, D) features whose rows of each speaker carry that speaker's offset and scale."""
    n = len(labels)
    return sers.cache.from_arrays(path, np.ascontiguousarray(X.transpose(1, 0, 2)),
                                  {"id": [f"{language}-{i:04d}" for i in range(n)], "label": list(labels),
                                   "split": list(splits), "language": [language] * n,
                                   "speaker": list(speaker_names)},
                                  model_id="planted", sample_rate=16000, frame_rate=50)


def with_voices(X, speaker_names, seed):
    """Each speaker shifts and scales every layer: what a voice adds to all its utterances."""
    rng = np.random.default_rng(seed)
    out = X.copy()
    for name in np.unique(speaker_names):
        rows = speaker_names == name
        out[rows] = out[rows] * rng.uniform(0.5, 2.0) + rng.normal(0, 3.0, size=(1,) + X.shape[1:])
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speakers")
    d = planted_corpora(n_source=300, n_target=300, seed=5)
    source_speakers = np.repeat([f"en{i}" for i in range(10)], 30)  # train 0-5, dev 6-7, test 8-9
    target_speakers = np.repeat([f"zh{i}" for i in range(10)], 30)
    splits = ["train"] * 180 + ["dev"] * 60 + ["test"] * 60
    X_source, X_target = with_voices(d["X_source"], source_speakers, 1), with_voices(d["X_target"], target_speakers, 2)
    no_speaker = target_speakers.copy()
    no_speaker[:3] = ""
    garbage = np.random.default_rng(9).choice(["A", "H", "N", "S", ""], size=300)
    return {"source": write_cache(folder / "en.zarr", X_source, d["y_source"], splits, "en", source_speakers),
            "target": write_cache(folder / "zh.zarr", X_target, d["y_target"], splits, "zh", target_speakers),
            "garbage": write_cache(folder / "zh-garbage.zarr", X_target, garbage, splits, "zh", target_speakers),
            "unnamed": write_cache(folder / "zh-unnamed.zarr", X_target, d["y_target"], splits, "zh", no_speaker),
            "X_source": X_source, "source_speakers": source_speakers}


def test_each_speaker_gets_mean_0_and_std_1_and_small_speakers_the_caches_statistics(tmp_path):
    rng = np.random.default_rng(0)
    names = np.array(["a"] * 40 + ["b"] * 40 + ["c"] * (speakers.MIN_UTTERANCES - 1))
    X = with_voices(rng.normal(size=(len(names), 2, 8)).astype(np.float32), names, 3)
    cache = sers.cache.open(write_cache(tmp_path / "c.zarr", X, ["N"] * len(names), ["train"] * len(names), "en", names))
    standardiser = speakers.SpeakerStandardiser(cache)
    rows = np.arange(len(names))
    for layer in (0, 1):
        z = standardiser.standardise(layer, cache.pooled(layer), rows)
        for name in ("a", "b"):
            np.testing.assert_allclose(z[names == name].mean(0), 0, atol=1e-5)
            np.testing.assert_allclose(z[names == name].std(0), 1, atol=1e-4)
        # too few utterances for their own statistics: the whole cache's
        x = cache.pooled(layer).astype(np.float64)
        np.testing.assert_allclose(z[names == "c"], ((x - x.mean(0)) / x.std(0))[names == "c"], rtol=1e-4, atol=1e-5)
    # a block of some rows, in any order, gets the same values as the whole
    some = np.array([83, 0, 41])
    block = speakers.SpeakerStandardiser(cache).block([1], cache.pooled_layers([1], rows=some), some)
    np.testing.assert_allclose(block[0], standardiser.standardise(1, cache.pooled(1), rows)[some], rtol=1e-5)


def test_auto_applies_only_where_it_can_and_on_says_what_is_missing(caches):
    with sers.cache.open(caches["source"]) as src, sers.cache.open(caches["unnamed"]) as unnamed:
        assert speakers.decide("auto", [src]) == (True, None)
        assert speakers.decide("off", [src]) == (False, None)
        used, note = speakers.decide("auto", [src, unnamed])
        assert not used and note == f"not standardised per speaker: 3 of 300 utterances in {unnamed.path} have no speaker"
        with pytest.raises(SersError, match=r"--speaker-norm on: 3 of 300 utterances in .*zh-unnamed.zarr have no "
                                            r"speaker; use --speaker-norm off"):
            speakers.decide("on", [unnamed])
        # vowel segments are means: standardised as their utterances, when those are means too
        assert speakers.decide("auto", [src], level="segment") == speakers.decide("auto", [src], align="vowel") == (
            True, None)
        # frames too, by their speaker's mean statistics whatever --stat says
        assert speakers.decide("auto", [src], features="frames", stat="std") == (True, None)
        for kind, reason in ((dict(level="segment", stat="std"), "standardised like their utterances only with "
                                                                 "--stat mean, not std"),
                             (dict(align="vowel", stat="std"), "only with --stat mean, not std")):
            assert speakers.decide("auto", [src], **kind)[0] is False
            with pytest.raises(SersError, match=reason):
                speakers.decide("on", [src], **kind)
        with pytest.raises(SersError, match="--speaker-norm must be one of auto, on, off, not 'yes'"):
            speakers.decide("yes", [src])


def test_train_records_it_evaluate_reapplies_it_and_no_label_is_read(caches, tmp_path):
    common = dict(methods=["last", "lam"], anchors=[2, 3], seeds=[0], **FAST)
    table = train(caches["source"], caches["target"], out_dir=tmp_path / "runs", **common)
    config = json.loads((tmp_path / "runs" / "lam" / "seed0" / "config.json").read_text())
    assert config["speaker_standardised"] is True
    # evaluate reads the target test split again, standardised the same way: the same UAR as training scored
    result = evaluate(tmp_path / "runs" / "lam" / "seed0", caches["target"], split="test")
    assert result.metrics["uar"] == pytest.approx(next(r for r in table if r["method"] == "lam")["target_uar_mean"])
    with pytest.raises(SersError, match=r"trained on features standardised per speaker, but 3 of 300 utterances .* "
                                        r"have no speaker"):
        evaluate(tmp_path / "runs" / "lam" / "seed0", caches["unnamed"], split="test")
    # target labels are never read by the standardisation: garbage ones give the same predictions
    train(caches["source"], caches["garbage"], out_dir=tmp_path / "garbage", **common)
    for method in ("last", "lam"):
        for name in ("predictions.csv", "model.safetensors"):
            clean, dirty = (tmp_path / folder / method / "seed0" / name for folder in ("runs", "garbage"))
            assert clean.read_bytes() == dirty.read_bytes()
    off = train(caches["source"], caches["target"], out_dir=tmp_path / "off", speaker_norm="off", **common)
    assert json.loads((tmp_path / "off" / "lam" / "seed0" / "config.json").read_text())["speaker_standardised"] is False
    # the voices are a nuisance the planted emotion does not depend on: removing them helps the transfer
    assert (next(r for r in table if r["method"] == "lam")["target_uar_mean"]
            > next(r for r in off if r["method"] == "lam")["target_uar_mean"])


def test_similarity_compares_what_train_reads(caches, tmp_path):
    on = compute_similarity(caches["source"], caches["target"], measures_wanted=["coral"])
    off = compute_similarity(caches["source"], caches["target"], measures_wanted=["coral"], speaker_norm="off")
    assert on["speaker_standardised"] is True and off["speaker_standardised"] is False
    assert on["measures"]["coral"]["values"] != off["measures"]["coral"]["values"]
    noted = compute_similarity(caches["source"], caches["unnamed"], measures_wanted=["coral"])
    assert noted["speaker_standardised"] is False and any("have no speaker" in note for note in noted["notes"])
    run = CliRunner().invoke(main, ["similarity", str(caches["source"]), str(caches["unnamed"]), "-o",
                                    str(tmp_path / "sim"), "--measures", "coral", "--quiet"])
    assert run.exit_code == 0, run.output
    assert "note: not standardised per speaker: 3 of 300 utterances in" in run.output
    run = CliRunner().invoke(main, ["train", "--source", str(caches["source"]), "--target", str(caches["unnamed"]),
                                    "-o", str(tmp_path / "runs"), "--method", "last", "--seeds", "0", "--epochs", "1",
                                    "--speaker-norm", "on", "--quiet"])
    assert run.exit_code == 1 and "error: --speaker-norm on: 3 of 300 utterances in" in run.output


@pytest.fixture(scope="module")
def voiced_segments(tmp_path_factory):
    """Two caches of 4 speakers x 10 utterances, each utterance with 3 vowel segments; every
    speaker shifts and scales its utterances and their segments alike."""
    folder, rng = tmp_path_factory.mktemp("segments"), np.random.default_rng(4)
    paths = {}
    for side, language in (("source", "en"), ("target", "zh")):
        names = np.repeat([f"{language}{i}" for i in range(4)], 10)
        splits = ["train", "train", "dev", "test"] * 10  # every speaker in every split
        X = rng.normal(size=(40, 3, 6)).astype(np.float32)
        segments = X[:, None] + rng.normal(scale=0.5, size=(40, 3, 3, 6)).astype(np.float32)  # (utt, seg, L, D)
        offset, scale = rng.normal(0, 3.0, size=(4, 1, 6)), rng.uniform(0.5, 2.0, size=(4, 1, 1))
        X = (X * scale[np.arange(40) // 10] + offset[np.arange(40) // 10]).astype(np.float32)
        segments = (segments * scale[np.arange(40) // 10, None] + offset[np.arange(40) // 10, None]).astype(np.float32)
        utterances = {"id": [f"{side}{i:02d}" for i in range(40)], "label": list(rng.choice(["A", "N"], 40)),
                      "split": splits, "language": [language] * 40, "speaker": list(names)}
        writer = CacheWriter.create(folder / f"{language}.zarr", utterances, num_layers=3, hidden_size=6,
                                    model_id="planted", segment_layers=[0, 1, 2], sample_rate=16000, frame_rate=50)
        with writer:
            for row in range(40):
                columns = {"start_frame": [0, 1, 2], "end_frame": [1, 2, 3], "start": [0.0, 0.02, 0.04],
                           "end": [0.02, 0.04, 0.06], "phone": list("aei"), "vowel": list("aei")}
                writer.add(row, {"mean": X[row]},
                           segments=(columns, np.ascontiguousarray(segments[row].transpose(1, 0, 2))))
            writer.finish()
        paths[side] = (folder / f"{language}.zarr", X, segments, names)
    return paths


def test_vowel_segments_are_standardised_by_their_utterances_speaker(voiced_segments):
    """What `sers train --align vowel` reads: utterances and their segments by one affine map per speaker
    (that speaker's utterance statistics), so both stay in one space."""
    source, target = voiced_segments["source"][0], voiced_segments["target"][0]
    with sers.cache.open(source) as src, sers.cache.open(target) as tgt:
        parts = Parts(src, tgt, Splits())
        plan = type("Plan", (), {"layers": [1, 2], "segment_layers": [1, 2]})
        data = read_data(src, tgt, plan, parts, "mean", None, lambda block, name: block, "pooled", by_speaker=True)
        raw = read_data(src, tgt, plan, parts, "mean", None, lambda block, name: block, "pooled", by_speaker=False)
    for side in ("source", "target"):
        _, X, segments, names = voiced_segments[side]
        train_rows = parts.rows[f"{side}_train"]
        features, vowels = data["segments"][side].features, data["segments"][side].vowels
        assert list(vowels) == list("aei") * len(train_rows)
        for layer in (1, 2):
            x = X[:, layer].astype(np.float64)
            mean = np.stack([x[names == n].mean(0) for n in names])  # per utterance: its speaker's statistics
            std = np.stack([x[names == n].std(0) for n in names])
            expected = (segments[train_rows][:, :, layer] - mean[train_rows, None]) / std[train_rows, None]
            np.testing.assert_allclose(features[layer], expected.reshape(-1, 6), rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(data[f"{side}_train"][layer], (x - mean)[train_rows] / std[train_rows],
                                       rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(raw["segments"][side].features[layer],
                                       segments[train_rows][:, :, layer].reshape(-1, 6), rtol=1e-6)


def test_similarity_at_segment_level_standardises_segments_too(voiced_segments):
    source, target = voiced_segments["source"][0], voiced_segments["target"][0]
    on = compute_similarity(source, target, level="segment", measures_wanted=["coral"], source_split="train",
                            target_split="train")
    off = compute_similarity(source, target, level="segment", measures_wanted=["coral"], source_split="train",
                             target_split="train", speaker_norm="off")
    assert on["speaker_standardised"] is True and off["speaker_standardised"] is False
    # the voices' offsets dominate the raw segments' covariance; standardised, the languages match far better
    assert all(a < 0.5 * b for a, b in zip(on["measures"]["coral"]["values"], off["measures"]["coral"]["values"]))


@pytest.fixture(scope="module")
def voiced_frames(tmp_path_factory):
    """Frame caches (layers 0, 1) of planted frame data, 6 speakers x 20 utterances a side, every
    speaker shifting and scaling all frames of its utterances; pooled means computed from the frames."""
    folder, d = tmp_path_factory.mktemp("frames"), planted_frames(n=240, seed=6)
    rng = np.random.default_rng(8)
    out = {}
    for side, language, rows in (("source", "en", np.arange(120)), ("target", "zh", np.arange(120, 240))):
        names = np.repeat([f"{language}{i}" for i in range(6)], 20)
        shift, scale = rng.normal(0, 3.0, size=(6, d["frames"][0][0].shape[1])), rng.uniform(0.5, 2.0, size=6)
        frames = {layer: [(d["frames"][layer][r] * scale[i // 20] + shift[i // 20]).astype(np.float32)
                          for i, r in enumerate(rows)] for layer in (0, 1)}
        pooled = np.stack([np.stack([f.mean(0) for f in frames[layer]]) for layer in (0, 1)])
        splits = ["train", "train", "dev", "test"] * 30
        path = sers.cache.from_arrays(folder / f"{language}.zarr", pooled, {
            "id": [f"{language}-{i:03d}" for i in range(120)], "label": list(d["y"][rows]), "split": splits,
            "language": [language] * 120, "speaker": list(names)}, frames=frames, model_id="planted",
            sample_rate=16000, frame_rate=50)
        out[side] = (path, frames, pooled, names)
    return out


def test_frames_are_standardised_by_their_utterances_speaker(voiced_frames):
    path, frames, pooled, names = voiced_frames["source"]
    rows = np.array([7, 3, 100, 41])
    with sers.cache.open(path) as cache:
        got = read_frames(cache, [1], {"part": rows}, by_speaker=speakers.SpeakerStandardiser(cache))["part"]
    assert got[1].dtype == np.float16  # kept as stored
    for i, row in enumerate(rows):
        mine = names == names[row]  # the speaker's utterance means give the statistics
        mean, std = pooled[1][mine].mean(0), pooled[1][mine].std(0)
        expected = (frames[1][row] - mean) / std
        np.testing.assert_allclose(got[1][got.offsets[i]:got.offsets[i] + got.lengths[i]], expected,
                                   rtol=1e-2, atol=2e-2)


def test_frames_without_a_pooled_mean_or_beyond_float16_are_refused_in_one_line(voiced_frames, tmp_path):
    path, frames, pooled, names = voiced_frames["source"]
    only_std = sers.cache.from_arrays(tmp_path / "std.zarr", {"std": pooled}, {
        "id": [f"u{i}" for i in range(120)], "speaker": list(names)}, frames=frames, model_id="planted",
        sample_rate=16000, frame_rate=50)
    with sers.cache.open(only_std) as cache:
        used, note = speakers.decide("auto", [cache], features="frames")
        assert not used and note == (f"not standardised per speaker: {cache.path} stores no pooled mean, whose "
                                     "per-speaker statistics standardise frames and vowel segments")
        assert speakers.decide("auto", [cache], stat="std") == (True, None)  # pooled std utterances need no mean
    # a dimension whose utterance means barely vary within a speaker: its frames overflow float16
    flat = {layer: [f.copy() for f in frames[layer]] for layer in frames}
    for f in flat[1]:
        f[:, 0] = 1000.0
        f[::2, 0] += 1.0
    flat_pooled = np.stack([np.stack([f.mean(0) for f in flat[layer]]) for layer in (0, 1)])
    flat_pooled[1][:, 0] = 1000.5  # every utterance mean identical: the std floor divides
    overflow = sers.cache.from_arrays(tmp_path / "flat.zarr", flat_pooled, {
        "id": [f"u{i}" for i in range(120)], "speaker": list(names)}, frames=flat, model_id="planted",
        sample_rate=16000, frame_rate=50)
    with sers.cache.open(overflow) as cache:
        with pytest.raises(SersError, match=r"flat.zarr: frames of layer 1 standardised per speaker exceed the "
                                            r"range of float16 .*; use --speaker-norm off"):
            read_frames(cache, [1], {"part": np.arange(120)}, by_speaker=speakers.SpeakerStandardiser(cache))


def test_frame_runs_record_it_and_evaluate_reapplies_it(voiced_frames, tmp_path):
    (source, *_), (target, *_) = voiced_frames["source"], voiced_frames["target"]
    common = dict(methods=["lam"], anchors=[0], seeds=[0], hidden=16, epochs=3, batch_size=32, progress=False,
                  plots=False, features="frames")
    train(source, target, out_dir=tmp_path / "on", **common)
    train(source, target, out_dir=tmp_path / "off", speaker_norm="off", **common)
    run = tmp_path / "on" / "lam" / "seed0"
    config = json.loads((run / "config.json").read_text())
    assert config["speaker_standardised"] is True and config["frame_stride"] == 1
    assert json.loads((tmp_path / "off/lam/seed0/config.json").read_text())["speaker_standardised"] is False
    trained = json.loads((run / "metrics.json").read_text())["target_test"]
    assert evaluate(run, target, split="test", out_dir=tmp_path / "eval").metrics == trained
    # and the same predictions, probabilities included, as training wrote for the target test rows
    trained_rows = [line.split(",")[-4:] for line in (run / "predictions.csv").read_text().splitlines()[1:]
                    if line.startswith("target")]
    assert trained_rows == [line.split(",")[-4:] for line in
                            (tmp_path / "eval" / "predictions.csv").read_text().splitlines()[1:]]
    assert (run / "predictions.csv").read_bytes() != (tmp_path / "off/lam/seed0/predictions.csv").read_bytes()
