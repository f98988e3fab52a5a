"""`sers report`: one page a researcher pastes into a lab update.

Reads a runs folder written by `sers train` (and optionally a similarity folder and an
anchors.json), and writes a self-contained HTML page (figures embedded as PNG data
URIs, inline CSS, no script, nothing fetched) plus a Markdown twin next to it, whose
figures are PNG files in ``<name>_files/``. Both come from the same document
(:mod:`sers.report_document`), so they show the same tables.

    >>> html_path, md_path = write_report("runs/", "report.html", similarity_dir="sim/",
    ...                                   anchors="anchors.json")
"""
from __future__ import annotations

import math
import shutil
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from sers import atomic
from sers.display import figures as report_figures
from sers.errors import SersError
from sers.report.context import commands_section, data_section, similarity_section, versions_section
from sers.report.document import (Bullets, Document, Figure, Figures, KeyValues, Paragraph, Section, Table,
                                  render_html, render_markdown)
from sers.report.inputs import (METHOD_ORDER, MethodResult, cache_paths, cache_summary, find_key, group_runs,
                                read_json, read_runs)
from sers import runs as run_schema
from sers.pipeline.train_results import INTERVALS_NOTE, evidence_cells, read_results


# The results table's score columns: (evaluation in metrics.json, metric).
SCORES = (("target_test", "uar"), ("target_test", "macro_f1"), ("target_test", "accuracy"), ("source_dev", "uar"))


class ReportFiles(NamedTuple):
    """The page and its Markdown twin, and the line `sers report` prints."""
    html: Path
    markdown: Path

    def summary(self) -> str:
        return f"wrote {self.html} and {self.markdown}"


def write_report(runs_dir, out_html, similarity_dir=None, anchors=None, *, overwrite=False) -> ReportFiles:
    """Write ``out_html`` and its Markdown twin (same name, ``.md``); returns both paths.
    An existing page or twin is refused unless ``overwrite``."""
    runs_dir, out_html = Path(runs_dir), Path(out_html)
    if out_html.suffix.lower() == ".md":
        raise SersError(f"{out_html}: the report is HTML (e.g. report.html); its Markdown twin is written beside it")
    md_path = out_html.with_suffix(".md")
    atomic.refuse_existing(out_html, md_path, overwrite=overwrite)
    runs, run_notes = read_runs(runs_dir)
    results = group_runs(runs, METHOD_ORDER)
    anchors_path = Path(anchors) if anchors else _recorded_anchors_file(runs)
    anchor_data = read_json(anchors_path) if anchors_path else None
    similarity_path = _similarity_file(similarity_dir, anchor_data)
    similarity = read_json(similarity_path) if similarity_path else None
    caches = [(role, cache_summary(path)) for role, path in cache_paths(runs, similarity, runs_dir)]

    images = out_html.parent / f"{out_html.stem}_files"
    images.mkdir(parents=True, exist_ok=True)
    for old in images.glob("*.png"):  # figures of an earlier report under this name
        old.unlink()

    now = datetime.now()
    document = Document(
        title=f"{_title(caches, runs_dir)}, {now:%Y-%m-%d}",
        subtitle=(f"Written {now:%Y-%m-%d %H:%M} · {len(runs)} runs of {len(results)} method "
                  f"configuration{'s' if len(results) != 1 else ''} · runs folder {runs_dir}"),
        sections=[
            _overview(results, runs_dir, similarity_path, anchors_path, run_notes),
            _results_section(results, images, runs_dir),
            _confusion_section(results, images),
            similarity_section(similarity, anchor_data, anchors_path, images),
            data_section(caches),
            _runs_section(results, runs_dir, images),
            commands_section(results, runs_dir, similarity, similarity_path, anchor_data, anchors_path),
            versions_section(runs),
        ])
    out_html.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(md_path, render_markdown(document, md_path))
    atomic.write_text(out_html, render_html(document))  # last: the page appears only when all is written
    return ReportFiles(out_html, md_path)


def _recorded_anchors_file(runs) -> Path | None:
    """An anchors.json that the runs' configs name, when it is still there."""
    for run in runs:
        value = find_key(run.config, ("anchors_file", "anchors"))
        if isinstance(value, str) and value.endswith(".json") and Path(value).is_file():
            return Path(value)
    return None


def _similarity_file(similarity_dir, anchor_data) -> Path | None:
    if similarity_dir is not None:
        path = Path(similarity_dir)
        path = path if path.suffix == ".json" else path / "similarity.json"
        if not path.is_file():
            raise SersError(f"{path}: no such file (write it with "
                            f"`sers similarity SOURCE TARGET -o {similarity_dir}`)")
        return path
    recorded = (anchor_data or {}).get("similarity_file")
    return Path(recorded) if recorded and Path(recorded).is_file() else None


def _title(caches, runs_dir: Path) -> str:
    names = {role: Path(summary["path"]).name for role, summary in caches}
    if "source" in names and "target" in names:
        return f"Cross-lingual SER by layer anchoring: {names['source']} → {names['target']}"
    return f"Cross-lingual SER by layer anchoring: {runs_dir.name}"


# -- sections -----------------------------------------------------------------------------------

def _percent(mean: float, std: float, count: int) -> str:
    if count == 0 or not math.isfinite(mean):
        return "-"
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if count > 1 else f"{100 * mean:.2f}"


def _single(evaluation: dict | None) -> str:
    """One run's UAR in percent."""
    value = (evaluation or {}).get("uar")
    return f"{100 * value:.2f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _best(results: list[MethodResult]) -> MethodResult | None:
    """Best mean target UAR among runs selected without target labels (all runs if none are)."""
    pool = [r for r in results if not r.target_selected] or results
    scored = [r for r in pool if r.mean_std("target_test", "uar")[2]]
    return max(scored, key=lambda r: r.mean_std("target_test", "uar")[0]) if scored else None


def _overview(results, runs_dir, similarity_path, anchors_path, run_notes) -> Section:
    best = _best(results)
    facts = [("runs", str(runs_dir)), ("similarity", str(similarity_path or "not given")),
             ("anchors", str(anchors_path or "not given"))]
    if best is not None:
        mean, std, n = best.mean_std("target_test", "uar")
        facts.insert(0, ("best target UAR", f"{best.label}: {_percent(mean, std, n)} % over {n} seed(s)"))
        baseline = next((r for r in results if r.method == "last" and not r.target_selected), None)
        if baseline is not None and baseline is not best and baseline.mean_std("target_test", "uar")[2]:
            b_mean, b_std, b_n = baseline.mean_std("target_test", "uar")
            facts.insert(1, ("last-layer baseline", f"{_percent(b_mean, b_std, b_n)} % "
                                                    f"({100 * (mean - b_mean):+.2f} points for {best.label})"))
    blocks = [KeyValues(facts)]
    if run_notes:
        blocks.append(Bullets(run_notes))
    return Section("Overview", blocks)


def _evidence_blocks(table: list[dict]) -> list:
    """What the alignment adds, with intervals: from results.csv, which `sers train` computed from
    the runs' target test predictions (nothing when the folder has no such table)."""
    if not any(row.get("target_uar_ci_low", "") != "" for row in table):
        return []
    rows = [[row["method"]] + evidence_cells(row) for row in table]
    return [Table(["Method", "Target UAR [95 % interval]", "vs last", "Alignment gain"], rows,
                  caption="What each method adds over the last layer, and what its alignment term adds over "
                          "the same layers and heads without it"),
            Bullets([INTERVALS_NOTE + "."])]


def _results_section(results: list[MethodResult], images: Path, runs_dir: Path) -> Section:
    show_anchors = any(r.anchors for r in results)
    show_lambda = any(r.lambda_ is not None for r in results)
    header = ["Method"] + (["Anchors"] if show_anchors else []) + (["λ"] if show_lambda else []) + [
        "Target UAR", "Target macro-F1", "Target accuracy", "Source-dev UAR", "Seeds", "Selection"]
    rows, strong = [], set()
    best = _best(results)
    uar_column = header.index("Target UAR")
    for i, result in enumerate(results):
        row = [result.label]
        if show_anchors:
            row.append(result.anchors or "-")
        if show_lambda:
            row.append("-" if result.lambda_ is None else f"{result.lambda_:g}")
        row += [_percent(*result.mean_std(role, key)) for role, key in SCORES]
        row += [str(len(result.runs)), "target-selected" if result.target_selected else "source dev"]
        rows.append(row)
        if result is best:
            strong.add((i, uar_column))
    notes = ["Percentages: mean ± sample standard deviation over seeds; UAR is the mean of per-class recalls.",
             "Bold: the best target UAR among runs whose model was selected on source dev data."]
    criteria = sorted({run.config["candidate_selection"]["criterion"] for r in results for run in r.runs
                       if run.config.get("candidate_selection")})
    if criteria:
        notes.append(f"λ (and, where several anchor files were given, the anchors) chosen for each seed among "
                     f"candidates by {', '.join(criteria)}, a criterion that reads no target label; "
                     f"each seed's folder holds its candidates.")
    if any(r.target_selected for r in results):
        notes.append("target-selected: the model (epoch) was selected with labelled target dev data; "
                     "these runs saw target labels and are not comparable with unsupervised transfer.")
    blocks = [Table(header, rows, strong, css_class="results"), Bullets(notes)]
    blocks += _evidence_blocks(read_results(runs_dir / run_schema.RESULTS_CSV))
    scored = [r for r in results if r.mean_std("target_test", "uar")[2]]
    if scored:
        classes = next((c for c in (r.confusion() for r in scored) if c), None)
        means, stds, _ = zip(*(r.mean_std("target_test", "uar") for r in scored))
        figure = report_figures.uar_bars([r.label for r in scored], means, stds, images / "target_uar.png",
                                         chance=1 / len(classes[0]) if classes else None,
                                         marked=[r.target_selected for r in scored])
        caption = "Target UAR per method, ± std over seeds" + (" (grey, hatched: target-selected)"
                                                               if any(r.target_selected for r in scored) else "")
        blocks.append(Figure(figure, caption))
    blocks.append(_recall_table(results))
    return Section("Results", blocks)


def _recall_table(results: list[MethodResult]) -> Table:
    recalls = [r.per_class_recall() for r in results]
    classes = []
    for per_class in recalls:
        classes += [c for c in per_class if c not in classes]
    rows = [[r.label] + [f"{100 * per_class[c]:.1f}" if c in per_class else "-" for c in classes]
            for r, per_class in zip(results, recalls)]
    return Table(["Method"] + classes, rows, caption="Target recall per class (%), mean over seeds")


def _confusion_section(results: list[MethodResult], images: Path) -> Section:
    figures = []
    for i, result in enumerate(results):
        found = result.confusion()
        if found is None:
            continue
        classes, counts = found
        path = report_figures.confusion_heatmap(counts, classes, images / f"confusion_{i:02d}.png",
                                                title=result.label)
        figures.append(Figure(path, f"{result.label}: {int(counts.sum())} target test predictions "
                                    f"over {len(result.runs)} seed(s)", width=250))
    if not figures:
        return Section("Confusion matrices", [Paragraph("The runs' metrics hold no confusion matrices.", muted=True)])
    return Section("Confusion matrices", [
        Paragraph("Target test set, summed over seeds, each row normalised to 100 % (rows: true class, "
                  "columns: predicted)."), Figures(figures)])


def _runs_section(results: list[MethodResult], runs_dir: Path, images: Path) -> Section:
    """Every run's numbers, and the training curves `sers train` drew for each method's first seed
    (copied beside the Markdown, so that its folder is complete on its own)."""
    show_epoch = any(run.best_epoch is not None for result in results for run in result.runs)
    rows = []
    for result in results:
        for run in result.runs:
            row = [result.label, "-" if run.seed is None else str(run.seed), _single(run.target_test),
                   _single(run.source_dev)]
            if show_epoch:
                row.append("-" if run.best_epoch is None else str(run.best_epoch))
            rows.append(row + [str(run.folder.relative_to(runs_dir))])
    header = ["Method", "Seed", "Target UAR", "Source-dev UAR"] + (["Best epoch"] if show_epoch else [])
    header.append("Run folder")
    blocks = [Table(header, rows, caption="Every run (UAR in %)")]
    figures = []
    for i, result in enumerate(results):
        run = result.runs[0]
        if (run.folder / "curves.png").is_file():
            copy = shutil.copyfile(run.folder / "curves.png", images / f"curves_{i:02d}.png")
            seed = "" if run.seed is None else f", seed {run.seed}"
            figures.append(Figure(Path(copy), f"{result.label}{seed} ({run.folder.relative_to(runs_dir)}/curves.png)",
                                  width=520))
    if figures:
        blocks += [Paragraph("Training curves: losses per epoch, and the dev UAR that selected the epoch."),
                   Figures(figures)]
    return Section("Runs", blocks)
