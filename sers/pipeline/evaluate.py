"""`sers evaluate` and `sers predict`: apply a trained run to any cache of the same model.

A run folder (written by :mod:`sers.pipeline.train`; its files are named in :mod:`sers.runs`)
holds ``config.json`` and ``model.safetensors``; the model reads pooled features of the layers
it was trained on (their stored frames, for runs trained with ``--features frames``). This
module also holds the writers for the files a run folder shares with an evaluation:
predictions CSV and metrics JSON.
"""
from __future__ import annotations

import csv
import json
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import sers.cache
from sers import atomic, runs
from sers.classifiers.estimator import LayerAnchoringClassifier
from sers.analysis.metrics import classification_metrics
from sers.display.tables import format_table
from sers.errors import SersError
from sers.pipeline import speakers
from sers.pipeline.output_lock import locked_output, writer_lock
from sers.pipeline.readers import open_reader
from sers.pipeline.options import STATS_CHOICES
from sers.runs import WEIGHTS


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


def load_run(run_dir) -> tuple[LayerAnchoringClassifier, runs.RunConfig]:
    """(the trained classifier, the run's config.json)."""
    config = runs.read_config(run_dir)
    weights = Path(run_dir) / WEIGHTS
    try:
        return LayerAnchoringClassifier.load(weights), config
    except SersError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors/torch raise many types for a damaged file
        raise SersError(f"{weights}: cannot read the trained weights ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'damaged file'}); train the run again") from None


def check_cache_matches(config: runs.RunConfig, cache, run_dir) -> None:
    """Refuse a cache whose features come from another model than the run was trained on."""
    trained = config.trained_model
    offered = cache.model_description()
    differences = [sers.cache.model_difference(trained, offered)]
    differences += [(key, trained.get(key), offered.get(key)) for key in ("num_layers", "hidden_size")]
    for key, mine, theirs in filter(None, differences):
        if mine == theirs:
            continue
        raise SersError(f"{cache.path} holds features of {offered['model_id']} ({offered['num_layers']} layers x "
                        f"{offered['hidden_size']}) but run {run_dir} was trained on {trained['model_id']} "
                        f"({trained['num_layers']} layers x {trained['hidden_size']}): {key} differs; "
                        f"extract this corpus with the run's model")
    # Runs trained before the input was recorded say nothing: nothing to compare then.
    if trained.get("whisper_input") and trained["whisper_input"] != offered["whisper_input"]:
        raise SersError(f"{cache.path} was extracted with --whisper-input {offered['whisper_input']} but run {run_dir} "
                        f"was trained on --whisper-input {trained['whisper_input']} features (the last layers differ); "
                        f"extract this corpus with --whisper-input {trained['whisper_input']}")


def _features(model, config, cache, rows, run_dir):
    """The run's layers for ``rows``: pooled features, or the stored frames for frame runs (either
    standardised per speaker when the run's were)."""
    by_speaker = None
    if config.speaker_standardised:
        missing = speakers.missing_speakers(cache)
        if missing:
            raise SersError(f"run {run_dir} was trained on features standardised per speaker, but {missing}: "
                            "name every utterance's speaker in the manifest")
        by_speaker = speakers.SpeakerStandardiser.for_features(cache, config.features, config.stat)
    if config.features != "frames":
        block = cache.pooled_layers(model.layers_, rows=rows, stat=config.stat)
        if by_speaker is not None:
            block = by_speaker.block(model.layers_, block, rows)
        return dict(zip(model.layers_, block))
    from sers.pipeline.frame_features import read_frames

    stride = cache.frame_stride
    if stride != config.frame_stride:
        raise SersError(f"{cache.path} stores frames at stride {stride} but run {run_dir} was trained on stride "
                        f"{config.frame_stride}; extract with --frame-stride {config.frame_stride}")
    return read_frames(cache, model.layers_, {"rows": rows}, by_speaker=by_speaker)["rows"]


def _apply(run_dir, cache, split, stats, opened: ExitStack):
    if stats not in STATS_CHOICES:
        raise SersError(f"--stats must be one of {', '.join(STATS_CHOICES)}, not {stats!r}")
    model, config = load_run(run_dir)
    cache = open_reader(cache, opened)
    check_cache_matches(config, cache, run_dir)
    rows = cache.rows(split)
    if len(rows) == 0:
        splits = sorted(set(cache.utterances.split.astype(str)))
        raise SersError(f"{cache.path}: no utterances in split {split!r} (splits: {', '.join(splits)})")
    X = _features(model, config, cache, rows, run_dir)
    if stats == "cache":  # per-language standardisation by this corpus's own statistics
        model.add_statistics("cache", X, str(cache.path))
    proba = model.predict_proba(X, domain=stats)
    table = cache.utterances.select(rows)
    columns = {name: table[name] for name in ("id", "split", "language")}
    return model, config, cache, table, columns, proba


@dataclass
class Evaluation:
    """What `sers evaluate` found: metrics (None when no row is labelled) and where it wrote them."""
    run: str
    cache: str
    split: str | None
    n: int
    n_labelled: int
    stats: str
    selection: str | None
    metrics: dict | None
    predictions: str

    def to_dict(self) -> dict:
        """The metrics.json written beside the predictions."""
        return asdict(self)

    def summary(self) -> str:
        """UAR, macro-F1, accuracy and the confusion table, or why there are none; the files written."""
        if self.metrics is None:
            lines = [f"{self.n} utterances, none labelled: no metrics"]
        else:
            m = self.metrics
            header = ["true \\ predicted"] + m["classes"] + ["recall"]
            recalls = m["per_class_recall"]
            lines = [f"{m['n']} labelled utterances: UAR {m['uar']:.4f}  macro-F1 {m['macro_f1']:.4f}"
                     f"  accuracy {m['accuracy']:.4f}",
                     format_table(header, [[c] + row + ["-" if recalls[c] is None else f"{recalls[c]:.3f}"]
                                           for c, row in zip(m["classes"], m["confusion"])])]
        return "\n".join(lines + [f"wrote {self.predictions} and metrics.json beside it"])


@dataclass
class Prediction:
    path: Path

    def summary(self) -> str:
        return f"wrote {self.path}"


def evaluate(run_dir, cache, split=None, out_dir=None, stats="target", overwrite: bool = False) -> Evaluation:
    """Metrics of a run on ``cache`` (all rows or one ``split``) and a predictions CSV.

    ``stats`` only matters for runs trained with per-language normalisation: standardise
    with the run's stored target (default) or source statistics, or with this cache's own.
    Writes OUT/predictions.csv and OUT/metrics.json (OUT: ``out_dir``, default
    RUN/evaluations/<cache>-<split>); an earlier evaluation there is kept unless ``overwrite``.
    """
    out_dir = Path(out_dir) if out_dir else Path(run_dir) / runs.EVALUATIONS / _name(getattr(cache, "path", cache), split)
    runs.read_config(run_dir)  # not a run: said before the lock makes RUN/evaluations/
    # One writer per evaluation folder: a second `sers evaluate` into it (even with --overwrite) is
    # refused naming the first, instead of both writing and one's metrics beside the other's predictions.
    with writer_lock(out_dir):
        atomic.refuse_existing(out_dir / runs.METRICS, out_dir / runs.PREDICTIONS, overwrite=overwrite)
        with ExitStack() as opened:
            model, config, cache, table, columns, proba = _apply(run_dir, cache, split, stats, opened)
        out_dir.mkdir(parents=True, exist_ok=True)
        labels = table.label.astype(str)
        write_predictions(out_dir / runs.PREDICTIONS, {**columns, "label": labels}, model.classes_, proba)
        labelled = labels != ""
        metrics = (classification_metrics(labels[labelled], model.classes_[proba[labelled].argmax(1)], model.classes_)
                   if labelled.any() else None)
        result = Evaluation(run=str(run_dir), cache=str(cache.path), split=split, n=int(len(labels)),
                            n_labelled=int(labelled.sum()), stats=stats, selection=config.selection,
                            metrics=metrics, predictions=str(out_dir / runs.PREDICTIONS))
        write_json(out_dir / runs.METRICS, result.to_dict())
    return result


@locked_output("out_csv")
def predict(run_dir, cache, out_csv, split=None, stats="target", overwrite: bool = False) -> Prediction:
    """Write ``out_csv``: id, split, language, predicted class, one probability per class
    (an existing ``out_csv`` is kept unless ``overwrite``)."""
    atomic.refuse_existing(out_csv, overwrite=overwrite)
    with ExitStack() as opened:
        model, _, _, _, columns, proba = _apply(run_dir, cache, split, stats, opened)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    write_predictions(out_csv, columns, model.classes_, proba)
    return Prediction(Path(out_csv))


def _name(path, split) -> str:
    stem = Path(str(path).rstrip("/")).name.rsplit(".", 1)[0]
    return f"{stem}-{split}" if split else stem
