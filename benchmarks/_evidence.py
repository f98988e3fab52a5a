"""What benchmarks/transfer.py adds to `sers train`'s tables: the same runs under every label-free
selector, each selector's regret, and the alignment gains summed up over directions.

Target labels are read here, by the benchmark, after training: the regret of a selector needs the
target UAR of every candidate. Training is deterministic (same seed, same candidates), so the
table of a selector computed here from the candidates equals what `sers train --select` prints.
"""
from __future__ import annotations

from selection_regret import ORACLE, choices

from sers.classifiers.options import SELECTORS
from sers.classifiers.selection import choose
from sers.pipeline.train_results import summarise


def reselect(table, criterion: str, keep=lambda tag: True) -> list[dict]:
    """``table`` (a TrainResult) as if ``criterion`` had chosen among each seed's candidates (those
    whose tag ``keep`` accepts)."""
    results = []
    for run in table.runs:
        candidates = [c for c in run.get("candidates") or [] if keep(c["candidate"])]
        if len(candidates) > 1:
            kept = candidates[choose([c["selection_scores"] for c in candidates], criterion,
                                     [c["candidate"] for c in candidates])]
            results.append({**kept, "method": run["method"], "seed": run["seed"]})
        elif candidates:
            results.append({**candidates[0], "method": run["method"], "seed": run["seed"]})
        else:
            results.append(run)
    methods = list(dict.fromkeys(row["method"] for row in table))
    return summarise(results, methods, table[0]["selection"], table.target_truth)


def group_setting_tables(table, criterion: str) -> dict[str, list[dict]]:
    """{group setting ("2x1": size x count): the table with lam-gl's and groups-only's choice held to
    that setting (λ still chosen by ``criterion``)}: what each fixed setting would have given."""
    tags = {part for run in table.runs for c in run.get("candidates") or [] for part in c["candidate"].split(",")
            if part.startswith("groups=")}
    return {tag.split("=")[1]: reselect(table, criterion, keep=lambda t, tag=tag: tag in t.split(","))
            for tag in sorted(tags)}


def group_settings_summary(directions: list[dict], criterion: str, method: str = "lam-gl") -> tuple[list[str], list[list]]:
    """Per model and direction: ``method``'s target UAR with its default choice among group settings,
    with each setting held fixed, and the setting each seed kept."""
    settings = sorted({s for d in directions for s in d.get("settings", {}).get(criterion, {})})
    header = ["model", "direction", f"{method} (chosen)"] + [f"fixed {s}" for s in settings] + ["kept (seeds)"]
    rows = []
    for d in directions:
        own = d.get("settings", {}).get(criterion)
        if not own:
            continue
        chosen = next(r for r in d["tables"][criterion] if r["method"] == method)
        fixed = [next((f"{r['target_uar_mean']:.3f}" for r in own[s] if r["method"] == method), "")
                 if s in own else "" for s in settings]
        rows.append([d["model"], d["direction"], f"{chosen['target_uar_mean']:.3f}", *fixed,
                     chosen["lambda_chosen"].replace("lambda=", "λ=")])
    return header, rows


def regret_rows(table, direction: str) -> list[dict]:
    """Per method x seed with candidates, per criterion: the best candidate's target UAR minus that
    of the candidate the criterion keeps (one implementation: selection_regret.choices)."""
    return [{"direction": direction, "method": method, "criterion": criterion, "regret": regret, "lambda0": zero}
            for (method, criterion), picked in choices(table).items() if criterion != ORACLE
            for regret, zero, _ in picked]


def summarise_regret(regrets: list[dict]) -> tuple[list[str], list[list]]:
    """Per criterion (all aligning methods, then each): mean and max regret over directions x seeds,
    and how often λ = 0 was kept; the lowest mean regret first."""
    header = ["criterion", "method", "runs", "mean regret", "max regret", "λ = 0 kept"]
    rows = []
    criteria = sorted(dict.fromkeys(r["criterion"] for r in regrets),
                      key=lambda c: mean([r["regret"] for r in regrets if r["criterion"] == c]))
    for criterion in criteria:
        for method in ["all"] + sorted({r["method"] for r in regrets}):
            own = [r for r in regrets if r["criterion"] == criterion and method in ("all", r["method"])]
            rows.append([criterion, method, len(own), f"{mean([r['regret'] for r in own]):.4f}",
                         f"{max(r['regret'] for r in own):.3f}", f"{sum(r['lambda0'] for r in own) / len(own):.0%}"])
    return header, rows


def best_criterion(regrets: list[dict]) -> str:
    return min(dict.fromkeys(r["criterion"] for r in regrets),
               key=lambda c: mean([r["regret"] for r in regrets if r["criterion"] == c]))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def interval_text(row: dict, key: str, signed: bool = False) -> str:
    """"[0.650, 0.770]" for a UAR, "+0.031* [+0.004, +0.060]" for a difference (* excludes 0)."""
    if row.get(f"{key}_ci_low", "") == "":
        return ""
    if not signed:
        return f"[{row[f'{key}_ci_low']:.3f}, {row[f'{key}_ci_high']:.3f}]"
    mark = "*" if row.get(f"{key}_significant") is True else ""
    return f"{row[key]:+.3f}{mark} [{row[f'{key}_ci_low']:+.3f}, {row[f'{key}_ci_high']:+.3f}]"


def alignment_summary(directions: list[dict], criterion: str) -> tuple[list[str], list[list]]:
    """Per model and aligning method: mean alignment gain over directions, its range, and in how many
    directions its interval lies above 0 or below 0, and how often it is below −0.02."""
    header = ["model", "method", "directions", "mean alignment gain", "min", "max", "above 0*", "below 0*",
              "below −0.02"]
    gains = [(d["model"], row) for d in directions for row in d["tables"][criterion] if row["alignment_gain"] != ""]
    rows = []
    for model, method in dict.fromkeys((m, r["method"]) for m, r in gains):
        own = [r for m, r in gains if m == model and r["method"] == method]
        values = [r["alignment_gain"] for r in own]
        rows.append([model, f"{method} − {own[0]['ablation']}", len(own), f"{mean(values):+.3f}",
                     f"{min(values):+.3f}", f"{max(values):+.3f}",
                     sum(r["alignment_gain_significant"] is True and r["alignment_gain"] > 0 for r in own),
                     sum(r["alignment_gain_significant"] is True and r["alignment_gain"] < 0 for r in own),
                     sum(v < -0.02 for v in values)])
    return header, rows


def selector_summary(directions: list[dict], methods=("lam", "lam-gl")) -> tuple[list[str], list[list]]:
    """Per criterion: each aligning method's mean target UAR and mean alignment gain over all
    directions and models, and in how many directions it is more than 0.02 below its ablation."""
    header = ["criterion"] + [f"{m} {what}" for m in methods for what in ("UAR", "align. gain", "< abl. −0.02")]
    rows = []
    for criterion in SELECTORS:
        line = [criterion]
        for method in methods:
            own = [r for d in directions for r in d["tables"][criterion] if r["method"] == method]
            if not own:
                line += ["", "", ""]
                continue
            gains = [r["alignment_gain"] for r in own if r["alignment_gain"] != ""]
            line += [f"{mean(r['target_uar_mean'] for r in own):.3f}", f"{mean(gains):+.3f}" if gains else "",
                     f"{sum(g < -0.02 for g in gains)}/{len(gains)}"]
        rows.append(line)
    return header, rows
