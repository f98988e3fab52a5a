"""Seconds per epoch and peak memory of `sers train --method lam` on generated caches,
next to what recomputing the features with the upstream model every epoch would cost.

    python benchmarks/train.py                    # 100 000 + 100 000 utterances, 25 layers x 1024, 4 anchors
    python benchmarks/train.py --n 20000          # a quicker look (the table says which N ran)
    python benchmarks/train.py --sweep --n 6000 --layers 13 --dim 256 --epochs 8   # the default sweep

``--sweep`` times instead the default-style sweep (last, lam, lam-gl and their ablations, every
seed of ``--seeds``, the default λ candidates 0, 0.3, 1, 3) trained as stacked models and one run
at a time (``stacked=False``), against one run of lam (λ = 1, seed 0), each in a fresh interpreter,
and the compute limit of the same work: the FLOPs of every member's epochs (read from the run
folders) over the GFLOP/s this machine reaches on batched matmuls of the same shapes. It writes its
own section of docs/benchmarks/train.md.

Generates a source and a target cache (4 emotion classes, unit noise; the content does
not matter for speed), runs `sers.pipeline.train.train` for `lam` with 4 anchor layers in
a fresh interpreter (so its peak RSS is the run's own: the 5 layers read, the head, the
outputs), and reads the seconds per epoch from the run's curves.csv. Then it times one
forward pass of a base-size WavLM built from its config (random weights; same compute
as the real model) on `--seconds` of audio, per utterance, and extrapolates to the
utterances one epoch touches. Prints a table and writes docs/benchmarks/train.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_section  # noqa: E402

from sers.cache import CacheWriter  # noqa: E402
from sers.display.tables import format_markdown_table, format_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLASSES = np.array(list("NHAS"))


def generate_cache(path: Path, n: int, dim: int, num_layers: int, splits: dict[str, int], seed: int) -> Path:
    """Write a cache block by block (never the whole (L, N, D) array in memory)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, n)
    means = rng.normal(scale=0.1, size=(num_layers, 4, dim)).astype(np.float32)
    split_column = np.repeat(list(splits), list(splits.values())).tolist()
    utterances = {"id": [f"{path.stem}{i:07d}" for i in range(n)], "label": CLASSES[codes].tolist(),
                  "split": split_column, "language": [path.stem] * n}
    writer = CacheWriter.create(path, utterances, num_layers=num_layers, hidden_size=dim, model_id="benchmark",
                                overwrite=True)
    with writer:
        for start in range(0, n, 1024):
            rows = codes[start:start + 1024]
            block = means[:, rows] + rng.standard_normal((num_layers, len(rows), dim), dtype=np.float32)
            for i in range(len(rows)):
                writer.add(start + i, {"mean": block[:, i]})
        writer.finish()
    return path


def run_training(source: Path, target: Path, out: Path, anchors: list[int], epochs: int, threads: int) -> dict:
    """`train` in a fresh interpreter: wall time, peak RSS, seconds per epoch."""
    code = (
        "import json, resource, time, torch\n"
        f"torch.set_num_threads({threads})\n"
        "from sers.pipeline.train import train\n"
        "t = time.perf_counter()\n"
        f"train({str(source)!r}, {str(target)!r}, methods=['lam'], anchors={anchors}, seeds=[0], "
        f"out_dir={str(out)!r}, epochs={epochs}, patience=0, plots=False, progress=False)\n"
        "print(json.dumps({'seconds': time.perf_counter() - t,\n"
        "                  'rss_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))\n")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    with open(out / "lam" / "seed0" / "curves.csv") as handle:
        result["epoch_seconds"] = [float(row["seconds"]) for row in csv.DictReader(handle)]
    return result


def timed_train(source: Path, target: Path, out: Path, threads: int, **options) -> float:
    """Wall seconds of one `train` call in a fresh interpreter (imports excluded: both paths pay them)."""
    code = (f"import json, time, torch\ntorch.set_num_threads({threads})\n"
            "from sers.pipeline.train import train\nt = time.perf_counter()\n"
            f"train({str(source)!r}, {str(target)!r}, out_dir={str(out)!r}, plots=False, progress=False, "
            f"overwrite=True, **{options!r})\n"
            "print(json.dumps(time.perf_counter() - t))\n")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    return float(done.stdout.strip().splitlines()[-1])


def matmul_rates(batch: int, dim: int, hidden: int, threads: int) -> dict[str, float]:
    """GFLOP/s of the two matmul shapes training spends its time in, over 8 members: the projections
    ((batch x dim) @ (dim x hidden)) and CORAL's covariances ((hidden x batch) @ (batch x hidden))."""
    import torch

    torch.set_num_threads(threads)
    rates = {}
    for name, (a, b) in {"projection": ((8, batch, dim), (8, dim, hidden)),
                         "covariance": ((8, hidden, batch), (8, batch, hidden))}.items():
        x, y = torch.randn(*a), torch.randn(*b)
        torch.bmm(x, y)
        repeats = 20
        started = time.perf_counter()
        for _ in range(repeats):
            torch.bmm(x, y)
        rates[name] = 2 * a[0] * a[1] * a[2] * b[2] * repeats / (time.perf_counter() - started) / 1e9
    return rates


def sweep_flops(out: Path, dim: int, n_train: int, n_dev: int, batch: int) -> dict[str, float]:
    """FLOPs of every trained member of the sweep in ``out`` (candidates included), from each run's
    config.json (branches, λ) and curves.csv (epochs run): forward x 3 for training (the backward is about
    twice the forward), plus the dev pass each epoch. Split into projection/classifier and CORAL FLOPs."""
    from sers.classifiers.methods import get_method

    totals = {"projection": 0.0, "covariance": 0.0}
    for config_path in out.glob("*/seed*/**/config.json"):
        if (config_path.parent / "candidates").is_dir():
            continue  # a seed folder with candidates holds a copy of the chosen one: counted there
        config = json.loads(config_path.read_text())
        estimator = config["estimator"]
        with open(config_path.parent / "curves.csv") as handle:
            epochs = sum(1 for _ in csv.DictReader(handle))
        method = get_method(estimator["method"])
        branches, aligned = method.branch_layers(estimator["anchors"], config["layers"])
        hidden, classes = estimator["hidden"], 4
        per_row = sum(2 * dim * len(b) * hidden for b in branches) + 2 * (hidden * hidden + hidden * classes)
        projection, covariance = 3 * n_train * per_row + n_dev * per_row, 0.0
        if method.reads_target and estimator["lambda_"] > 0:
            projection += 3 * n_train * sum(2 * dim * len(branches[b]) * hidden for b in aligned)
            covariance = 3 * (n_train // batch) * len(aligned) * 2 * (2 * batch * hidden * hidden)
        totals["projection"] += epochs * projection
        totals["covariance"] += epochs * covariance
    return totals


def run_sweep(args, source: Path, target: Path, workdir: Path, source_splits: dict) -> list[list[str]]:
    seeds = list(range(args.seeds))
    anchors = [int(a) for a in args.anchors.split(",")]
    sweep = dict(methods=["last", "lam", "lam-gl"], anchors=anchors, seeds=seeds, epochs=args.epochs)
    one = timed_train(source, target, workdir / "one", args.threads, methods=["lam"], anchors=anchors, seeds=[0],
                      lambda_=1.0, epochs=args.epochs, ablations=False)
    print(f"one run: {one:.1f} s", flush=True)
    stacked = timed_train(source, target, workdir / "stacked", args.threads, stacked=True, **sweep)
    print(f"stacked sweep: {stacked:.1f} s", flush=True)
    per_run = (timed_train(source, target, workdir / "per-run", args.threads, stacked=False, **sweep)
               if not args.skip_per_run else None)
    if per_run:
        print(f"per-run sweep: {per_run:.1f} s", flush=True)
    runs = sum(1 for p in (workdir / "stacked").glob("*/seed*/**/config.json")
               if not (p.parent / "candidates").is_dir())
    flops = sweep_flops(workdir / "stacked", args.dim, source_splits["train"], source_splits["dev"], 128)
    rates = matmul_rates(128, args.dim, 512, args.threads)
    limit = sum(flops[k] / (rates[k] * 1e9) for k in flops)
    rows = [["one run: lam, λ = 1, seed 0", f"{one:.1f} s", "1 x", ""],
            [f"default sweep, --stacked ({runs} trainings)", f"{stacked:.1f} s", f"{stacked / one:.1f} x",
             f"{stacked / limit:.2f} x the limit"]]
    if per_run:
        rows.append(["default sweep, one run at a time (the default)", f"{per_run:.1f} s", f"{per_run / one:.1f} x",
                     f"{per_run / limit:.2f} x the limit; stacked is {per_run / stacked:.2f} x faster"])
    rows.append(["compute limit of the sweep's training",
                 f"{limit:.1f} s", f"{limit / one:.1f} x",
                 f"{flops['projection'] / 1e12:.2f} TFLOP at {rates['projection']:.0f} GFLOP/s (projections) + "
                 f"{flops['covariance'] / 1e12:.2f} TFLOP at {rates['covariance']:.0f} GFLOP/s (CORAL covariances)"])
    return rows


def upstream_seconds_per_utterance(seconds: float, repeats: int, threads: int) -> float:
    """One forward pass (all hidden states) of WavLM base built from its config, batch 1."""
    import torch
    from transformers import WavLMConfig, WavLMModel

    torch.set_num_threads(threads)
    model = WavLMModel(WavLMConfig()).eval()
    audio = torch.randn(1, int(seconds * 16000))
    with torch.inference_mode():
        model(audio, output_hidden_states=True)  # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            model(audio, output_hidden_states=True)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="utterances per corpus")
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--anchors", default="6,9,12,15")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="audio per utterance for the upstream timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both timings (1: fair on a shared machine; more on your own)")
    parser.add_argument("--workdir", type=Path, help="keep the generated caches here (default: a temporary folder)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks" / "train.md")
    parser.add_argument("--sweep", action="store_true", help="time the default sweep, stacked and one run at a time")
    parser.add_argument("--seeds", type=int, default=5, help="--sweep: seeds 0..N-1")
    parser.add_argument("--skip-per-run", action="store_true", help="--sweep: time the stacked sweep only")
    args = parser.parse_args()
    anchors = [int(a) for a in args.anchors.split(",")]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sers-bench-train-"))
    workdir.mkdir(parents=True, exist_ok=True)
    n_dev, n_test = args.n // 10, args.n // 5
    source_splits = {"train": args.n - n_dev, "dev": n_dev}
    target_splits = {"train": args.n - n_test, "test": n_test}
    try:
        started = time.perf_counter()
        source = generate_cache(workdir / "en.zarr", args.n, args.dim, args.layers, source_splits, seed=1)
        target = generate_cache(workdir / "zh.zarr", args.n, args.dim, args.layers, target_splits, seed=2)
        generate_seconds = time.perf_counter() - started
        if args.sweep:
            rows = run_sweep(args, source, target, workdir, source_splits)
        else:
            run = run_training(source, target, workdir / "runs", anchors, args.epochs, args.threads)
            per_utterance = upstream_seconds_per_utterance(args.seconds, args.repeats, args.threads)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.sweep:
        write_sweep(args, rows, source_splits, target_splits)
        return

    layers_read = len(set(anchors) | {args.layers - 1})
    cache_gb = 2 * args.n * args.layers * args.dim * 4 / 1e9
    feature_gb = layers_read * (2 * args.n) * args.dim * 4 / 1e9
    epoch = float(np.median(run["epoch_seconds"]))
    # an epoch is one pass over the source training rows, each batch paired with as many target rows
    utterances_per_epoch = 2 * source_splits["train"]
    recompute = per_utterance * utterances_per_epoch
    rows = [
        ["source / target utterances", f"{args.n:,} / {args.n:,} (source train {source_splits['train']:,}, "
                                       f"dev {n_dev:,}; target train {target_splits['train']:,}, test {n_test:,})"],
        ["cache: layers x dim (float32)", f"{args.layers} x {args.dim} ({cache_gb:.1f} GB for both, "
                                          f"generated in {generate_seconds:.0f} s)"],
        ["method", f"lam, anchors {anchors} + last layer {args.layers - 1}: {layers_read} layers read, "
                   f"hidden 256, batch 128, normalize global"],
        ["features held in memory", f"{feature_gb:.2f} GB (all {args.layers} layers would be "
                                    f"{feature_gb * args.layers / layers_read:.1f} GB)"],
        ["seconds per epoch (median of %d)" % len(run["epoch_seconds"]), f"{epoch:.1f} s"],
        ["whole run (read, statistics, %d epochs, outputs)" % len(run["epoch_seconds"]), f"{run['seconds']:.1f} s"],
        ["peak RSS of the training process", f"{run['rss_gb']:.2f} GB"],
        [f"upstream forward, WavLM base from config, {args.seconds:g} s audio",
         f"{per_utterance * 1000:.0f} ms / utterance"],
        [f"recomputing features each epoch ({utterances_per_epoch:,} utterances)", f"{recompute / 3600:.1f} h / epoch"],
        ["recompute / cached epoch time", f"{recompute / epoch:,.0f} x"],
    ]
    print(format_table(["quantity", "value"], rows))
    doc = ("# Benchmark: training on the cache (`benchmarks/train.py`)\n\n"
           f"Machine: {machine()}; timings with {args.threads} torch thread(s); "
           f"load average at the end {os.getloadavg()[0]:.1f} (a shared machine).\n"
           f"Command: `python benchmarks/train.py {' '.join(sys.argv[1:])}`\n\n"
           + format_markdown_table(["quantity", "value"], rows) + "\n\n"
           "The upstream time is a base-size model (12 layers x 768) on CPU, so the ratio understates the cost of "
           "recomputing the 25 x 1024 (large-size) features the cache holds; a GPU would shrink the upstream time, "
           "but not to the cost of reading pooled vectors from memory.\n")
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    # the sections --sweep wrote stay (each run of it replaces only its own)
    earlier = args.doc.read_text() if args.doc.exists() else ""
    kept = [m.group(0) for m in re.finditer(r"<!-- (sweep-[^:]+):start -->.*?<!-- \1:end -->", earlier, flags=re.S)]
    args.doc.write_text(doc + "".join(f"\n{block}\n" for block in kept))
    print(f"wrote {args.doc}")


SWEEP_NOTES = """\
How to read it. *Stacked* trains the runs of one architecture together (every seed of last; every
seed and λ of lam with anchors-only; of lam-gl with groups-only): one forward and backward per step
for all members, batched matmuls over a member axis, each member with its own initialisation, rows,
dropout masks and early stopping, and the same predictions as the runs trained alone
(tests/test_stacked.py; `sers train --stacked`). Being no faster here, it is not the default. The *compute limit* is the
arithmetic alone: the FLOPs of the projections, classifier and CORAL covariances of every member's
epochs, with the backward counted as twice the forward, over the GFLOP/s a batched matmul of the
same shapes reaches here; it leaves out every elementwise operation (ReLU, dropout, Adam, the
covariance differences) and each run's outputs, which here cost about twice the matmuls again.

On CPU the sweep is bound by that arithmetic, not by Python: the CORAL covariances of a 512-wide
head on 128-row batches (2 x 128 x 512^2 FLOPs per branch and side, every step) and the
projections are the same work whether the members run one after another or side by side, so
stacking saves the per-run overhead only (a CPU core runs one member's 128 x 512 matmuls at nearly
the rate of a batch of them). The ratio to one run cannot reach the issue's 5x here: the 15 aligning
lam members alone (λ 0.3, 1, 3 x 5 seeds) do up to 15 times one run's arithmetic, and lam-gl's
aligning members add theirs. What would: fewer FLOPs per CORAL term
(with 128-row batches and width 512, ||C_s - C_t||^2 can be computed from 128 x 128 Gram matrices
at about a third of the FLOPs; a change of the loss's rounding, so of every run's results) or a
GPU, where the per-run loop is bound by kernel launches and the stacked one by arithmetic.
"""


def write_sweep(args, rows, source_splits, target_splits) -> None:
    header = ["what", "seconds", "vs one run", "vs the compute limit"]
    print(format_table(header, rows))
    markdown = (f"## Sweep: {args.n:,} + {args.n:,} utterances, {args.layers} layers x {args.dim}\n\n"
                f"Machine: {machine()}; {args.threads} torch thread(s); load average at the end "
                f"{os.getloadavg()[0]:.1f} (a shared machine: another process may have run beside it).\n"
                f"Command: `python benchmarks/train.py {' '.join(sys.argv[1:])}`\n\n"
                f"The sweep: `--method last,lam,lam-gl --anchors {args.anchors} --seeds 0-{args.seeds - 1} "
                f"--epochs {args.epochs}` with the default λ candidates (0, 0.3, 1, 3), ablations (anchors-only, "
                f"groups-only), patience 5, hidden 512, batch 128, no plots; source train {source_splits['train']:,}, "
                f"dev {source_splits['dev']:,}; target train {target_splits['train']:,}, test "
                f"{target_splits['test']:,}. Seconds are `train()` calls in a fresh interpreter, after its imports.\n\n"
                + format_markdown_table(header, rows) + "\n\n" + SWEEP_NOTES)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    write_section(f"sweep-{args.n}x{args.layers}x{args.dim}", markdown, args.doc,
                  "# Benchmark: training on the cache (`benchmarks/train.py`)\n")
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
