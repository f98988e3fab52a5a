"""Does sers lose work or print tracebacks when runs are killed or inputs are wrong?

    python benchmarks/reliability.py               # 8 kills per back-end, the whole bad-input catalogue
    python benchmarks/reliability.py --kills 20

Three experiments, each with real `sers` processes (python -m sers.cli), a tiny WavLM built
from a config and generated audio:
  kills       `sers extract` killed at seeded random moments (SIGKILL, SIGTERM, SIGINT in turn),
              then rerun until it finishes; per back-end (zarr, HDF5): kills survived (the final
              cache is complete and bit-identical to an uninterrupted run), tracebacks printed,
              utterances lost or different, and unfinished caches that claimed to be complete
  orphans     the main process SIGKILLed while its decoding workers run: helper processes left
  bad inputs  every case of tests/bad_inputs.py: clear one-line errors (or recorded rows),
              tracebacks, hangs, finished work changed
Prints the tables and writes them to docs/reliability.md (between the markers).
"""
from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402
from bad_inputs import CASES, Inputs, digest, tone  # noqa: E402
from tiny_models import make_tiny_model  # noqa: E402

import sers.cache  # noqa: E402
from sers.display.tables import format_markdown_table, format_table  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "SERS_DEBUG": ""}
PROGRESS = re.compile(r"\d+%\|")
# Rows are marked done a pooled chunk at a time; small chunks give a kill something to resume.
RUN_EXTRACT = ("import sys, sers.cache.schema as s; s.pooled_chunk_rows = lambda d: 4; "
               "from sers.cli import main; sys.argv[0] = 'sers'; main()")


def sers_command(*argv) -> list[str]:
    return [sys.executable, "-m", "sers.cli", *map(str, argv)]


def corpus(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        tone(folder / f"u{i}.wav", float(rng.uniform(0.5, 2.0)))
        rows.append(f"u{i}.wav,{'NHAS'[i % 4]},train")
    (folder / "m.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return folder / "m.csv"


def pooled(path) -> dict:
    with sers.cache.open(path) as cache:
        return dict(zip(cache.utterances.id, cache.pooled_layers(range(cache.num_layers)).transpose(1, 0, 2)))


# -- kills --------------------------------------------------------------------------------------------

def kills(model: Path, manifest: Path, work: Path, n_kills: int, seed: int) -> list[list]:
    rows = []
    for suffix in (".zarr", ".h5"):
        argv = ["extract", "--model", model, "--manifest", manifest, "--batch-seconds", "2", "--workers", "1",
                "--quiet"]
        reference = work / f"reference{suffix}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", RUN_EXTRACT, *map(str, argv), "--out", reference], env=ENV,
                       check=True, capture_output=True)
        reference_seconds = time.perf_counter() - started
        rng = random.Random(seed)
        survived = tracebacks = claimed_complete = lost = 0
        for k in range(n_kills):
            out = work / f"killed{k}{suffix}"
            sig = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)[k % 3]
            stderr = _run_and_kill(argv + ["--out", out], rng.uniform(0.3, 0.9) * reference_seconds, sig)
            tracebacks += "Traceback" in stderr
            if out.exists():
                try:
                    with sers.cache.open(out) as cache:
                        claimed_complete += cache.complete and int(cache.all_utterances.done.sum()) < len(
                            cache.all_utterances)
                except Exception:  # noqa: BLE001 - a cache the kill left unreadable counts against us below
                    pass
            final = subprocess.run([sys.executable, "-c", RUN_EXTRACT, *map(str, argv), "--out", out], env=ENV,
                                   capture_output=True, text=True)
            tracebacks += "Traceback" in final.stderr
            if final.returncode != 0:  # the resume refused the cache the kill left: all of it must be redone
                lost += len(pooled(reference))
                print(f"{out.name}: resume after {sig.name} failed: {final.stderr.strip().splitlines()[-1:]}",
                      flush=True)
                continue
            expected, got = pooled(reference), pooled(out)
            different = sum(1 for uid, value in expected.items()
                            if uid not in got or not np.array_equal(value, got[uid]))
            lost += different
            survived += different == 0
        rows.append([suffix.lstrip("."), n_kills, survived, tracebacks, lost, claimed_complete])
    return rows


def _run_and_kill(argv, delay: float, sig) -> str:
    process = subprocess.Popen([sys.executable, "-c", RUN_EXTRACT, *map(str, argv)], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(sig)
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        stderr += "\n(hang after the signal)"
    return stderr


# -- orphans --------------------------------------------------------------------------------------------

def orphans(model: Path, manifest: Path, work: Path, tries: int) -> list[list]:
    import psutil

    left = 0
    for t in range(tries):
        process = subprocess.Popen(sers_command("extract", "--model", model, "--manifest", manifest, "--out",
                                                work / f"orphan{t}.zarr", "--batch-seconds", "0.5", "--workers",
                                                "2", "--quiet"), env=ENV, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        parent = psutil.Process(process.pid)
        deadline = time.monotonic() + 60
        while len(parent.children(recursive=True)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        helpers = parent.children(recursive=True)
        process.kill()
        process.wait()
        _, alive = psutil.wait_procs(helpers, timeout=10)
        left += len(alive)
        for p in alive:
            p.kill()
    return [[tries, left]]


# -- bad inputs ---------------------------------------------------------------------------------------------

def bad_inputs(model: Path, work: Path) -> tuple[list[list], list[str]]:
    inputs = Inputs(model=model)
    by_group: dict[str, list[int]] = {}
    problems = []
    for number, case in enumerate(CASES):
        tmp = work / f"case{number}"
        tmp.mkdir(parents=True)
        built = case.build(inputs, tmp)
        before = {path: digest(path) for path in built.keeps}
        try:
            result = subprocess.run(sers_command(*built.argv), env=ENV, capture_output=True, text=True, timeout=300)
            hang = False
        except subprocess.TimeoutExpired:
            result, hang = None, True
        stderr = "" if hang else result.stderr
        lines = [line for line in re.split(r"[\r\n]", stderr) if line.strip() and not PROGRESS.search(line)]
        traceback = "Traceback" in stderr
        changed = any(digest(path) != value for path, value in before.items())
        if case.kind in ("fail", "usage"):
            clear = (not hang and result.returncode == (2 if case.kind == "usage" else 1) and len(lines) == 1
                     and built.names in lines[0])
        else:
            clear = not hang and result.returncode == 0 and not traceback and (
                case.kind == "ok" or built.names in result.stdout)
        counts = by_group.setdefault(case.group, [0, 0, 0, 0, 0])
        counts[0] += 1
        counts[1] += clear
        counts[2] += traceback
        counts[3] += hang
        counts[4] += changed
        if not clear or traceback or changed:
            problems.append(f"{case.name}: exit {None if hang else result.returncode}, stderr {stderr[-300:]!r}")
    rows = [[group, *counts] for group, counts in by_group.items()]
    rows.append(["all", *[sum(c[i] for c in by_group.values()) for i in range(5)]])
    return rows, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=8, help="Kills per back-end.")
    parser.add_argument("--utterances", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="Print only; leave docs/reliability.md alone.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sers-reliability-") as folder:
        work = Path(folder)
        model = make_tiny_model("wavlm", work / "model")
        manifest = corpus(work / "audio", args.utterances)
        kill_rows = kills(model, manifest, work, args.kills, args.seed)
        print(kill_rows, flush=True)
        orphan_rows = orphans(model, manifest, work, tries=3)
        print(orphan_rows, flush=True)
        bad_rows, problems = bad_inputs(model, work / "cases")

    tables = [
        ("Kills during `sers extract`", ["back-end", "kills", "survived (bit-identical)", "tracebacks",
                                         "utterances lost", "unfinished shown complete"], kill_rows),
        ("Main process SIGKILLed with 2 decoding workers", ["tries", "helper processes left"], orphan_rows),
        ("Bad inputs (tests/bad_inputs.py)", ["group", "cases", "clear", "tracebacks", "hangs",
                                              "finished work changed"], bad_rows),
    ]
    command = f"python benchmarks/reliability.py --kills {args.kills} --utterances {args.utterances}"
    markdown = [f"`{command}` ({args.utterances} generated utterances, tiny WavLM from a config).\n"]
    for title, header, rows in tables:
        print(f"\n{title}\n{format_table(header, rows)}")
        markdown.append(f"**{title}**\n\n{format_markdown_table(header, rows)}\n")
    for problem in problems:
        print(f"problem: {problem}")
    if not args.no_write:
        write_section("reliability", "\n".join(markdown), path=DOC)
        print(f"\nwrote {DOC}")


if __name__ == "__main__":
    main()
