"""Per-layer linear probes on the espeak corpus with real Whisper: in-language and cross-language UAR.

    python benchmarks/layer_probe.py                    # the documented run: generates corpus and caches
    python benchmarks/layer_probe.py --features /work/data/feat --corpus /work/data/corpus   # reuse them

What it does, so that anyone can rerun it:

1. `sers synth --engine espeak` writes the English/Mandarin/Spanish corpus (600 utterances per
   language, 10 speakers split by speaker into train/dev/test, seed 0) unless --corpus has it;
2. `sers extract` runs Whisper base (multilingual) and Whisper tiny.en over each language
   (`--whisper-input trimmed`, the same caches as benchmarks/transfer.py) unless --features has them;
3. for every hidden state (0 = the embedding output, then one per encoder layer) and every ordered
   pair of languages S, T: `sers.analysis.measures.probe_uar` (the `probe` measure of `sers similarity`: a
   class-balanced logistic regression, C = 1 unless --C, on features standardised with the training rows' own
   mean and std) trained on S's train split and scored on T's test split. S = T is in-language UAR.

The gap of a pair S -> T is T -> T minus S -> T: what training on the source language instead of
the target itself costs on the same target test speakers. The dev split is not used (no choice is
tuned). Prints the tables and writes them into docs/benchmarks/layer_probe.md.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_corpus_arguments, ensure_cache, ensure_corpus, machine, write_section  # noqa: E402

import sers.cache  # noqa: E402
from sers.analysis.measures import best_positions, probe_uar  # noqa: E402
from sers.display.tables import format_markdown_table, format_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT_MD = ROOT / "docs" / "benchmarks" / "layer_probe.md"
HEADER = ("# Benchmark: per-layer linear probes, in-language and cross-language (`benchmarks/layer_probe.py`)\n\n"
          "Every table here is printed by benchmarks/layer_probe.py; rerun it to check.\n")
MODEL_NAMES = {"base": "Whisper base (multilingual)", "tiny": "Whisper tiny.en (English-only)"}


def load_split(cache: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(L, n, D) pooled means of every hidden state and the n labels of one split."""
    with sers.cache.open(cache) as reader:
        reader.require_complete()
        rows = reader.rows(split)
        return (reader.pooled_layers(range(reader.num_layers), rows=rows),
                reader.utterances.label[rows].astype(str))


def probe_grid(caches: dict[str, Path], C: float) -> tuple[dict[tuple[str, str], list[float]], float]:
    """UAR of S's train probe on T's test split, per layer: ``{(S, T): [uar of layer 0, 1, ...]}``;
    and the largest binomial standard error of a UAR on any test split (for the noise note)."""
    train = {lang: load_split(path, "train") for lang, path in caches.items()}
    test = {lang: load_split(path, "test") for lang, path in caches.items()}
    num_layers = {x.shape[0] for x, _ in train.values()}.pop()
    grid = {(s, t): [probe_uar(train[s][0][layer], train[s][1], test[t][0][layer], test[t][1], C=C)
                     for layer in range(num_layers)]
            for s in caches for t in caches}
    return grid, max(largest_uar_error(y) for _, y in test.values())


def largest_uar_error(labels: np.ndarray) -> float:
    """A UAR averages K class recalls r over n_k test utterances each: its binomial standard error
    sqrt(sum r (1 - r) / n_k) / K is largest at r = 0.5. The test speakers add variance on top."""
    counts = np.unique(labels, return_counts=True)[1]
    return math.sqrt(np.sum(0.25 / counts)) / len(counts)


def count_test_speakers(caches: dict[str, Path]) -> str:
    counts = set()
    for path in caches.values():
        with sers.cache.open(path) as reader:
            counts.add(len(set(reader.utterances.speaker[reader.rows("test")].tolist())))
    return "/".join(map(str, sorted(counts)))


def best_layer(values: list[float], higher: bool = True) -> str:
    """'3 (0.457)', or every tied layer: '0, 4 (0.533)'."""
    layers = best_positions(values, "higher" if higher else "lower")
    return f"{', '.join(map(str, layers))} ({values[layers[0]]:.3f})"


def signed(value: float) -> str:
    return f"{round(value, 3) + 0.0:+.3f}"  # + 0.0: no "-0.000" for a tie rounded to zero


def tables(grid: dict[tuple[str, str], list[float]], languages: list[str]):
    """Two tables, one row per layer plus a 'best layer' row: UAR of every pair (in-language first),
    and the gap of every cross-language pair with its mean."""
    inside = [(t, t) for t in languages]
    across = [(s, t) for s in languages for t in languages if s != t]
    num_layers = len(next(iter(grid.values())))
    gap = {(s, t): [grid[t, t][i] - grid[s, t][i] for i in range(num_layers)] for s, t in across}
    mean_in = [float(np.mean([grid[p][i] for p in inside])) for i in range(num_layers)]
    mean_across = [float(np.mean([grid[p][i] for p in across])) for i in range(num_layers)]
    mean_gap = [a - b for a, b in zip(mean_in, mean_across)]

    uar_header = (["layer"] + [f"{t}→{t}" for _, t in inside] + [f"{s}→{t}" for s, t in across]
                  + ["mean in", "mean cross"])
    uar_rows = [[str(i)] + [f"{grid[p][i]:.3f}" for p in inside + across]
                + [f"{mean_in[i]:.3f}", f"{mean_across[i]:.3f}"] for i in range(num_layers)]
    uar_rows.append(["best"] + [best_layer(grid[p]) for p in inside + across]
                    + [best_layer(mean_in), best_layer(mean_across)])

    gap_header = ["layer"] + [f"{s}→{t}" for s, t in across] + ["mean"]
    gap_rows = [[str(i)] + [signed(gap[p][i]) for p in across] + [signed(mean_gap[i])]
                for i in range(num_layers)]
    gap_rows.append(["smallest"] + [best_layer(gap[p], higher=False) for p in across]
                    + [best_layer(mean_gap, higher=False)])
    return (uar_header, uar_rows), (gap_header, gap_rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser)
    parser.add_argument("--C", type=float, default=1.0,
                        help="inverse L2 strength of the probe (1 = what `sers similarity --measure probe` uses)")
    parser.add_argument("--label", default="defaults", help="section of docs/benchmarks/layer_probe.md to write")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    import torch
    # lbfgs on 360 x 512 is fast on one thread, and steady when other work shares the cores.
    torch.set_num_threads(1)

    languages = args.languages.split(",")
    ensure_corpus(args.corpus, languages, args.n, args.speakers)
    sections, probe_seconds, noise = [], 0.0, 0.0
    for model in args.models.split(","):
        caches = {lang: ensure_cache(args.features, args.corpus, lang, model, args.whisper_input)
                  for lang in languages}
        started = time.perf_counter()
        grid, model_noise = probe_grid(caches, args.C)
        noise = max(noise, model_noise)
        probe_seconds += time.perf_counter() - started
        (uar_header, uar_rows), (gap_header, gap_rows) = tables(grid, languages)
        name = MODEL_NAMES.get(model, model)
        print(f"\n{name}: UAR, probe trained on S train, scored on T test (S→T)")
        print(format_table(uar_header, uar_rows))
        print(f"\n{name}: gap T→T minus S→T (cross-lingual loss on the same test speakers)")
        print(format_table(gap_header, gap_rows))
        print(f"{model}: probes took {time.perf_counter() - started:.0f} s", file=sys.stderr)
        sections.append(f"### {name}\n\nUAR of a probe trained on S's train split and scored on T's test split "
                        f"(S→T; chance 0.25):\n\n" + format_markdown_table(uar_header, uar_rows)
                        + "\n\nGap T→T minus S→T (what training on the other language costs on T's "
                        "test speakers; the last row is the layer where it is smallest):\n\n"
                        + format_markdown_table(gap_header, gap_rows))
    if args.no_write:
        return
    markdown = (f"## {args.label}\n\nCommand: `python benchmarks/layer_probe.py {' '.join(argv or sys.argv[1:])}`. "
                f"{args.n} utterances per language ({args.speakers} speakers, split by speaker), "
                f"`--whisper-input {args.whisper_input}`, pooled means of every hidden state (layer 0 = the "
                f"embedding output). Probe: `sers.analysis.measures.probe_uar`, C = {args.C:g}. Machine: {machine()}; "
                f"{probe_seconds:.0f} s for the probes.\n\n"
                f"Each test split has {count_test_speakers(caches)} speakers: the binomial standard error of "
                f"one UAR is up to {noise:.3f}, and other test speakers would move it more. Read differences "
                f"of a few points between cells as noise.\n\n"
                + "\n\n".join(sections))
    write_section(args.label, markdown, OUT_MD, title=HEADER)


if __name__ == "__main__":
    main()
