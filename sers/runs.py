"""The run folder: what `sers train` writes, `sers evaluate` and `sers report` read.

    RUNS/                         results.csv, results.md, runs.csv (one row per run)
      <method>/seed<k>/           one run (method may be "lam+vowel")
        config.json               what was trained on what: RunConfig
        metrics.json              the scores: RunMetrics
        predictions.csv           side, split, id, predicted, p_<class>...
        curves.csv, curves.png    one row per epoch: losses, dev_uar, seconds
        model.safetensors         LayerAnchoringClassifier.save
        candidates/<tag>/         several λ / anchor files: each candidate as a run folder
        evaluations/<name>/       `sers evaluate` of this run: metrics.json, predictions.csv

A folder is a run once its config.json is there (written last, atomically); it is scored
once its metrics.json is. This module imports nothing heavy: the report reads runs without torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sers.errors import SersError
from sers.jsonfile import integer_field, is_number, layer_list, object_field, read_json, shown, text_field

CONFIG = "config.json"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
CURVES_CSV = "curves.csv"
CURVES_PNG = "curves.png"
WEIGHTS = "model.safetensors"
CANDIDATES = "candidates"
EVALUATIONS = "evaluations"
RESULTS_CSV, RESULTS_MD, RUNS_CSV = "results.csv", "results.md", "runs.csv"

# metrics.json: one evaluation (classification_metrics: uar, macro_f1, accuracy, confusion, ...)
# per part, or null where no row of the part is labelled.
SOURCE_DEV, TARGET_TEST, TARGET_DEV = "source_dev", "target_test", "target_dev"
# Legacy: runs written by earlier versions or other tools keep these evaluations under other
# spellings; readers try them in order, first match wins (also inside "metrics" or "results").
LEGACY_KEYS = {TARGET_TEST: (("target_test",), ("target-test",), ("target", "test"), ("test",), ("target",)),
               SOURCE_DEV: (("source_dev",), ("source-dev",), ("source", "dev"), ("dev",), ("source",)),
               TARGET_DEV: (("target_dev",), ("target-dev",), ("target", "dev"))}


def run_folder(runs_dir, method: str, seed: int) -> Path:
    return Path(runs_dir) / method / f"seed{seed}"


def metrics_at(metrics: dict, paths) -> dict | None:
    """The first evaluation dict (one with a "uar") found at one of ``paths`` (tuples of keys)."""
    roots = [metrics] + [metrics[k] for k in ("metrics", "results") if isinstance(metrics.get(k), dict)]
    for root in roots:
        for path in paths:
            node = root
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, dict) and isinstance(node.get("metrics"), dict):
                node = node["metrics"]
            if isinstance(node, dict) and node.get("uar") is not None:
                return node
    return None


@dataclass
class RunMetrics:
    """metrics.json: how the epoch was selected, and one evaluation per part of the data.

    ``evaluations`` maps SOURCE_DEV, TARGET_TEST (and TARGET_DEV for target-selected runs) to
    an evaluation dict, or None for a part without labelled rows.
    """
    selection: str | None
    best_epoch: int | None
    evaluations: dict[str, dict | None] = field(default_factory=dict)

    @property
    def source_dev(self) -> dict | None:
        return self.evaluations.get(SOURCE_DEV)

    @property
    def target_test(self) -> dict | None:
        return self.evaluations.get(TARGET_TEST)

    def to_dict(self) -> dict:
        return {"selection": self.selection, "best_epoch": self.best_epoch, **self.evaluations}

    @classmethod
    def from_dict(cls, values: dict) -> "RunMetrics":
        """Lenient: the current keys, else the legacy spellings of :data:`LEGACY_KEYS`."""
        evaluations = {part: metrics_at(values, paths) for part, paths in LEGACY_KEYS.items()}
        best_epoch = values.get("best_epoch")
        return cls(selection=values.get("selection"),
                   best_epoch=int(best_epoch) if isinstance(best_epoch, (int, float)) and not isinstance(
                       best_epoch, bool) else None,
                   evaluations={part: found for part, found in evaluations.items()
                                if found is not None or part != TARGET_DEV})


@dataclass
class RunConfig:
    """config.json, as `sers train` writes it; the typed readers are what evaluate and report need.

    ``values`` keeps every key (in the order written): method, seed, anchors, anchors_file,
    features, stat | frame_stride, speaker_standardised, align (+ vowel settings), estimator (the estimator's
    get_params()), selection, target_dev, target_labels_used_for_selection,
    anchors_chosen_with_target_labels, data (provenance: caches, models, splits, counts),
    sers_version, command, layers, branches, best_epoch [, candidate_selection].
    """
    values: dict

    @property
    def method(self) -> str | None:
        return self.values.get("method")

    @property
    def seed(self) -> int | None:
        return self.values.get("seed")

    @property
    def features(self) -> str:
        return self.values.get("features", "pooled")

    @property
    def stat(self) -> str:
        return self.values.get("stat", "mean")

    @property
    def speaker_standardised(self) -> bool:
        """Whether features were standardised speaker by speaker (:mod:`sers.pipeline.speakers`)."""
        return bool(self.values.get("speaker_standardised", False))

    @property
    def frame_stride(self) -> int:
        return self.values.get("frame_stride", 1)

    @property
    def selection(self) -> str | None:
        return self.values.get("selection")

    @property
    def trained_model(self) -> dict:
        """The source cache's model description (model_id, revision, num_layers, hidden_size, ...)."""
        return self.values["data"]["source"]["model"]

    def to_dict(self) -> dict:
        return dict(self.values)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        return cls(dict(values))


@dataclass
class Run:
    folder: Path
    config: RunConfig
    metrics: RunMetrics | None


def read_config(folder) -> RunConfig:
    """The config.json of a trained run; a SersError when ``folder`` is not one."""
    folder = Path(folder)
    path = folder / CONFIG
    if not path.is_file() or not (folder / WEIGHTS).is_file():
        raise SersError(f"{folder}: not a run folder (needs {CONFIG} and {WEIGHTS}, written by `sers train`)")
    values = read_json(path, invalid="not a valid run config (JSON)")
    if not isinstance(values, dict) or not isinstance(values.get("data"), dict):
        raise SersError(f"{path}: not a run config written by `sers train` (no 'data' section)")
    check_config(values, path)
    return RunConfig.from_dict(values)


def check_config(values: dict, source) -> None:
    """The fields `sers evaluate` and `sers predict` act on, typed as `sers train` writes them, so that
    a damaged or hand-edited config.json is one line naming the field, never a wrong reading."""
    model = object_field(object_field(values["data"].get("source"), source, "data.source").get("model"),
                         source, "data.source.model")
    text_field(model.get("model_id"), source, "data.source.model.model_id")
    num_layers = integer_field(model.get("num_layers"), source, "data.source.model.num_layers", minimum=1)
    integer_field(model.get("hidden_size"), source, "data.source.model.hidden_size", minimum=1)
    for name, check in (("method", lambda v, f: text_field(v, source, f)),
                        ("seed", lambda v, f: integer_field(v, source, f, minimum=0)),
                        ("features", lambda v, f: text_field(v, source, f, ("pooled", "frames"))),
                        ("stat", lambda v, f: text_field(v, source, f, ("mean", "std"))),
                        ("frame_stride", lambda v, f: integer_field(v, source, f, minimum=1)),
                        ("selection", lambda v, f: text_field(v, source, f, nullable=True)),
                        ("layers", lambda v, f: layer_list(v, source, f, num_layers))):
        if name in values:
            check(values[name], name)
    if "speaker_standardised" in values and not isinstance(values["speaker_standardised"], bool):
        raise SersError(f"{source}: field 'speaker_standardised' must be true or false, "
                        f"not {shown(values['speaker_standardised'])}")
    if values.get("best_epoch") is not None:
        integer_field(values["best_epoch"], source, "best_epoch", minimum=1)


def check_metrics(values: dict, source) -> None:
    """metrics.json's scores are numbers in [0, 1] (a damaged file would otherwise print as a score)."""
    for part in (SOURCE_DEV, TARGET_TEST, TARGET_DEV):
        evaluation = values.get(part)
        if evaluation is None:
            continue
        object_field(evaluation, source, part)
        for key in ("uar", "macro_f1", "accuracy"):
            value = evaluation.get(key)
            if value is not None and not (is_number(value) and 0 <= value <= 1):
                raise SersError(f"{source}: field '{part}.{key}' must be a number from 0 to 1, not {shown(value)}")


def read_run(folder) -> Run:
    """A run's config and metrics (None when not scored yet); lenient, for runs of any version."""
    folder = Path(folder)
    config = _json_object(folder / CONFIG) if (folder / CONFIG).is_file() else {}
    metrics = None
    if (folder / METRICS).is_file():
        values = _json_object(folder / METRICS)
        check_metrics(values, folder / METRICS)
        metrics = RunMetrics.from_dict(values)
    return Run(folder, RunConfig.from_dict(config), metrics)


def find_runs(runs_dir) -> tuple[list[Path], list[Path]]:
    """(scored run folders, unfinished ones: a config.json but no metrics.json) under ``runs_dir``.

    A metrics.json inside a run folder (RUN/evaluations/NAME/) is an evaluation of that run,
    not a run of its own.
    """
    runs_dir = Path(runs_dir)
    folders = sorted(p.parent for p in runs_dir.rglob(METRICS))
    scored = set(folders)
    runs = [f for f in folders if not any(parent in scored for parent in f.parents)]
    unfinished = sorted(p.parent for p in runs_dir.rglob(CONFIG) if not (p.parent / METRICS).exists())
    return runs, unfinished


def earlier_runs(runs_dir) -> list[Path]:
    """What a new `sers train` into ``runs_dir`` would replace: run folders and the result tables."""
    runs_dir = Path(runs_dir)
    found = sorted({p.parent for p in runs_dir.glob(f"*/seed*/{CONFIG}")})
    return found + [runs_dir / name for name in (RESULTS_CSV, RESULTS_MD, RUNS_CSV) if (runs_dir / name).exists()]


def _json_object(path) -> dict:
    value = read_json(path)
    if not isinstance(value, dict):
        raise SersError(f"{path}: expected a JSON object")
    return value
