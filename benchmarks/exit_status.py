"""Can a finished `sers extract` exit non-zero? Resumed runs in parallel, and signals after the summary.

    python benchmarks/exit_status.py                  # 24 resumed runs, 4 at a time; 12 late signals
    python benchmarks/exit_status.py --runs 60 --parallel 8

Issue 24 item 9: once, under heavy load, a resumed `sers extract` printed its "extracted 200
utterances (0 failed)" summary and exited non-zero. Every run here is a real `sers` process
(python -m sers.cli) resuming its own copy of one half-extracted cache (zarr and HDF5 in turn; a
tiny WavLM built from a config, 2 decoding workers, generated audio):
  load        --parallel runs at once on this machine's cores: what the decoding workers' shutdown,
              the writer lock's release, the HDF5 copy and the interpreter's exit do under load
  late        SIGTERM or SIGINT (in turn) sent the moment the summary reaches stdout, as a scheduler's
              time limit or a Ctrl-C can while the interpreter still tears down torch, zarr and the
              decoding workers
Counts runs, summaries printed, exit 0, and finished runs that exited non-zero (their exit codes and
last stderr line). Prints the table and writes it to docs/reliability.md (between the markers).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402
from bad_inputs import tone  # noqa: E402
from tiny_models import make_tiny_model  # noqa: E402

from sers.display.tables import format_markdown_table, format_table  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "SERS_DEBUG": ""}
# Stops the first extraction after two batches (Ctrl-C, every finished row kept): the half cache.
# Small pooled chunks, so that rows are marked done a few at a time.
HALF = """
import sys
import sers.cache.schema as schema
import sers.pipeline.extract_run as run
schema.pooled_chunk_rows = lambda hidden_size: 4
calls, real = [], run._check_space_left
def stop(path, reserve):
    calls.append(1)
    if len(calls) == 3:
        raise KeyboardInterrupt
    real(path, reserve)
run._check_space_left = stop
from sers.cli import main
main(sys.argv[1:], prog_name="sers")
"""


def corpus(folder: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        tone(folder / f"u{i}.wav", 0.5 + 0.05 * (i % 20))
        rows.append(f"u{i}.wav,{'NHAS'[i % 4]},train")
    (folder / "m.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return folder / "m.csv"


def half_cache(argv: list[str], folder: Path, suffix: str) -> Path:
    folder.mkdir(parents=True)
    out = folder / f"c{suffix}"
    done = subprocess.run([sys.executable, "-c", HALF, *argv, "--out", str(out)], env=ENV, capture_output=True,
                          text=True)
    assert done.returncode == 130, done.stderr
    return folder


def resume(argv: list[str], half: Path, work: Path, suffix: str, late_signal=None) -> dict:
    """One resumed run of a copy of ``half``; with ``late_signal``, sent as the summary appears."""
    folder = Path(tempfile.mkdtemp(dir=work))
    shutil.rmtree(folder)
    shutil.copytree(half, folder)
    process = subprocess.Popen([sys.executable, "-m", "sers.cli", *argv, "--out", str(folder / f"c{suffix}")],
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout = []
    for line in process.stdout:
        stdout.append(line)
        if late_signal is not None and line.startswith("extracted "):
            process.send_signal(late_signal)
    stderr = process.stderr.read()
    code = process.wait()
    shutil.rmtree(folder, ignore_errors=True)
    summary = any(line.startswith("extracted ") for line in stdout)
    last = [line for line in stderr.splitlines() if line.strip()][-1:]
    return {"code": code, "summary": summary, "last": last[0] if last else ""}


def part(name: str, jobs: list, parallel: int) -> tuple[list, list[str]]:
    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(lambda job: job(), jobs))
    bad = [r for r in results if r["summary"] and r["code"] != 0]
    codes = sorted({r["code"] for r in bad})
    notes = [f"{name}: exit {r['code']} after the summary; stderr: {r['last']!r}" for r in bad]
    notes += [f"{name}: no summary, exit {r['code']}; stderr: {r['last']!r}" for r in results if not r["summary"]]
    return [name, len(results), sum(r["summary"] for r in results), sum(r["code"] == 0 for r in results), len(bad),
            ", ".join(map(str, codes)) or "-"], notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=24, help="Resumed runs under load (half zarr, half HDF5).")
    parser.add_argument("--parallel", type=int, default=4, help="Runs at once.")
    parser.add_argument("--late", type=int, default=12, help="Runs signalled as their summary appears.")
    parser.add_argument("--utterances", type=int, default=40)
    parser.add_argument("--no-write", action="store_true", help="Print only; leave docs/reliability.md alone.")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sers-exit-") as tmp:
        work = Path(tmp)
        model = make_tiny_model("wavlm", work / "model")
        manifest = corpus(work / "audio", args.utterances)
        argv = ["extract", "--model", str(model), "--manifest", str(manifest), "--batch-seconds", "2",
                "--workers", "2", "--quiet"]
        halves = {suffix: half_cache(argv, work / f"half{suffix}", suffix) for suffix in (".zarr", ".h5")}
        suffixes = [(".zarr", ".h5")[i % 2] for i in range(max(args.runs, args.late))]
        rows, notes = [], []
        for name, count, signals in (("load", args.runs, None),
                                     ("late", args.late, (signal.SIGTERM, signal.SIGINT))):
            jobs = [(lambda s=suffixes[i], sig=(signals[i % 2] if signals else None):
                     resume(argv, halves[s], work, s, sig)) for i in range(count)]
            row, found = part(name, jobs, args.parallel)
            rows.append(row)
            notes += found
    header = ["part", "runs", "summary printed", "exit 0", "finished but exit != 0", "those exit codes"]
    print(format_table(header, rows))
    for note in notes:
        print(note)
    command = (f"python benchmarks/exit_status.py --runs {args.runs} --parallel {args.parallel} --late {args.late} "
               f"--utterances {args.utterances}")
    print(f"{command}: {time.perf_counter() - started:.0f} s on {os.cpu_count()} cores")
    if not args.no_write:
        write_section("exit-status", f"`{command}` ({os.cpu_count()} cores; each run resumes a copy of one "
                                     "half-extracted cache, zarr and HDF5 in turn, with 2 decoding workers).\n\n"
                      + format_markdown_table(header, rows), path=DOC)


if __name__ == "__main__":
    main()
