"""The files and terminal table of `sers similarity`, from the result dict of
:func:`sers.pipeline.similarity.compute_similarity`.

similarity.json (the whole result), similarity.csv (layers x measures), similarity.png
(a curve per measure), a heatmap per matrix form and, at segment level,
similarity_per_vowel.png (a line per vowel class). Same result, same bytes.

A measure that cannot rank layers (:func:`sers.analysis.measures.ranking_problem`: outside its
range, saturated or constant) keeps its column in the JSON and CSV, is named under the table and
in similarity.json's ``cannot_rank``, and is drawn in no figure: a curve or heatmap invites
reading a best layer off it.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from sers import atomic
from sers.analysis import measures
from sers.display import plots


def similarity_files(out_dir) -> list[Path]:
    """The files whose presence makes ``out_dir`` an earlier similarity result."""
    return [Path(out_dir) / "similarity.json", Path(out_dir) / "similarity.csv"]


def write_outputs(result: dict, out_dir) -> list[Path]:
    """similarity.json, similarity.csv, similarity.png (curves), one heatmap per matrix form and,
    at segment level, similarity_per_vowel.png (a line per vowel class)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "similarity.json"
    json_path.unlink(missing_ok=True)  # an earlier result must not stand beside a half-rewritten folder
    csv_path = out_dir / "similarity.csv"
    atomic.write_text(csv_path, to_csv(result))
    written = [json_path, csv_path]
    table = {n: m for n, m in result["measures"].items() if not measures.ranking_problem(n, m["values"])}
    directions = {n: m["direction"] for n, m in result["measures"].items()}
    title = f"{Path(result['source']['cache']).name} vs {Path(result['target']['cache']).name}"
    if table:
        written.append(plots.layer_curves(result["layers"], {n: m["values"] for n, m in table.items()},
                                          out_dir / "similarity.png", directions=directions, title=title))
    per_vowel = {vowel: {n: v for n, v in columns.items() if not measures.ranking_problem(n, v)}
                 for vowel, columns in (result.get("per_vowel") or {}).items()}
    if any(per_vowel.values()):
        written.append(plots.vowel_curves(result["layers"], per_vowel,
                                          out_dir / "similarity_per_vowel.png", directions=directions,
                                          title=f"{title}, per vowel class"))
    for name, matrix in result["matrices"].items():
        if name not in table:
            continue
        written.append(plots.layer_heatmap(matrix["values"], out_dir / f"similarity_{name}.png",
                                           title=f"{name}: source layer vs target layer"))
    # Last, each file renamed into place whole: similarity.json (what `sers anchor` and `sers report`
    # read) appears only once everything beside it is written.
    atomic.write_text(json_path, json.dumps(_json_safe(result), indent=2) + "\n")
    return written


def to_csv(result: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(result["measures"])
    writer.writerow(["layer", *names])
    for i, layer in enumerate(result["layers"]):
        writer.writerow([layer, *(_number(result["measures"][n]["values"][i]) for n in names)])
    return buffer.getvalue()


def format_table(result: dict) -> str:
    """Layers x measures for the terminal; '*' marks the best layer of each measure, '=' layers
    tied for best, and a measure that cannot rank layers (outside its range, saturated, constant)
    is named below the table and marks no layer. Values of an unbiased estimate below its "no
    difference" floor (a kernel MMD below 0) are shown as computed, with a line saying what they
    mean; a line gives Kendall's tau between the layer orders of every two measures that can rank.
    At segment level a line per measure follows with each vowel class's best layer."""
    names = list(result["measures"])
    marks, problems = {}, {}
    for name in names:
        column = result["measures"][name]
        problems[name] = measures.ranking_problem(name, column["values"])
        best = [] if problems[name] else measures.best_positions(column["values"], column["direction"])
        marks[name] = {i: "*" if len(best) == 1 else "=" for i in best}
    widths = [max(len(n), 9) for n in names]
    lines = ["layer  " + "  ".join(n.rjust(w) for n, w in zip(names, widths))]
    arrows = ["lower" if result["measures"][n]["direction"] == "lower" else "higher" for n in names]
    lines.append("       " + "  ".join(f"({a})".rjust(w) for a, w in zip(arrows, widths)))
    for i, layer in enumerate(result["layers"]):
        cells = []
        for name, w in zip(names, widths):
            value = result["measures"][name]["values"][i]
            text = "nan" if value is None or not math.isfinite(value) else f"{value:.4g}"
            cells.append((text + marks[name].get(i, " ")).rjust(w + 1))
        lines.append(f"{layer:>5} " + " ".join(cells))
    if any(len(m) > 1 for m in marks.values()):
        lines.append("= layers tied for best: the measure cannot choose between them")
    for name, problem in problems.items():
        if problem:
            lines.append(f"{name} cannot rank layers ({problem}): it chooses no anchors and is not plotted")
    for name in names:
        floor = measures.MEASURES[name].floor if name in measures.MEASURES else None
        below = [str(layer) for layer, v in zip(result["layers"], result["measures"][name]["values"])
                 if floor is not None and v is not None and math.isfinite(v) and v < floor]
        if below and not problems[name]:
            lines.append(f"{name} < {floor:g} at layer{'s' if len(below) > 1 else ''} {', '.join(below)}: an unbiased "
                         f"estimate of {floor:g} (no difference) falls below it about half the time; read as {floor:g}")
    agreement = [pair for pair in result.get("agreement") or [] if pair["tau"] is not None]
    if agreement:
        lines.append("layer orders agree (Kendall tau, +1 = same order of more alike layers): "
                     + ", ".join(f"{'/'.join(pair['measures'])} {pair['tau']:+.2f}" for pair in agreement))
    if result.get("per_vowel"):
        lines.append("best layer per vowel class:")
        for name in names:
            cells = [f"{vowel} {_best_layer(result, columns[name], name)}"
                     for vowel, columns in result["per_vowel"].items() if name in columns]
            if cells:
                lines.append(f"  {name:<17}" + "   ".join(cells))
    return "\n".join(lines)


def _best_layer(result: dict, values, name: str) -> str:
    """The best layer's number; '-' when none is finite or the measure cannot rank; ties joined by '='."""
    if measures.ranking_problem(name, values):
        return "-"
    best = measures.best_positions(values, result["measures"][name]["direction"])
    return "=".join(str(result["layers"][i]) for i in best) or "-"


def _number(value) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _json_safe(value):
    """NaN/inf become null (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
