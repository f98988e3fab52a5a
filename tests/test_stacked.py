"""sers.classifiers.stacked: a sweep's heads trained as one stacked model give each run's own results."""
import csv
import json

import numpy as np
import pytest
import torch

from sers.classifiers import stacked
from sers.classifiers.estimator import LayerAnchoringClassifier
from sers.classifiers.stacked import fit_stack, why_not_stacked
from sers.errors import SersError
from sers.pipeline.train import train

from test_train import FAST, caches  # noqa: F401 - the planted caches fixture

LAYERS, WIDTH = 5, 16


def _set(rng, n, shift, classes="abc"):
    y = rng.integers(0, len(classes), n)
    X = {layer: (rng.normal(size=(n, WIDTH)) + 0.3 * y[:, None] + shift).astype(np.float32) for layer in range(LAYERS)}
    return X, np.array(list(classes))[y]


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(0)
    (X, y), (X_target, _), (X_dev, y_dev) = _set(rng, 300, 0.0), _set(rng, 260, 0.5), _set(rng, 120, 0.0)
    return X, y, X_target, X_dev, y_dev


def _both(configs, common, sets, **stack_options):
    """(each estimator fitted alone, the same estimators fitted in one stack)."""
    X, y, X_target, X_dev, y_dev = sets
    alone = [LayerAnchoringClassifier(**common, **c).fit(X, y, X_target, X_dev=X_dev, y_dev=y_dev) for c in configs]
    together = fit_stack([LayerAnchoringClassifier(**common, **c) for c in configs], X, y, X_target, X_dev=X_dev,
                         y_dev=y_dev, **stack_options)
    return alone, together


def _assert_same(alone, together, X_target):
    for one, member in zip(alone, together):
        assert member.best_epoch_ == one.best_epoch_ and member.best_dev_uar_ == one.best_dev_uar_
        assert [r["epoch"] for r in member.history_] == [r["epoch"] for r in one.history_]
        for mine, theirs in zip(member.history_, one.history_):
            assert mine["dev_uar"] == theirs["dev_uar"]
            for name in ("loss_ce", "loss_align", "loss_total"):
                assert mine[name] == pytest.approx(theirs[name], rel=1e-5, abs=1e-7)
        np.testing.assert_allclose(member.predict_proba(X_target), one.predict_proba(X_target), rtol=0, atol=1e-5)


def test_lam_and_anchors_only_seeds_and_lambdas_equal_their_own_fit_with_early_stopping(sets):
    common = dict(anchors=[1, 3], hidden=32, epochs=12, batch_size=32, patience=2)
    configs = ([dict(method="lam", lambda_=lam, seed=seed) for seed in (0, 1, 2) for lam in (0.0, 0.3, 1.0)]
               + [dict(method="anchors-only", seed=seed) for seed in (0, 1)])
    alone, together = _both(configs, common, sets)
    _assert_same(alone, together, sets[2])
    lengths = {len(model.history_) for model in alone}
    assert min(lengths) < 12 and max(lengths) == 12  # some members stopped early, some ran every epoch
    # a member that aligned (λ > 0) has a CORAL term; λ = 0 and the ablation have none
    assert together[2].history_[0]["loss_align"] > 0 and together[0].history_[0]["loss_align"] == 0
    assert together[-1].history_[0]["loss_align"] == 0


def test_last_with_coral_and_concat_groups_with_global_statistics_equal_their_own_fit(sets):
    alone, together = _both([dict(method="last", seed=0), dict(method="last", seed=1),
                             dict(method="coral", lambda_=1.0, seed=0)],
                            dict(hidden=24, epochs=5, batch_size=40, patience=2), sets)
    _assert_same(alone, together, sets[2])
    alone, together = _both([dict(method="lam-gl", lambda_=1.0, seed=0), dict(method="groups-only", seed=4)],
                            dict(anchors=[[1, 2], [3]], hidden=24, epochs=4, batch_size=40, normalize="global",
                                 coral_scale="4d2"), sets)
    _assert_same(alone, together, sets[2])


def test_without_dropout_or_dev_set_the_last_epoch_is_kept_as_in_fit(sets):
    X, y, X_target, _, _ = sets
    common = dict(method="lam", anchors=[2], hidden=16, epochs=3, batch_size=50, dropout=0.0, normalize="none")
    alone = [LayerAnchoringClassifier(**common, seed=s).fit(X, y, X_target) for s in (0, 1)]
    together = fit_stack([LayerAnchoringClassifier(**common, seed=s) for s in (0, 1)], X, y, X_target)
    for one, member in zip(alone, together):
        assert member.best_epoch_ == one.best_epoch_ == 3 and member.best_dev_uar_ is None
        assert member.selection_ is None and "dev_uar" not in member.history_[0]
        np.testing.assert_allclose(member.predict_proba(X_target), one.predict_proba(X_target), atol=1e-5)


def test_a_stack_beyond_its_memory_trains_in_chunks_with_the_same_results(sets):
    configs = [dict(method="lam", lambda_=1.0, seed=seed) for seed in (0, 1, 2)]
    common = dict(anchors=[1], hidden=16, epochs=3, batch_size=32)
    whole = fit_stack([LayerAnchoringClassifier(**common, **c) for c in configs], *sets[:3], X_dev=sets[3],
                      y_dev=sets[4])
    chunked = fit_stack([LayerAnchoringClassifier(**common, **c) for c in configs], *sets[:3], X_dev=sets[3],
                        y_dev=sets[4], memory=1)  # one member per stack
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a.predict_proba(sets[2]), b.predict_proba(sets[2]))


def test_what_cannot_stack_says_why_and_mixed_architectures_are_refused(sets):
    assert why_not_stacked(LayerAnchoringClassifier(method="lam", anchors=[1])) is None
    assert "frame" in why_not_stacked(LayerAnchoringClassifier(method="lam", anchors=[1], features="frames"))
    assert "vowel" in why_not_stacked(LayerAnchoringClassifier(method="lam", anchors=[1], align="vowel"))
    assert "gradient-reversal" in why_not_stacked(LayerAnchoringClassifier(method="dann"))
    assert "learned" in why_not_stacked(LayerAnchoringClassifier(method="wsum"))
    assert "mean" in why_not_stacked(LayerAnchoringClassifier(method="lam-gl", anchors=[[1, 2]], group_weights="mean"))
    with pytest.raises(SersError, match="differ in layers, branches or training settings"):
        fit_stack([LayerAnchoringClassifier(method="last"), LayerAnchoringClassifier(method="lam", anchors=[1])],
                  *sets[:3])
    with pytest.raises(SersError, match="dann: gradient-reversal alignment trains one run at a time; call fit"):
        fit_stack([LayerAnchoringClassifier(method="dann")], *sets[:3])


def _predictions(folder):
    return {path.relative_to(folder): list(csv.reader(open(path)))
            for path in sorted(folder.glob("**/predictions.csv"))}


def test_sers_train_stacked_writes_the_runs_one_at_a_time_would(caches, tmp_path, monkeypatch):  # noqa: F811
    options = dict(FAST, methods=["last", "lam", "dann"], anchors=[2, 3], seeds=[0, 1], lambda_=[0.0, 1.0],
                   patience=2, epochs=5, device="cpu")
    moved = []
    real = stacked.to_device
    monkeypatch.setattr(stacked, "to_device", lambda x, device: moved.append(device) or real(x, device))
    train(caches["source"], caches["target"], out_dir=tmp_path / "stacked", stacked=True, **options)
    # --device cpu goes through the same device-moving code a GPU would (only pinning is skipped)
    assert moved and set(moved) == {torch.device("cpu")}
    train(caches["source"], caches["target"], out_dir=tmp_path / "alone", stacked=False, **options)
    together, alone = _predictions(tmp_path / "stacked"), _predictions(tmp_path / "alone")
    # per seed: last, anchors-only, lam's two candidates and the chosen one, dann's two and the chosen one
    assert sorted(together) == sorted(alone) and len(together) == 2 * 8
    for name in together:
        assert together[name][0] == alone[name][0] and [r[:4] for r in together[name]] == [r[:4] for r in alone[name]]
        np.testing.assert_allclose(np.array([r[4:] for r in together[name][1:]], float),
                                   np.array([r[4:] for r in alone[name][1:]], float), atol=1e-5)
    config = {method: json.loads((tmp_path / "stacked" / method / "seed1" / "config.json").read_text())
              for method in ("last", "lam", "dann")}
    assert config["last"]["trained_by"] == config["lam"]["trained_by"] == "stacked"
    assert config["dann"]["trained_by"] == "per-run"  # gradient reversal is not stacked: trained alone
    assert json.loads((tmp_path / "alone" / "lam" / "seed1" / "config.json").read_text())["trained_by"] == "per-run"
    for method in config:
        alone_config = json.loads((tmp_path / "alone" / method / "seed1" / "config.json").read_text())
        assert config[method]["best_epoch"] == alone_config["best_epoch"]


def test_sers_train_trains_every_run_alone_by_default(caches, tmp_path):  # noqa: F811
    from click.testing import CliRunner

    from sers.cli import main

    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--source", str(caches["source"]), "--target", str(caches["target"]),
                                       "--method", "last", "--seeds", "0", "--epochs", "2", "--hidden", "16",
                                       "--no-plots", "--quiet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "last" / "seed0" / "config.json").read_text())["trained_by"] == "per-run"


def test_with_jobs_each_architecture_is_cut_into_stacks_one_per_worker(caches, tmp_path):  # noqa: F811
    options = dict(FAST, methods=["lam"], anchors=[2, 3], seeds=[0, 1, 2], epochs=3, ablations=False)
    train(caches["source"], caches["target"], out_dir=tmp_path / "jobs", jobs=2, stacked=True, **options)
    train(caches["source"], caches["target"], out_dir=tmp_path / "alone", stacked=False, **options)
    together, alone = _predictions(tmp_path / "jobs"), _predictions(tmp_path / "alone")
    assert sorted(together) == sorted(alone) and len(together) == 3
    for name in together:
        np.testing.assert_allclose(np.array([r[4:] for r in together[name][1:]], float),
                                   np.array([r[4:] for r in alone[name][1:]], float), atol=1e-5)
    assert json.loads((tmp_path / "jobs" / "lam" / "seed2" / "config.json").read_text())["trained_by"] == "stacked"
