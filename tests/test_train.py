"""sers.pipeline.train / evaluate and the `sers train|evaluate|predict` commands, on planted caches."""
import csv
import importlib.util
import json
import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import sers.cache
from sers.synth.planted import planted_corpora
from sers.cli import main
from sers.errors import SersError
from sers.pipeline.evaluate import evaluate, predict
from sers.classifiers.anchors import anchors_for, load_anchors
from sers.pipeline.train import train

# Deep CORAL's scale: these pipeline tests check folders, data flow and the planted anchors'
# transfer; on 32-row batches of width 32 the relative scale at λ=1 mostly sees the sampling
# noise of the covariances (see docs/method.md), which is not what they test.
# One λ: the default trains three candidates per aligning method (tested below on its own).
FAST = dict(hidden=32, epochs=6, batch_size=32, progress=False, plots=False, coral_scale="4d2", lambda_=1.0)


def write_cache(path, X, labels, splits, language, **attrs):
    n = len(labels)
    attrs = {"model_id": "planted", "sample_rate": 16000, "frame_rate": 50, **attrs}
    return sers.cache.from_arrays(path, np.ascontiguousarray(X.transpose(1, 0, 2)),
                                  {"id": [f"{language}-{i:04d}" for i in range(n)], "label": list(labels),
                                   "split": list(splits), "language": [language] * n}, **attrs)


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """Source en (train/dev), target zh (train/dev/test), and zh again with garbage labels."""
    folder = tmp_path_factory.mktemp("caches")
    d = planted_corpora(n_source=300, n_target=360, seed=3)
    target_splits = ["train"] * 150 + ["dev"] * 60 + ["test"] * 150
    garbage = np.random.default_rng(9).choice(["A", "H", "N", "S", "zzz", ""], size=360)
    source_splits = ["train"] * 200 + ["dev"] * 100
    return {"source": write_cache(folder / "en.zarr", d["X_source"], d["y_source"], source_splits, "en"),
            "target": write_cache(folder / "zh.zarr", d["X_target"], d["y_target"], target_splits, "zh"),
            "garbage": write_cache(folder / "zh-garbage.h5", d["X_target"], garbage, target_splits, "zh"),
            "other_model": write_cache(folder / "other.zarr", d["X_target"][:, :5], d["y_target"], target_splits, "zh"),
            "folder": folder}


@pytest.fixture(scope="module")
def runs(caches, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    table = train(caches["source"], caches["target"], methods=["last", "lam"], anchors=[2, 3], seeds=[0, 1],
                  out_dir=out, **{**FAST, "plots": True})
    return out, table


def test_run_folders_hold_config_metrics_predictions_curves_and_weights(runs):
    out, table = runs
    # lam's ablation (its layers and heads without the CORAL term) is trained beside it
    assert [row["method"] for row in table] == ["last", "anchors-only", "lam"]
    run = out / "lam" / "seed1"
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.json", "predictions.csv", "curves.csv",
                                               "curves.png", "model.safetensors"}
    config = json.loads((run / "config.json").read_text())
    assert config["selection"] == "source-dev" and config["target_labels_used_for_selection"] is False
    assert config["layers"] == [2, 3, 5] and config["estimator"]["seed"] == 1
    assert config["data"]["source"]["dev"] == {"split": "dev", "n": 100, "labels_read": "model selection",
                                               "label_counts": config["data"]["source"]["dev"]["label_counts"]}
    assert config["data"]["target"]["train"]["n"] == 150 and "label_counts" not in config["data"]["target"]["test"]
    metrics = json.loads((run / "metrics.json").read_text())
    for part in ("source_dev", "target_test"):
        assert set(metrics[part]) >= {"uar", "macro_f1", "accuracy", "per_class_recall", "confusion"}
    assert metrics["target_test"]["n"] == 150 and np.sum(metrics["target_test"]["confusion"]) == 150
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    assert len(rows) == 100 + 150 and {r["side"] for r in rows} == {"source", "target"}
    assert list(rows[0]) == ["side", "split", "id", "predicted", "p_A", "p_H", "p_N", "p_S"]
    curves = list(csv.DictReader(open(run / "curves.csv")))
    assert [int(r["epoch"]) for r in curves] == list(range(1, len(curves) + 1)) and "dev_uar" in curves[0]
    # safetensors: an 8-byte header length, then JSON; nothing to unpickle
    raw = (run / "model.safetensors").read_bytes()
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    assert json.loads(header["__metadata__"]["sers"])["format"].startswith("sers-layer-anchoring-classifier")
    results = list(csv.DictReader(open(out / "results.csv")))
    lam_uars = [json.loads((out / f"lam/seed{s}/metrics.json").read_text())["target_test"]["uar"] for s in (0, 1)]
    assert float(results[2]["target_uar_mean"]) == pytest.approx(np.mean(lam_uars))
    assert float(results[2]["target_uar_std"]) == pytest.approx(np.std(lam_uars, ddof=1))
    assert "| lam |" in (out / "results.md").read_text()
    assert float(results[2]["target_uar_mean"]) > float(results[0]["target_uar_mean"]) + 0.2
    # the interval holds the mean; the gains are paired differences with their own intervals
    lam = results[2]
    assert float(lam["target_uar_ci_low"]) < float(lam["target_uar_mean"]) < float(lam["target_uar_ci_high"])
    assert lam["ablation"] == "anchors-only" and results[0]["alignment_gain"] == ""
    for key, other in (("gain_vs_last", 0), ("alignment_gain", 1)):
        assert float(lam[key]) == pytest.approx(float(lam["target_uar_mean"]) - float(results[other]["target_uar_mean"]))
        assert float(lam[f"{key}_ci_low"]) <= float(lam[key]) <= float(lam[f"{key}_ci_high"])
        assert lam[f"{key}_significant"] == str(float(lam[f"{key}_ci_low"]) > 0 or float(lam[f"{key}_ci_high"]) < 0)
    assert lam["gain_vs_last_significant"] == "True"  # planted anchors: +0.2 and more over last
    assert "alignment gain" in (out / "results.md").read_text() and "bootstrap" in (out / "results.md").read_text()


def test_garbage_target_labels_change_nothing_but_the_target_scores(caches, runs, tmp_path):
    out, _ = runs
    train(caches["source"], caches["garbage"], methods=["last", "lam"], anchors=[2, 3], seeds=[0, 1],
          out_dir=tmp_path, **FAST)
    for method in ("last", "lam"):
        for seed in (0, 1):
            clean, dirty = out / method / f"seed{seed}", tmp_path / method / f"seed{seed}"
            assert (clean / "predictions.csv").read_bytes() == (dirty / "predictions.csv").read_bytes()
            assert (clean / "model.safetensors").read_bytes() == (dirty / "model.safetensors").read_bytes()
            clean_m, dirty_m = (json.loads((f / "metrics.json").read_text()) for f in (clean, dirty))
            assert json.dumps(clean_m["source_dev"]) == json.dumps(dirty_m["source_dev"])
            assert clean_m["best_epoch"] == dirty_m["best_epoch"]


def test_same_command_same_metrics(caches, runs, tmp_path):
    out, _ = runs
    train(caches["source"], caches["target"], methods=["lam"], anchors=[2, 3], seeds=[1], out_dir=tmp_path, **FAST)
    assert (tmp_path / "lam/seed1/metrics.json").read_bytes() == (out / "lam/seed1/metrics.json").read_bytes()


def test_target_dev_selection_is_marked_everywhere(caches, tmp_path):
    table = train(caches["source"], caches["target"], methods=["coral"], seeds=[0], out_dir=tmp_path,
                  target_dev="dev", **FAST)
    assert table[0]["selection"] == "target-dev"
    config = json.loads((tmp_path / "coral/seed0/config.json").read_text())
    metrics = json.loads((tmp_path / "coral/seed0/metrics.json").read_text())
    assert config["target_labels_used_for_selection"] is True and config["data"]["target"]["dev"]["n"] == 60
    assert metrics["selection"] == "target-dev" and metrics["target_dev"]["n"] == 60
    assert "target-selected" in (tmp_path / "results.md").read_text()


def test_anchors_chosen_with_target_labels_are_marked(caches, tmp_path):
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"measure": "cka", "strategy": "topk", "layers": [2, 3],
                                   "chosen_with_target_labels": "dev"}))
    table = train(caches["source"], caches["target"], methods=["last", "lam"], anchors=anchors, seeds=[0],
                  out_dir=tmp_path / "runs", **FAST)
    assert [row["anchors_target_labels"] for row in table] == ["", "dev", "dev"]  # last, anchors-only, lam
    config = json.loads((tmp_path / "runs/lam/seed0/config.json").read_text())
    assert config["anchors_chosen_with_target_labels"] == "dev"
    assert "chosen with labelled TARGET split dev" in (tmp_path / "runs/results.md").read_text()


def test_evaluate_and_predict_reproduce_the_training_outputs(caches, runs, tmp_path):
    out, _ = runs
    run = out / "lam" / "seed0"
    result = evaluate(run, caches["target"], split="test", out_dir=tmp_path / "eval")
    trained = json.loads((run / "metrics.json").read_text())["target_test"]
    assert result.metrics == trained
    path = predict(run, caches["target"], tmp_path / "p.csv", split="test").path
    trained_rows = [r for r in csv.DictReader(open(run / "predictions.csv")) if r["side"] == "target"]
    new_rows = list(csv.DictReader(open(path)))
    assert [(r["id"], r["predicted"], r["p_A"]) for r in new_rows] == \
           [(r["id"], r["predicted"], r["p_A"]) for r in trained_rows]
    evaluated = list(csv.DictReader(open(tmp_path / "eval" / "predictions.csv")))
    assert evaluated[0]["label"] != "" and len(evaluated) == 150


def test_a_cache_of_another_model_is_refused(caches, runs):
    out, _ = runs
    with pytest.raises(SersError, match=r"5 layers x 32.*6 layers x 32.*num_layers differs"):
        evaluate(out / "last" / "seed0", caches["other_model"])
    with pytest.raises(SersError, match="caches come from different models"):
        train(caches["source"], caches["other_model"], methods=["last"], seeds=[0], out_dir=caches["folder"] / "x")


def test_evaluate_refuses_features_of_the_other_whisper_input(tmp_path):
    d = planted_corpora(n_source=40, n_target=40, seed=1)
    splits = ["train"] * 20 + ["dev"] * 10 + ["test"] * 10
    whisper = dict(model_family="whisper", model_id="whisper-planted")
    source = write_cache(tmp_path / "en.zarr", d["X_source"], d["y_source"], splits, "en", whisper_input="trimmed",
                         **whisper)
    trimmed = write_cache(tmp_path / "zh.zarr", d["X_target"], d["y_target"], splits, "zh", whisper_input="trimmed",
                          **whisper)
    padded = write_cache(tmp_path / "zh-padded.zarr", d["X_target"], d["y_target"], splits, "zh",
                         whisper_input="padded", **whisper)
    train(source, trimmed, methods=["last"], seeds=[0], out_dir=tmp_path / "runs", **FAST)
    run = tmp_path / "runs" / "last" / "seed0"
    assert json.loads((run / "config.json").read_text())["data"]["source"]["model"]["whisper_input"] == "trimmed"
    assert evaluate(run, trimmed, split="test").metrics["n"] == 10
    with pytest.raises(SersError, match=r"zh-padded.zarr was extracted with --whisper-input padded but run .* was "
                                        r"trained on --whisper-input trimmed features"):
        evaluate(run, padded, split="test")


def test_missing_splits_and_anchors_are_one_line_errors(caches, tmp_path):
    with pytest.raises(SersError, match=r"no utterances in split 'valid'.*splits: dev, test, train.*--target-test"):
        train(caches["source"], caches["target"], methods=["last"], target_test="valid", out_dir=tmp_path)
    d = planted_corpora(n_source=20, n_target=0)
    no_dev = write_cache(tmp_path / "no-dev.zarr", d["X_source"], d["y_source"], ["train"] * 10 + ["test"] * 10, "en")
    with pytest.raises(SersError, match=r"no 'dev' or 'validation' split to select the model on "
                                        r"\(splits: test, train\).*--source-dev"):
        train(no_dev, caches["target"], methods=["last"], out_dir=tmp_path)
    with pytest.raises(SersError, match="method lam needs --anchors"):
        train(caches["source"], caches["target"], methods=["lam"], out_dir=tmp_path)


def test_anchors_json_of_both_strategies(tmp_path):
    topk = tmp_path / "topk.json"
    topk.write_text(json.dumps({"measure": "coral", "strategy": "topk", "layers": [7, 3, 4, 5], "scores": {}}))
    group = tmp_path / "group.json"
    group.write_text(json.dumps({"measure": "coral", "strategy": "group", "layers": [3, 4, 5, 8, 9, 10],
                                 "groups": [[8, 9, 10], [3, 4, 5]], "similarity_file": "sim.json"}))
    assert anchors_for("lam", load_anchors(topk)) == [3, 4, 5, 7]
    assert anchors_for("lam-gl", load_anchors(topk)) == [[3, 4, 5], [7]]
    assert anchors_for("lam-gl", load_anchors(group)) == [[8, 9, 10], [3, 4, 5]]
    assert anchors_for("lam", load_anchors(group)) == [3, 4, 5, 8, 9, 10]
    assert anchors_for("last", load_anchors(group)) is None
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SersError, match="needs a 'layers' list"):
        load_anchors(tmp_path / "bad.json")


@pytest.mark.skipif(importlib.util.find_spec("distributed") is not None, reason="dask is installed here")
def test_dask_backend_without_dask_says_how_to_install(caches, tmp_path):
    with pytest.raises(SersError, match=r"pip install 'sers-lam\[dask\]'"):
        train(caches["source"], caches["target"], methods=["last"], seeds=[0, 1], out_dir=tmp_path, jobs=2,
              backend="dask", **FAST)


def test_cli_train_evaluate_predict(caches, tmp_path):
    runner = CliRunner()
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"strategy": "group", "layers": [2, 3], "groups": [[2, 3]]}))
    result = runner.invoke(main, ["train", "--source", str(caches["source"]), "--target", str(caches["target"]),
                                  "--method", "wsum,lam-gl", "--anchors", str(anchors), "--seeds", "0",
                                  "--epochs", "3", "--hidden", "16", "--normalize", "per-language",
                                  "--quiet", "--no-plots",
                                  "-o", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "lam-gl" in result.output and "source dev UAR" in result.output
    config = json.loads((tmp_path / "runs/lam-gl/seed0/config.json").read_text())
    assert config["anchors"] == [[2, 3]] and config["command"].startswith("sers train")
    result = runner.invoke(main, ["evaluate", str(tmp_path / "runs/lam-gl/seed0"), str(caches["target"]),
                                  "--split", "test", "--stats", "cache", "-o", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "UAR" in result.output and (tmp_path / "ev/metrics.json").is_file()
    result = runner.invoke(main, ["predict", str(tmp_path / "runs/wsum/seed0"), str(caches["target"]),
                                  "-o", str(tmp_path / "all.csv")])
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(open(tmp_path / "all.csv")))) == 360
    # A second evaluation or prediction into the same place keeps the first unless asked.
    kept = (tmp_path / "ev/metrics.json").read_bytes()
    again = runner.invoke(main, ["evaluate", str(tmp_path / "runs/wsum/seed0"), str(caches["target"]),
                                 "--split", "test", "-o", str(tmp_path / "ev")])
    assert again.exit_code == 1 and f"{tmp_path / 'ev' / 'metrics.json'} exists: pass --overwrite" in again.output
    assert (tmp_path / "ev/metrics.json").read_bytes() == kept
    again = runner.invoke(main, ["evaluate", str(tmp_path / "runs/wsum/seed0"), str(caches["target"]),
                                 "--split", "test", "-o", str(tmp_path / "ev"), "--overwrite", "--quiet"])
    assert again.exit_code == 0 and again.output == ""
    assert json.loads((tmp_path / "ev/metrics.json").read_text())["run"].endswith("wsum/seed0")
    again = runner.invoke(main, ["predict", str(tmp_path / "runs/wsum/seed0"), str(caches["target"]),
                                 "-o", str(tmp_path / "all.csv")])
    assert again.exit_code == 1 and "all.csv exists: pass --overwrite to replace it" in again.output
    result = runner.invoke(main, ["train", "--source", str(caches["source"]), "--target", str(caches["target"]),
                                  "--method", "lam", "-o", str(tmp_path / "x")])
    assert result.exit_code == 1 and "error: method lam needs --anchors" in result.output


def test_parallel_runs_give_the_sequential_results(caches, runs, tmp_path):
    out, table = runs
    parallel = train(caches["source"], caches["target"], methods=["last", "lam"], anchors=[2, 3], seeds=[0, 1],
                     out_dir=tmp_path, jobs=2, **FAST)
    assert parallel == table
    assert (tmp_path / "lam/seed1/predictions.csv").read_bytes() == (out / "lam/seed1/predictions.csv").read_bytes()


def test_target_labels_unknown_to_the_source_are_reported(caches, tmp_path):
    lines = []
    train(caches["source"], caches["garbage"], methods=["last"], seeds=[0], out_dir=tmp_path, log=lines.append,
          **FAST)
    note = [line for line in lines if line.startswith("note: target test utterances with labels")]
    assert len(note) == 1 and "zzz " in note[0]


def test_a_runs_folder_is_never_mixed(caches, tmp_path):
    train(caches["source"], caches["target"], methods=["last"], seeds=[0, 1], out_dir=tmp_path, **FAST)
    with pytest.raises(SersError, match=r"holds the runs of another sweep \(seeds: \[0, 1\] -> \[0\]\); pass --overwrite"):
        train(caches["source"], caches["target"], methods=["last"], seeds=[0], out_dir=tmp_path, **FAST)
    train(caches["source"], caches["target"], methods=["last"], seeds=[0], out_dir=tmp_path, overwrite=True, **FAST)
    assert sorted(p.name for p in (tmp_path / "last").iterdir()) == ["seed0"]



# -- candidates: several λ and anchor sets, one kept by a label-free criterion --------------------

def _anchor_files(folder):
    files = []
    for name, layers in (("pair", [2, 3]), ("single", [1])):
        path = folder / f"{name}.json"
        path.write_text(json.dumps({"measure": "coral", "strategy": "topk", "layers": layers}))
        files.append(path)
    return files


@pytest.mark.parametrize("criterion", ["im", "dev", "source-dev"])
def test_candidates_are_trained_and_the_best_by_the_criterion_is_kept(caches, tmp_path, criterion):
    files = _anchor_files(tmp_path)
    table = train(caches["source"], caches["target"], methods=["last", "lam"], anchors=files,
                  select=criterion, seeds=[0, 1], out_dir=tmp_path / "runs", **{**FAST, "lambda_": [0.0, 3.0]})
    assert [row["method"] for row in table] == ["last", "anchors-only", "lam"]
    seed_dir = tmp_path / "runs/lam/seed1"
    tags = sorted(p.name for p in (seed_dir / "candidates").iterdir())
    assert tags == ["lambda=0,anchors=pair", "lambda=0,anchors=single", "lambda=3,anchors=pair",
                    "lambda=3,anchors=single"]
    assert not (tmp_path / "runs/last/seed1/candidates").exists()  # no λ, no anchors: one candidate
    chosen = json.loads((seed_dir / "config.json").read_text())["candidate_selection"]
    scores = {c["tag"]: c["scores"][criterion] for c in chosen["candidates"]}
    assert chosen["criterion"] == criterion and chosen["reads_target_labels"] is False
    assert chosen["chosen"] == max(scores, key=scores.get)
    # the seed folder is the chosen candidate, files and all
    for name in ("model.safetensors", "predictions.csv", "metrics.json"):
        assert (seed_dir / name).read_bytes() == (seed_dir / "candidates" / chosen["chosen"] / name).read_bytes()
    config = json.loads((seed_dir / "config.json").read_text())
    assert config["estimator"]["lambda_"] == float(chosen["chosen"].split(",")[0].split("=")[1])
    # the tables name the rule that chose the candidates, apart from the epochs' source dev split
    assert [row["candidates_selected_by"] for row in table] == ["", criterion, criterion]
    assert (f"epochs chosen on the source dev split (no target labels used in training); candidates (λ, groups) "
            f"chosen per seed by --select {criterion} (label-free") in (tmp_path / "runs/results.md").read_text()


def test_target_labels_cannot_change_which_candidate_is_kept(caches, tmp_path):
    files = _anchor_files(tmp_path)
    chosen = {}
    for name in ("target", "garbage"):  # the same target features, labels replaced by garbage
        train(caches["source"], caches[name], methods=["coral", "lam"], anchors=files,
              select="dev", seeds=[0, 1], out_dir=tmp_path / name, **{**FAST, "lambda_": [0.3, 1.0, 10.0]})
        chosen[name] = {str(p.parent.relative_to(tmp_path / name)): json.loads(p.read_text())["candidate_selection"]
                        for method in ("coral", "lam") for p in (tmp_path / name).glob(f"{method}/seed*/config.json")}
    assert len(chosen["target"]) == 4 and chosen["target"] == chosen["garbage"]


def test_candidate_options_are_checked(caches, tmp_path):
    with pytest.raises(SersError, match="--select must be one of bnm\+source-dev, source-dev, im, dev, .*not 'target-test'"):
        train(caches["source"], caches["target"], methods=["coral"], select="target-test",
              seeds=[0], out_dir=tmp_path, **{**FAST, "lambda_": [1.0, 3.0]})
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--source", str(caches["source"]), "--target", str(caches["target"]),
                                  "--method", "coral", "--lambda", "1,x", "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "'1,x': give a number or a comma list like 0.3,1,3" in result.output
    result = runner.invoke(main, ["train", "--source", str(caches["source"]), "--target", str(caches["target"]),
                                  "--method", "lam", "--anchors", "2,3", "--anchors", "1", "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "several --anchors must each be an anchors.json file" in result.output


def test_the_result_and_the_run_folders_follow_the_schema(runs):
    from sers import runs as run_schema
    from sers.pipeline.train import format_results

    out, table = runs
    assert table.summary() == f"{format_results(table)}\nwrote {out}/results.csv, results.md and one folder per run"
    scored, unfinished = run_schema.find_runs(out)
    assert [(p.parent.name, p.name) for p in scored] == [("anchors-only", "seed0"), ("anchors-only", "seed1"),
                                                         ("lam", "seed0"), ("lam", "seed1"), ("last", "seed0"),
                                                         ("last", "seed1")] and not unfinished
    run = run_schema.read_run(scored[2])
    assert run.config.method == "lam" and run.config.values["estimator"]["anchors"] == [2, 3]
    assert run.metrics.to_dict() == json.loads((scored[2] / "metrics.json").read_text())


def test_settings_and_splits_are_objects_or_their_fields_as_keywords():
    from sers.pipeline.train import Splits, TrainSettings, _grouped

    settings, splits = _grouped(TrainSettings(hidden=64), None, {"epochs": 3, "target_dev": "dev"})
    assert settings == TrainSettings(hidden=64, epochs=3) and splits == Splits(target_dev="dev")
    assert "vowel_lambda" not in settings.estimator_params("utterance")
    with pytest.raises(TypeError, match="unexpected keyword arguments hiden"):
        train("en.zarr", "zh.zarr", hiden=64)


def test_lam_gl_chooses_its_group_setting_without_target_labels(caches, tmp_path):
    """`sers anchor`'s default file gives lam its top-k layers and lam-gl every group setting; the
    settings, and the one each seed keeps, are the same when the target labels are garbage."""
    from sers.pipeline.anchor import anchor

    chosen, files = {}, {}
    for name in ("target", "garbage"):
        out = tmp_path / name
        anchors = anchor([caches["source"], caches[name]], out / "anchors.json", similarity_dir=out / "sim")
        files[name] = {k: v for k, v in anchors.items() if k != "similarity_file"}
        train(caches["source"], caches[name], methods=["lam", "lam-gl"], anchors=out / "anchors.json",
              seeds=[0, 1], out_dir=out / "runs", **{**FAST, "lambda_": [0.0, 1.0]})
        chosen[name] = {method: [json.loads((out / f"runs/{method}/seed{s}/config.json").read_text())
                                 ["candidate_selection"]["chosen"] for s in (0, 1)]
                        for method in ("lam-gl", "groups-only")}
        lam = json.loads((out / "runs/lam/seed0/config.json").read_text())
        assert lam["anchors"] == anchors["layers"]  # lam reads the single layers, not a group
    assert files["target"] == files["garbage"] and len(files["target"]["group_candidates"]) > 1
    assert chosen["target"] == chosen["garbage"]
    assert all("groups=" in tag for tags in chosen["target"].values() for tag in tags)
