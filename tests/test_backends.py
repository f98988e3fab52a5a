"""`sers train --backend dask|ray`: a real local cluster runs the sweep, with the sequential run's results."""
import csv
import json
import os

import numpy as np
import pytest

from sers.synth.planted import planted_corpora
from sers.pipeline.train import train

from test_train import FAST, write_cache

SWEEP = dict(methods=["last", "lam"], anchors=[2, 3], seeds=[0, 1], **FAST)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two planted caches and the sequential (jobs=1) run of a 2 methods x 2 seeds sweep."""
    folder = tmp_path_factory.mktemp("sweep")
    d = planted_corpora(n_source=160, n_target=160, seed=5)
    source = write_cache(folder / "en.zarr", d["X_source"], d["y_source"], ["train"] * 110 + ["dev"] * 50, "en")
    target = write_cache(folder / "zh.zarr", d["X_target"], d["y_target"], ["train"] * 80 + ["test"] * 80, "zh")
    table = train(source, target, out_dir=folder / "sequential", **SWEEP)
    return source, target, folder / "sequential", table


def _outputs(out_dir):
    """What a user reads from a sweep: every run's predictions and metrics, by method and seed."""
    runs = {}
    for metrics_file in sorted(out_dir.glob("*/seed*/metrics.json")):
        run = metrics_file.parent
        predictions = list(csv.DictReader(open(run / "predictions.csv")))
        runs[(run.parent.name, run.name)] = (json.loads(metrics_file.read_text()),
                                             [(r["id"], r["predicted"]) for r in predictions])
    return runs


def _same_results(out_dir, table, sequential_dir, sequential_table):
    # last, lam and lam's ablation (anchors-only) x 2 seeds
    assert _outputs(out_dir).keys() == _outputs(sequential_dir).keys() and len(_outputs(out_dir)) == 6
    for key, (metrics, predicted) in _outputs(out_dir).items():
        seq_metrics, seq_predicted = _outputs(sequential_dir)[key]
        assert predicted == seq_predicted, key
        assert metrics["best_epoch"] == seq_metrics["best_epoch"]
        assert metrics["target_test"]["uar"] == pytest.approx(seq_metrics["target_test"]["uar"], abs=1e-9)
    assert [row["method"] for row in table] == [row["method"] for row in sequential_table]
    for row, seq in zip(table, sequential_table):
        assert row["target_uar_mean"] == pytest.approx(seq["target_uar_mean"], abs=1e-9)


def test_dask_local_cluster_sweep_equals_the_sequential_run(sweep, tmp_path, monkeypatch):
    """Workers run in another directory (as on a cluster): a relative -o must still land here."""
    distributed = pytest.importorskip("distributed")
    source, target, sequential_dir, sequential_table = sweep
    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        client.run(os.chdir, str(elsewhere))
        client.run(_one_torch_thread)
        table = train(source, target, out_dir="runs", jobs=2, backend="dask", **SWEEP)
    assert not list(elsewhere.iterdir()), "a worker wrote relative to its own directory"
    _same_results(tmp_path / "runs", table, sequential_dir, sequential_table)


def test_ray_local_sweep_equals_the_sequential_run(sweep, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    source, target, sequential_dir, sequential_table = sweep
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        table = train(source, target, out_dir="runs", jobs=2, backend="ray", **SWEEP)
    finally:
        ray.shutdown()
    _same_results(tmp_path / "runs", table, sequential_dir, sequential_table)


def _one_torch_thread():
    import torch
    torch.set_num_threads(1)  # as the sequential run in this suite (conftest), so results match bit for bit
