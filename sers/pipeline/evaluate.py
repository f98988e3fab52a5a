"""`sers evaluate` and `sers predict`: apply a trained run to any cache of the same model.

A run folder (written by :mod:`sers.pipeline.train`) holds ``config.json`` and
``model.safetensors``; the model reads pooled features of the layers it was trained
on (their stored frames, for runs trained with ``--features frames``). This module also
holds the writers for the files a run folder shares with an
evaluation: predictions CSV and metrics JSON.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

import sers.cache
from sers import atomic
from sers.cache import schema
from sers.classifiers.estimator import LayerAnchoringClassifier
from sers.classifiers.metrics import classification_metrics
from sers.errors import SersError
from sers.jsonfile import read_json

WEIGHTS = "model.safetensors"
MODEL_KEYS = ("model_id", "model_revision", "num_layers", "hidden_size", schema.MODEL_DIGEST_ATTR,
              schema.MODEL_COMMIT_ATTR)
STATS_CHOICES = ("target", "source", "cache")


def write_json(path, value) -> None:
    atomic.write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def write_predictions(path, columns: dict[str, np.ndarray], classes, proba: np.ndarray) -> None:
    """One row per utterance: the given columns, the predicted class, one probability per class."""
    classes = [str(c) for c in classes]
    names = list(columns) + ["predicted"] + [f"p_{c}" for c in classes]
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    with atomic.atomic_path(path) as partial, open(partial, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for i in range(len(proba)):
            writer.writerow([columns[name][i] for name in columns] + [predicted[i]]
                            + [f"{p:.6f}" for p in proba[i]])


def model_description(attrs: dict) -> dict:
    return {key: attrs.get(key) for key in MODEL_KEYS}


def load_run(run_dir) -> tuple[LayerAnchoringClassifier, dict]:
    """(the trained classifier, the run's config.json)."""
    run_dir = Path(run_dir)
    config_path, weights = run_dir / "config.json", run_dir / WEIGHTS
    if not config_path.is_file() or not weights.is_file():
        raise SersError(f"{run_dir}: not a run folder (needs config.json and {WEIGHTS}, written by `sers train`)")
    config = read_json(config_path, invalid="not a valid run config (JSON)")
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        raise SersError(f"{config_path}: not a run config written by `sers train` (no 'data' section)")
    try:
        return LayerAnchoringClassifier.load(weights), config
    except SersError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors/torch raise many types for a damaged file
        raise SersError(f"{weights}: cannot read the trained weights ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'damaged file'}); train the run again") from None


def _open(cache):
    return cache if isinstance(cache, sers.cache.CacheReader) else sers.cache.open(cache).require_complete()


def check_cache_matches(config: dict, cache, run_dir) -> None:
    """Refuse a cache whose features come from another model than the run was trained on."""
    trained = config["data"]["source"]["model"]
    offered = model_description(cache.attrs)
    differences = [schema.model_difference(trained, offered)]
    differences += [(key, trained.get(key), offered.get(key)) for key in ("num_layers", "hidden_size")]
    for key, mine, theirs in filter(None, differences):
        if mine == theirs:
            continue
        raise SersError(f"{cache.path} holds features of {offered['model_id']} ({offered['num_layers']} layers x "
                        f"{offered['hidden_size']}) but run {run_dir} was trained on {trained['model_id']} "
                        f"({trained['num_layers']} layers x {trained['hidden_size']}): {key} differs; "
                        f"extract this corpus with the run's model")


def _features(model, config, cache, rows, run_dir):
    """The run's layers for ``rows``: pooled features, or the stored frames for frame runs."""
    if config.get("features", "pooled") != "frames":
        return dict(zip(model.layers_, cache.pooled_layers(model.layers_, rows=rows, stat=config.get("stat", "mean"))))
    from sers.pipeline.frame_features import read_frames

    stride = int(cache.attrs.get("frame_stride") or 1)
    if stride != config.get("frame_stride", 1):
        raise SersError(f"{cache.path} stores frames at stride {stride} but run {run_dir} was trained on stride "
                        f"{config.get('frame_stride', 1)}; extract with --frame-stride {config.get('frame_stride', 1)}")
    return read_frames(cache, model.layers_, {"rows": rows})["rows"]


def _apply(run_dir, cache, split, stats):
    if stats not in STATS_CHOICES:
        raise SersError(f"--stats must be one of {', '.join(STATS_CHOICES)}, not {stats!r}")
    model, config = load_run(run_dir)
    cache = _open(cache)
    check_cache_matches(config, cache, run_dir)
    rows = cache.rows(split)
    if len(rows) == 0:
        splits = sorted(set(cache.utterances.split.astype(str)))
        raise SersError(f"{cache.path}: no utterances in split {split!r} (splits: {', '.join(splits)})")
    X = _features(model, config, cache, rows, run_dir)
    if stats == "cache":  # per-language standardisation by this corpus's own statistics
        model.stats_["cache"] = model.feature_stats([X], str(cache.path))
    proba = model.predict_proba(X, domain=stats)
    table = cache.utterances.select(rows)
    columns = {name: table[name] for name in ("id", "split", "language")}
    return model, config, cache, table, columns, proba


def evaluate(run_dir, cache, split=None, out_dir=None, stats="target") -> dict:
    """Metrics of a run on ``cache`` (all rows or one ``split``) and a predictions CSV.

    ``stats`` only matters for runs trained with per-language normalisation: standardise
    with the run's stored target (default) or source statistics, or with this cache's own.
    Returns ``{"metrics": ... or None when no row is labelled, "predictions": path, ...}``.
    """
    model, config, cache, table, columns, proba = _apply(run_dir, cache, split, stats)
    out_dir = Path(out_dir) if out_dir else Path(run_dir) / "evaluations" / _name(cache.path, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = table.label.astype(str)
    write_predictions(out_dir / "predictions.csv", {**columns, "label": labels}, model.classes_, proba)
    labelled = labels != ""
    metrics = (classification_metrics(labels[labelled], model.classes_[proba[labelled].argmax(1)], model.classes_)
               if labelled.any() else None)
    result = {"run": str(run_dir), "cache": str(cache.path), "split": split, "n": int(len(labels)),
              "n_labelled": int(labelled.sum()), "stats": stats, "selection": config.get("selection"),
              "metrics": metrics, "predictions": str(out_dir / "predictions.csv")}
    write_json(out_dir / "metrics.json", result)
    return result


def predict(run_dir, cache, out_csv, split=None, stats="target") -> Path:
    """Write ``out_csv``: id, split, language, predicted class, one probability per class."""
    model, _, _, _, columns, proba = _apply(run_dir, cache, split, stats)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    write_predictions(out_csv, columns, model.classes_, proba)
    return Path(out_csv)


def _name(path, split) -> str:
    stem = Path(str(path).rstrip("/")).name.rsplit(".", 1)[0]
    return f"{stem}-{split}" if split else stem
