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
default, as stored (float32), the stored frames with ``features="frames"`` (float16 as stored;
attentive pooling per branch; see :mod:`sers.pipeline.frame_features`). Each batch is gathered
from them and converted to float32 on its own, never the whole block.

With ``stacked=True`` the runs that share an architecture (every seed of last; every seed and λ of
lam with its ablation anchors-only; of lam-gl with groups-only) train as one stacked model
(:mod:`sers.classifiers.stacked`): the same results as one at a time, one pass over each batch for
all of them. With ``jobs`` > 1 each architecture's stack is cut into ``jobs`` stacks, one per
worker (each worker with its share of the cores), so that every worker has work; with one job
each architecture is one stack (cut only where it would exceed ``stacked.STACK_MEMORY``). Frames,
DANN, vowel-level alignment, wsum and lam-gl groups other than "concat" train one run at a time.
"""
from __future__ import annotations

import csv
import os
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, fields as dataclass_fields, replace
from pathlib import Path

import numpy as np

import sers
import sers.cache
from sers import runs as run_schema
from sers.atomic import atomic_path
from sers.classifiers.anchors import anchors_for, load_anchors
from sers.classifiers.estimator import LayerAnchoringClassifier
from sers.classifiers.methods import METHODS, base_method, with_ablations
from sers.analysis.metrics import classification_metrics
from sers.classifiers.selection import score_candidate
from sers.classifiers.stacked import architecture, fit_stack, why_not_stacked
from sers.errors import SersError
from sers.pipeline.candidates import candidates_for, check_criterion, check_lambdas, check_sweep_size, keep_selected
from sers.pipeline.evaluate import write_json, write_predictions
from sers.pipeline.frame_features import check_frame_layers
from sers.pipeline import speakers
from sers.pipeline.readers import open_reader
from sers.pipeline.sweep import BACKENDS, check_jobs, check_seeds, run_all
from sers.pipeline.train_data import Parts, Splits, feature_config, provenance, read_data, shared
from sers.pipeline.train_resume import Sweep, as_os_error, in_order, sweep_settings, writer_lock
from sers.pipeline.train_results import TrainResult, format_results, summarise, write_results  # noqa: F401
from sers.pipeline.vowel_alignment import alignment_config, check_segments, run_names
from sers.runs import run_folder


# -- one run (possibly in a worker process) -----------------------------------------------------

def _layers(part, layers):
    """The ``layers`` of one part: a layer dict, or FrameFeatures (which keep their utterance layout)."""
    return part.select(layers) if hasattr(part, "select") else {layer: part[layer] for layer in layers}


def _run_one(spec: dict, data: dict) -> dict:
    """Fit one method x seed (or take ``spec["fitted"]``, fitted in a stack), write its folder
    (everything but metrics.json), return predictions.

    The folder is written under a temporary name and renamed when whole (config.json, weights,
    predictions, curves): a folder at its final name is a finished run, which a resumed sweep reads
    back instead of training it again (:mod:`sers.pipeline.train_resume`)."""
    with atomic_path(spec["run_dir"]) as partial:
        partial.mkdir()
        try:
            return _fit_and_write(spec, data, partial)
        except OSError:
            raise
        except Exception as exc:  # safetensors' failed write (a full disk) is an OSError in other words
            failed = as_os_error(exc, Path(spec["run_dir"]) / run_schema.WEIGHTS)
            if failed is None:
                raise
            raise failed from None


def _set_threads(spec: dict) -> None:
    if spec["threads"]:
        import torch
        torch.set_num_threads(spec["threads"])


def _dev(data: dict):
    """(dev rows, labels, domain): the target dev split when one is given, else the source dev split."""
    return ((data["target_dev"], data["y_target_dev"], "target") if "target_dev" in data
            else (data["source_dev"], data["y_source_dev"], "source"))


def _fit(spec: dict, data: dict) -> LayerAnchoringClassifier:
    _set_threads(spec)
    model = LayerAnchoringClassifier(**spec["params"])
    uses_target = spec["uses_target"]
    dev, y_dev, dev_domain = _dev(data)
    segments = {f"{side}_segments": data["segments"][side].of_layers(spec["segment_layers"])
                for side in ("source", "target")} if spec["segment_layers"] else {}
    model.fit(_layers(data["source_train"], spec["layers"]), data["y_source_train"],
              _layers(data["target_train"], spec["layers"]) if uses_target else None,
              X_dev=_layers(dev, spec["layers"]), y_dev=y_dev, dev_domain=dev_domain, **segments)
    return model


def _run_stack(job: dict, data: dict) -> dict:
    """Fit the specs of ``job["members"]`` as one stacked model (:mod:`sers.classifiers.stacked`), then
    write each member's folder as :func:`_run_one` writes a run's."""
    specs = job["members"]
    _set_threads(specs[0])
    layers = specs[0]["layers"]
    dev, y_dev, dev_domain = _dev(data)
    models = fit_stack([LayerAnchoringClassifier(**spec["params"]) for spec in specs],
                       _layers(data["source_train"], layers), data["y_source_train"],
                       _layers(data["target_train"], layers) if any(s["uses_target"] for s in specs) else None,
                       X_dev=_layers(dev, layers), y_dev=y_dev, dev_domain=dev_domain)
    # in this process: the fitted model rides in the spec, which no worker receives
    results = [_run_one({**spec, "fitted": model, "config": {**spec["config"], "trained_by": "stacked"}}, data)
               for spec, model in zip(specs, models)]
    return {**{key: job[key] for key in ("method", "seed", "candidate")}, "results": results}


def _fit_and_write(spec: dict, data: dict, run_dir: Path) -> dict:
    model = spec["fitted"] if spec.get("fitted") is not None else _fit(spec, data)
    dev, y_dev, dev_domain = _dev(data)
    config = {"trained_by": "per-run", **spec["config"], "layers": model.layers_, "branches": model.branches_,
              "best_epoch": model.best_epoch_}
    model.save(run_dir / run_schema.WEIGHTS)
    _write_curves(run_dir, model.history_, spec["plots"])
    proba = {"source_dev": model.predict_proba(data["source_dev"], domain="source"),
             "target_test": model.predict_proba(data["target_test"], domain="target")}
    if "target_dev" in data:
        proba["target_dev"] = model.predict_proba(data["target_dev"], domain="target")
    parts = [(name, "source" if name.startswith("source") else "target") for name in proba]
    columns = {"side": np.concatenate([[side] * len(proba[name]) for name, side in parts]),
               "split": np.concatenate([[spec["splits"][name]] * len(proba[name]) for name, _ in parts]),
               "id": np.concatenate([data[f"ids_{name}"] for name, _ in parts])}
    write_predictions(run_dir / run_schema.PREDICTIONS, columns, model.classes_,
                      np.concatenate([proba[name] for name, _ in parts]))
    scores = (score_candidate(model, _layers(dev, spec["layers"]), y_dev, _layers(data["source_train"], spec["layers"]),
                              _layers(data["target_train"], spec["layers"]), dev_domain=dev_domain)
              if spec["candidate"] else None)
    if scores is not None:  # a resumed sweep selects among candidates it does not train again
        config["selection_scores"] = scores
    write_json(run_dir / run_schema.CONFIG, config)
    return {"method": spec["method"], "seed": spec["seed"], "run_dir": spec["run_dir"], "best_epoch": model.best_epoch_,
            "classes": model.classes_.tolist(), "candidate": spec["candidate"], "selection_scores": scores,
            "predicted": {name: model.classes_[p.argmax(1)] for name, p in proba.items()}}


def _write_curves(run_dir: Path, history: list[dict], plot: bool) -> None:
    names = list(history[0])
    with open(run_dir / run_schema.CURVES_CSV, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(history)
    if not plot:
        return
    from sers.display.figures import training_curves

    training_curves(history, run_dir / run_schema.CURVES_PNG)


# -- the command --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainSettings:
    """The estimator's hyper-parameters, the same for every run of a sweep (λ and the anchors vary per
    candidate; see :class:`~sers.classifiers.estimator.LayerAnchoringClassifier`, which checks them)."""
    hidden: int = 512
    dropout: float = 0.2
    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    patience: int = 5
    normalize: str = "per-language"
    group_weights: str = "concat"
    device: str = "cpu"
    features: str = "pooled"
    coral_scale: str = "relative"
    vowel_lambda: float | None = None  # runs with align="vowel" only; None: λ

    def estimator_params(self, align: str) -> dict:
        params = asdict(self)
        if align != "vowel":
            del params["vowel_lambda"]
        return params


def _grouped(settings, splits, options) -> tuple[TrainSettings, Splits]:
    """TrainSettings and Splits from objects, or from their fields given to train() as keywords."""
    fields = {cls: {f.name for f in dataclass_fields(cls)} for cls in (TrainSettings, Splits)}
    unknown = sorted(set(options) - fields[TrainSettings] - fields[Splits])
    if unknown:
        raise TypeError(f"train() got unexpected keyword arguments {', '.join(unknown)}")
    settings = replace(settings or TrainSettings(), **{k: v for k, v in options.items() if k in fields[TrainSettings]})
    splits = replace(splits or Splits(), **{k: v for k, v in options.items() if k in fields[Splits]})
    return settings, splits


DEFAULT_METHODS = ("last", "anchors-only", "lam")
# λ = 0 is a candidate: the label-free selection may fall back to no alignment (docs/method.md).
DEFAULT_LAMBDAS = (0.0, 0.3, 1.0, 3.0)
# The selector with the lowest mean regret on the transfer benchmark (docs/benchmarks/selection.md).
DEFAULT_SELECT = "source-dev"


def train(source, target, methods=DEFAULT_METHODS, anchors=None, seeds=(0, 1, 2, 3, 4), out_dir="runs", *,
          lambda_=DEFAULT_LAMBDAS, settings: TrainSettings | None = None, splits: Splits | None = None,
          stat="mean", align="utterance", speaker_norm="auto", select=DEFAULT_SELECT, ablations=True, jobs=1,
          backend="loky", plots=True, progress=True, log=None, overwrite=False, command=None, record=None,
          stacked=False, **options) -> TrainResult:
    """Train every method x seed from two caches; write run folders and results.{csv,md}; return the table.

    ``source``/``target``: cache paths (or open readers) of the same model. ``anchors``: an
    anchors.json path, a dict in its format, layer numbers, or groups of layer numbers.
    ``settings`` (:class:`TrainSettings`) and ``splits`` (:class:`Splits`), or any of their fields
    as keywords (``hidden=64``, ``target_dev="dev"``): the estimator's hyper-parameters, the splits.
    ``align="vowel"``: lam and lam-gl also align vowel by vowel on the caches' vowel segments,
    with weight ``vowel_lambda`` (default ``lambda_``); see :mod:`sers.pipeline.vowel_alignment`.
    ``features="frames"``: read the caches' stored frames of the needed layers (in memory as
    stored, float16: frames x D x 2 bytes x layers) and pool each branch by attention.
    ``speaker_norm``: "auto" (default), "on" or "off": standardise each speaker's pooled features by
    that speaker's own statistics before training (label-free; :mod:`sers.pipeline.speakers`).
    ``plots=False`` skips the curves.png of each run (a quarter second each).
    ``overwrite``: replace the runs already in ``out_dir``. Without it, the folder of another sweep
    is refused (so that `sers report` never mixes runs of two experiments) and the folder of this
    same sweep is resumed: its finished runs are read back, the others trained
    (:mod:`sers.pipeline.train_resume`).
    ``record``: what the caller resolved its settings from (the CLI: every option's value and source,
    the --config file's path and sha256), kept in sweep.json beside the settings but outside their
    digest, so that the same settings resume however they were given.
    ``lambda_`` may be a list and ``anchors`` a list of anchors.json files: each aligning method
    then trains every λ x anchor set as a candidate and keeps, per seed, the one ``select``
    scores best (no target labels read; see :mod:`sers.pipeline.candidates`). The default λ list holds
    0, so the selection can choose no alignment.
    ``ablations``: also train each aligning method's ablation (the same layers and heads without the
    alignment term: lam -> anchors-only, lam-gl -> groups-only, coral/dann -> last) where ``methods``
    lacks it, so the table shows what the alignment itself adds.
    ``stacked``: the runs that share an architecture (every seed of last; every seed and λ of lam with
    anchors-only) train together as one stacked model, with the results each would have alone
    (:mod:`sers.classifiers.stacked`); the others, and all by default, one run at a time (on 2 CPU
    cores the stacked sweep took 460 s against 456 s: docs/benchmarks/train.md).
    Each run's config.json says which (``trained_by``).
    Returns a :class:`~sers.pipeline.train_results.TrainResult`: the rows of results.csv, and ``summary()``.
    """
    settings, splits = _grouped(settings, splits, options)
    written_to, out_dir = str(out_dir), Path(out_dir)
    methods = [m.strip() for m in ([methods] if isinstance(methods, str) else methods) if m.strip()]
    if not methods:
        raise SersError(f"no method given; choose from {', '.join(METHODS)}")
    runs = run_names(methods, align)
    lambdas = check_lambdas(lambda_ if isinstance(lambda_, (list, tuple)) else [lambda_])
    anchor_specs = [load_anchors(a) for a in _anchor_list(anchors)]
    for name, (method, _) in runs.items():  # a missing --anchors is the user's method's error, not its ablation's
        for spec in anchor_specs:
            anchors_for(method, spec)
    if ablations:
        added = [m for m in with_ablations(list(runs)) if m not in runs]
        if added and log:
            log(f"also training {', '.join(added)}: the same layers and heads without the alignment term "
                "(the ablation every results table compares with; --no-ablations skips it)")
        runs = run_names(with_ablations(list(runs)), align)
    if backend not in BACKENDS:
        raise SersError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    jobs, seeds = check_jobs(jobs, backend), check_seeds(seeds)
    check_sweep_size(runs, lambdas, anchor_specs, len(seeds))
    check_criterion(select)
    with ExitStack() as opened:  # the lock and the caches this call takes, released when it returns or fails
        opened.enter_context(writer_lock(out_dir))  # one sweep writes a runs folder at a time
        src, tgt = open_reader(source, opened), open_reader(target, opened)
        src.check_compatible(tgt)
        plan = _Plan(runs, lambdas, anchor_specs, settings, src.num_layers)
        _check_caches(src, tgt, plan, settings.features)
        parts = Parts(src, tgt, splits)
        by_speaker, why_not = speakers.decide(speaker_norm, [src, tgt], features=settings.features, align=align,
                                             stat=stat)
        if log and (by_speaker or why_not):
            log(why_not or "standardising each speaker's features by that speaker's own statistics")
        # Before any feature is read: another sweep's folder is refused, the same sweep's resumed.
        sweep = Sweep(out_dir.resolve(), sweep_settings(
            runs=runs, seeds=seeds, lambdas=lambdas, anchor_specs=anchor_specs, settings=settings, splits=splits,
            stat=stat, align=align, select=select, speaker_standardised=by_speaker, src=src, tgt=tgt,
            version=sers.__version__), overwrite, record)

        spill = tempfile.TemporaryDirectory(prefix="sers-train-") if jobs > 1 and backend == "loky" else None
        share = (lambda block, name: shared(block, name, spill.name if spill else None))
        data = read_data(src, tgt, plan, parts, stat, log, share, settings.features, by_speaker)
        selection = "target-dev" if splits.target_dev else "source-dev"
        threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 and backend == "loky" else None
        common = {"features": settings.features, "read": feature_config(settings.features, stat, src, by_speaker),
                  "data": provenance(src, tgt, parts), "command": command, "selection": selection,
                  "target_dev": splits.target_dev, "normalize": settings.normalize}
        specs = _specs(plan, data, parts, seeds, out_dir.resolve(), common, threads, plots)
        sweep.start()
        todo, finished = sweep.split(specs, data, log)
        try:
            stacks, alone = _stacks(todo, jobs) if stacked else ([], todo)
            results = run_all(_run_one, alone, data, min(jobs, len(alone)), backend, progress) if alone else []
            if stacks:
                results += [r for job in run_all(_run_stack, stacks, data, min(jobs, len(stacks)), backend, progress)
                            for r in job["results"]]
        finally:
            del data
            if spill:
                spill.cleanup()
        results = in_order(specs, finished + results)

        # Candidates are chosen before any target test label is read (the scores come from training data).
        results = keep_selected(results, select)
        # Only now, after every model is trained, are the target test labels read: to score predictions.
        target_truth = _score(results, parts, selection, log)
        table = summarise(results, list(runs), selection, target_truth)
        informed = sorted({spec["target_labels"] for spec in anchor_specs} - {None})
        for row in table:
            row["anchors_target_labels"] = ", ".join(informed) if base_method(row["method"]).uses_anchors else ""
            row["candidates_selected_by"] = select if row.get("lambda_chosen") else ""
        write_results(out_dir.resolve(), table, results)
        return TrainResult(table, written_to, results, target_truth)


class _Plan:
    """What to train: per run name, its candidates and their estimator templates; the layers they read."""

    def __init__(self, runs, lambdas, anchor_specs, settings: TrainSettings, num_layers: int):
        self.runs = runs
        # (run name, candidate) -> estimator template; one candidate unless several λ or anchor files
        self.candidates = {name: candidates_for(m, lambdas, anchor_specs) for name, (m, _) in runs.items()}
        self.templates = {(name, c.tag): LayerAnchoringClassifier(
                              method=m, anchors=anchors_for(m, c.anchors), align=a, lambda_=c.lambda_,
                              **settings.estimator_params(a))
                          for name, (m, a) in runs.items() for c in self.candidates[name]}
        self.needed = {key: t.required_layers(num_layers) for key, t in self.templates.items()}
        self.layers = sorted({layer for ls in self.needed.values() for layer in ls})
        self.segment_needed = {key: t.required_segment_layers(num_layers) if t.align == "vowel" else []
                               for key, t in self.templates.items()}
        self.segment_layers = sorted({layer for ls in self.segment_needed.values() for layer in ls})


def _check_caches(src, tgt, plan: _Plan, features: str) -> None:
    """Before any feature is read: a cache without what the plan needs fails in seconds."""
    if plan.segment_layers:
        for cache in (src, tgt):
            check_segments(cache, plan.segment_layers)
    if features == "frames":
        for cache in (src, tgt):
            check_frame_layers(cache, plan.layers)
        strides = [cache.frame_stride for cache in (src, tgt)]
        if strides[0] != strides[1]:
            raise SersError(f"frames are stored at stride {strides[0]} in {src.path} but {strides[1]} in {tgt.path}; "
                            f"extract both with the same --frame-stride")


def _specs(plan: _Plan, data, parts: Parts, seeds, out_dir: Path, common: dict, threads, plots) -> list[dict]:
    """One spec per run name x candidate x seed: the estimator's params, the config.json to write, where."""
    specs = []
    for method, candidate in ((m, c) for m, cs in plan.candidates.items() for c in cs):
        tag, template = candidate.tag, plan.templates[method, candidate.tag]
        alignment = alignment_config(template, plan.segment_needed[method, tag], data.get("segments"), parts.splits)
        several = len(plan.candidates[method]) > 1
        anchored = base_method(method).uses_anchors
        for seed in seeds:
            params = {**template.get_params(), "seed": seed}
            run_dir = run_folder(out_dir, method, seed)
            config = {"method": method, "seed": seed, "anchors": params["anchors"],
                      "anchors_file": candidate.anchors["file"],
                      "features": common["features"], **common["read"],
                      **alignment, "estimator": params, "selection": common["selection"],
                      "target_dev": common["target_dev"],
                      "target_labels_used_for_selection": bool(common["target_dev"]),
                      "anchors_chosen_with_target_labels": candidate.anchors.get("target_labels") if anchored else None,
                      "data": common["data"], "sers_version": sers.__version__, "command": common["command"]}
            specs.append({"method": method, "seed": seed, "params": params, "config": config,
                          "layers": plan.needed[method, tag], "segment_layers": plan.segment_needed[method, tag],
                          "uses_target": template.uses_target() or common["normalize"] != "none",
                          "candidate": candidate.tag if several else None,
                          "run_dir": str(run_dir / run_schema.CANDIDATES / candidate.tag if several else run_dir),
                          "splits": parts.splits, "threads": threads, "plots": plots})
    return specs


def _stacks(specs: list[dict], jobs: int) -> tuple[list[dict], list[dict]]:
    """(stack jobs, specs trained one at a time): the specs of one architecture form a stack; with
    ``jobs`` > 1 each architecture is cut into ``jobs`` stacks, so that every worker has a share."""
    groups, alone = {}, []
    for spec in specs:
        model = LayerAnchoringClassifier(**spec["params"])
        if spec["segment_layers"] or why_not_stacked(model):
            alone.append(spec)
        else:
            groups.setdefault(architecture(model, spec["layers"]), []).append(spec)
    stacks = []
    for members in groups.values():
        size = -(-len(members) // jobs)
        for start in range(0, len(members), size):
            part = members[start:start + size]
            stacks.append({"method": part[0]["method"], "seed": part[0]["seed"], "candidate": part[0]["candidate"],
                           "members": part})
    return stacks, alone


def _score(results: list[dict], parts: Parts, selection: str, log) -> np.ndarray:
    """metrics.json of every run (and candidate, for analysis only), from the labels read now;
    returns the target test labels (for the intervals)."""
    truth = {"source_dev": parts.labels["source_dev"], "target_dev": parts.labels.get("target_dev"),
             "target_test": parts.tgt.utterances.label[parts.rows["target_test"]].astype(str)}
    for result in results:
        for scored in [result] + result.get("candidates", []):
            evaluations = {}
            for name, predicted in scored["predicted"].items():
                known = truth[name] != ""
                evaluations[name] = (classification_metrics(truth[name][known], predicted[known], scored["classes"])
                                     if known.any() else None)
            metrics = run_schema.RunMetrics(selection, scored["best_epoch"], evaluations).to_dict()
            write_json(Path(scored["run_dir"]) / run_schema.METRICS, metrics)
            scored["metrics"] = metrics
    ignored = (results[0]["metrics"].get("target_test") or {}).get("ignored_labels") if results else None
    if ignored and log:
        log(f"note: target test utterances with labels the source does not have are left out of the metrics: "
            f"{', '.join(f'{label} {count}' for label, count in sorted(ignored.items()))}")
    return truth["target_test"]


def _anchor_list(anchors) -> list:
    """Several anchor files (a list of paths or anchors.json dicts) or one anchors specification."""
    if isinstance(anchors, (list, tuple)) and anchors and all(isinstance(a, (str, os.PathLike, dict)) for a in anchors):
        return list(anchors)
    return [anchors]
