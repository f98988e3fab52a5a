"""`sers train`: methods x seeds on cached pooled features (or frames), one run folder each, one results table.

Data discipline (what the run folders' config.json records):

- source: labelled rows of ``source_train`` train the head; ``source_dev`` (default the
  "dev" or "validation" split) selects the epoch and stops training early;
- target: ``target_train`` rows are read as *features only* (unlabelled alignment data and
  per-language statistics); ``target_test`` rows are predicted by the trained model, and
  their labels are read afterwards, in this process, only to score those predictions;
- ``target_dev`` (optional) is the one way target labels reach training: it replaces the
  source dev split for model selection, and every output then says "target-dev";
- vowel-level alignment (``align="vowel"``, runs named ``lam+vowel``, ``lam-gl+vowel``) also reads
  the vowel segments of the source and target training utterances: features and vowel
  class, never an emotion label.

Features are read once per corpus for the union of the layers the methods need, and
shared by all runs (joblib memory-maps them for worker processes): pooled features by
default, the stored frames with ``features="frames"`` (attentive pooling per branch; see
:mod:`sers.pipeline.frame_features`).
"""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import sers
import sers.cache
from sers.atomic import atomic_path, write_text as atomic_write_text
from sers.classifiers.anchors import anchors_for, load_anchors
from sers.classifiers.estimator import LayerAnchoringClassifier
from sers.classifiers.heads import METHODS
from sers.classifiers.metrics import classification_metrics
from sers.classifiers.selection import score_candidate
from sers.errors import SersError
from sers.pipeline.evaluate import WEIGHTS, model_description, write_json, write_predictions
from sers.pipeline.candidates import candidates_for, check_criterion, keep_selected
from sers.pipeline.frame_features import check_frame_layers, read_frames
from sers.pipeline.vowel_alignment import alignment_config, check_segments, read_segments, run_names
from sers.display.tables import format_markdown_table, format_table

SOURCE_DEV_SPLITS = ("dev", "validation", "valid", "val")
BACKENDS = ("loky", "dask", "ray")


# -- data ---------------------------------------------------------------------------------------

def _splits(cache) -> list[str]:
    return sorted(set(cache.utterances.split.astype(str)))


def _split_rows(cache, split: str, role: str, option: str, labelled: bool) -> np.ndarray:
    mask = cache.utterances.mask(split=split, labelled=True if labelled else None)
    if not mask.any():
        what = "labelled utterances" if labelled else "utterances"
        raise SersError(f"{cache.path}: no {what} in split {split!r} for the {role} "
                        f"(splits: {', '.join(_splits(cache))}); choose one with {option}")
    return np.flatnonzero(mask)


def _source_dev_split(cache, requested):
    if requested:
        return requested
    for name in SOURCE_DEV_SPLITS:
        if name in _splits(cache):
            return name
    raise SersError(f"{cache.path}: no 'dev' or 'validation' split to select the model on "
                    f"(splits: {', '.join(_splits(cache))}); name one with --source-dev")


def _shared(block: np.ndarray, name: str, spill_dir) -> np.ndarray:
    """With ``spill_dir`` the block is saved there and memory-mapped, so that worker processes
    share it through the page cache (joblib passes memory-mapped arrays by file name)."""
    if spill_dir is None:
        return block
    path = Path(spill_dir) / f"{name}.npy"
    np.save(path, block)
    return np.load(path, mmap_mode="r")


def _read(cache, layers, parts: dict[str, np.ndarray], stat: str, log, spill_dir=None, features="pooled") -> dict:
    """One read of ``layers`` for the rows of all ``parts``; each part is a view of that block."""
    if features == "frames":
        return read_frames(cache, layers, parts, log, share=lambda block, name: _shared(block, name, spill_dir))
    rows = np.concatenate(list(parts.values()))
    if log:
        size = len(layers) * len(rows) * cache.hidden_size * 4
        log(f"reading {len(layers)} layers x {len(rows)} utterances ({size / 1e6:.0f} MB) from {cache.path}")
    block = _shared(cache.pooled_layers(layers, rows=rows, stat=stat), next(iter(parts)), spill_dir)
    out, start = {}, 0
    for name, part in parts.items():
        out[name] = {layer: block[i, start:start + len(part)] for i, layer in enumerate(layers)}
        start += len(part)
    return out


# -- one run (possibly in a worker process) -----------------------------------------------------

def _layers(part, layers):
    """The ``layers`` of one part: a layer dict, or FrameFeatures (which keep their utterance layout)."""
    return part.select(layers) if hasattr(part, "select") else {layer: part[layer] for layer in layers}


def _run_one(spec: dict, data: dict) -> dict:
    """Fit one method x seed, write its folder (everything but metrics.json), return predictions.

    The folder is written under a temporary name and renamed when whole: a killed run leaves
    no folder with a config.json but no weights."""
    with atomic_path(spec["run_dir"]) as partial:
        partial.mkdir()
        return _fit_and_write(spec, data, partial)


def _fit_and_write(spec: dict, data: dict, run_dir: Path) -> dict:
    if spec["threads"]:
        import torch
        torch.set_num_threads(spec["threads"])
    model = LayerAnchoringClassifier(**spec["params"])
    uses_target = spec["uses_target"]
    dev, y_dev, dev_domain = ((data["target_dev"], data["y_target_dev"], "target") if "target_dev" in data
                              else (data["source_dev"], data["y_source_dev"], "source"))
    segments = {f"{side}_segments": (_layers(data[f"segments_{side}_features"], spec["segment_layers"]),
                                     data[f"segments_{side}_vowels"])
                for side in ("source", "target")} if spec["segment_layers"] else {}
    model.fit(_layers(data["source_train"], spec["layers"]), data["y_source_train"],
              _layers(data["target_train"], spec["layers"]) if uses_target else None,
              X_dev=_layers(dev, spec["layers"]), y_dev=y_dev, dev_domain=dev_domain, **segments)
    config = {**spec["config"], "layers": model.layers_, "branches": model.branches_, "best_epoch": model.best_epoch_}
    write_json(run_dir / "config.json", config)
    model.save(run_dir / WEIGHTS)
    _write_curves(run_dir, model.history_, spec["plots"])
    proba = {"source_dev": model.predict_proba(data["source_dev"], domain="source"),
             "target_test": model.predict_proba(data["target_test"], domain="target")}
    if "target_dev" in data:
        proba["target_dev"] = model.predict_proba(data["target_dev"], domain="target")
    parts = [(name, "source" if name.startswith("source") else "target") for name in proba]
    columns = {"side": np.concatenate([[side] * len(proba[name]) for name, side in parts]),
               "split": np.concatenate([[spec["splits"][name]] * len(proba[name]) for name, _ in parts]),
               "id": np.concatenate([data[f"ids_{name}"] for name, _ in parts])}
    write_predictions(run_dir / "predictions.csv", columns, model.classes_,
                      np.concatenate([proba[name] for name, _ in parts]))
    scores = (score_candidate(model, _layers(dev, spec["layers"]), y_dev, _layers(data["source_train"], spec["layers"]),
                              _layers(data["target_train"], spec["layers"])) if spec["candidate"] else None)
    return {"method": spec["method"], "seed": spec["seed"], "run_dir": spec["run_dir"], "best_epoch": model.best_epoch_,
            "classes": model.classes_.tolist(), "candidate": spec["candidate"], "selection_scores": scores,
            "predicted": {name: model.classes_[p.argmax(1)] for name, p in proba.items()}}


def _write_curves(run_dir: Path, history: list[dict], plot: bool) -> None:
    names = list(history[0])
    with open(run_dir / "curves.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(history)
    if not plot:
        return
    from sers.display.figures import training_curves

    training_curves(history, run_dir / "curves.png")


# -- the command --------------------------------------------------------------------------------

def train(source, target, methods=("last", "lam"), anchors=None, seeds=(0, 1, 2, 3, 4), out_dir="runs", *,
          lambda_=(0.3, 1.0, 3.0), hidden=256, dropout=0.2, epochs=30, batch_size=128, lr=1e-3, weight_decay=0.0,
          patience=5, normalize="per-language", group_weights="mean", device="cpu", source_train="train",
          source_dev=None, target_train="train", target_test="test", target_dev=None, stat="mean",
          align="utterance", vowel_lambda=None, features="pooled", coral_scale="relative", select="source-dev",
          jobs=1, backend="loky", plots=True, progress=True, log=None, overwrite=False,
          command=None) -> list[dict]:
    """Train every method x seed from two caches; write run folders and results.{csv,md}; return the table rows.

    ``source``/``target``: cache paths (or open readers) of the same model. ``anchors``: an
    anchors.json path, a dict in its format, layer numbers, or groups of layer numbers.
    ``align="vowel"``: lam and lam-gl also align vowel by vowel on the caches' vowel segments,
    with weight ``vowel_lambda`` (default ``lambda_``); see :mod:`sers.pipeline.vowel_alignment`.
    ``features="frames"``: read the caches' stored frames of the needed layers (in memory as
    stored, float16: frames x D x 2 bytes x layers) and pool each branch by attention.
    ``plots=False`` skips the curves.png of each run (a quarter second each).
    ``overwrite``: replace the runs already in ``out_dir``; without it such a folder is refused,
    so that `sers report` never mixes runs of two experiments.
    ``lambda_`` may be a list and ``anchors`` a list of anchors.json files: each aligning method
    then trains every λ x anchor set as a candidate and keeps, per seed, the one ``select``
    scores best (no target labels read; see :mod:`sers.pipeline.candidates`).
    """
    earlier_runs = _earlier_runs(Path(out_dir), overwrite)
    methods = [m.strip() for m in ([methods] if isinstance(methods, str) else methods) if m.strip()]
    if not methods:
        raise SersError(f"no method given; choose from {', '.join(METHODS)}")
    runs = run_names(methods, align)
    if backend not in BACKENDS:
        raise SersError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    seeds = [int(s) for s in seeds]
    check_criterion(select)
    lambdas = [float(v) for v in (lambda_ if isinstance(lambda_, (list, tuple)) else [lambda_])]
    anchor_specs = [load_anchors(a) for a in _anchor_list(anchors)]
    src = source if isinstance(source, sers.cache.CacheReader) else sers.cache.open(source).require_complete()
    tgt = target if isinstance(target, sers.cache.CacheReader) else sers.cache.open(target).require_complete()
    src.check_compatible(tgt)
    hyper = dict(hidden=hidden, dropout=dropout, epochs=epochs, batch_size=batch_size, lr=lr,
                 weight_decay=weight_decay, patience=patience, normalize=normalize, group_weights=group_weights,
                 device=device, features=features, coral_scale=coral_scale)
    # (run name, candidate) -> estimator template; one candidate unless several λ or anchor files
    candidates = {name: candidates_for(m, lambdas, anchor_specs) for name, (m, _) in runs.items()}
    templates = {(name, c.tag): LayerAnchoringClassifier(method=m, anchors=anchors_for(m, c.anchors), align=a,
                                                     lambda_=c.lambda_, **hyper,
                                                     **({"vowel_lambda": vowel_lambda} if a == "vowel" else {}))
                 for name, (m, a) in runs.items() for c in candidates[name]}
    needed = {key: t.required_layers(src.num_layers) for key, t in templates.items()}
    layers = sorted({layer for ls in needed.values() for layer in ls})
    segment_needed = {key: t.required_segment_layers(src.num_layers) if t.align == "vowel" else []
                      for key, t in templates.items()}
    segment_layers = sorted({layer for ls in segment_needed.values() for layer in ls})
    if segment_layers:  # before any feature is read: a wrong cache fails in seconds
        for cache in (src, tgt):
            check_segments(cache, segment_layers)
    if features == "frames":
        for cache in (src, tgt):
            check_frame_layers(cache, layers)
        strides = [int(cache.attrs.get("frame_stride") or 1) for cache in (src, tgt)]
        if strides[0] != strides[1]:
            raise SersError(f"frames are stored at stride {strides[0]} in {src.path} but {strides[1]} in {tgt.path}; "
                            f"extract both with the same --frame-stride")

    source_dev = _source_dev_split(src, source_dev)
    splits = {"source_train": source_train, "source_dev": source_dev, "target_train": target_train,
              "target_test": target_test}
    rows = {"source_train": _split_rows(src, source_train, "source training data", "--source-train", True),
            "source_dev": _split_rows(src, source_dev, "source model selection", "--source-dev", True),
            "target_train": _split_rows(tgt, target_train, "unlabelled target data", "--target-train", False),
            "target_test": _split_rows(tgt, target_test, "target test", "--target-test", False)}
    if target_dev:
        splits["target_dev"] = target_dev
        rows["target_dev"] = _split_rows(tgt, target_dev, "target model selection", "--target-dev", True)
    labels = {"source_train": src.utterances.label[rows["source_train"]].astype(str),
              "source_dev": src.utterances.label[rows["source_dev"]].astype(str)}
    if target_dev:  # the only target labels read before training, and only when asked for
        labels["target_dev"] = tgt.utterances.label[rows["target_dev"]].astype(str)
    for name in [n for n in ("source_dev", "target_dev") if n in labels]:
        unseen = sorted(set(labels[name]) - set(labels["source_train"]))
        if unseen:
            raise SersError(f"split {splits[name]!r} ({name.replace('_', ' ')}) has labels {unseen} that never occur "
                            f"in source split {source_train!r}; map or drop them in the manifest")

    spill = tempfile.TemporaryDirectory(prefix="sers-train-") if jobs > 1 and backend == "loky" else None
    spill_dir = spill.name if spill else None
    data = {**_read(src, layers, {k: rows[k] for k in ("source_train", "source_dev")}, stat, log, spill_dir, features),
            **_read(tgt, layers, {k: rows[k] for k in rows if k.startswith("target")}, stat, log, spill_dir,
                    features)}
    if segment_layers:  # the segments of the training utterances, with their vowel class (never their label)
        for side, cache, split in (("source", src, source_train), ("target", tgt, target_train)):
            data.update(read_segments(cache, segment_layers, rows[f"{side}_train"], f"segments_{side}", split, log,
                                      share=lambda block, name: _shared(block, name, spill_dir)))
    data.update({f"y_{name}": values for name, values in labels.items()})
    data.update({f"ids_{name}": (src if name.startswith("source") else tgt).utterances.id[r]
                 for name, r in rows.items()})

    provenance = _provenance(src, tgt, splits, rows, labels, target_dev)
    selection = "target-dev" if target_dev else "source-dev"
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 and backend == "loky" else None
    out_dir = Path(out_dir).resolve()  # absolute: dask/ray workers may run in another directory
    specs = []
    for method, candidate in ((m, c) for m, cs in candidates.items() for c in cs):
        tag, template = candidate.tag, templates[method, candidate.tag]
        alignment = alignment_config(template, segment_needed[method, tag], data, splits)
        several = len(candidates[method]) > 1
        for seed in seeds:
            params = {**template.get_params(), "seed": seed}
            run_dir = out_dir / method / f"seed{seed}"
            config = {"method": method, "seed": seed, "anchors": params["anchors"],
                      "anchors_file": candidate.anchors["file"],
                      "features": features, **_feature_config(features, stat, src), **alignment,
                      "estimator": params, "selection": selection,
                      "target_dev": target_dev, "target_labels_used_for_selection": bool(target_dev),
                      "anchors_chosen_with_target_labels": (candidate.anchors.get("target_labels")
                                                            if method.startswith("lam") else None),
                      "data": provenance, "sers_version": sers.__version__, "command": command}
            specs.append({"method": method, "seed": seed, "params": params, "config": config,
                          "layers": needed[method, tag], "segment_layers": segment_needed[method, tag],
                          "uses_target": template._uses_target() or normalize != "none",
                          "candidate": candidate.tag if several else None,
                          "run_dir": str(run_dir / "candidates" / candidate.tag if several else run_dir),
                          "splits": splits, "threads": threads, "plots": plots})
    _remove(earlier_runs)
    try:
        results = _run_all(specs, data, jobs, backend, progress)
    finally:
        del data
        if spill:
            spill.cleanup()

    # Candidates are chosen before any target test label is read (the scores come from training data).
    results = keep_selected(results, select)
    # Only now, after every model is trained, are the target test labels read: to score predictions.
    test_labels = tgt.utterances.label[rows["target_test"]].astype(str)
    truth = {"source_dev": labels["source_dev"], "target_test": test_labels, "target_dev": labels.get("target_dev")}
    for result in results:
        for scored in [result] + result.get("candidates", []):  # candidates scored too, for analysis only
            metrics = {"selection": selection, "best_epoch": scored["best_epoch"]}
            for name, predicted in scored["predicted"].items():
                known = truth[name] != ""
                metrics[name] = (classification_metrics(truth[name][known], predicted[known], scored["classes"])
                                 if known.any() else None)
            write_json(Path(scored["run_dir"]) / "metrics.json", metrics)
            scored["metrics"] = metrics
    ignored = (results[0]["metrics"].get("target_test") or {}).get("ignored_labels") if results else None
    if ignored and log:
        log(f"note: target test utterances with labels the source does not have are left out of the metrics: "
            f"{', '.join(f'{label} {count}' for label, count in sorted(ignored.items()))}")
    table = summarise(results, list(runs), selection)
    for row in table:
        informed = sorted({spec["target_labels"] for spec in anchor_specs} - {None})
        row["anchors_target_labels"] = ", ".join(informed) if row["method"].startswith("lam") else ""
    write_results(out_dir, table, results)
    return table


def _anchor_list(anchors) -> list:
    """Several anchor files (a list of paths or anchors.json dicts) or one anchors specification."""
    if isinstance(anchors, (list, tuple)) and anchors and all(isinstance(a, (str, os.PathLike, dict)) for a in anchors):
        return list(anchors)
    return [anchors]


def _earlier_runs(out_dir: Path, overwrite: bool) -> list[Path]:
    """Files of runs already in ``out_dir``: refused without ``overwrite``, removed (only once
    training starts, so a command that fails its checks deletes nothing) with it."""
    earlier = sorted({p.parent for p in out_dir.glob("*/seed*/config.json")})
    earlier += [out_dir / name for name in ("results.csv", "results.md", "runs.csv") if (out_dir / name).exists()]
    if earlier and not overwrite:
        raise SersError(f"{out_dir} already holds runs; pass --overwrite to replace them, or choose another -o "
                        "(sers report reads every run in the folder)")
    return earlier


def _remove(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _feature_config(features: str, stat: str, cache) -> dict:
    """What config.json says about the features read: the pooled statistic, or the frame stride."""
    if features == "frames":
        return {"frame_stride": int(cache.attrs.get("frame_stride") or 1)}
    return {"stat": stat}


def _provenance(src, tgt, splits, rows, labels, target_dev) -> dict:
    def counts(values):
        names, n = np.unique(values, return_counts=True)
        return {str(a): int(b) for a, b in zip(names, n)}

    def part(name, labels_read):
        entry = {"split": splits[name], "n": int(len(rows[name])), "labels_read": labels_read}
        if name in labels:
            entry["label_counts"] = counts(labels[name])
        return entry

    return {"source": {"path": str(src.path), "model": model_description(src.attrs),
                       "manifest_digest": src.attrs.get("manifest_digest"),
                       "train": part("source_train", "training"), "dev": part("source_dev", "model selection")},
            "target": {"path": str(tgt.path), "model": model_description(tgt.attrs),
                       "manifest_digest": tgt.attrs.get("manifest_digest"),
                       "train": part("target_train", "never (unlabelled alignment data)"),
                       "test": part("target_test", "after training, for metrics only"),
                       "dev": part("target_dev", "model selection") if target_dev else None}}


def _run_all(specs, data, jobs, backend, progress) -> list[dict]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(specs), desc="training", unit="run", disable=not progress)
    if jobs == 1 and backend == "loky":
        results = []
        for spec in specs:
            results.append(_run_one(spec, data))
            bar.update()
        bar.close()
        return results
    import joblib

    with _backend(backend, jobs):
        # Results as each run finishes (for the progress bar) where the backend can; ray cannot.
        streams = joblib.parallel.get_active_backend()[0].supports_return_generator
        results = []
        for result in joblib.Parallel(return_as="generator_unordered" if streams else "list")(
                joblib.delayed(_run_one)(spec, data) for spec in specs):
            results.append(result)
            bar.update()
    bar.close()
    order = {(s["method"], s["seed"], s["candidate"]): i for i, s in enumerate(specs)}
    return sorted(results, key=lambda r: order[(r["method"], r["seed"], r["candidate"])])


def _backend(backend: str, jobs: int):
    """joblib's parallel_config for loky (local processes), dask or ray (clusters; imported lazily)."""
    import joblib

    if backend == "dask":
        try:
            from distributed import Client, get_client
        except ImportError:
            raise SersError("--backend dask needs dask.distributed: pip install 'sers-lam[dask]'") from None
        try:
            get_client()
        except ValueError:  # no client yet: connect to $DASK_SCHEDULER_ADDRESS, or start a local cluster
            Client(os.environ.get("DASK_SCHEDULER_ADDRESS"))
    elif backend == "ray":
        try:
            from ray.util.joblib import register_ray
        except ImportError:
            raise SersError("--backend ray needs ray: pip install 'sers-lam[ray]'") from None
        register_ray()
    return joblib.parallel_config(backend=backend, n_jobs=jobs)


# -- the results table --------------------------------------------------------------------------

def _mean_std(values) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(results: list[dict], methods, selection: str) -> list[dict]:
    """One row per method: mean and sample std over seeds of target UAR/macro-F1 and source dev UAR."""
    table = []
    for method in methods:
        runs = [r["metrics"] for r in results if r["method"] == method]
        row = {"method": method, "seeds": len(runs), "selection": selection}
        for key, where, measure in (("target_uar", "target_test", "uar"),
                                    ("target_macro_f1", "target_test", "macro_f1"),
                                    ("source_dev_uar", "source_dev", "uar")):
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std([(r[where] or {}).get(measure) for r in runs])
        table.append(row)
    return table


def _pm(mean, std) -> str:
    return "n/a" if mean is None else f"{mean:.4f} ± {std:.4f}"


def format_results(table: list[dict], markdown: bool = False) -> str:
    target_selected = any(row["selection"] == "target-dev" for row in table)
    header = ["method", "target UAR", "target macro-F1", "source dev UAR", "seeds"]
    rows = [[row["method"], _pm(row["target_uar_mean"], row["target_uar_std"]),
             _pm(row["target_macro_f1_mean"], row["target_macro_f1_std"]),
             _pm(row["source_dev_uar_mean"], row["source_dev_uar_std"]), row["seeds"]] for row in table]
    note = ("model selection: labelled TARGET dev split (target-selected; not a pure cross-lingual result)"
            if target_selected else "model selection: source dev split (no target labels used in training)")
    text = format_markdown_table(header, rows) if markdown else format_table(header, rows)
    informed = sorted({row.get("anchors_target_labels") for row in table} - {"", None})
    if informed:
        note += (f"; the anchors of lam runs were chosen with labelled TARGET split {', '.join(informed)} "
                 "(a label-aware similarity measure): those results are target-informed")
    return f"{text}\n\nmean ± sample std over seeds; {note}"


def write_results(out_dir: Path, table: list[dict], results: list[dict]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "results.csv") as partial, open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    atomic_write_text(out_dir / "results.md", "# sers train results\n\n" + format_results(table, markdown=True) + "\n")
    with atomic_path(out_dir / "runs.csv") as partial, open(partial, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "seed", "selection", "best_epoch", "target_uar", "target_macro_f1",
                         "source_dev_uar", "run_dir"])
        for r in results:
            m = r["metrics"]
            writer.writerow([r["method"], r["seed"], m["selection"], m["best_epoch"],
                             (m["target_test"] or {}).get("uar"), (m["target_test"] or {}).get("macro_f1"),
                             (m["source_dev"] or {}).get("uar"), r["run_dir"]])
