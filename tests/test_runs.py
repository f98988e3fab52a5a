"""sers.runs: the run-folder schema, its readers, and the legacy spellings they accept."""
import json

import pytest

from sers import runs
from sers.errors import SersError

EVALUATION = {"uar": 0.5, "macro_f1": 0.4, "accuracy": 0.6, "n": 10}


def test_run_metrics_round_trip():
    metrics = runs.RunMetrics("source-dev", 3, {runs.SOURCE_DEV: dict(EVALUATION), runs.TARGET_TEST: None})
    values = metrics.to_dict()
    assert list(values) == ["selection", "best_epoch", "source_dev", "target_test"]
    assert runs.RunMetrics.from_dict(values) == metrics
    with_dev = runs.RunMetrics("target-dev", 1, {runs.SOURCE_DEV: EVALUATION, runs.TARGET_TEST: EVALUATION,
                                                 runs.TARGET_DEV: EVALUATION})
    assert runs.RunMetrics.from_dict(json.loads(json.dumps(with_dev.to_dict()))) == with_dev


@pytest.mark.parametrize("legacy", [
    {"target-test": EVALUATION, "source-dev": EVALUATION},
    {"target": {"test": EVALUATION}, "source": {"dev": EVALUATION}},
    {"results": {"test": {"metrics": EVALUATION}, "dev": EVALUATION}},
])
def test_legacy_spellings_are_read(legacy):
    metrics = runs.RunMetrics.from_dict(legacy)
    assert metrics.target_test == EVALUATION and metrics.source_dev == EVALUATION
    assert metrics.selection is None and metrics.best_epoch is None


def _write(folder, config=None, metrics=None, weights=True):
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / runs.CONFIG).write_text(json.dumps(config))
    if metrics is not None:
        (folder / runs.METRICS).write_text(json.dumps(metrics))
    if weights:
        (folder / runs.WEIGHTS).write_bytes(b"")


def test_find_read_and_check_runs(tmp_path):
    model = {"model_id": "tiny", "num_layers": 4, "hidden_size": 8}
    config = {"method": "lam", "seed": 0, "features": "pooled", "stat": "mean", "data": {"source": {"model": model}}}
    metrics = {"selection": "source-dev", "best_epoch": 2, "source_dev": EVALUATION, "target_test": EVALUATION}
    lam = runs.run_folder(tmp_path, "lam", 0)
    _write(lam, config, metrics)
    _write(lam / runs.EVALUATIONS / "zh-test", metrics={"metrics": EVALUATION}, weights=False)  # not a run
    _write(runs.run_folder(tmp_path, "last", 1), {"method": "last", "data": {}})  # trained, not scored
    scored, unfinished = runs.find_runs(tmp_path)
    assert scored == [lam] and unfinished == [runs.run_folder(tmp_path, "last", 1)]
    run = runs.read_run(lam)
    assert run.config.method == "lam" and run.config.seed == 0 and run.config.stat == "mean"
    assert run.metrics.best_epoch == 2 and run.metrics.target_test == EVALUATION
    assert runs.read_config(lam).to_dict() == config
    assert runs.earlier_runs(tmp_path) == sorted([lam, runs.run_folder(tmp_path, "last", 1)])


def test_read_config_says_what_is_not_a_run(tmp_path):
    with pytest.raises(SersError, match="not a run folder"):
        runs.read_config(tmp_path)
    _write(tmp_path / "a", {"method": "lam"})
    with pytest.raises(SersError, match="no 'data' section"):
        runs.read_config(tmp_path / "a")


@pytest.mark.parametrize("field, value, named", [
    ("seed", 1.5, "field 'seed' must be an integer, not 1.5"),
    ("seed", True, "field 'seed' must be an integer, not true"),
    ("layers", [1, 1], "field 'layers' names layer 1 twice"),
    ("layers", [2, 4], "field 'layers[1]' is layer 4, out of range (0-3)"),
    ("features", "frame", "field 'features' must be one of pooled, frames"),
    ("frame_stride", 0, "field 'frame_stride' must be at least 1"),
    ("speaker_standardised", "yes", "field 'speaker_standardised' must be true or false"),
    ("data", {"source": {"model": {"model_id": "tiny", "num_layers": "4", "hidden_size": 8}}},
     "field 'data.source.model.num_layers' must be an integer"),
    ("data", {"source": {}}, "field 'data.source.model' must be an object, not null"),
])
def test_a_damaged_config_is_one_line_naming_the_field(tmp_path, field, value, named):
    model = {"model_id": "tiny", "num_layers": 4, "hidden_size": 8}
    config = {"method": "lam", "seed": 0, "layers": [1, 2], "data": {"source": {"model": model}}, field: value}
    _write(tmp_path, config)
    with pytest.raises(SersError, match="config.json: " + __import__("re").escape(named)):
        runs.read_config(tmp_path)


def test_scores_of_a_damaged_metrics_json_are_refused(tmp_path):
    _write(tmp_path, {"method": "lam", "data": {}}, {"target_test": {**EVALUATION, "uar": "0.5"}})
    with pytest.raises(SersError, match=r"metrics.json: field 'target_test.uar' must be a number from 0 to 1"):
        runs.read_run(tmp_path)
