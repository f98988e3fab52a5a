"""What the safety of a cache costs: the check of every finished row before a resume, and the copy of an
HDF5 cache's zarr journal into its .h5 file.

    python benchmarks/journal_costs.py                 # 500 utterances x 500 frames, 25 layers x 1024
    python benchmarks/journal_costs.py --utterances 4000

Writes a cache of random features shaped like WavLM Large's (25 layers x 1024, pooled mean, the
frames of 2 layers in float16) through sers.cache.CacheWriter, as extraction does, into a zarr
store and into an HDF5 cache (its journal, then the copy), and times: writing the rows, the copy
into the .h5 file, and CacheWriter.verify (every chunk read, frames checked against the pooled
mean) of each. Prints the table and writes it to docs/reliability.md (between the markers).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_section  # noqa: E402

import sers.cache  # noqa: E402
from sers.cache import journal  # noqa: E402
from sers.display.tables import format_bytes, format_markdown_table, format_table  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
LAYERS, DIM, FRAME_LAYERS = 25, 1024, [12, 24]


def write(path: Path, n: int, frames_each: int) -> tuple[float, float]:
    """Seconds to lay out and write ``n`` rows, and to finish (for HDF5: the copy into the .h5 file)."""
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(frames_each, DIM)).astype(np.float32)  # one utterance's frames, shifted per row
    started = time.perf_counter()
    writer = sers.cache.CacheWriter.create(path, {"id": [f"u{i}" for i in range(n)], "n_frames": [frames_each] * n},
                                           num_layers=LAYERS, hidden_size=DIM, frame_layers=FRAME_LAYERS,
                                           model_id="random", settings={"model": "random"})
    with writer:
        for row in range(n):
            shifted = frames + row % 7
            writer.add(row, {"mean": np.repeat(shifted.mean(0, keepdims=True), LAYERS, 0)},
                       {layer: shifted for layer in FRAME_LAYERS})
        writer.flush()
        written = time.perf_counter()
        writer.finish()
    return written - started, time.perf_counter() - written


def verify(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    with sers.cache.CacheWriter.resume(path) as writer:
        damage = writer.verify(frames_match_pooled=True)
    return time.perf_counter() - started, len(damage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=500)
    parser.add_argument("--frames", type=int, default=500, help="Frames per utterance (10 s at 50 frames/s).")
    parser.add_argument("--folder", default=None, help="Where to write the caches (default: a temporary folder).")
    parser.add_argument("--no-write", action="store_true", help="Print only; leave docs/reliability.md alone.")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sers-journal-", dir=args.folder) as folder:
        for suffix in (".zarr", ".h5"):
            path = Path(folder) / f"c{suffix}"
            write_seconds, copy_seconds = write(path, args.utterances, args.frames)
            size = sers.cache.size_on_disk(path)
            check_seconds, damage = verify(path)
            assert damage == 0 and not journal.journal_path(path).exists()
            rows.append([suffix.lstrip("."), format_bytes(size), f"{write_seconds:.1f}",
                         f"{copy_seconds:.1f}" if suffix == ".h5" else "-", f"{check_seconds:.1f}",
                         f"{size / 2**20 / check_seconds:.0f}"])
            print(rows[-1], flush=True)
            sers.cache.remove(path)
    header = ["back-end", "cache", "rows written (s)", "copy into .h5 (s)", "check before a resume (s)",
              "check MB/s"]
    command = f"python benchmarks/journal_costs.py --utterances {args.utterances} --frames {args.frames}"
    text = (f"`{command}`: {args.utterances} utterances x {args.frames} frames, pooled mean of {LAYERS} layers x "
            f"{DIM}, frames of layers {FRAME_LAYERS} in float16 (random numbers). Machine: {machine()}.\n\n{format_markdown_table(header, rows)}\n")
    print(format_table(header, rows))
    if not args.no_write:
        write_section("journal-costs", text, path=DOC)
        print(f"wrote {DOC}")
    shutil.rmtree(Path(folder), ignore_errors=True)


if __name__ == "__main__":
    main()
