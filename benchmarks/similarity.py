"""`sers similarity`: its cost on generated caches, checks of its label-free measures on planted
data, and its defaults on real caches. Each part prints its tables and writes its section of
docs/benchmarks/similarity.md.

    python benchmarks/similarity.py                         # cost: 2 x 20 000 utterances, 25 layers, D = 1024
    python benchmarks/similarity.py --n 2000 --dim 256 --layers 5 --no-scaling    # a quick look
    python benchmarks/similarity.py --checks                # why domain scored below chance; the MMD's pairs
    python benchmarks/similarity.py --real A.zarr B.zarr [C.zarr D.zarr ...]       # defaults on real caches

Cost: generates a source and a target cache (4 emotion classes; a few layers where the target
shares the source's class structure, the rest shifted and rescaled), runs the whole stage in a
fresh process per point (so peak RSS is that run's own), with `--target-labels train` so that
every measure runs, the label-aware ones included. Then smaller points (fewer layers) show how
the cost per layer grows with N and D; one layer is timed the obvious way for the two classifiers
(sklearn, 5-fold CV for the domain classifier), and the kernel MMD on all rows against its
1000-row subsample.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sers.cache import CacheWriter
from sers.display.tables import format_markdown_table, format_table

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks" / "similarity.md"
TITLE = ("# Benchmark: `sers similarity`\n\nEvery table here is printed by benchmarks/similarity.py "
         "(the command is under each section's title); rerun it to check.\n")
CLASSES = np.array(list("NHAS"))


def machine() -> str:
    return f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), numpy {np.__version__}"


def write_section(name: str, markdown: str, path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import write_section as write

    write(name, markdown, path, title=TITLE)
    print(f"wrote section {name!r} of {path}")


# -- cost ---------------------------------------------------------------------------------------

def shared_layers(num_layers: int) -> list[int]:
    """The 3 layers where the generated target shares the source's emotion structure."""
    return [layer for layer in range(num_layers // 3, num_layers // 3 + 3) if layer < num_layers]


def generate_cache(path: Path, n: int, dim: int, num_layers: int, role: str, seed: int = 0) -> Path:
    """Write a cache block by block (never the whole (L, N, D) array in memory).

    Class means are small next to the unit noise (classes overlap, as emotions do); at
    the non-shared layers the target has class means of its own, a shift and a scale.
    """
    structure = np.random.default_rng(seed)  # the same class means for source and target
    means = structure.normal(scale=0.05, size=(num_layers, 4, dim)).astype(np.float32)
    shared = shared_layers(num_layers)
    rng = np.random.default_rng(seed + (1 if role == "source" else 2))
    if role == "target":
        own = rng.normal(scale=0.05, size=means.shape).astype(np.float32)
        means[[layer for layer in range(num_layers) if layer not in shared]] = own[
            [layer for layer in range(num_layers) if layer not in shared]]
    codes = rng.integers(0, 4, n)
    utterances = {"id": [f"{role}{i:06d}" for i in range(n)], "label": CLASSES[codes].tolist(),
                  "split": ["train"] * n, "language": ["en" if role == "source" else "zh"] * n}
    writer = CacheWriter.create(path, utterances, num_layers=num_layers, hidden_size=dim,
                                model_id="benchmark", overwrite=True)
    shift = rng.normal(size=(num_layers, 1, dim)).astype(np.float32)
    with writer:
        for start in range(0, n, 1024):
            rows = codes[start:start + 1024]
            block = means[:, rows] + rng.standard_normal((num_layers, len(rows), dim), dtype=np.float32)
            if role == "target":
                other = [layer for layer in range(num_layers) if layer not in shared]
                block[other] = block[other] * 1.5 + shift[other]
            for i in range(len(rows)):
                writer.add(start + i, {"mean": block[:, i]})
        writer.finish()
    return path


def run_point(source: Path, target: Path, out: Path) -> dict:
    """The stage in a fresh interpreter: seconds computing, seconds writing the outputs
    (JSON, CSV, PNGs), and that process's peak RSS."""
    code = (
        "import json, resource, time, sklearn.linear_model\n"
        "from sers.pipeline.similarity import compute_similarity, write_outputs\n"
        "t = time.perf_counter()\n"
        f"r = compute_similarity({str(source)!r}, {str(target)!r}, target_labels='train')\n"
        "t1 = time.perf_counter()\n"
        f"write_outputs(r, {str(out)!r})\n"
        "coral = r['measures']['coral']['values']\n"
        "print(json.dumps({'measures_s': t1 - t, 'outputs_s': time.perf_counter() - t1,"
        " 'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " 'coral_ranking': sorted(range(len(coral)), key=coral.__getitem__)}))\n"
    )
    baseline = ("import resource, sers.pipeline.similarity, sklearn.linear_model, matplotlib.pyplot\n"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    idle = subprocess.run([sys.executable, "-c", baseline], check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["import_rss_mb"] = float(idle.stdout.strip())
    return result


def generated_layer(n: int, dim: int, seed: int = 0, scale: float = 1.5):
    """One generated layer: source and target rows of overlapping classes, the target rescaled and shifted."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, n)
    means = rng.normal(scale=0.05, size=(4, dim)).astype(np.float32)
    xs = means[codes] + rng.standard_normal((n, dim), dtype=np.float32)
    xt = means[codes] + rng.standard_normal((n, dim), dtype=np.float32) * scale + 0.2
    return xs, xt, CLASSES[codes]


def naive_one_layer(n: int, dim: int, seed: int = 0) -> dict:
    """One layer the obvious way: sklearn classifiers (5-fold CV domain, probe) next to sers's."""
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from sers.analysis import measures

    xs, xt, ys = generated_layer(n, dim, seed)
    x = np.concatenate([xs, xt])
    y = np.r_[np.zeros(n), np.ones(n)]
    timings = {}

    def timed(name, work):
        start = time.perf_counter()
        work()
        timings[name] = time.perf_counter() - start

    timed("domain, sklearn QuadraticDiscriminantAnalysis (reg_param 0.1) 5-fold CV",
          lambda: cross_val_score(QuadraticDiscriminantAnalysis(reg_param=0.1), x, y, cv=5, scoring="balanced_accuracy"))
    timed("domain, sklearn logistic regression 5-fold CV (a linear rule)",
          lambda: cross_val_score(LogisticRegression(max_iter=1000), x, y, cv=5, scoring="balanced_accuracy"))
    timed("domain, sers closed-form shrinkage quadratic discriminant 5-fold CV",
          lambda: measures.domain_separability(xs, xt, n_folds=5))
    timed(f"mmd, sers Gaussian kernel on {measures.MMD_ROWS} rows per side", lambda: measures.mmd(xs, xt))
    timed("probe, sers (sklearn logistic regression, lbfgs)", lambda: measures.probe(xs, ys, xt, ys))
    return timings


def mmd_subsample_rows(dim: int = 256, sizes=(1000, 2000, 4000), seeds=(0, 1, 2)) -> list[list]:
    """The kernel MMD on all rows (cost quadratic in them) against the 1000-row subsample, for a
    generated layer pair that differs a little (target std 1.05) and one that differs more (1.2)."""
    from sers.analysis import measures

    rows = []
    for n in sizes:
        for scale in (1.05, 1.2):
            xs, xt, _ = generated_layer(n, dim, seed=n, scale=scale)
            start = time.perf_counter()
            full = measures.mmd(xs, xt, max_rows=n)
            seconds = time.perf_counter() - start
            sub = [measures.mmd(xs, xt, seed=seed) for seed in seeds]
            rows.append([n, dim, scale, f"{full:.5f}", f"{seconds:.2f}", f"{np.mean(sub):.5f}", f"{np.std(sub):.5f}"])
            print(format_table(MMD_HEADER, rows[-1:]), flush=True)
    return rows


MMD_HEADER = ["N per side", "D", "target std", "mmd, all rows", "all rows s", "mmd, 1000 rows (3 seeds), mean",
              "sd over seeds"]
HEADER = ["N per side", "D", "layers", "measures s", "s / layer", "outputs s", "peak RSS MB", "above imports MB",
          "one layer both sides MB", "generate s", "CORAL ranks planted first"]


def cost(args) -> None:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sers-bench-sim-"))
    workdir.mkdir(parents=True, exist_ok=True)
    points = [(args.n, args.dim, args.layers)]
    if not args.no_scaling:
        points += [(n, args.dim, args.scaling_layers) for n in (args.n // 4, args.n // 2, args.n)]
        points += [(args.n, d, args.scaling_layers) for d in (args.dim // 4, args.dim // 2)]
    rows = []
    try:
        for n, dim, layers in points:
            caches = []
            start = time.perf_counter()
            for role in ("source", "target"):
                caches.append(generate_cache(workdir / f"{role}-{n}-{dim}-{layers}.{args.format}", n, dim, layers, role))
            generation = time.perf_counter() - start
            result = run_point(*caches, workdir / f"out-{n}-{dim}-{layers}")
            layer_mb = 2 * n * dim * 4 / 2**20
            rows.append([n, dim, layers, f"{result['measures_s']:.1f}", f"{result['measures_s'] / layers:.2f}",
                         f"{result['outputs_s']:.1f}",
                         round(result["rss_mb"]), round(result["rss_mb"] - result["import_rss_mb"]),
                         round(layer_mb), f"{generation:.1f}",
                         _found(result["coral_ranking"], shared_layers(layers))])
            print(format_table(HEADER, rows[-1:]), flush=True)
            for cache in caches:
                shutil.rmtree(cache) if cache.is_dir() else cache.unlink()
        naive = naive_one_layer(args.n, args.dim)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    naive_rows = [[name, f"{seconds:.2f}"] for name, seconds in naive.items()]
    print(format_table(["one layer, N per side = %d, D = %d" % (args.n, args.dim), "seconds"], naive_rows))
    mmd_rows = mmd_subsample_rows() if not args.no_scaling else []
    write_section("cost", cost_text(rows, naive_rows, mmd_rows, args), args.doc)


def _found(ranking: list[int], shared: list[int]) -> str:
    top = sorted(ranking[:len(shared)])
    return "yes" if top == shared else f"no: {top}"


def cost_text(rows, naive_rows, mmd_rows, args) -> str:
    mmd_table = "" if not mmd_rows else f"""
The kernel MMD on all rows, whose cost is quadratic in them, against the {1000}-row subsample
`sers similarity` uses (seeds 0, 1, 2), on a generated layer pair (class structure as above, the
target's noise std 1.05 or 1.2 times the source's):

{format_markdown_table(MMD_HEADER, mmd_rows)}
"""
    return f"""## Cost

Printed by `python benchmarks/similarity.py --n {args.n} --dim {args.dim} --layers {args.layers}`,
on {machine()}, shared with other work while it ran (timings vary by tens of percent).
Every point runs the whole stage with all measures (`--target-labels train`, so the
label-aware ones run too, reading the labelled layer a second time) in a fresh process:
"measures s" is reading the caches and computing every measure at every layer plus the
matrix forms, "outputs s" writing similarity.json/.csv and the PNGs; "peak RSS" is that
process's own maximum, "above imports" subtracts a process that only imports what the
stage imports. Caches are generated ({args.format}, float32); the last column checks that
CORAL ranks first the (up to 3) layers where the generated target shares the source's structure.

{format_markdown_table(HEADER, rows)}

How the cost grows. Per layer the stage reads both samples of the layer (and the labelled
target once more), accumulates D x D cross-products in float64 (O(N D^2)); the domain
classifier factorises 2 D x D matrices per fold (O(D^3), independent of N) and scores every
held-out row with one D x D product (O(N D^2) over the folds); the kernel MMD compares at most
1000 rows per side whatever N is (O(1000^2 D)); the probe fits one logistic regression
(O(iterations N D classes)); once at the end the centroid matrix forms (O(L^2 C D^2), small).
So time is linear in the number of layers (every layer is the same work) and grows between
D^2 and D^3 in D. Memory is one layer of both samples, a float32 copy for the probe, a few
D x D float64 matrices (5 folds x 2 samples x D^2 x 8 bytes = 80 MB at D = 1024) and the
MMD's three 1000 x 1000 kernel blocks (24 MB): it grows with N D, not with the number of
layers (compare the 25- and 5-layer rows at the same N and D), and nothing is N x N. Loading
every layer at once, the obvious way, would hold
{2 * args.layers * args.n * args.dim * 4 / 1e9:.1f} GB for the main point.

One layer done the obvious way, next to what sers does:

{format_markdown_table(["one layer, N per side = %d, D = %d" % (args.n, args.dim), "seconds"], naive_rows)}
{mmd_table}
Choices made for speed, and why they do not change what is measured:
- The domain classifier is a quadratic discriminant (a covariance per side, each shrunk by
  the oracle approximating shrinkage towards its mean variance) solved in closed form. 5-fold
  cross-validation needs one pass over the rows to accumulate: per-fold sums and cross-products
  are kept apart and each training set's statistics are "all folds minus one"; a second pass
  scores the held-out rows. It is the classifier the measure names (docs/method.md says why
  quadratic), scored by balanced accuracy; its cost does not depend on how separable the data are.
- The kernel MMD sees at most 1000 seeded rows per side (the same rows at every layer): all
  rows would cost N^2 (the table above); the subsample's spread over seeds is the price.
- The probe is the logistic regression the measure names (class-balanced, L2 with C = 1,
  lbfgs) on float32 features standardised by the source's own statistics (centred inputs:
  tens of lbfgs iterations), on every source utterance: no subsample. Its BLAS calls run on
  one thread: the products are N x D by D x classes, too thin to gain from threads, and on
  this shared machine threads waiting for a busy core made each fit about 8 x slower.
"""


# -- checks on planted data ---------------------------------------------------------------------

def speaker_population(rng, speakers: int, rows: int, dim: int):
    """Rows of ``speakers`` voices of one population: each its own offset, the same noise."""
    who = np.repeat(np.arange(speakers), rows)
    return rng.normal(size=(len(who), dim)) + rng.normal(size=(speakers, dim))[who], who


def per_speaker(x, who):
    """What sers.pipeline.speakers does: each speaker's rows by that speaker's own mean and std."""
    out = np.empty_like(x)
    for speaker in np.unique(who):
        rows = who == speaker
        out[rows] = (x[rows] - x[rows].mean(0)) / x[rows].std(0)
    return out


CHECK_SETTING = "one population of 6 speakers x 60 utterances per side"


def checks(args) -> None:
    from sers.analysis import measures

    rng = np.random.default_rng(0)
    domain_rows = []
    for dim in (16, 128, 512):
        runs = []
        for _ in range(args.repeats):
            (xs, ws), (xt, wt) = (speaker_population(rng, 6, 60, dim) for _ in range(2))
            zs, zt = per_speaker(xs, ws), per_speaker(xt, wt)
            runs.append([measures.domain_separability(xs, xt)[0], measures.domain_separability(zs, zt)[0],
                         measures.domain_separability(zs, zt, groups_s=ws, groups_t=wt)[0]])
        runs = np.array(runs)
        domain_rows.append([dim, *(f"{runs[:, i].mean():.3f} ({runs[:, i].min():.3f}-{runs[:, i].max():.3f})"
                                   for i in range(3))])
        print(format_table(DOMAIN_HEADER, domain_rows[-1:]), flush=True)
    mmd_rows = []
    for dim in (8, 64):
        for standardised in (True, False):
            runs = []
            for _ in range(args.repeats):
                (xs, ws), (xt, wt) = (speaker_population(rng, 6, 60, dim) for _ in range(2))
                if standardised:
                    xs, xt = per_speaker(xs, ws), per_speaker(xt, wt)
                runs.append([measures.mmd(xs, xt), measures.mmd(xs, xt, groups_s=ws, groups_t=wt)])
            runs = np.array(runs)
            mmd_rows.append([dim, "yes" if standardised else "no",
                             *(f"{runs[:, i].mean():.2e} (sd {runs[:, i].std():.1e})" for i in range(2))])
            print(format_table(MMD_PAIRS_HEADER, mmd_rows[-1:]), flush=True)
    kinds = voice_kinds(rng, args.repeats)
    real = real_folds(args.real) if args.real else ""
    text = f"""## Checks on planted data: the domain classifier's folds, the MMD's pairs

Printed by `python benchmarks/similarity.py --checks --repeats {args.repeats}{real_command(args.real)}`.
Two samples drawn the same way ({CHECK_SETTING}; every speaker its own random offset,
unit noise), so a measure of how the two differ should say "not at all": a domain classifier
0.5, an MMD 0. Mean (range) over {args.repeats} repetitions. `sers.analysis.measures.domain_separability`
(the cross-validated quadratic discriminant, 5 folds) on the raw rows with folds of rows; on rows
standardised per speaker (as `--speaker-norm auto` does) with folds of rows; and standardised with
folds of whole speakers (what `sers similarity` does where speakers are known):

{format_markdown_table(DOMAIN_HEADER, domain_rows)}

Raw, folds of rows score above chance: a held-out row's speaker is in the training folds, and
the classifier knows its voice (the two samples do differ: in their speakers). Standardised per
speaker, folds of rows score far *below* chance, the more so the more dimensions: a speaker's
standardised rows sum to 0, so the held-out rows of each speaker are exactly minus the sum of its
training rows, and whatever the training folds learnt points the held-out rows to the other side.
Folds of whole speakers score 0.5 within sampling error (3 standard errors of a balanced
accuracy at chance are 0.056 here).

The kernel MMD (`measures.mmd`), within-side averages over all pairs of distinct rows, as
Gretton et al.'s eq. 3 writes it, against pairs of rows of two different speakers (what `sers
similarity` does where speakers are known); mean (sd) over {args.repeats} repetitions:

{format_markdown_table(MMD_PAIRS_HEADER, mmd_rows)}

Eq. 3 is unbiased for independent rows; a speaker's rows are not. Standardised, a speaker's rows
sum to 0 (a pair is a little farther apart than two independent rows), and the estimate is
negative by far more than its spread; raw, they share a voice (closer), and it is positive by
more than its spread. Pairs of different speakers give 0 within sampling error either way.

What folds of whole speakers leave: the same kind of tie one level up, when a side has few
speakers whose voices differ in kind. Voices of two kinds (each kind its own correlation
structure, each speaker its own perturbation of it, D = 64, standardised per speaker), one
population for both sides; the kinds alternate (as this corpus's female and male espeak voices
do: 3 + 3 in train, 1 + 1 in dev and test) or are drawn at random:

{format_markdown_table(KINDS_HEADER, kinds)}

With the kinds balanced by design, a held-out speaker's kind is under-represented in its own
side's training folds, so the classifier learns "the other side sounds like this"; it fades as
speakers grow in number (the last rows). Corpora of hundreds of speakers are far from it; this
corpus's splits of 6 and 2 voices are not (the same-language rows of "Defaults on real caches").
{real}"""
    write_section("checks", text, args.doc)


def voice_kinds(rng, repeats: int, dim: int = 64) -> list[list]:
    from sers.analysis import measures

    kinds = {kind: np.eye(dim) + 0.5 * rng.normal(size=(dim, dim)) / np.sqrt(dim) for kind in "fm"}

    def side(voices, rows):
        x, who = [], []
        for i, kind in enumerate(voices):
            own = kinds[kind] + 0.1 * rng.normal(size=(dim, dim)) / np.sqrt(dim)
            x.append(rng.normal(size=(rows, dim)) @ own + rng.normal(size=dim))
            who += [f"{kind}{i}"] * rows
        who = np.array(who)
        return per_speaker(np.vstack(x), who), who

    def voices(kind: str, n: int) -> str:
        return "fm" * (n // 2) if kind == "alternating" else "".join(rng.choice(list("fm"), n))

    out = []
    for kind, (n_s, n_t), rows in (("alternating", (6, 6), 60), ("alternating", (6, 2), 60),
                                   ("alternating", (2, 2), 60), ("drawn at random", (6, 6), 60),
                                   ("alternating", (10, 10), 30), ("alternating", (20, 20), 30)):
        values = []
        for _ in range(repeats):
            (xs, ws), (xt, wt) = side(voices(kind, n_s), rows), side(voices(kind, n_t), rows)
            values.append(measures.domain_separability(xs, xt, groups_s=ws, groups_t=wt)[0])
        out.append([kind, n_s, n_t, rows, f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"])
        print(format_table(KINDS_HEADER, out[-1:]), flush=True)
    return out


KINDS_HEADER = ["voice kinds", "source speakers", "target speakers", "utterances per speaker",
                "domain, folds of speakers"]
DOMAIN_HEADER = ["D", "raw, folds of rows", "per-speaker standardised, folds of rows",
                 "per-speaker standardised, folds of speakers"]
MMD_PAIRS_HEADER = ["D", "standardised per speaker", "mmd, all pairs", "mmd, pairs of two speakers"]


def real_command(pairs) -> str:
    return "" if not pairs else " --real " + " ".join(_short(path) for path in pairs)


def _short(path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def linear_domain(xs, xt, folds_s, folds_t, shrinkage: float = 0.1) -> float:
    """Balanced accuracy of the cross-validated linear discriminant `sers similarity` used before
    (pooled covariance shrunk 10 % towards its mean variance, closed form, the joint standardiser of
    all rows): kept here to show what it did on real features."""
    from sers.analysis import measures

    k = int(max(folds_s.max(), folds_t.max())) + 1
    ms, mt = measures.compute_moments(xs, folds_s, k), measures.compute_moments(xt, folds_t, k)
    centre, scale = measures.standardiser_of(ms.stats(), mt.stats())
    inv = 1.0 / scale
    right_s = right_t = 0
    for j in range(k):
        a, b = ms.stats(leave_out=j), mt.stats(leave_out=j)
        mean_a, mean_b = (a.mean - centre) * inv, (b.mean - centre) * inv
        pooled = ((a.n - 1) * a.cov + (b.n - 1) * b.cov) / (a.n + b.n - 2) * np.outer(inv, inv)
        shrunk = (1 - shrinkage) * pooled + shrinkage * np.trace(pooled) / len(pooled) * np.eye(len(pooled))
        w = np.linalg.solve(shrunk, mean_a - mean_b)
        threshold = w @ (mean_a + mean_b) / 2
        right_s += int(np.sum(((xs[folds_s == j] - centre) * inv) @ w > threshold))
        right_t += int(np.sum(((xt[folds_t == j] - centre) * inv) @ w <= threshold))
    return (right_s / len(xs) + right_t / len(xt)) / 2


def real_folds(paths) -> str:
    """The linear (before) and quadratic (now) domain classifiers on the first pair of real caches'
    train splits, standardised per speaker, with folds of rows and of whole speakers."""
    import sers.cache
    from sers.analysis import measures
    from sers.pipeline import speakers

    header = ["layer", "linear, folds of rows (before)", "linear, folds of speakers", "quadratic, folds of rows",
              "quadratic, folds of speakers (now)"]
    rows = []
    with sers.cache.open(paths[0]) as src, sers.cache.open(paths[1]) as tgt:
        sides = []
        for cache in (src, tgt):
            keep = np.flatnonzero(cache.utterances.mask(split="train"))
            sides.append((cache, keep, cache.utterances.speaker[keep].astype(str), speakers.SpeakerStandardiser(cache)))
        for layer in range(src.num_layers):
            (zs, ws), (zt, wt) = ((by.standardise(layer, c.pooled(layer, rows=keep), keep), who)
                                  for c, keep, who, by in sides)
            by_rows = measures.fold_assignment(len(zs), 5, 0), measures.fold_assignment(len(zt), 5, 1)
            k, _ = measures.fold_plan(ws, wt, 5)
            by_speaker = measures.fold_assignment(len(zs), k, 0, ws), measures.fold_assignment(len(zt), k, 1, wt)
            rows.append([layer, f"{linear_domain(zs, zt, *by_rows):.3f}", f"{linear_domain(zs, zt, *by_speaker):.3f}",
                         f"{measures.domain_separability(zs, zt)[0]:.3f}",
                         f"{measures.domain_separability(zs, zt, groups_s=ws, groups_t=wt)[0]:.3f}"])
            print(format_table(header, rows[-1:]), flush=True)
    return f"""
On real features ({Path(paths[0]).name} against {Path(paths[1]).name}, train splits: 6 speakers
x 60 utterances each, D = 512, standardised per speaker as `sers similarity` does by default):
the linear discriminant sers used before, with its folds of rows (what the user saw), and with
folds of whole speakers; the quadratic one with either:

{format_markdown_table(header, rows)}

The linear rule with folds of rows reproduces the reported artefact; with folds of speakers it
sits at chance at every layer, as it must: after per-speaker standardisation both languages have
mean 0 in every direction, so a linear rule has nothing to separate, and a measure that is 0.5
everywhere ranks no layers. The quadratic rule sees the languages' different correlations, and
with folds of speakers it is what `sers similarity` reports.
"""


# -- defaults on real caches --------------------------------------------------------------------

def real(args) -> None:
    from sers.pipeline.similarity import compute_similarity

    pairs = list(zip(args.real[::2], args.real[1::2]))
    sections, summary = [], []
    for i, (source, target) in enumerate(pairs):
        options = {"target_split": args.target_split} if Path(source).resolve() == Path(target).resolve() else {}
        result = compute_similarity(source, target, **options)
        label = f"{Path(source).name} vs {Path(target).name}" + (f" ({options['target_split']})" if options else "")
        names = [n for n, c in result["measures"].items() if c["label_free"]]
        command = (f"sers similarity {_short(source)} {_short(target)} -o /tmp/sim-check"
                   + (f" --target-split {options['target_split']}" if options else ""))
        agreement = ", ".join(f"{'/'.join(p['measures'])} {p['tau']:+.2f}" for p in result["agreement"]
                              if p["tau"] is not None) or "-"
        problems = "; ".join(f"{n}: {why}" for n, why in result["cannot_rank"].items()) or "none"
        summary.append([label, *(_span(result["measures"][n]["values"]) for n in names), problems, agreement])
        print(format_table(["pair", *names, "cannot rank", "Kendall tau"], summary[-1:]), flush=True)
        if i == 0:
            rows = [[layer, *(f"{result['measures'][n]['values'][j]:.4g}" for n in names)]
                    for j, layer in enumerate(result["layers"])]
            sections.append(f"`{command}` (defaults: `--speaker-norm auto` standardised every speaker: "
                            f"{result['speaker_standardised']}; domain folds: {result['domain_folds']['n_folds']} "
                            f"of whole speakers; mmd on {result['mmd_rows']['source']} and "
                            f"{result['mmd_rows']['target']} rows):\n\n"
                            + format_markdown_table(["layer", *names], rows)
                            + f"\n\nCannot rank layers: {problems}. Layer orders agree (Kendall tau): {agreement}.")
    text = f"""## Defaults on real caches

Printed by `python benchmarks/similarity.py --real {' '.join(_short(p) for p in args.real)}`: for each pair
`compute_similarity(source, target)` with `sers similarity`'s defaults (the same as the command
shown), train splits; a cache paired with itself compares its train split with its
`{args.target_split}` split (other speakers of the same language: the answer should be "alike").
Per layer for the first pair:

{sections[0] if sections else ""}

Every pair, each label-free measure's smallest and largest value over the layers:

{format_markdown_table(["pair", *names, "cannot rank", "Kendall tau between measures"], summary)}
"""
    write_section("real", text, args.doc)


def _span(values) -> str:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return f"{min(finite):.4g} to {max(finite):.4g}" if finite else "-"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000, help="utterances per cache")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--scaling-layers", type=int, default=5, help="layers of the smaller scaling points")
    parser.add_argument("--no-scaling", action="store_true", help="only the main point")
    parser.add_argument("--format", choices=["zarr", "h5"], default="zarr")
    parser.add_argument("--workdir", type=Path, help="where the caches go (default: a temporary folder)")
    parser.add_argument("--checks", action="store_true", help="the planted checks (with --real: its first pair too)")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of each planted check")
    parser.add_argument("--real", nargs="+", type=Path, metavar="CACHE",
                        help="pairs of real caches, source then target (a cache twice: train vs --target-split)")
    parser.add_argument("--target-split", default="dev", help="target split where a cache is paired with itself")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    if args.real and len(args.real) % 2:
        parser.error("--real takes pairs of caches: source then target")
    if args.checks:
        checks(args)
    elif args.real:
        real(args)
    else:
        cost(args)


if __name__ == "__main__":
    main()
