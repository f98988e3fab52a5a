"""docs/cache.md runs: every Python example on a generated cache; the "without sers" ones in a
process that never imports sers (plain h5py, zarr, xarray), as a user without sers would."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sers.cache import CacheWriter

DOC = Path(__file__).resolve().parent.parent / "docs" / "cache.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
NO_SERS_CHECK = "\nimport sys\nassert not any(m == 'sers' or m.startswith('sers.') for m in sys.modules), 'sers imported'\n"


def _write(path, n=6, layers=4, dim=5):
    """A finished cache with frames of layer 1, vowel segments, and one failed utterance."""
    rng = np.random.default_rng(1)
    n_frames = list(range(2, n + 2))
    utterances = {"id": [f"spk{i % 2}_utt{i:03d}" for i in range(n)], "label": list("NHASNH"[:n]),
                  "split": ["train"] * 4 + ["test"] * (n - 4), "language": ["en"] * n, "n_frames": n_frames}
    writer = CacheWriter.create(path, utterances, num_layers=layers, hidden_size=dim, frame_layers=[1],
                                segment_layers=list(range(layers)), model_id="generated")
    with writer:
        for row in range(n - 1):
            segments = {"start_frame": [0], "end_frame": [1], "start": [0.0], "end": [0.02],
                        "phone": ["AA1"], "vowel": ["a"]}
            writer.add(row, {"mean": rng.normal(size=(layers, dim)).astype(np.float32)},
                       {1: rng.normal(size=(n_frames[row], dim))},
                       segments=(segments, rng.normal(size=(layers, 1, dim)).astype(np.float32)))
        writer.add_failure(n - 1, utterances["id"][-1], "gone.wav", "file not found")
        writer.finish()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("doc-caches")
    for name in ("en.zarr", "en.h5"):
        _write(folder / name)
    return folder


def test_the_page_has_its_examples():
    assert len(BLOCKS) >= 6
    assert sum("without sers" in block.splitlines()[0] for block in BLOCKS) >= 4


@pytest.mark.parametrize("block", BLOCKS, ids=[b.splitlines()[0].split("#")[-1].strip()[:30] for b in BLOCKS])
def test_example_runs(folder, block):
    code = block + (NO_SERS_CHECK if "without sers" in block.splitlines()[0] else "")
    result = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip(), "every example prints what it read"
