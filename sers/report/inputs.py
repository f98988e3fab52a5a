"""What `sers report` reads: run folders, similarity.json, anchors.json, caches, versions.

The files come from other stages and from other versions of sers, so every reader
here is lenient: a missing optional key gives a blank in the report, never a crash.
A file that cannot be parsed at all is a :class:`SersError` naming it.
"""
from __future__ import annotations

import importlib.metadata
import platform
import re
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import sers
import sers.cache
from sers import runs as run_schema
from sers.classifiers.methods import base_method, method_names
from sers.errors import SersError
from sers.jsonfile import read_json as read_json_file
from sers.runs import metrics_at  # noqa: F401 - the report's readers use it by this name

CACHE_SUFFIXES = (".zarr", ".h5", ".hdf5")
# Table order: baselines first, then the anchoring methods (the registry's order; it loads without torch).
METHOD_ORDER = method_names()
ANCHOR_KEYS = ("anchor_groups", "anchor_layers", "anchors")
_SEED_IN_NAME = re.compile(r"[_\-/]?seed[_\-]?(\d+)$")


def read_json(path) -> dict:
    value = read_json_file(path)
    if not isinstance(value, dict):
        raise SersError(f"{path}: expected a JSON object")
    return value


def find_key(tree, names, depth: int = 2):
    """The value of the first of ``names`` at the top of ``tree``, else one level down, ...
    (configs may nest their settings under "params" or "training")."""
    level = [tree]
    for _ in range(depth + 1):
        for node in level:
            for name in names:
                if isinstance(node, dict) and node.get(name) is not None:
                    return node[name]
        level = [v for node in level if isinstance(node, dict) for v in node.values() if isinstance(v, dict)]
    return None


# -- runs ---------------------------------------------------------------------------------------

@dataclass
class Run:
    folder: Path
    method: str
    seed: int | None
    config: dict
    source_dev: dict | None
    target_test: dict | None
    target_selected: bool
    anchors: str      # "3, 5, 7" or "[3-5] [8-10]" or "" for methods without anchors
    lambda_: float | None
    command: str | None
    best_epoch: int | None = None


def read_runs(runs_dir) -> tuple[list[Run], list[str]]:
    """Every folder under ``runs_dir`` holding a metrics.json; notes on folders that were skipped.

    A metrics.json inside a run folder (`sers evaluate` writes RUN/evaluations/NAME/) is
    an evaluation of that run, not a run of its own.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise SersError(f"{runs_dir}: no such runs folder (write one with `sers train ... -o {runs_dir}`)")
    scored, unfinished = run_schema.find_runs(runs_dir)
    runs, notes = [], []
    for folder in scored:
        config_path = folder / run_schema.CONFIG
        config = read_json(config_path) if config_path.is_file() else {}
        runs.append(_run(folder, config, read_json(folder / run_schema.METRICS)))
    if unfinished:
        names = ", ".join(str(p.relative_to(runs_dir)) for p in unfinished[:5]) + (" ..." if len(unfinished) > 5 else "")
        notes.append(f"{len(unfinished)} run folder(s) have a config.json but no metrics.json (unfinished "
                     f"or failed) and are left out: {names}")
    if not runs:
        raise SersError(f"{runs_dir}: no run folders with a metrics.json (write them with `sers train`)")
    return runs, notes


def _run(folder: Path, config: dict, metrics: dict) -> Run:
    both = {"config": config, "metrics": metrics}
    name = folder.name
    # without a config: "lam-seed3" names the method, or "lam/seed3" (the layout of `sers train`)
    method = find_key(config, ("method",)) or metrics.get("method") or _SEED_IN_NAME.sub("", name) or folder.parent.name
    seed = find_key(config, ("seed",))
    if seed is None:
        match = _SEED_IN_NAME.search(name)
        seed = int(match.group(1)) if match else None
    selection = str(find_key(both, ("selection", "selected_on", "model_selection")) or "")
    target_selected = bool(find_key(both, ("target_selected",))) or "target" in selection.lower() \
        or bool(find_key(config, ("target_dev", "target_dev_split")))
    lambda_ = find_key(config, ("lambda_", "lambda"))
    anchors = describe_anchors(find_key(config, ANCHOR_KEYS)) if uses_anchors(str(method)) else ""
    chosen = config.get("candidate_selection")
    if chosen:  # λ (and the anchors) differ from seed to seed: the seeds are one result of the selection
        lambda_ = None
        if uses_anchors(str(method)) and "anchors=" in str(chosen.get("chosen")):
            anchors = f"chosen by {chosen.get('criterion')}"
    scores = run_schema.RunMetrics.from_dict(metrics)
    return Run(folder=folder, method=str(method), seed=None if seed is None else int(seed), config=config,
               source_dev=scores.source_dev, target_test=scores.target_test,
               target_selected=target_selected,
               anchors=anchors,
               lambda_=float(lambda_) if isinstance(lambda_, (int, float)) and aligns(str(method)) else None,
               command=_command(find_key(config, ("command", "argv", "cmdline"))),
               best_epoch=_integer(find_key(both, ("best_epoch",))))


def uses_anchors(method: str) -> bool:
    """lam, lam-gl and their variants read anchor layers; the baselines ignore them."""
    base = base_method(method)
    return base is not None and base.uses_anchors


def aligns(method: str) -> bool:
    """Methods with an alignment term, whose λ matters (a method sers does not know: assumed to)."""
    base = base_method(method)
    return base is None or base.reads_target


def describe_anchors(anchors) -> str:
    """Anchor layers as a short text: [3, 5, 7] -> "3, 5, 7"; [[3, 4, 5]] -> "[3-5]"."""
    if anchors is None or anchors == []:
        return ""
    if isinstance(anchors, dict):  # the content of anchors.json, recorded in the config
        anchors = anchors.get("groups") or anchors.get("layers") or []
        return describe_anchors(anchors)
    if isinstance(anchors, str):
        return Path(anchors).name
    if all(isinstance(a, (list, tuple)) for a in anchors):
        return " ".join(_span(group) for group in anchors)
    return ", ".join(str(a) for a in anchors)


def _span(group) -> str:
    group = [int(x) for x in group]
    contiguous = group == list(range(group[0], group[0] + len(group))) and len(group) > 2
    return f"[{group[0]}-{group[-1]}]" if contiguous else "[" + ",".join(map(str, group)) + "]"


def _integer(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _command(value) -> str | None:
    if isinstance(value, (list, tuple)):
        return shlex.join(str(v) for v in value)
    return str(value) if value else None


@dataclass
class MethodResult:
    """The runs of one method configuration over seeds."""
    method: str
    anchors: str
    lambda_: float | None
    target_selected: bool
    runs: list[Run] = field(default_factory=list)
    label: str = ""

    def values(self, role: str, key: str) -> np.ndarray:
        found = [getattr(run, role).get(key) for run in self.runs if getattr(run, role)]
        return np.array([v for v in found if v is not None], dtype=float)

    def mean_std(self, role: str, key: str) -> tuple[float, float, int]:
        """Mean and sample standard deviation over seeds (as `sers train` reports), and the count."""
        values = self.values(role, key)
        if len(values) == 0:
            return float("nan"), float("nan"), 0
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values)

    def confusion(self) -> tuple[list[str], np.ndarray] | None:
        """Target-test confusion counts summed over seeds, classes in first-seen order."""
        totals, classes = defaultdict(int), []
        for run in self.runs:
            evaluation = run.target_test or {}
            names, matrix = evaluation.get("classes"), evaluation.get("confusion")
            if not names or matrix is None:
                continue
            classes += [c for c in names if c not in classes]
            for i, true in enumerate(names):
                for j, predicted in enumerate(names):
                    totals[true, predicted] += int(matrix[i][j])
        if not classes:
            return None
        return classes, np.array([[totals[t, p] for p in classes] for t in classes])

    def per_class_recall(self) -> dict[str, float]:
        """Mean over seeds of each class's target recall."""
        by_class = defaultdict(list)
        for run in self.runs:
            for name, value in ((run.target_test or {}).get("per_class_recall") or {}).items():
                if value is not None:
                    by_class[name].append(float(value))
        return {name: float(np.mean(values)) for name, values in by_class.items()}


def group_runs(runs: list[Run], method_order=()) -> list[MethodResult]:
    """One result per (method, anchors, λ, selection), in ``method_order`` then alphabetical;
    labels carry the anchors / λ only where they tell apart results of one method."""
    groups: dict[tuple, MethodResult] = {}
    for run in runs:
        key = (run.method, run.anchors, run.lambda_, run.target_selected)
        groups.setdefault(key, MethodResult(*key)).runs.append(run)
    order = {name: i for i, name in enumerate(method_order)}
    results = sorted(groups.values(), key=lambda g: (order.get(g.method, len(order)), g.method, g.anchors,
                                                       g.lambda_ or 0.0, g.target_selected))
    for result in results:
        siblings = [g for g in results if g.method == result.method]
        details = []
        if len({g.anchors for g in siblings}) > 1 and result.anchors:
            details.append(result.anchors)
        if len({g.lambda_ for g in siblings}) > 1 and result.lambda_ is not None:
            details.append(f"λ={result.lambda_:g}")
        if len({g.target_selected for g in siblings}) > 1 and result.target_selected:
            details.append("target-selected")
        result.label = result.method + (f" ({', '.join(details)})" if details else "")
        result.runs.sort(key=lambda r: (r.seed is None, r.seed or 0, str(r.folder)))
    return results


# -- similarity, anchors, caches, versions --------------------------------------------------------

def cache_paths(runs: list[Run], similarity: dict | None, base: Path) -> list[tuple[str, Path]]:
    """(role, path) of every cache the runs and the similarity name, each once, sources first."""
    found: list[tuple[str, str]] = []
    if similarity:
        for role in ("source", "target"):
            path = (similarity.get(role) or {}).get("cache")
            if path:
                found.append((role, path))
    for run in runs:
        found += _paths_in(run.config)
    seen, paths = set(), []
    for role, text in sorted(found, key=lambda item: item[0] != "source"):
        path = Path(text)
        if not path.is_absolute() and not path.exists() and (base / path).exists():
            path = base / path
        key = str(path.resolve())
        if key not in seen:
            seen.add(key)
            paths.append((role, path))
    return paths


def _paths_in(tree, keys: tuple = ()) -> list[tuple[str, str]]:
    """(role, path) of cache paths anywhere in a config; the role from the keys leading there
    (``{"data": {"source": {"path": ...}}}`` or ``{"source_cache": ...}``)."""
    if isinstance(tree, dict):
        return [item for k, v in tree.items() for item in _paths_in(v, keys + (str(k).lower(),))]
    if isinstance(tree, list):
        return [item for v in tree for item in _paths_in(v, keys)]
    if isinstance(tree, str) and tree.rstrip("/").lower().endswith(CACHE_SUFFIXES):
        for role, names in (("source", ("source", "src")), ("target", ("target", "tgt"))):
            if any(name in key for key in keys for name in names):
                return [(role, tree)]
        return [("cache", tree)]
    return []


def cache_summary(path) -> dict:
    """Model, shape and utterance counts of a cache; {"missing": reason} if it cannot be read."""
    try:
        with sers.cache.open(path) as cache:
            table = cache.utterances
            counts = table.counts("split", "language", "label")
            return {"path": str(path), "model_id": cache.model_id, "revision": cache.model_revision,
                    "num_layers": cache.num_layers, "hidden_size": cache.hidden_size,
                    "pool_stats": cache.pool_stats, "frame_layers": cache.frame_layers,
                    "complete": cache.complete, "utterances": len(table),
                    "hours": float(np.nansum(table.duration)) / 3600 if "duration" in table.columns else None,
                    "errors": len(cache.errors), "created": cache.created,
                    "sers_version": cache.sers_version, "counts": counts}
    except SersError as exc:
        return {"path": str(path), "missing": str(exc)}


def versions() -> dict[str, str]:
    """The versions of this environment (what made the report, and usually the runs)."""
    found = {"sers": sers.__version__}
    for package in ("torch", "transformers", "numpy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["python"] = platform.python_version()
    found["platform"] = platform.platform()
    return found
