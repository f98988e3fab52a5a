"""The results of `sers train`: one row per method, as text, CSV and markdown.

Each row: target UAR and macro-F1 (mean ± sample std over seeds), the 95 % interval of the mean
target UAR over seeds *and* test utterances, and two paired differences with their intervals
(:mod:`sers.classifiers.intervals`): the gain over ``last``, and for an aligning method its
*alignment gain* over its no-alignment ablation (lam − anchors-only, lam-gl − groups-only,
coral − last): what the alignment term itself adds. A difference whose interval excludes 0 is
marked ``*``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sers import runs as run_schema
from sers.atomic import atomic_path, write_text as atomic_write_text
from sers.classifiers.intervals import LEVEL, N_RESAMPLES, UARBootstrap
from sers.classifiers.methods import base_method
from sers.display.tables import format_markdown_table, format_table


class TrainResult(list):
    """The results table (a list of rows, one dict per method: the columns of results.csv),
    with where it was written and the text `sers train` prints."""

    def __init__(self, rows: list[dict], out_dir: str, runs: list[dict], target_truth=None):
        super().__init__(rows)
        self.out_dir = out_dir      # as the caller named it
        self.runs = runs            # one per method x seed: method, seed, run_dir, metrics, ...
        self.target_truth = target_truth  # the target test labels the runs were scored on, in prediction order

    def summary(self) -> str:
        return (f"{format_results(self)}\n"
                f"wrote {self.out_dir}/{run_schema.RESULTS_CSV}, {run_schema.RESULTS_MD} and one folder per run")


def _mean_std(values) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(results: list[dict], methods, selection: str, target_truth=None) -> list[dict]:
    """One row per method: mean and sample std over seeds of target UAR/macro-F1 and source dev UAR;
    with ``target_truth`` (the target test labels, in prediction order) the intervals and the
    paired gains over last and over the method's ablation."""
    table = []
    for method in methods:
        runs = [r["metrics"] for r in results if r["method"] == method]
        row = {"method": method, "seeds": len(runs), "selection": selection}
        for key, where, measure in (("target_uar", run_schema.TARGET_TEST, "uar"),
                                    ("target_macro_f1", run_schema.TARGET_TEST, "macro_f1"),
                                    ("source_dev_uar", run_schema.SOURCE_DEV, "uar")):
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std([(r[where] or {}).get(measure) for r in runs])
        row["lambda_chosen"] = _chosen(results, method)
        table.append(row)
    _add_intervals(table, results, target_truth)
    return table


def _chosen(results: list[dict], method: str) -> str:
    """Which candidate each seed kept ("lambda=0 x2; lambda=1 x3"), or "" without candidates."""
    tags = [r["candidate"] for r in results if r["method"] == method and r.get("candidate")]
    return "; ".join(f"{tag} x{tags.count(tag)}" for tag in sorted(set(tags)))


COMPARISONS = (("gain_vs_last", lambda name: "last"), ("alignment_gain", lambda name: _ablation(name)))


def _ablation(run_name: str) -> str | None:
    method = base_method(run_name)
    return method.ablation if method else None


def _add_intervals(table: list[dict], results: list[dict], target_truth) -> None:
    """The interval columns of every row, "" where they cannot be computed (no labelled test rows,
    no such comparison in this run)."""
    names = ["target_uar_ci_low", "target_uar_ci_high"] + [
        f"{key}{suffix}" for key, _ in COMPARISONS for suffix in ("", "_ci_low", "_ci_high", "_significant")]
    for row in table:
        row.update(dict.fromkeys(names, ""))
        row["ablation"] = _ablation(row["method"]) or ""
    if target_truth is None:
        return
    truth = np.asarray(target_truth).astype(str)
    classes = results[0]["classes"] if results else []
    known = np.isin(truth, classes)
    if not known.any():
        return
    bootstrap = UARBootstrap(truth[known], N_RESAMPLES, seed=0, level=LEVEL)
    by_method = {}
    for r in results:
        by_method.setdefault(r["method"], {})[r["seed"]] = r["predicted"]["target_test"][known]
    for row in table:
        own = by_method.get(row["method"], {})
        if not own:
            continue
        interval = bootstrap.interval([own[s] for s in sorted(own)])
        row["target_uar_ci_low"], row["target_uar_ci_high"] = interval.low, interval.high
        for key, other_of in COMPARISONS:
            other = by_method.get(other_of(row["method"]) or "", {})
            seeds = sorted(set(own) & set(other))
            if not seeds or other is own:
                continue
            paired = bootstrap.paired([own[s] for s in seeds], [other[s] for s in seeds])
            row.update(paired.as_dict(key))
            row[f"{key}_significant"] = paired.excludes_zero


INTERVALS_NOTE = (f"{LEVEL:.0%} intervals over seeds and {N_RESAMPLES} stratified bootstrap resamples of the target "
                  "test utterances; differences paired (same resamples, same seeds); * = interval excludes 0; "
                  "alignment gain = the method minus its ablation without the alignment term")


def _pm(mean, std) -> str:
    return "n/a" if mean is None else f"{mean:.4f} ± {std:.4f}"


def _ci(row: dict, key: str, signed: bool = False) -> str:
    """"0.712 [0.650, 0.770]"; a difference whose interval excludes 0 gets a "*"."""
    if row.get(f"{key}_ci_low", "") == "":
        return ""
    value = row[f"{key}_mean"] if key == "target_uar" else row[key]
    number = f"{value:+.3f}" if signed else f"{value:.3f}"
    mark = "*" if row.get(f"{key}_significant") is True else ""
    return f"{number} [{row[f'{key}_ci_low']:.3f}, {row[f'{key}_ci_high']:.3f}]{mark}"


def format_results(table: list[dict], markdown: bool = False) -> str:
    target_selected = any(row["selection"] == "target-dev" for row in table)
    header = ["method", "target UAR", "95% interval", "vs last", "alignment gain", "target macro-F1",
              "source dev UAR", "seeds"]
    rows = [[row["method"], _pm(row["target_uar_mean"], row["target_uar_std"]), *evidence_cells(row),
             _pm(row["target_macro_f1_mean"], row["target_macro_f1_std"]),
             _pm(row["source_dev_uar_mean"], row["source_dev_uar_std"]), row["seeds"]] for row in table]
    note = ("epochs chosen on the labelled TARGET dev split (target-selected; not a pure cross-lingual result)"
            if target_selected else "epochs chosen on the source dev split (no target labels used in training)")
    criteria = sorted({row.get("candidates_selected_by") for row in table} - {"", None})
    if criteria:  # λ (and group settings) are chosen by another rule than the epochs: say which
        note += (f"; candidates (λ, groups) chosen per seed by --select {', '.join(criteria)}"
                 + ("" if target_selected else " (label-free: unlabelled target train rows, no target label)"))
    text = format_markdown_table(header, rows) if markdown else format_table(header, rows)
    informed = sorted({row.get("anchors_target_labels") for row in table} - {"", None})
    if informed:
        note += (f"; the anchors of lam runs were chosen with labelled TARGET split {', '.join(informed)} "
                 "(a label-aware similarity measure): those results are target-informed")
    chosen = [f"{row['method']}: {row['lambda_chosen']}" for row in table if row.get("lambda_chosen")]
    lines = [f"mean ± sample std over seeds; {note}", INTERVALS_NOTE]
    if chosen:
        lines.append("candidates kept per seed: " + "; ".join(chosen))
    return text + "\n\n" + "\n".join(lines)


def read_results(path) -> list[dict]:
    """results.csv back as the rows :func:`summarise` made: numbers as floats, flags as booleans,
    empty cells as ""; [] when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            if key.endswith("_significant"):
                row[key] = {"True": True, "False": False}.get(value, "")
            elif key.endswith(("_mean", "_std", "_low", "_high")) or key in ("gain_vs_last", "alignment_gain"):
                row[key] = float(value) if value not in ("", None) else ""
    return rows


def evidence_cells(row: dict) -> list[str]:
    """The interval columns of one row as text: target UAR interval, gain over last, alignment gain."""
    alignment = _ci(row, "alignment_gain", signed=True)
    return [_ci(row, "target_uar"), _ci(row, "gain_vs_last", signed=True),
            f"vs {row['ablation']}: {alignment}" if alignment else ""]


def write_results(out_dir: Path, table: list[dict], results: list[dict]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / run_schema.RESULTS_CSV) as partial, open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    atomic_write_text(out_dir / run_schema.RESULTS_MD,
                      "# sers train results\n\n" + format_results(table, markdown=True) + "\n")
    with atomic_path(out_dir / run_schema.RUNS_CSV) as partial, open(partial, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "seed", "selection", "candidate", "best_epoch", "target_uar", "target_macro_f1",
                         "source_dev_uar", "run_dir"])
        for r in results:
            m = r["metrics"]
            writer.writerow([r["method"], r["seed"], m["selection"], r.get("candidate") or "", m["best_epoch"],
                             (m["target_test"] or {}).get("uar"), (m["target_test"] or {}).get("macro_f1"),
                             (m["source_dev"] or {}).get("uar"), r["run_dir"]])
