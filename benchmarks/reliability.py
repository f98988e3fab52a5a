"""Does sers lose work, accept wrong numbers or print tracebacks when runs are killed, chunks are lost,
disks fill up or inputs are wrong?

    python benchmarks/reliability.py                       # 6 kills per back-end, 20 SIGKILLs of HDF5, faults, bad inputs
    python benchmarks/reliability.py --kills 20 --hdf5-sigkills 40

Real `sers` processes (python -m sers.cli), a tiny WavLM built from a config, generated audio; every
cache stores frames of all layers and `--pool mean,std`, and is compared number for number (pooled
statistics and frames) with an uninterrupted run:
  kills       `sers extract` killed at seeded random moments (SIGKILL, SIGTERM, SIGINT in turn; then
              SIGKILL only on HDF5), rerun until it finishes: kills survived bit-identical, resumes
              refused, tracebacks, utterances lost or different, unfinished caches shown complete,
              and "silently wrong": a run that exits 0 with a number that differs
  faults      a deleted, truncated or altered chunk (read by `sers similarity`, then repaired by
              `sers extract`), a full disk (a small tmpfs; an injected ENOSPC where none can be
              mounted) during extraction and during the HDF5 copy, SIGKILL during the HDF5 copy
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
import shutil
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
from bad_inputs import CASES, Inputs, damage_chunk, digest, tone  # noqa: E402
from tiny_models import make_tiny_model  # noqa: E402

import sers.cache  # noqa: E402
from sers.display.tables import format_markdown_table, format_table  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "SERS_DEBUG": ""}
PROGRESS = re.compile(r"\d+%\|")
# Rows are marked done 4 at a time and frames chunked 64 at a time (as in the report of issue 24), so that
# a kill has finished rows to keep and frame chunks shared by finished and unfinished utterances.
SMALL_CHUNKS = "import sers.cache.schema as s; s.pooled_chunk_rows = lambda d: 4; s.frame_chunk_rows = lambda d: 64; "
# The full-disk runs switch off the guards that stop a run before the disk fills, to meet ENOSPC itself.
NO_GUARDS = ("import sers.pipeline.extract as e, sers.pipeline.extract_run as r; r._disk_reserve = lambda *a, **k: 0; "
             "e._check_disk = lambda *a, **k: None; ")
NO_COPY_CHECK = "import sers.cache.journal as j; j.SIZE_MARGIN = j.SIZE_SLACK = 0; "
MAIN = "import sys; from sers.cli import main; sys.argv[0] = 'sers'; main()"


def extract_command(model, manifest, out, patches: str = "") -> list[str]:
    return [sys.executable, "-c", SMALL_CHUNKS + patches + MAIN, "extract", "--model", str(model), "--manifest",
            str(manifest), "--out", str(out), "--batch-seconds", "2", "--workers", "1", "--quiet",
            "--frame-layers", "all", "--pool", "mean,std"]


def sers_command(*argv) -> list[str]:
    return [sys.executable, "-m", "sers.cli", *map(str, argv)]


def run(command, **options) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=ENV, capture_output=True, text=True, **options)


def corpus(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        tone(folder / f"u{i}.wav", float(rng.uniform(0.5, 2.0)))
        rows.append(f"u{i}.wav,{'NHAS'[i % 4]},train")
    (folder / "m.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return folder / "m.csv"


def features(path) -> dict:
    """Every stored number by utterance id: each pooled statistic (L, D) and the frames of each layer."""
    with sers.cache.open(path) as cache:
        pooled = {stat: cache.pooled_layers(range(cache.num_layers), stat=stat) for stat in cache.pool_stats}
        rows = range(len(cache.utterances))
        frames = {layer: cache.frame_block(layer, rows) for layer in cache.frame_layers}
        out = {}
        for row, uid in enumerate(cache.utterances.id):
            n = int(cache.utterances.n_frames[row])
            out[uid] = [values[:, row] for values in pooled.values()] + \
                       [block[offsets[row]:offsets[row] + n] for block, offsets in frames.values()]
        return out


def differing(reference: dict, path) -> int:
    """Utterances of ``reference`` missing from the cache at ``path`` or with any number different."""
    got = features(path)
    return sum(1 for uid, values in reference.items()
               if uid not in got or not all(np.array_equal(a, b) for a, b in zip(values, got[uid])))


def error_lines(stderr: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]", stderr) if line.startswith("error")]


# -- kills --------------------------------------------------------------------------------------------

def kills(model, manifest, work: Path, references: dict, plans, seed: int) -> list[list]:
    rows = []
    for label, suffix, signals, n_kills in plans:
        reference, seconds, _ = references[suffix]
        rng = random.Random(seed)
        survived = refused = tracebacks = claimed_complete = lost = wrong = 0
        for k in range(n_kills):
            out = work / f"killed-{label.split()[0]}-{k}{suffix}"
            sig = signals[k % len(signals)]
            stderr = _run_and_kill(extract_command(model, manifest, out), rng.uniform(0.3, 1.0) * seconds, sig)
            tracebacks += "Traceback" in stderr
            if sers.cache.exists(out):
                try:
                    with sers.cache.open(out) as cache:
                        claimed_complete += cache.complete and int(cache.all_utterances.done.sum()) < len(
                            cache.all_utterances)
                except Exception:  # noqa: BLE001 - a cache the kill left unreadable counts below
                    pass
            final = run(extract_command(model, manifest, out))
            tracebacks += "Traceback" in final.stderr
            if final.returncode != 0:  # the resume refused the cache the kill left: all of it must be redone
                refused += 1
                lost += len(reference)
                print(f"{out.name}: resume after {sig.name} failed: {error_lines(final.stderr)[-1:]}", flush=True)
                continue
            different = differing(reference, out)
            lost += different
            wrong += different > 0  # exit 0, a complete cache, and other numbers
            survived += different == 0
            sers.cache.remove(out)
        rows.append([label, n_kills, survived, refused, tracebacks, lost, claimed_complete, wrong])
        print(rows[-1], flush=True)
    return rows


def _run_and_kill(command, delay: float, sig) -> str:
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(sig)
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        stderr += "\n(hang after the signal)"
    return stderr


# -- faults -------------------------------------------------------------------------------------------

def faults(model, manifest, work: Path, references: dict) -> list[list]:
    """Rows: fault, back-end, how it showed (the one line or log line), repaired bit-identical, silently wrong."""
    rows = []
    for suffix, array, how in [(".zarr", "pooled/mean", "delete"), (".zarr", "pooled/mean", "truncate"),
                               (".zarr", "frames/layer_1", "truncate"), (".zarr", "frames/layer_2", "delete"),
                               (".h5", "pooled/mean", "flip"), (".h5", "frames/layer_0", "flip")]:
        out = work / f"damaged-{how}-{array.replace('/', '-')}{suffix}"
        copy = shutil.copytree if suffix == ".zarr" else shutil.copy
        copy(references[suffix][2], out)
        damage_chunk(out, array, how)
        shown, wrong = "", 0
        if array.startswith("pooled/mean"):  # what stage 2 reads: it must refuse, not read zeros
            similarity = run(sers_command("similarity", references[suffix][2], out, "-o", work / f"sim-{out.name}",
                                          "--measures", "coral"))
            lines = error_lines(similarity.stderr)
            wrong += similarity.returncode == 0
            shown = f"`sers similarity`: exit {similarity.returncode}, {len(lines)} line" + (
                f" ({_quote(lines[0], array)})" if lines else "")
        repair = run(extract_command(model, manifest, out))
        logged = [line for line in repair.stderr.splitlines() if array in line and "extracting them again" in line]
        shown = shown or f"`sers extract`: {_quote(logged[0], array) if logged else 'nothing logged'}"
        different = differing(references[suffix][0], out) if repair.returncode == 0 else None
        wrong += different not in (0, None)  # the repair said it finished, with other numbers
        what = {"delete": "deleted", "truncate": "truncated", "flip": "one byte flipped"}[how]
        rows.append([f"chunk of {array} {what}", suffix.lstrip("."), 1, shown,
                     "yes" if different == 0 else f"no ({repair.returncode})", wrong])
        print(rows[-1], flush=True)
    rows += disk_full(model, manifest, work, references)
    rows += killed_copies(model, manifest, work, references)
    return rows


def _quote(line: str, array: str) -> str:
    """The part of a message from the array on, shortened."""
    text = line[line.index(array):] if array in line else line
    return "“" + (text[:90] + "…" if len(text) > 90 else text) + "”"


def disk_full(model, manifest, work: Path, references: dict) -> list[list]:
    rows = []
    for suffix, during in [(".zarr", "extraction"), (".h5", "extraction"), (".h5", "the HDF5 copy")]:
        disk = work / f"disk-{suffix.lstrip('.')}-{during.split()[-1]}"
        disk.mkdir()
        mounted = run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)]).returncode == 0
        try:
            rows.append(_fill_and_resume(model, manifest, disk, suffix, during, references, mounted))
        finally:
            if mounted:
                run(["umount", str(disk)])
        print(rows[-1], flush=True)
    return rows


def _fill_and_resume(model, manifest, disk: Path, suffix, during, references, mounted: bool) -> list:
    reference, _, reference_path = references[suffix]
    out = disk / f"c{suffix}"
    if mounted:  # room for 3/4 of the journal (extraction: the layout and some rows), or the journal and 1/3 of the file
        store = references[".zarr"][2]
        probe = disk / "probe.zarr"
        before = shutil.disk_usage(disk).used
        shutil.copytree(store, probe)
        journal_bytes = shutil.disk_usage(disk).used - before
        shutil.rmtree(probe)
        room = journal_bytes * 3 // 4 if during == "extraction" else journal_bytes + os.path.getsize(reference_path) // 3
        filler = disk / "filler"
        with open(filler, "wb") as handle:
            handle.write(b"\0" * max(0, shutil.disk_usage(disk).free - room))
        patches = NO_GUARDS + (NO_COPY_CHECK if during != "extraction" else "")
        how = "tmpfs"
    else:  # no tmpfs here: ENOSPC raised from the write path (the second flush, or the HDF5 helper)
        patches = NO_GUARDS + (
            "import errno, sers.cache as c; f = c.CacheWriter.flush; n = [0]\n"
            "def flush(self):\n    n[0] += 1\n    if n[0] == 2: raise OSError(errno.ENOSPC, 'No space left on device', "
            "str(self.store))\n    f(self)\nc.CacheWriter.flush = flush\n" if during == "extraction" else
            "import sers.cache.journal as j; j.HELPER = \"import os, sys; sys.stderr.write('errno = 28'); os._exit(1)\"\n")
        filler, how = None, "injected ENOSPC"
    full = run(extract_command(model, manifest, out, patches))
    lines = error_lines(full.stderr)
    kept = int(sers.cache.open(out).all_utterances.done.sum()) if sers.cache.exists(out) else 0
    if filler is not None:
        filler.unlink()
    again = run(extract_command(model, manifest, out))
    different = differing(reference, out) if again.returncode == 0 else None
    shown = (f"exit {full.returncode}, {len(lines)} line" + (f" ({_quote(lines[0], 'no space')})" if lines else "")
             + f", {kept} of {len(reference)} rows kept")
    return [f"disk full during {during} ({how})", suffix.lstrip("."), 1, shown,
            "yes" if different == 0 else f"no ({again.returncode})", int(full.returncode == 0 and different != 0)]


def killed_copies(model, manifest, work: Path, references: dict, tries: int = 3) -> list[list]:
    """SIGKILL of `sers extract` while its helper writes the HDF5 file from the finished journal."""
    import psutil

    reference = references[".h5"][0]
    caught = repaired = wrong = helpers_left = 0
    for t in range(tries):
        out = work / f"copy-killed{t}.h5"
        process = subprocess.Popen(extract_command(model, manifest, out), env=ENV, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        parent, helper = psutil.Process(process.pid), None
        while process.poll() is None and helper is None:
            try:
                helper = next((p for p in parent.children() if "sers.cache.journal" in " ".join(p.cmdline())), None)
            except psutil.Error:  # a child that ended while we looked
                pass
            time.sleep(0.01)
        process.kill()
        process.wait()
        caught += helper is not None
        if helper is not None:
            _, alive = psutil.wait_procs([helper], timeout=10)
            helpers_left += len(alive)
        again = run(extract_command(model, manifest, out))
        different = differing(reference, out) if again.returncode == 0 else None
        repaired += different == 0
        wrong += different not in (0, None)
    return [["SIGKILL while the helper writes the HDF5 file", "h5", tries,
             f"{caught} kills during the copy, {helpers_left} helpers left", f"{repaired} of {tries}", wrong]]


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
        if case.kind in ("fail", "usage"):  # exit 1 (2: a wrong option, click's), the one line naming it, last
            errors = [line for line in lines if line.startswith("error")]
            clear = not hang and result.returncode == (2 if case.kind == "usage" else 1) and \
                errors == lines[-1:] and built.names in errors[0]
        else:
            clear = not hang and result.returncode == 0 and not traceback and (
                case.kind == "ok" or built.names in result.stdout)
        counts = by_group.setdefault(case.group, [0, 0, 0, 0, 0])
        for i, value in enumerate((1, clear, traceback, hang, changed)):
            counts[i] += value
        if not clear or traceback or changed:
            problems.append(f"{case.name}: exit {None if hang else result.returncode}, stderr {stderr[-300:]!r}")
    rows = [[group, *counts] for group, counts in by_group.items()]
    rows.append(["all", *[sum(c[i] for c in by_group.values()) for i in range(5)]])
    return rows, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=6, help="Kills per back-end, SIGKILL, SIGTERM, SIGINT in turn.")
    parser.add_argument("--hdf5-sigkills", type=int, default=20, help="More kills of HDF5 runs, SIGKILL only.")
    parser.add_argument("--utterances", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="Print only; leave docs/reliability.md alone.")
    args = parser.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sers-reliability-") as folder:
        work = Path(folder)
        model = make_tiny_model("wavlm", work / "model")
        manifest = corpus(work / "audio", args.utterances)
        references = {}
        for suffix in (".zarr", ".h5"):
            path = work / f"reference{suffix}"
            begun = time.perf_counter()
            run(extract_command(model, manifest, path), check=True)
            references[suffix] = (features(path), time.perf_counter() - begun, path)
        turns = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
        kill_rows = kills(model, manifest, work, references, [
            ("zarr", ".zarr", turns, args.kills), ("h5", ".h5", turns, args.kills),
            ("h5 (SIGKILL only)", ".h5", (signal.SIGKILL,), args.hdf5_sigkills)], args.seed)
        fault_rows = faults(model, manifest, work, references)
        orphan_rows = orphans(model, manifest, work, tries=3)
        print(orphan_rows, flush=True)
        bad_rows, problems = bad_inputs(model, work / "cases")

    silently_wrong = sum(row[-1] for row in kill_rows) + sum(row[-1] for row in fault_rows)
    n_kills, n_faults = sum(row[1] for row in kill_rows), sum(row[2] for row in fault_rows)
    tables = [
        ("Kills during `sers extract` (frames of every layer, `--pool mean,std`)",
         ["back-end", "kills", "survived (bit-identical)", "resumes refused", "tracebacks", "utterances lost or different",
          "unfinished shown complete", "silently wrong"], kill_rows),
        ("Faults injected", ["fault", "back-end", "runs", "what the user sees",
                             "`sers extract` after it: bit-identical", "silently wrong"], fault_rows),
        ("Main process SIGKILLed with 2 decoding workers", ["tries", "helper processes left"], orphan_rows),
        ("Bad inputs (tests/bad_inputs.py)", ["group", "cases", "clear", "tracebacks", "hangs",
                                              "finished work changed"], bad_rows),
    ]
    command = (f"python benchmarks/reliability.py --kills {args.kills} --hdf5-sigkills {args.hdf5_sigkills} "
               f"--utterances {args.utterances}")
    markdown = [f"`{command}` ({args.utterances} generated utterances, tiny WavLM from a config; "
                f"{(time.perf_counter() - started) / 60:.0f} min on {os.cpu_count()} CPU cores). "
                f"**Silently wrong: {silently_wrong}** (runs that exit 0 with a number different from the "
                f"uninterrupted run, or read a damaged cache without an error, of {n_kills} kills and "
                f"{n_faults} faults).\n"]
    for title, header, rows in tables:
        print(f"\n{title}\n{format_table(header, rows)}")
        markdown.append(f"**{title}**\n\n{format_markdown_table(header, rows)}\n")
    print(f"\nsilently wrong: {silently_wrong}")
    for problem in problems:
        print(f"problem: {problem}")
    if not args.no_write:
        write_section("reliability", "\n".join(markdown), path=DOC)
        print(f"\nwrote {DOC}")


if __name__ == "__main__":
    main()
