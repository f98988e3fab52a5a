"""The results of `sers train`: one row per method (mean ± std over seeds), as text, CSV and markdown."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sers import runs as run_schema
from sers.atomic import atomic_path, write_text as atomic_write_text
from sers.display.tables import format_markdown_table, format_table


class TrainResult(list):
    """The results table (a list of rows, one dict per method: the columns of results.csv),
    with where it was written and the text `sers train` prints."""

    def __init__(self, rows: list[dict], out_dir: str, runs: list[dict]):
        super().__init__(rows)
        self.out_dir = out_dir      # as the caller named it
        self.runs = runs            # one per method x seed: method, seed, run_dir, metrics, ...

    def summary(self) -> str:
        return (f"{format_results(self)}\n"
                f"wrote {self.out_dir}/{run_schema.RESULTS_CSV}, {run_schema.RESULTS_MD} and one folder per run")


def _mean_std(values) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(results: list[dict], methods, selection: str) -> list[dict]:
    """One row per method: mean and sample std over seeds of target UAR/macro-F1 and source dev UAR."""
    table = []
    for method in methods:
        runs = [r["metrics"] for r in results if r["method"] == method]
        row = {"method": method, "seeds": len(runs), "selection": selection}
        for key, where, measure in (("target_uar", run_schema.TARGET_TEST, "uar"),
                                    ("target_macro_f1", run_schema.TARGET_TEST, "macro_f1"),
                                    ("source_dev_uar", run_schema.SOURCE_DEV, "uar")):
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std([(r[where] or {}).get(measure) for r in runs])
        table.append(row)
    return table


def _pm(mean, std) -> str:
    return "n/a" if mean is None else f"{mean:.4f} ± {std:.4f}"


def format_results(table: list[dict], markdown: bool = False) -> str:
    target_selected = any(row["selection"] == "target-dev" for row in table)
    header = ["method", "target UAR", "target macro-F1", "source dev UAR", "seeds"]
    rows = [[row["method"], _pm(row["target_uar_mean"], row["target_uar_std"]),
             _pm(row["target_macro_f1_mean"], row["target_macro_f1_std"]),
             _pm(row["source_dev_uar_mean"], row["source_dev_uar_std"]), row["seeds"]] for row in table]
    note = ("model selection: labelled TARGET dev split (target-selected; not a pure cross-lingual result)"
            if target_selected else "model selection: source dev split (no target labels used in training)")
    text = format_markdown_table(header, rows) if markdown else format_table(header, rows)
    informed = sorted({row.get("anchors_target_labels") for row in table} - {"", None})
    if informed:
        note += (f"; the anchors of lam runs were chosen with labelled TARGET split {', '.join(informed)} "
                 "(a label-aware similarity measure): those results are target-informed")
    return f"{text}\n\nmean ± sample std over seeds; {note}"


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
        writer.writerow(["method", "seed", "selection", "best_epoch", "target_uar", "target_macro_f1",
                         "source_dev_uar", "run_dir"])
        for r in results:
            m = r["metrics"]
            writer.writerow([r["method"], r["seed"], m["selection"], m["best_epoch"],
                             (m["target_test"] or {}).get("uar"), (m["target_test"] or {}).get("macro_f1"),
                             (m["source_dev"] or {}).get("uar"), r["run_dir"]])
