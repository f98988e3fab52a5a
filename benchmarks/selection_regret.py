"""Regret of each label-free selection criterion: how much target UAR choosing by it loses.

    python benchmarks/selection_regret.py --source benchmarks/data/features/en.base.trimmed.zarr \\
        --target benchmarks/data/features/zh.base.trimmed.zarr --methods lam,lam-gl --seeds 0-2 \\
        --lambda 0,0.3,1,3 --label base-en-zh
    python benchmarks/selection_regret.py --source A.zarr --target B.zarr --source B.zarr --target A.zarr ...

What it does, so that anyone can rerun it:

1. per direction (``--source``/``--target`` pairs, in order): `sers anchor SOURCE TARGET` at its
   defaults (label-free, target *train* split) unless ``--anchors`` names a file;
2. `sers train` once with every λ of ``--lambda`` as a candidate of each method, at sers's
   defaults otherwise: every candidate is trained and scored by every criterion of
   ``sers.classifiers.selection`` (none reads a target label);
3. only here, after training, are the target *test* labels read (the UAR that train's results
   already hold for every candidate): for each method, seed and criterion, regret = the best
   candidate's target UAR − the target UAR of the candidate the criterion chooses (``choose``).

Prints per direction, method and criterion the mean regret over seeds, the largest, how often
λ = 0 (no alignment) was chosen and the mean target UAR of the chosen candidates; the ``oracle``
row is the best candidate (regret 0 by definition). With several directions or methods, the
``all`` rows pool every direction, method and seed: the mean regret there is what chooses the
default ``--select``. Writes the table into docs/benchmarks/selection.md under ``--label``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table_section  # noqa: E402

from sers.classifiers.options import SELECTORS  # noqa: E402
from sers.classifiers.selection import choose  # noqa: E402
from sers.display.tables import format_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT_MD = ROOT / "docs" / "benchmarks" / "selection.md"
TITLE = ("# Benchmark: label-free candidate selection (`benchmarks/selection_regret.py`)\n\n"
         "Every table here is printed by benchmarks/selection_regret.py; rerun it to check. Regret is the\n"
         "target UAR of the best λ candidate minus that of the candidate a criterion chooses, per seed\n"
         "(target labels read by this script only, after training). The default `--select` is the\n"
         "criterion with the lowest mean regret over every direction and model (docs/method.md).\n")
HEADER = ["direction", "method", "criterion", "mean regret", "max regret", "λ=0 chosen", "chosen target UAR"]
ORACLE = "oracle"


def _is_lambda_zero(tag: str) -> bool:
    """Candidate tags read "lambda=0" or "lambda=0,anchors=<name>" (sers.pipeline.candidates)."""
    return tag.split(",")[0] == "lambda=0"


def choices(result) -> dict[tuple[str, str], list[tuple[float, bool, float]]]:
    """{(method, criterion or "oracle"): [(regret, λ = 0 chosen, chosen target UAR) per seed]} of a
    :func:`sers.pipeline.train.train` result; runs without candidates (one λ, no alignment) are left out."""
    out: dict[tuple[str, str], list] = {}
    for run in result.runs:
        candidates = run.get("candidates") or []
        if not candidates:
            continue
        uars = [c["metrics"]["target_test"]["uar"] for c in candidates]
        best = max(uars)
        scores = [c["selection_scores"] for c in candidates]
        tags = [c["candidate"] for c in candidates]
        picks = {criterion: choose(scores, criterion, tags) for criterion in SELECTORS}
        picks[ORACLE] = uars.index(best)
        for criterion, index in picks.items():
            out.setdefault((run["method"], criterion), []).append(
                (best - uars[index], _is_lambda_zero(candidates[index]["candidate"]), uars[index]))
    return out


def _row(direction: str, method: str, criterion: str, picked: list[tuple[float, bool, float]]) -> list:
    regrets = [r for r, _, _ in picked]
    return [direction, method, criterion, f"{sum(regrets) / len(regrets):.3f}", f"{max(regrets):.3f}",
            f"{sum(zero for _, zero, _ in picked)}/{len(picked)}", f"{sum(u for _, _, u in picked) / len(picked):.3f}"]


def _rows(by_key: dict, direction: str) -> list[list]:
    methods = list(dict.fromkeys(method for method, _ in by_key))
    criteria = [c for c in (*SELECTORS, ORACLE) if any(key[1] == c for key in by_key)]
    return [_row(direction, method, criterion, by_key[method, criterion])
            for method in methods for criterion in criteria if (method, criterion) in by_key]


def regret_rows(result, label: str) -> list[list]:
    """Rows of :data:`HEADER` for one train result: per method and criterion (then ``oracle``) the
    mean and max regret over seeds, how often λ = 0 was chosen (k/n), the chosen candidates' mean
    target UAR. ``label`` fills the first column (e.g. the direction)."""
    return _rows(choices(result), label)


def pooled_rows(results: list, label: str = "all") -> list[list]:
    """One row per criterion (then ``oracle``) pooling every method and seed of every result."""
    pooled: dict[tuple[str, str], list] = {}
    for result in results:
        for (_, criterion), picked in choices(result).items():
            pooled.setdefault(("all", criterion), []).extend(picked)
    return _rows(pooled, label)


def _direction(source: Path, target: Path) -> str:
    """en.base.trimmed.zarr, zh.base.trimmed.zarr -> "en→zh (base.trimmed)" (the benchmark caches'
    names: language.model.input); other names are shown whole."""
    def parts(path):
        name = path.name.removesuffix(path.suffix)
        return name.split(".", 1) if "." in name else (name, "")
    (src, src_rest), (tgt, tgt_rest) = parts(source), parts(target)
    return f"{src}→{tgt}" + (f" ({src_rest})" if src_rest and src_rest == tgt_rest else "")


def run_direction(source: Path, target: Path, methods: list[str], seeds: list[int], lambdas: list[float],
                  anchors: Path | None):
    from sers.pipeline.anchor import anchor
    from sers.pipeline.train import train

    with tempfile.TemporaryDirectory(prefix="sers-selection-") as tmp:
        if anchors is None:
            anchors = Path(tmp) / "anchors.json"
            anchor([source, target], anchors)
        # ablations=False: each method's λ = 0 candidate already is its no-alignment ablation
        return train(source, target, methods=methods, anchors=anchors, seeds=seeds, out_dir=Path(tmp) / "runs",
                     lambda_=lambdas, ablations=False, progress=False, plots=False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, action="append", required=True, help="source cache (repeat: one per direction)")
    parser.add_argument("--target", type=Path, action="append", required=True, help="target cache, paired with --source")
    parser.add_argument("--methods", default="lam,lam-gl")
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--lambda", dest="lambdas", default="0,0.3,1,3", help="the candidates' λ")
    parser.add_argument("--anchors", type=Path, help="one anchors.json for every direction (default: sers anchor's)")
    parser.add_argument("--label", default="defaults", help="section of docs/benchmarks/selection.md to write")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if len(args.source) != len(args.target):
        parser.error("give one --target per --source")
    lambdas = [float(v) for v in args.lambdas.split(",")]
    if len(lambdas) < 2:
        parser.error("--lambda needs at least two candidates to choose among")
    import torch
    # The heads are small: one thread is fastest, and steady when other work shares the cores.
    torch.set_num_threads(1)

    from sers.cli import parse_seeds
    seeds = parse_seeds(args.seeds)
    methods = [m for m in args.methods.split(",") if m]
    started = time.perf_counter()
    rows, results = [], []
    for source, target in zip(args.source, args.target):
        result = run_direction(source, target, methods, seeds, lambdas, args.anchors)
        results.append(result)
        rows += regret_rows(result, _direction(source, target))
        print(f"{_direction(source, target)} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if len(results) > 1 or len(methods) > 1:
        rows += pooled_rows(results)
    print(format_table(HEADER, rows))
    if args.no_write:
        return
    settings = (f"Methods {args.methods}, λ candidates {args.lambdas}, seeds {args.seeds}, every other setting "
                f"at sers's defaults; anchors {'from ' + str(args.anchors) if args.anchors else 'by `sers anchor` at its defaults'}.")
    write_table_section(args.label, settings, "selection_regret.py", argv, time.perf_counter() - started, HEADER, rows,
                        OUT_MD, TITLE)


if __name__ == "__main__":
    main()
