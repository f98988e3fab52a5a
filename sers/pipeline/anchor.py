"""`sers anchor`: choose anchor layers (or contiguous layer groups) from a similarity table.

Reads a similarity.json written by :mod:`sers.pipeline.similarity` (or runs the
similarity first when given two caches) and writes anchors.json:

    {"measure": "coral", "direction": "lower", "strategy": "both" | "topk" | "group",
     "layers": [...],                      # ascending: the top-k layers (both, topk); group: the union of the groups
     "groups": [[...], ...],               # both, group: --group-size x --groups, best group first
     "group_scores": [...],                # both, group: mean score of each group
     "group_candidates": [                 # both: every group setting of --group-sizes x --group-counts
         {"size": 2, "count": 1, "groups": [[...]], "group_scores": [...]}, ...],
     "scores": {"0": value, ...},          # every layer's score under the measure
     "similarity_file": "/abs/similarity.json", "excluded": [...]}

``sers train`` gives each method its own kind: lam (and anchors-only) the ``layers``, lam-gl (and
groups-only) the ``groups`` — or, where the file has ``group_candidates``, every one of them as a
candidate, chosen per seed with λ by the same label-free selector (:mod:`sers.pipeline.candidates`).
The default strategy ``both`` writes what both methods need in one file: LAM-GL is meant to read
contiguous groups, and handed lam's top-k single layers as one group it scored below lam.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from sers import atomic
from sers.errors import SersError
from sers.jsonfile import field_error, layer_list, number_list, object_field, read_json, text_field
from sers.analysis.measures import MEASURES, ranking_problem, ties
from sers.pipeline.options import STRATEGIES

# Default measure: label-free first (the target is usually unlabelled). CORAL first because
# the anchoring loss is CORAL: the layers where that distance is already small are where the
# alignment has least to undo. Label-aware ones only if the file has no label-free measure.
PREFERENCE = ("coral", "mmd", "domain", "proxy-a-distance", "cka", "centroid-cos", "probe")


def load_similarity(path) -> dict:
    result = read_json(path, missing="no such similarity file (write one with `sers similarity`)",
                       invalid="not a similarity.json")
    if not isinstance(result, dict) or "measures" not in result or "layers" not in result:
        raise SersError(f"{path}: not a similarity.json (no 'layers' and 'measures')")
    check_similarity(result, path)
    return result


def check_similarity(result: dict, source) -> None:
    """What ranking reads, checked as `sers similarity` writes it: distinct integer layers, one number
    (or null) per layer in every measure's values, a known direction. A hand-edited file with 4 layers
    and 3 scores would otherwise rank the wrong layers, and a score written as a string would fail
    deep inside the ranking; each is one line naming the file and the field."""
    layers = layer_list(result["layers"], source, "layers")
    table = object_field(result["measures"], source, "measures")
    for name, column in table.items():
        column = object_field(column, source, f"measures.{name}")
        if "values" not in column:
            raise field_error(source, f"measures.{name}", "has no 'values' (one score per layer)")
        number_list(column["values"], source, f"measures.{name}.values", len(layers))
        direction = column.get("direction")
        if direction is None and name not in MEASURES:
            raise field_error(source, f"measures.{name}", "has no 'direction' (lower or higher is better) and "
                                                          "is not a measure sers knows")
        if direction is not None:
            text_field(direction, source, f"measures.{name}.direction", ("lower", "higher"))
    if result.get("target") is not None:
        target = object_field(result["target"], source, "target")
        text_field(target.get("label_split"), source, "target.label_split", nullable=True)


def choose_measure(result: dict, measure: str | None = None) -> tuple[str, dict[str, str]]:
    """(the measure to rank layers by, {measure passed over: why}).

    A measure that cannot rank layers (saturated or constant, see
    :func:`sers.analysis.measures.ranking_problem`) is never the default; asked for by name it is an error.
    """
    available = [name for name, column in result["measures"].items()
                 if any(v is not None and math.isfinite(v) for v in column["values"])]
    if measure is not None:
        if measure not in available:
            raise SersError(f"measure {measure!r} is not in the similarity file; available: "
                            f"{', '.join(available) or 'none'}")
        problem = ranking_problem(measure, result["measures"][measure]["values"])
        if problem:
            raise SersError(f"measure {measure!r} cannot rank layers ({problem}); choose another with --measure")
        return measure, {}
    skipped = {}
    for name in PREFERENCE:
        if name in available:
            problem = ranking_problem(name, result["measures"][name]["values"])
            if not problem:
                return name, skipped
            skipped[name] = problem
    reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items())
    raise SersError("no measure in the similarity file can rank layers" + (f" ({reasons})" if reasons else ""))


# The group settings `both` offers lam-gl's selection: sizes 2-3, one or two groups (4 candidates per λ;
# wider lists multiply training time; docs/method.md "Groups for lam-gl").
GROUP_SIZES, GROUP_COUNTS = (2, 3), (1, 2)


def select_anchors(result: dict, *, measure: str | None = None, strategy: str = "both", k: int = 3,
                   group_size: int = 3, n_groups: int = 1, exclude=None, similarity_file=None,
                   group_sizes=GROUP_SIZES, group_counts=GROUP_COUNTS) -> dict:
    """The anchors.json content for a loaded similarity result."""
    if strategy not in STRATEGIES:
        raise SersError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    name, skipped = choose_measure(result, measure)
    column = result["measures"][name]
    direction = column.get("direction") or MEASURES[name].direction
    scores = {int(layer): value for layer, value in zip(result["layers"], column["values"])}
    excluded = excluded_layers(exclude, [int(layer) for layer in result["layers"]])
    candidates = {layer: value for layer, value in scores.items()
                  if layer not in excluded and value is not None and math.isfinite(value)}
    # Ranking key: smaller is better in both directions.
    sign = 1.0 if direction == "lower" else -1.0
    anchors = {"measure": name, "direction": direction, "strategy": strategy}
    if strategy in ("topk", "both"):
        if k > len(candidates):
            raise SersError(f"--k {k} but only {len(candidates)} layers have a {name} score after exclusions")
        ranked = sorted(candidates, key=lambda layer: (sign * candidates[layer], layer))
        if k < len(ranked) and ties(candidates[ranked[k - 1]], candidates[ranked[k]]):
            tied = [layer for layer in ranked if ties(candidates[layer], candidates[ranked[k - 1]])]
            raise SersError(f"layers {', '.join(map(str, tied))} tie at {candidates[ranked[k - 1]]:.4g} by {name}, "
                            f"so the top {k} are not determined; change --k, --exclude or --measure")
        anchors["layers"] = sorted(ranked[:k])
    if strategy == "group":
        groups, group_scores = best_groups(candidates, group_size, n_groups, sign)
        anchors.update(layers=sorted({layer for group in groups for layer in group}),
                       groups=groups, group_scores=group_scores)
    if strategy == "both":
        if not group_sizes or not group_counts or min(*group_sizes, *group_counts) < 1:
            raise SersError(f"--group-sizes {list(group_sizes)} and --group-counts {list(group_counts)} must be "
                            "positive numbers, e.g. 2,3 and 1,2")
        anchors.update(_group_candidates(candidates, sign, group_size, n_groups, group_sizes, group_counts))
    if skipped:
        anchors["measures_passed_over"] = skipped
    # A label-aware measure saw target labels: say which split, so `sers train` can mark its runs.
    label_split = (result.get("target") or {}).get("label_split")
    label_free = MEASURES[name].label_free if name in MEASURES else True  # proxy-a-distance: from domain
    anchors["chosen_with_target_labels"] = None if label_free else label_split
    anchors.update(scores={str(layer): value for layer, value in scores.items()},
                   similarity_file=str(Path(similarity_file).resolve()) if similarity_file else None,
                   excluded=excluded)
    return anchors


def excluded_layers(exclude, layers: list[int]) -> list[int]:
    """``exclude`` (layer numbers, or one) as a sorted list, each a layer of the similarity. A layer
    that is not there (42 of 0-12; or -1: layers are never counted from the end) would exclude
    nothing, and a typo would go unnoticed: refused, naming the layer and the layers there are."""
    exclude = [] if exclude is None else [exclude] if isinstance(exclude, (int, np.integer)) else list(exclude)
    there = set(layers)
    for layer in exclude:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise SersError(f"--exclude {layer!r}: not a layer number")
        if layer not in there:
            span = (f"{min(layers)}-{max(layers)}" if sorted(layers) == list(range(min(layers), max(layers) + 1))
                    else ", ".join(map(str, sorted(layers)))) if layers else "none"
            raise SersError(f"--exclude {layer}: no such layer; the similarity has layers {span}")
    return sorted({int(layer) for layer in exclude})


def _group_candidates(candidates, sign, group_size, n_groups, sizes, counts) -> dict:
    """``groups`` (``group_size`` x ``n_groups``) and ``group_candidates`` (every size x count that the
    layers allow; a setting that cannot be met or whose best group is a tie is passed over and said so)."""
    found, passed_over = [], {}
    for size in sorted(set(sizes) | {group_size}):
        for count in sorted(set(counts) | {n_groups}):
            try:
                groups, scores = best_groups(candidates, size, count, sign)
            except SersError as error:
                passed_over[f"{size}x{count}"] = str(error)
                continue
            found.append({"size": size, "count": count, "groups": groups, "group_scores": scores})
    offered = [c for c in found if c["size"] in sizes and c["count"] in counts]
    if not offered:
        raise SersError("no group setting fits the layers: " + "; ".join(f"{k}: {v}" for k, v in passed_over.items()))
    chosen = next((c for c in found if (c["size"], c["count"]) == (group_size, n_groups)), offered[0])
    out = {"groups": chosen["groups"], "group_scores": chosen["group_scores"], "group_candidates": offered}
    if passed_over:
        out["group_settings_passed_over"] = passed_over
    return out


def best_groups(candidates: dict[int, float], size: int, count: int, sign: float):
    """Greedy: the best window of ``size`` consecutive layers by mean score, then the best
    window not overlapping it, and so on ``count`` times. Windows never span a gap
    (an excluded layer or one without a score)."""
    windows = []
    for start in sorted(candidates):
        window = list(range(start, start + size))
        if all(layer in candidates for layer in window):
            windows.append((float(np.mean([candidates[layer] for layer in window])), window))
    windows.sort(key=lambda item: (sign * item[0], item[1][0]))
    chosen, taken = [], set()
    while len(chosen) < count:
        free = [(score, window) for score, window in windows if taken.isdisjoint(window)]
        if not free:
            break
        (mean_score, window), rivals = free[0], [w for s, w in free[1:] if ties(s, free[0][0])]
        if rivals:
            raise SersError(f"layer groups {window} and {rivals[0]} tie at a mean score of {mean_score:.4g}, so the "
                            f"best group is not determined; change --group-size, --exclude or --measure")
        chosen.append((window, mean_score))
        taken.update(window)
    if len(chosen) < count:
        raise SersError(f"only {len(chosen)} non-overlapping groups of {size} consecutive layers are "
                        f"available (after exclusions); lower --groups or --group-size")
    return [window for window, _ in chosen], [score for _, score in chosen]


def write_anchors(anchors: dict, out) -> Path:
    out = Path(out)
    atomic.write_text(out, json.dumps(anchors, indent=2) + "\n")
    return out


class Anchors(dict):
    """The anchors.json content (a plain dict to read), and the text `sers anchor` prints."""

    def __init__(self, content: dict, out=None, measure_given: bool = False):
        super().__init__(content)
        self.out, self.measure_given = out, measure_given

    def summary(self) -> str:
        line = describe(self, measure_given=self.measure_given)
        return line if self.out is None else f"{line}\nwrote {self.out}"


def anchor(inputs, out, *, measure=None, strategy="both", k=3, group_size=3, n_groups=1, exclude=None,
           group_sizes=GROUP_SIZES, group_counts=GROUP_COUNTS, similarity_dir=None, progress=False,
           overwrite=False, **similarity_options) -> Anchors:
    """``sers anchor``: one similarity.json, or SOURCE TARGET caches (similarity runs first,
    into ``similarity_dir``, default ``<folder of out>/similarity``). Writes ``out``; an existing
    ``out`` (or similarity) is refused unless ``overwrite``."""
    atomic.refuse_existing(out, overwrite=overwrite)
    inputs = [Path(p) for p in inputs]
    if len(inputs) == 1 and inputs[0].suffix in (".zarr", ".h5", ".hdf5"):
        raise SersError(f"{inputs[0]} is a cache: give a SOURCE and a TARGET cache, or a similarity.json")
    if len(inputs) == 1:
        similarity_file = inputs[0]
        result = load_similarity(similarity_file)
    elif len(inputs) == 2:
        from sers.pipeline.similarity import compute_similarity

        similarity_dir = Path(similarity_dir) if similarity_dir else Path(out).parent / "similarity"
        wanted = None if measure is None else ["domain" if measure == "proxy-a-distance" else measure]
        result = compute_similarity(*inputs, similarity_dir, measures_wanted=wanted, progress=progress,
                                    overwrite=overwrite, **similarity_options)
        similarity_file = similarity_dir / "similarity.json"
    else:
        raise SersError("give one similarity.json, or a SOURCE and a TARGET cache")
    anchors = select_anchors(result, measure=measure, strategy=strategy, k=k, group_size=group_size,
                             n_groups=n_groups, exclude=exclude, similarity_file=similarity_file,
                             group_sizes=group_sizes, group_counts=group_counts)
    write_anchors(anchors, out)
    return Anchors(anchors, out=out, measure_given=measure is not None)


def describe(anchors: dict, measure_given: bool) -> str:
    """One line for the terminal: which measure chose which layers."""
    how = "as asked" if measure_given else "default: the best label-free measure available"
    def spans(groups):
        return " ".join("[" + ",".join(map(str, g)) + "]" for g in groups)

    chosen = spans(anchors["groups"]) if anchors["strategy"] == "group" else ", ".join(map(str, anchors["layers"]))
    if anchors.get("group_candidates"):
        chosen += "; groups for lam-gl: " + ", ".join(
            f"{c['size']}x{c['count']} {spans(c['groups'])}" for c in anchors["group_candidates"])
    passed_over = "".join(f"; passed over {name} ({why})"
                          for name, why in (anchors.get("measures_passed_over") or {}).items())
    return (f"anchors by {anchors['measure']} ({anchors['direction']} is better; {how}), "
            f"{anchors['strategy']}: {chosen}{passed_over}")
