"""Training defaults chosen on source dev UAR only: one setting changed at a time from the defaults.

    python benchmarks/training_defaults.py --features /work/data/feat --corpus /work/data/corpus

For each variant (the defaults when it was written, BASE below, then each of hidden, dropout,
weight_decay, lr, epochs/patience moved one step either way, then the best changes together) it trains the methods over the seeds in every model and direction, as
benchmarks/transfer.py does, and reports two means over (model, direction, method, seed):

- **source dev UAR**, the selection criterion: it reads source labels only, so choosing a default
  by it is what a user without target labels could do;
- target test UAR, shown for the record and never used to choose.

Writes the table into docs/benchmarks/training_defaults.md (section --label).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_corpus_arguments, ensure_cache, ensure_corpus, write_table_section  # noqa: E402
from transfer import run_direction  # noqa: E402

from sers.display.tables import format_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT_MD = ROOT / "docs" / "benchmarks" / "training_defaults.md"
HEADER = ("# Benchmark: training defaults (`benchmarks/training_defaults.py`)\n\n"
          "Every table here is printed by benchmarks/training_defaults.py; rerun it to check.\n")
# The defaults when the sweep ran, spelled out so that a rerun compares the same settings whatever
# the defaults are now (it set hidden 512 and lr 3e-3: docs/method.md).
BASE = {"hidden": 256, "dropout": 0.2, "weight_decay": 0.0, "lr": 1e-3, "epochs": 30, "patience": 5}
# One change at a time from BASE ("defaults" is BASE itself).
ONE_AT_A_TIME = {
    "defaults": {},
    "hidden=128": {"hidden": 128},
    "hidden=512": {"hidden": 512},
    "dropout=0": {"dropout": 0.0},
    "dropout=0.5": {"dropout": 0.5},
    "weight_decay=1e-4": {"weight_decay": 1e-4},
    "weight_decay=1e-2": {"weight_decay": 1e-2},
    "lr=3e-4": {"lr": 3e-4},
    "lr=3e-3": {"lr": 3e-3},
    "epochs=60+patience=10": {"epochs": 60, "patience": 10},
    "patience=0": {"patience": 0},  # all 30 epochs, the last one kept
}
# The changes that raised source dev UAR one at a time, together (section "combined").
COMBINED = {
    "hidden=512+lr=3e-3": {"hidden": 512, "lr": 3e-3},
    "hidden=512+lr=3e-3+epochs=60+patience=10": {"hidden": 512, "lr": 3e-3, "epochs": 60, "patience": 10},
}
VARIANTS = {**ONE_AT_A_TIME, **COMBINED}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser)
    parser.set_defaults(languages="en,zh")
    parser.add_argument("--pairs", default="en-zh,zh-en")
    parser.add_argument("--methods", default="last,wsum,lam,lam-gl")
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--variants", default=",".join(ONE_AT_A_TIME),
                        help=f"comma list of: {', '.join(VARIANTS)}")
    parser.add_argument("--label", default="one-at-a-time")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)  # small heads: one thread is fastest and steady on a shared machine

    from sers.cli import parse_seeds
    seeds = parse_seeds(args.seeds)
    languages = args.languages.split(",")
    methods = args.methods.split(",")
    ensure_corpus(args.corpus, languages, args.n, args.speakers)
    caches = {(model, lang): ensure_cache(args.features, args.corpus, lang, model, args.whisper_input)
              for model in args.models.split(",") for lang in languages}
    started = time.perf_counter()
    rows = []
    for name in args.variants.split(","):
        dev, test, per_method = [], [], {}
        for model in args.models.split(","):
            for pair in args.pairs.split(","):
                source, target = pair.split("-")
                table, _ = run_direction(caches[model, source], caches[model, target], seeds, methods,
                                         {**BASE, **VARIANTS[name]}, {})
                for row in table:
                    dev.append(row["source_dev_uar_mean"])
                    test.append(row["target_uar_mean"])
                    per_method.setdefault(row["method"], []).append(row["source_dev_uar_mean"])
        print(f"{name} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        rows.append([name, f"{sum(dev) / len(dev):.3f}", f"{sum(test) / len(test):.3f}"]
                    + [f"{sum(v) / len(v):.3f}" for v in per_method.values()])
    header = ["variant", "source dev UAR (selects)", "target UAR (not used)"] + [f"dev {m}" for m in methods]
    print(format_table(header, rows))
    if args.no_write:
        return
    settings = (f"Means over models {args.models}, directions {args.pairs}, methods {args.methods} and seeds "
                f"{args.seeds} (each cell: one mean of {len(dev)} model × direction × method means).")
    write_table_section(args.label, settings, "training_defaults.py", argv, time.perf_counter() - started, header,
                        rows, OUT_MD, HEADER)


if __name__ == "__main__":
    main()
