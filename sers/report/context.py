"""The report's context: similarity and anchors, the caches, the commands, the versions.

The sections that say where the results came from, built as blocks of
:mod:`sers.report_document` for :func:`sers.pipeline.report.write_report`.
"""
from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

from sers import runs as run_schema
from sers.analysis.measures import ranking_problem
from sers.display import plots
from sers.display import figures as report_figures
from sers.report.document import Bullets, Code, Figure, Figures, KeyValues, Paragraph, Section, Table
from sers.report.inputs import MethodResult, describe_anchors, find_key, versions


def similarity_section(similarity, anchors, anchors_path, images: Path) -> Section:
    """Curves per measure with the anchors marked, layer x layer heatmaps, the values, the anchors."""
    anchors = anchors or {}
    anchor_layers = [int(x) for x in anchors.get("layers") or []]
    anchor_groups = [[int(x) for x in g] for g in anchors.get("groups") or []]
    blocks = []
    # A measure that cannot rank layers (constant, saturated, outside its range) is not drawn:
    # a curve or heatmap invites reading a best layer off it.
    problems = {name: ranking_problem(name, column.get("values", []))
                for name, column in ((similarity or {}).get("measures") or {}).items()}
    if similarity and similarity.get("measures"):
        blocks.append(Paragraph(_similarity_description(similarity)))
        columns = {name: column for name, column in similarity["measures"].items() if not problems[name]}
        curves = ({name: column.get("values", []) for name, column in columns.items()},
                  {name: column.get("direction") for name, column in columns.items()},
                  similarity.get("layers", [])) if columns else None
        if any(problems.values()):
            blocks.append(Paragraph("Not plotted, as they cannot rank layers: " + "; ".join(
                f"{name} ({problem})" for name, problem in problems.items() if problem) + ".", muted=True))
    elif anchors.get("scores"):  # no similarity folder: the anchor measure's scores are in anchors.json
        name = anchors.get("measure") or "score"
        layers = sorted(int(layer) for layer in anchors["scores"])
        curves = ({name: [anchors["scores"][str(layer)] for layer in layers]}, {name: anchors.get("direction")}, layers)
        blocks.append(Paragraph("No similarity folder given: the curve shows the anchor file's scores.", muted=True))
    else:
        curves = None
        blocks.append(Paragraph("No similarity given (use --similarity DIR, the folder `sers similarity` wrote).",
                                muted=True))
    if curves is not None:
        values, directions, layers = curves
        path = report_figures.anchored_curves(layers, values, images / "similarity_anchors.png",
                                              directions=directions, anchor_layers=anchor_layers,
                                              anchor_groups=anchor_groups, anchor_measure=anchors.get("measure"))
        marks = "dashed red lines: anchor layers" + ("; shaded: anchor groups" if anchor_groups else "")
        blocks.append(Figure(path, "Similarity per layer" + (f" ({marks})" if anchor_layers else "")))
    if similarity:
        heatmaps = [Figure(plots.layer_heatmap(matrix["values"], images / f"similarity_{name}.png",
                                               title=f"{name}: source layer vs target layer"),
                           f"{name}, source layer × target layer", width=420)
                    for name, matrix in (similarity.get("matrices") or {}).items()
                    if matrix.get("values") and not problems.get(name)]
        if heatmaps:
            blocks.append(Figures(heatmaps))
        blocks.append(_similarity_table(similarity, anchor_layers, anchors.get("measure")))
        if similarity.get("notes"):
            blocks.append(Bullets([str(note) for note in similarity["notes"]]))
    blocks.append(_anchors_block(anchors, anchors_path))
    return Section("Layer similarity and anchors", blocks)


def _similarity_description(similarity: dict) -> str:
    source, target = similarity.get("source") or {}, similarity.get("target") or {}
    labels = (similarity.get("labels_used") or {}).get("target")

    def side(info):
        return (f"{Path(str(info.get('cache', '?'))).name} split {info.get('split', '?')} "
                f"({info.get('n', '?')} utterances")

    return (f"{similarity.get('level', 'utterance')}-level features; source: {side(source)}); "
            f"target: {side(target)}, unlabelled); target labels read: {'split ' + str(labels) if labels else 'none'}.")


def _similarity_table(similarity, anchor_layers, anchor_measure) -> Table:
    names = list(similarity["measures"])
    header = ["Layer"] + [f"{n} ({similarity['measures'][n].get('direction', '?')})" for n in names] + ["Anchor"]
    rows, strong = [], set()
    for i, layer in enumerate(similarity.get("layers", [])):
        row = [str(layer)]
        for name in names:
            values = similarity["measures"][name].get("values", [])
            value = values[i] if i < len(values) else None
            row.append(f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else "-")
        row.append("anchor" if int(layer) in anchor_layers else "")
        if int(layer) in anchor_layers and anchor_measure in names:
            strong.add((len(rows), 1 + names.index(anchor_measure)))
        rows.append(row)
    return Table(header, rows, strong, caption="Similarity per layer (bold: the anchors' scores)")


def _anchors_block(anchors, anchors_path) -> Section:
    if not anchors:
        return Section("Anchors", [Paragraph("No anchors.json given (use --anchors); the results table shows the "
                                             "anchors each run recorded.", muted=True)])
    facts = [("file", str(anchors_path)),
             ("measure", f"{anchors.get('measure', '?')} ({anchors.get('direction', '?')} is better)"),
             ("strategy", str(anchors.get("strategy", "?"))),
             ("layers", describe_anchors(anchors.get("layers")) or "-")]
    if anchors.get("groups"):
        scores = anchors.get("group_scores") or [None] * len(anchors["groups"])
        groups = [describe_anchors([group]) + (f" (mean {score:.4g})" if isinstance(score, (int, float)) else "")
                  for group, score in zip(anchors["groups"], scores)]
        facts.append(("groups", "; ".join(groups)))
    facts.append(("excluded", describe_anchors(anchors.get("excluded")) or "none"))
    return Section("Anchors", [KeyValues(facts)])


def data_section(caches) -> Section:
    if not caches:
        return Section("Data", [Paragraph("Neither the runs nor the similarity name a cache.", muted=True)])
    blocks = []
    for role, summary in caches:
        title = f"{role}: {Path(summary['path']).name}"
        if "missing" in summary:
            blocks.append(Section(title, [Paragraph(f"not readable here: {summary['missing']}", muted=True)]))
            continue
        hours = summary.get("hours")
        facts = [("path", summary["path"]),
                 ("model", f"{summary['model_id']} (revision {summary.get('revision') or '-'})"),
                 ("layers", f"{summary['num_layers']} hidden states (0 = embedding output) × "
                            f"{summary['hidden_size']}"),
                 ("pooled", ", ".join(summary.get("pool_stats") or [])),
                 ("utterances", f"{summary['utterances']}" + (f", {hours:.2f} h" if hours is not None else "")),
                 ("errors", str(summary.get("errors", 0))),
                 ("extracted", f"{summary.get('created') or '-'} with sers {summary.get('sers_version') or '?'}"
                               + ("" if summary.get("complete") else " (NOT complete)"))]
        blocks.append(Section(title, [KeyValues(facts), _count_table(summary["counts"])]))
    return Section("Data", blocks)


def _count_table(counts: dict) -> Table:
    """Utterances by split × language (rows) and label (columns)."""
    labels = sorted({label for _, _, label in counts})
    keys = sorted({(split, language) for split, language, _ in counts})
    rows = []
    for split, language in keys:
        cells = [counts.get((split, language, label), 0) for label in labels]
        rows.append([split or "-", language or "-"] + [str(c) for c in cells] + [str(sum(cells))])
    return Table(["Split", "Language"] + [label or "(unlabelled)" for label in labels] + ["Total"], rows)


def commands_section(results: list[MethodResult], runs_dir: Path, similarity, similarity_path,
                     anchors, anchors_path) -> Section:
    """The train commands the runs recorded, similarity/anchor commands rebuilt from their files'
    settings, and each method's config.json."""
    recorded = []
    for result in results:
        for run in result.runs:
            if run.command and run.command not in recorded:
                recorded.append(run.command)
    rebuilt = [_similarity_command(similarity, similarity_path), _anchor_command(anchors, anchors_path)]
    rebuilt = [command for command in rebuilt if command]
    text = []
    for heading, commands in (("# rebuilt from the settings similarity.json and anchors.json record", rebuilt),
                              ("# recorded by the runs", recorded)):
        if commands:
            text.append(heading + "\n" + "\n\n".join(_shell_lines(c) for c in commands))
    blocks = [Code("\n\n".join(text))] if text else []
    if not recorded:
        blocks.append(Paragraph("The runs record no command line; their configurations are below.", muted=True))
    for result in results:
        first = result.runs[0]
        if first.config:
            where = first.folder.relative_to(runs_dir) / run_schema.CONFIG
            blocks.append(Code(_json_text(first.config), summary=f"{result.label}: configuration ({where})"))
    return Section("Commands and configuration", blocks)


def _json_text(value) -> str:
    """Indented JSON with short lists of numbers or strings kept on one line."""
    def one_line(match):
        joined = "[" + ", ".join(re.split(r",\s*\n\s*", match.group(1).strip())) + "]"
        return joined if len(joined) <= 80 else match.group(0)

    return _FLAT_LIST.sub(one_line, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


_FLAT_LIST = re.compile(r"\[(\s*\n[^\[\]{}]*?)\n\s*\]")


def _similarity_command(similarity, similarity_path) -> str | None:
    source, target = (similarity or {}).get("source") or {}, (similarity or {}).get("target") or {}
    if not source.get("cache") or not target.get("cache"):
        return None
    # proxy-a-distance comes with domain; skipped measures were asked for too
    measures = [m for m in similarity.get("measures", {}) if m != "proxy-a-distance"]
    measures += list(similarity.get("skipped") or {})
    words = ["sers", "similarity", source["cache"], target["cache"], "-o", str(Path(similarity_path).parent),
             "--measures", ",".join(measures)]
    options = {"--source-split": (source.get("split"), "train"), "--target-split": (target.get("split"), "train"),
               "--target-labels": ((similarity.get("labels_used") or {}).get("target"), None),
               "--level": (similarity.get("level"), "utterance"),
               "--max-utterances": (similarity.get("max_utterances"), None), "--seed": (similarity.get("seed"), 0)}
    for option, (value, default) in options.items():
        if value is not None and value != default:
            words += [option, str(value)]
    return shlex.join(words)


def _anchor_command(anchors, anchors_path) -> str | None:
    if not anchors or not anchors.get("measure") or not anchors_path:
        return None
    words = ["sers", "anchor", str(anchors.get("similarity_file") or "similarity.json"), "-o", str(anchors_path),
             "--measure", str(anchors["measure"]), "--strategy", str(anchors.get("strategy", "topk"))]
    if anchors.get("groups"):
        words += ["--group-size", str(len(anchors["groups"][0])), "--groups", str(len(anchors["groups"]))]
    elif anchors.get("layers"):
        words += ["--k", str(len(anchors["layers"]))]
    if anchors.get("excluded"):
        words += ["--exclude", ",".join(str(x) for x in anchors["excluded"])]
    return shlex.join(words)


def _shell_lines(command: str, width: int = 90) -> str:
    """A long command line with one option per continued line, as people write them in docs."""
    if len(command) <= width:
        return command
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: show it as recorded
        return command
    lines = [[]]
    for word in words:
        if word.startswith("-") and lines[-1]:
            lines.append([])
        lines[-1].append(word)
    return " \\\n    ".join(shlex.join(line) for line in lines)


def versions_section(runs) -> Section:
    here = versions()
    recorded: dict[str, list[str]] = {}
    for run in runs:
        found = dict(find_key(run.config, ("versions",)) or {})
        if find_key(run.config, ("sers_version",)):
            found.setdefault("sers", find_key(run.config, ("sers_version",)))
        for name, value in found.items():
            recorded.setdefault(name, [])
            if str(value) not in recorded[name]:
                recorded[name].append(str(value))
    names = list(here) + [n for n in recorded if n not in here]
    header = ["Package", "This report"] + (["Recorded by the runs"] if recorded else [])
    rows = [[name, here.get(name, "-")] + ([" / ".join(recorded.get(name, [])) or "-"] if recorded else [])
            for name in names]
    return Section("Versions", [Table(header, rows)])
