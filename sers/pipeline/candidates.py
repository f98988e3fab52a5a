"""`sers train` with several λ values or anchor files: candidates per run, one kept by a label-free criterion.

``--lambda 0.3,1,3,10`` and ``--anchors a.json --anchors b.json`` give each aligning method
several *candidates* (λ × anchor set; methods without alignment have one). Every candidate is
trained for every seed, into ``<method>/seed<k>/candidates/<tag>/``; then, per method and seed,
the candidate with the best selection score (:mod:`sers.classifiers.selection`; no target label
is read) is copied to ``<method>/seed<k>/`` with what chose it in its config.json. Reports and
``sers evaluate`` read ``<method>/seed<k>/`` as for a single candidate, so a seed's result
includes the variance of the selection itself.
"""
from __future__ import annotations

import json
import math
import numbers
import shutil
from dataclasses import dataclass
from pathlib import Path

from sers import atomic, runs
from sers.classifiers.methods import base_method
from sers.classifiers.selection import SELECTORS, choose
from sers.errors import SersError


@dataclass
class Candidate:
    tag: str            # folder name under candidates/, e.g. "lambda=3,anchors=coral-top3"
    lambda_: float
    anchors: dict       # a load_anchors() result


def candidates_for(method: str, lambdas: list[float], anchor_specs: list[dict]) -> list[Candidate]:
    """λ × anchor sets for an aligning method; the first λ and anchor set for the others. A group
    method (lam-gl, groups-only) also takes every group setting of an anchors.json's
    ``group_candidates`` (tagged "groups=2x1": size x count) as a candidate."""
    base = base_method(method)  # lam+vowel trains as lam
    lambdas = lambdas if base.reads_target else lambdas[:1]
    specs = anchor_specs if base.uses_anchors else anchor_specs[:1]
    named = [([f"anchors={name}"] if len(specs) > 1 else [], spec) for spec, name in zip(specs, _anchor_names(specs))]
    if base.anchors == "groups":
        named = [expanded for words, spec in named for expanded in _group_settings(words, spec)]
    return [Candidate(",".join([f"lambda={lam:g}"] + words), lam, spec) for words, spec in named for lam in lambdas]


def _group_settings(words: list[str], spec: dict) -> list[tuple[list[str], dict]]:
    """One (tag words, anchors) per group setting of ``spec``; ``spec`` itself when it has none."""
    settings = spec.get("group_candidates") or []
    if not settings:
        return [(words, spec)]
    return [(words + ([f"groups={setting['tag']}"] if len(settings) > 1 else []),
             {**spec, "groups": setting["groups"], "group_setting": setting["tag"]}) for setting in settings]


def _anchor_names(specs: list[dict]) -> list[str]:
    names = [Path(spec["file"]).stem if spec.get("file") else "given" for spec in specs]
    if len(set(names)) < len(names):  # two files of one name in different folders
        names = [f"{i}-{name}" for i, name in enumerate(names)]
    return names


# Candidates per method (λ values x anchor files): each is trained for every seed, and the selection
# compares them on a dev split of some hundred rows; past a few dozen it picks noise.
MAX_CANDIDATES = 64


def check_lambdas(lambdas) -> list[float]:
    """Distinct finite weights >= 0 (two equal λ would train into one candidate folder; NaN would
    train as no alignment at all)."""
    values = []
    for value in lambdas:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise SersError(f"--lambda: {value!r} is not a weight (a finite number >= 0)")
        if float(value) in values:
            raise SersError(f"--lambda: {float(value):g} is given twice (one candidate folder per value)")
        values.append(float(value))
    if not values:
        raise SersError("--lambda: no weight given")
    return values


def check_sweep_size(runs: dict, lambdas: list[float], anchor_specs: list[dict], n_seeds: int) -> None:
    """Candidates per method and runs in all within bounds (``runs``: run name -> (method, align))."""
    from sers.pipeline.sweep import check_run_count

    total = 0
    for name, (method, _) in runs.items():
        count = len(candidates_for(method, lambdas, anchor_specs))
        if count > MAX_CANDIDATES:
            raise SersError(f"{name}: {count} candidates (λ values x anchor files), at most {MAX_CANDIDATES} per "
                            "method: the selection would choose among noise; give fewer")
        total += count * n_seeds
    check_run_count(total)


def check_criterion(criterion: str) -> None:
    if criterion not in SELECTORS:
        raise SersError(f"--select must be one of {', '.join(SELECTORS)}, not {criterion!r}")


def keep_selected(results: list[dict], criterion: str) -> list[dict]:
    """One result per method x seed: the candidate ``criterion`` scores best, its files copied
    up to the seed folder. Results without candidates pass through unchanged."""
    kept, groups = [], {}
    for result in results:
        if result.get("candidate") is None:
            kept.append(result)
        else:
            groups.setdefault((result["method"], result["seed"]), []).append(result)
    for (method, seed), group in groups.items():
        best = group[choose([r["selection_scores"] for r in group], criterion, [r["candidate"] for r in group])]
        seed_dir = Path(best["run_dir"]).parent.parent
        _copy_run(Path(best["run_dir"]), seed_dir)
        config = json.loads((Path(best["run_dir"]) / runs.CONFIG).read_text())
        config["candidate_selection"] = {
            "criterion": criterion, "chosen": best["candidate"],
            "reads_target_labels": False,
            "candidates": [{"tag": r["candidate"], "scores": r["selection_scores"]} for r in group]}
        atomic.write_text(seed_dir / runs.CONFIG, json.dumps(config, indent=2) + "\n")
        kept.append({**best, "run_dir": str(seed_dir), "candidates": group})
    order = {(r["method"], r["seed"]): i for i, r in enumerate(results)}
    return sorted(kept, key=lambda r: order[(r["method"], r["seed"])])


# The files of a run that the seed folder takes from its chosen candidate (evaluations/ stays).
RUN_FILES = (runs.WEIGHTS, runs.PREDICTIONS, runs.CURVES_CSV, runs.CURVES_PNG, runs.METRICS)


def _copy_run(candidate: Path, seed_dir: Path) -> None:
    """The chosen candidate's files into its seed folder, each under a temporary name and renamed;
    the seed folder's config.json, which makes it a run, goes first and comes back last (written by
    the caller), so that a kill in between never leaves the config of one candidate beside the weights
    of another (a resumed sweep selects again, and may have retrained the candidates)."""
    (seed_dir / runs.CONFIG).unlink(missing_ok=True)
    for name in RUN_FILES:
        if (candidate / name).is_file():
            with atomic.atomic_path(seed_dir / name) as partial:
                shutil.copy2(candidate / name, partial)
        else:  # e.g. curves.png of an earlier choice, trained with plots
            (seed_dir / name).unlink(missing_ok=True)
