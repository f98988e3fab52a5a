"""Vowel-level alignment (`align="vowel"`, `sers train --align vowel`): the loss, the estimator, the pipeline."""
import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import sers.cache
from sers.cache import CacheWriter
from sers.classifiers import InputError, LayerAnchoringClassifier, class_conditional_coral
from sers.synth.planted import planted_vowel_corpora
from sers.cli import main
from sers.errors import SersError
from sers.pipeline.evaluate import evaluate
from sers.pipeline.train import train
from sers.report.inputs import METHOD_ORDER, group_runs, read_runs

FAST = dict(hidden=32, epochs=6, batch_size=32, progress=False, plots=False)


def numpy_coral(a, b):
    d = a.shape[1]
    return np.sum((np.cov(a, rowvar=False) - np.cov(b, rowvar=False)) ** 2) / (4 * d * d)


def segments_of(d, side, rows):
    keep = np.isin(d[f"utterance_{side}"], rows)
    return d[f"segments_{side}"][keep], d[f"vowels_{side}"][keep]


# -- the loss -----------------------------------------------------------------------------------

def test_class_conditional_coral_is_the_mean_of_per_class_coral():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(30, 5)), rng.normal(size=(25, 5)) * [1, 2, 1, 3, 1]
    source_classes = np.array(list("aaaaaaaaaaeeeeeeeeeeiiiiiiiiio"))  # one "o": too few for a covariance
    target_classes = np.array(list("aaaaaaaaeeeeeeeeeooooouuuuu"))[:25]  # no "i"; "o" and "u" only here
    expected = np.mean([numpy_coral(source[source_classes == v], target[target_classes == v]) for v in "ae"])
    got = class_conditional_coral(torch.tensor(source), source_classes, torch.tensor(target), target_classes, "4d2")
    assert got.item() == pytest.approx(expected, rel=1e-10) and expected > 0.01
    assert class_conditional_coral(torch.tensor(source), source_classes, torch.tensor(source),
                                   source_classes).item() == 0.0
    assert class_conditional_coral(torch.tensor(source), ["a"] * 30, torch.tensor(target), ["e"] * 25).item() == 0.0


# -- the estimator --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted():
    return planted_vowel_corpora(n_source=600, n_target=600, seed=0)


def split(d):
    """Source train/dev, target train (unlabelled) / test, training segments, held-out segments."""
    training = dict(source_segments=segments_of(d, "source", np.arange(450)),
                    target_segments=segments_of(d, "target", np.arange(300)))
    held_out = (segments_of(d, "source", np.arange(450, 600)), segments_of(d, "target", np.arange(300, 600)))
    return (d["X_source"][:450], d["y_source"][:450], d["X_source"][450:], d["y_source"][450:],
            d["X_target"][:300], d["X_target"][300:], d["y_target"][300:], training, held_out)


def test_the_vowel_term_is_per_vowel_coral_of_the_projected_segments(planted):
    """lam-gl with a group [1, 2] (not the last layer): segments need only the group's layers."""
    Xs, ys, _, _, Xt, _, _, training, held_out = split(planted)
    model = LayerAnchoringClassifier(method="lam-gl", anchors=[[1, 2]], align="vowel", hidden=8, epochs=2,
                                     normalize="per-language", coral_scale="4d2").fit(Xs, ys, Xt, **training)
    assert model.branches_ == [[1, 2], [3]] and model.required_segment_layers(4) == [1, 2]
    weight, bias = (p.detach().numpy().astype(np.float64) for p in model.module_.projections[0].parameters())

    def projected(segments, domain):
        features, vowels = segments
        mean, std = model.stats_[domain]  # rows 0, 1: layers 1, 2 (the model reads 1, 2, 3)
        # the default group_weights="concat": the group's normalised layers side by side
        group = np.concatenate([(features[:, layer] - mean[i]) / std[i] for i, layer in enumerate((1, 2))], axis=1)
        return np.maximum(group @ weight.T + bias, 0), vowels

    (source, source_vowels), (target, target_vowels) = projected(held_out[0], "source"), projected(held_out[1], "target")
    expected = np.mean([numpy_coral(source[source_vowels == v], target[target_vowels == v]) for v in "aeiou"])
    only_group_layers = tuple(({1: f[:, 1], 2: f[:, 2]}, v) for f, v in held_out)
    assert model.vowel_coral(*only_group_layers) == pytest.approx(expected, rel=1e-4) and expected > 1e-5
    assert [list(r) for r in model.history_][0] == ["epoch", "loss_ce", "loss_align", "loss_vowel", "loss_total",
                                                   "seconds"]


def test_vowel_alignment_finds_the_shift_that_utterance_statistics_hide(planted):
    """Layer 3 looks like an anchor by its utterance statistics, but within a vowel the target does
    not vary where the source carries emotion: only the per-vowel covariances show it."""
    Xs, ys, Xd, yd, Xt, Xtest, ytest, training, held_out = split(planted)
    # weights set for Deep CORAL's 1/(4d^2) scale
    params = dict(method="lam", anchors=[2, 3], hidden=32, epochs=20, batch_size=64, lr=3e-3, coral_scale="4d2")
    utterance = LayerAnchoringClassifier(lambda_=10.0, **params).fit(Xs, ys, Xt)
    vowel = LayerAnchoringClassifier(lambda_=1.0, align="vowel", vowel_lambda=300.0, **params).fit(Xs, ys, Xt, **training)
    scores = {name: m.score(Xtest, ytest) for name, m in (("utterance", utterance), ("vowel", vowel))}
    gaps = {name: m.vowel_coral(*held_out) for name, m in (("utterance", utterance), ("vowel", vowel))}
    print(f"planted vowel confound: target UAR utterance-level CORAL {scores['utterance']:.3f}, "
          f"+ vowel-level {scores['vowel']:.3f}; held-out vowel CORAL {gaps['utterance']:.2e} -> {gaps['vowel']:.2e}")
    for model in (utterance, vowel):
        assert model.score(Xd, yd, domain="source") > 0.9
    assert scores["utterance"] < 0.5
    assert scores["vowel"] > scores["utterance"] + 0.15
    assert gaps["vowel"] < 0.1 * gaps["utterance"]


def test_same_seed_same_vowel_aligned_model_and_global_rng_untouched(planted):
    Xs, ys, _, _, Xt, Xtest, _, training, _ = split(planted)
    params = dict(method="lam", anchors=[2, 3], align="vowel", hidden=16, epochs=2)
    torch.manual_seed(7)
    expected_draw = torch.rand(1)
    torch.manual_seed(7)
    first = LayerAnchoringClassifier(**params).fit(Xs, ys, Xt, **training)
    assert torch.equal(torch.rand(1), expected_draw)
    second = LayerAnchoringClassifier(**params).fit(Xs, ys, Xt, **training)
    assert np.array_equal(first.predict_proba(Xtest), second.predict_proba(Xtest))
    assert [r["loss_vowel"] for r in first.history_] == [r["loss_vowel"] for r in second.history_]


@pytest.mark.parametrize("params, fit, message", [
    (dict(method="coral", align="vowel"), None, "works with methods lam and lam-gl, not 'coral'"),
    (dict(method="lam", anchors=[2], align="syllable"), None, "align must be one of utterance, vowel"),
    (dict(method="lam", anchors=[2], align="vowel", vowel_lambda=-1), None, "vowel_lambda must be >= 0"),
    (dict(method="lam", anchors=[2], align="vowel"), None, "needs source_segments and target_segments"),
    (dict(method="lam", anchors=[2]), "both", "read only with align='vowel'"),
    (dict(method="lam", anchors=[2], align="vowel"), "layer_0_only", "lacks layers \\[2\\]"),
    (dict(method="lam", anchors=[2], align="vowel"), "no_shared_vowel", "no vowel class has at least two"),
    (dict(method="lam", anchors=[2], align="vowel"), "short_vowels", "gives 3 vowel classes for"),
])
def test_vowel_inputs_are_checked(planted, params, fit, message):
    X, y = planted["X_source"][:100], planted["y_source"][:100]
    source, target = segments_of(planted, "source", np.arange(100)), segments_of(planted, "target", np.arange(100))
    segments = {"both": dict(source_segments=source, target_segments=target),
                "layer_0_only": dict(source_segments=({0: source[0][:, 0]}, source[1]), target_segments=target),
                "no_shared_vowel": dict(source_segments=(source[0], ["a"] * len(source[1])),
                                        target_segments=(target[0], ["e"] * len(target[1]))),
                "short_vowels": dict(source_segments=(source[0], source[1][:3]), target_segments=target)}
    with pytest.raises(InputError, match=message):
        LayerAnchoringClassifier(epochs=1, **params).fit(X, y, planted["X_target"][:100], **segments.get(fit, {}))


# -- the pipeline ---------------------------------------------------------------------------------

def write_cache(path, d, side, splits, labels=None, segment_layers=(0, 1, 2, 3), unaligned_split=None):
    """A cache of one side of planted data, its vowel segments stored as `sers extract --alignments` does
    (none for the utterances of ``unaligned_split``, as if their alignments were missing)."""
    X, utterance, vowels, features = (d[f"X_{side}"], d[f"utterance_{side}"], d[f"vowels_{side}"],
                                      d[f"segments_{side}"])
    n, num_layers, dim = X.shape
    labels = d[f"y_{side}"] if labels is None else labels
    utterances = {"id": [f"{side}{i:04d}" for i in range(n)], "label": list(labels), "split": list(splits),
                  "language": [side] * n}
    writer = CacheWriter.create(path, utterances, num_layers=num_layers, hidden_size=dim, model_id="planted",
                                segment_layers=list(segment_layers) or None, sample_rate=16000, frame_rate=50)
    with writer:
        for row in range(n):
            mine = np.flatnonzero(utterance == row) if splits[row] != unaligned_split else np.empty(0, int)
            columns = {"start_frame": list(range(len(mine))), "end_frame": list(range(1, len(mine) + 1)),
                       "start": [0.02 * i for i in range(len(mine))], "end": [0.02 * (i + 1) for i in range(len(mine))],
                       "phone": list(vowels[mine]), "vowel": list(vowels[mine])}
            pooled = features[mine][:, list(segment_layers)].transpose(1, 0, 2)
            writer.add(row, {"mean": X[row]}, segments=(columns, np.ascontiguousarray(pooled)) if segment_layers else None)
        writer.finish()
    return path


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("caches")
    d = planted_vowel_corpora(n_source=300, n_target=360, seed=3)
    source_splits, target_splits = ["train"] * 200 + ["dev"] * 100, ["train"] * 150 + ["dev"] * 60 + ["test"] * 150
    garbage = np.random.default_rng(9).choice(["A", "H", "N", "S", "zzz", ""], size=360)
    return {"planted": d, "folder": folder,
            "source": write_cache(folder / "en.zarr", d, "source", source_splits),
            "target": write_cache(folder / "zh.h5", d, "target", target_splits, unaligned_split="dev"),
            "garbage": write_cache(folder / "zh-garbage.zarr", d, "target", target_splits, labels=garbage),
            "frame_layers_only": write_cache(folder / "zh-frames.zarr", d, "target", target_splits, segment_layers=(0, 2)),
            "no_segments": write_cache(folder / "zh-none.zarr", d, "target", target_splits, segment_layers=())}


@pytest.fixture(scope="module")
def runs(caches, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    table = train(caches["source"], caches["target"], methods=["last", "lam", "lam+vowel"], anchors=[2, 3],
                  seeds=[0, 1], out_dir=out, vowel_lambda=50.0, **FAST)
    return out, table


def test_vowel_runs_are_named_and_record_their_segments(caches, runs):
    out, table = runs
    d = caches["planted"]
    assert [row["method"] for row in table] == ["last", "anchors-only", "lam", "lam+vowel"]  # with lam's ablation
    config = json.loads((out / "lam+vowel/seed1/config.json").read_text())
    assert config["align"] == "vowel" and config["vowel_lambda"] == 50.0 and config["segment_layers"] == [2, 3]
    assert config["estimator"]["method"] == "lam" and config["estimator"]["align"] == "vowel"
    source_vowels, target_vowels = segments_of(d, "source", np.arange(200))[1], segments_of(d, "target", np.arange(150))[1]
    assert config["segments"]["source"]["n"] == len(source_vowels) == 800
    assert config["segments"]["target"] == {"split": "train", "n": len(target_vowels), "labels_read":
                                            "never (vowel classes only)", "vowel_counts": {
                                                v: int(np.sum(target_vowels == v)) for v in "aeiou"}}
    plain = json.loads((out / "lam/seed1/config.json").read_text())
    assert plain["align"] == "utterance" and "segments" not in plain
    assert "loss_vowel" in next(csv.DictReader(open(out / "lam+vowel/seed0/curves.csv")))
    assert "loss_vowel" not in next(csv.DictReader(open(out / "lam/seed0/curves.csv")))
    assert "| lam+vowel |" in (out / "results.md").read_text()
    reported = group_runs(read_runs(out)[0], METHOD_ORDER)
    assert [(r.label, len(r.runs)) for r in reported] == [("last", 2), ("anchors-only", 2), ("lam", 2),
                                                         ("lam+vowel", 2)]
    trained = json.loads((out / "lam+vowel/seed0/metrics.json").read_text())["target_test"]
    assert evaluate(out / "lam+vowel/seed0", caches["target"], split="test",
                    out_dir=caches["folder"] / "eval").metrics == trained


def test_vowel_runs_read_no_target_label_and_repeat_exactly(caches, runs, tmp_path):
    out, _ = runs
    train(caches["source"], caches["garbage"], methods=["lam+vowel"], anchors=[2, 3], seeds=[0, 1],
          out_dir=tmp_path, vowel_lambda=50.0, **FAST)
    for seed in (0, 1):
        clean, dirty = out / "lam+vowel" / f"seed{seed}", tmp_path / "lam+vowel" / f"seed{seed}"
        for name in ("predictions.csv", "model.safetensors"):
            assert (clean / name).read_bytes() == (dirty / name).read_bytes()
        clean_m, dirty_m = (json.loads((f / "metrics.json").read_text()) for f in (clean, dirty))
        assert clean_m["source_dev"] == dirty_m["source_dev"] and clean_m["best_epoch"] == dirty_m["best_epoch"]
    assert clean_m["target_test"] != dirty_m["target_test"]  # the garbage does reach the scores


@pytest.mark.slow  # starting worker processes takes seconds
def test_parallel_vowel_runs_share_the_segments_and_give_the_sequential_results(caches, runs, tmp_path):
    out, table = runs
    parallel = train(caches["source"], caches["target"], methods=["last", "lam", "lam+vowel"], anchors=[2, 3],
                     seeds=[0, 1], out_dir=tmp_path, vowel_lambda=50.0, jobs=2, **FAST)
    assert parallel == table
    for seed in (0, 1):
        run = f"lam+vowel/seed{seed}/model.safetensors"
        assert (tmp_path / run).read_bytes() == (out / run).read_bytes()


def test_align_vowel_on_the_command_line_and_its_errors(caches, tmp_path):
    runner = CliRunner()

    def sers_train(target, *extra):
        return runner.invoke(main, ["train", "--source", str(caches["source"]), "--target", str(target),
                                    "--anchors", "2,3", "--seeds", "0", "--epochs", "2", "--hidden", "8",
                                    "--quiet", "--no-plots", "-o", str(tmp_path / "runs"), *extra])

    result = sers_train(caches["target"], "--method", "last,lam-gl", "--align", "vowel", "--vowel-lambda", "20")
    assert result.exit_code == 0, result.output
    assert "lam-gl+vowel" in result.output
    config = json.loads((tmp_path / "runs/lam-gl+vowel/seed0/config.json").read_text())
    assert config["vowel_lambda"] == 20.0 and "--align vowel" in config["command"]
    assert json.loads((tmp_path / "runs/last/seed0/config.json").read_text())["align"] == "utterance"
    for target, extra, message in [
            (caches["no_segments"], ["--method", "lam", "--align", "vowel"],
             "zh-none.zarr: no vowel segments, which --align vowel needs; extract the corpus with --alignments"),
            (caches["frame_layers_only"], ["--method", "lam+vowel"],
             "stored for layers [0, 2], but --align vowel needs the anchor layers [3]; "
             "`sers segments` covers only the frame layers"),
            (caches["target"], ["--method", "last,coral", "--align", "vowel"], "--method has neither"),
            (caches["target"], ["--method", "coral+vowel"], "coral+vowel: vowel-level alignment works on anchor layers")]:
        result = sers_train(target, *extra, "--overwrite")
        assert result.exit_code == 1 and "error: " in result.output and message in result.output, result.output
    assert (tmp_path / "runs/lam-gl+vowel/seed0/config.json").exists()  # a refused command deletes nothing


def test_a_training_split_without_vowel_segments_is_an_error(caches, tmp_path):
    with sers.cache.open(caches["target"]) as cache:  # the dev utterances have no alignments
        assert set(cache.segments.split) == {"train", "test"}
    with pytest.raises(SersError, match=r"zh.h5: no vowel segments in split 'dev', whose utterances train the "
                                        r"target side of --align vowel"):
        train(caches["source"], caches["target"], methods=["lam+vowel"], anchors=[2, 3], target_train="dev",
              out_dir=tmp_path, **FAST)
