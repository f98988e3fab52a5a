"""Every example of the docs runs, or says in the page why it cannot (tests/doc_blocks.py).

docs/cache.md and docs/python-api.md have tests of their own (RUN_ELSEWHERE); the other pages
with examples run here, each page's blocks in order as one script (Python as written, shell
blocks through bash with `sers` on the PATH) in a folder holding the generated caches and
files the page names. Shell blocks that run `sers train` (every method over seeds) take minutes
on two cores: their pages run whole under `-m slow`; by default a page runs without them, from
the files they would have written.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sers.cache
from sers.cache import CacheWriter
from sers.synth.planted import planted_corpora

import doc_blocks
from doc_blocks import ROOT

RUN_ELSEWHERE = {"docs/cache.md": "tests/test_cache_docs.py", "docs/python-api.md": "tests/test_python_api_docs.py"}
RUN_HERE = ("README.md", "docs/quickstart.md", "docs/vowels.md", "docs/architecture.md")
# Every block marked <!-- not run: ... --> in a page, by name: a mark (or an example on a page
# nothing runs) that is not listed here fails, so no new example goes untested unnoticed.
NOT_RUN = {
    "README.md: # 1. on the GPU box, once per corpus and model (resumable; --shard I/N across GPUs)",
    "docs/quickstart.md: # GPU box: once per corpus and model (resumable; --shard I/N to split across GPUs)",
    "docs/scaling.md: # SLURM array: one GPU per task",
    "docs/scaling.md: pip install -e '.[dask]'     # from the checkout; or '.[ray]' (the distribution is sers-lam)",
    "docs/synth.md: sers synth -o corpus/ --engine espeak --languages en,zh -n 300 --seed 0     # also es, fi, tr",
    "docs/vowels.md: sers extract --model microsoft/wavlm-large --manifest en.csv --out en.zarr \\",
    "docs/vowels.md: mkdir -p msp_mfa",
    "docs/vowels.md: mfa model download acoustic mandarin_mfa",
}
def is_slow(block) -> bool:
    """Shell blocks that run `sers train` (every method over seeds and λ: minutes on two cores) run
    only under -m slow; by default their page runs from the files they would have written."""
    return block.is_shell and any(line.startswith("sers train ") for line in doc_blocks.sers_commands(block.code))


# Names the page's snippets use without importing them: they show one entry of a registry.
PRELUDE = {"docs/architecture.md": "import numpy as np\nfrom sers.classifiers.methods import Method\n"
                                   "from sers.analysis.measures import Measure, Stats\n"}


def _examples():
    return [block for block in doc_blocks.all_blocks() if doc_blocks.is_example(block)]


def test_every_example_runs_somewhere_or_says_why_not():
    marked = {block.name for block in _examples() if block.not_run}
    assert marked == NOT_RUN, (f"marked <!-- not run --> but not listed in NOT_RUN: {sorted(marked - NOT_RUN)}; "
                               f"listed but not marked: {sorted(NOT_RUN - marked)}")
    unrun = [block.name for block in _examples() if not block.not_run and block.page not in RUN_HERE
             and block.page not in RUN_ELSEWHERE]
    assert not unrun, f"examples no test runs (run them here, or mark them <!-- not run: why -->): {unrun}"
    for page, test in RUN_ELSEWHERE.items():  # those tests find the page's blocks by this pattern: all of them
        assert page.split("/")[-1] in (ROOT / test).read_text(), (page, test)
        theirs = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
        assert len(theirs) == sum(block.is_python for block in doc_blocks.blocks(ROOT / page)), page


def _script(page: str, fast: bool) -> str:
    """The page's examples as one Python script, in the page's order."""
    parts = [PRELUDE.get(page, ""), "import subprocess\n"]
    for block in doc_blocks.blocks(ROOT / page):
        if not doc_blocks.is_example(block) or block.not_run or (fast and is_slow(block)):
            continue
        if block.is_python:
            parts.append(block.code)
        else:  # -e: a failing command fails the page, as a user would stop there
            parts.append(f"subprocess.run(['bash', '-eo', 'pipefail', '-c', {block.code!r}], check=True)\n")
    return "\n".join(parts)


def run_page(page: str, folder: Path, fast: bool = False, timeout=600) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}  # one torch thread: as conftest.py, for the same reason
    result = subprocess.run([sys.executable, "-c", _script(page, fast)], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{page}:\n{result.stdout[-1500:]}\n{result.stderr[-3000:]}"
    return result.stdout


# -- generated inputs ---------------------------------------------------------------------------

def write_pair(folder: Path, source: str, target: str, n=96, seed=0) -> None:
    """A labelled source (train, dev) and a target (train, test) cache of one model, 6 layers,
    12 speakers a side, one split per speaker."""
    d = planted_corpora(n_source=n, n_target=n, num_layers=6, dim=8, seed=seed)
    for name, side, language, splits in ((source, "source", "en", ("train", "dev")),
                                         (target, "target", "zh", ("train", "test"))):
        speakers = np.repeat([f"{language}{i}" for i in range(12)], n // 12)
        split = np.where(np.arange(n) < 2 * n // 3, *splits)
        sers.cache.from_arrays(folder / name, np.ascontiguousarray(d[f"X_{side}"].transpose(1, 0, 2)),
                               {"id": [f"{language}-{i:04d}" for i in range(n)], "label": list(d[f"y_{side}"]),
                                "split": list(split), "language": [language] * n, "speaker": list(speakers)},
                               model_id="planted", sample_rate=16000, frame_rate=50)


VOWELS = {"a": "a1", "i": "i3", "u": "u4"}  # class -> the pinyin phone the CTM names


def write_vowel_cache(path: Path, language: str, splits, seed: int, layers=4, dim=6):
    """Every utterance: 12 frames of every layer, one a, i and u segment of 4 frames each; a
    segment's features are its frames' means, the frames carry an emotion and a vowel offset."""
    rng = np.random.default_rng(seed)
    n = len(splits)
    labels = np.asarray(list("NHAS"))[rng.integers(0, 4, n)]
    emotion, vowel = rng.normal(size=(4, layers, dim)), rng.normal(size=(3, layers, dim))
    columns = {"id": [f"{language}-{i:03d}" for i in range(n)], "label": list(labels), "split": list(splits),
               "language": [language] * n, "speaker": [f"{language}{i % 6}" for i in range(n)],
               "n_frames": [12] * n, "duration": [0.24] * n}
    writer = CacheWriter.create(path, columns, num_layers=layers, hidden_size=dim, frame_layers=list(range(layers)),
                                segment_layers=list(range(layers)), model_id="generated", frame_rate=50)
    with writer:
        for row in range(n):
            frames = np.concatenate([np.repeat((emotion["NHAS".index(labels[row])] + vowel[v])[:, None], 4, axis=1)
                                     for v in range(3)], axis=1) + rng.normal(scale=0.5, size=(layers, 12, dim))
            segments = {"start_frame": [0, 4, 8], "end_frame": [4, 8, 12], "start": [0.0, 0.08, 0.16],
                        "end": [0.08, 0.16, 0.24], "phone": list(VOWELS.values()), "vowel": list(VOWELS)}
            means = np.stack([frames[:, 4 * v:4 * v + 4].mean(axis=1) for v in range(3)], axis=1)
            writer.add(row, {"mean": frames.mean(axis=1).astype(np.float32)},
                       {layer: frames[layer].astype(np.float16) for layer in range(layers)},
                       segments=(segments, means.astype(np.float32)))
        writer.finish()
    return columns["id"]


# -- the pages ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quickstart_folder(tmp_path_factory):
    """The caches the quickstart's GPU block would write, and the page's exp.toml (its toml block)."""
    folder = tmp_path_factory.mktemp("quickstart")
    write_pair(folder, "msp.zarr", "biic.zarr")
    shutil.copytree(folder / "biic.zarr", folder / "other_corpus.zarr")
    toml = [b for b in doc_blocks.blocks(ROOT / "docs" / "quickstart.md") if b.lang == "toml"]
    if toml:
        (folder / "exp.toml").write_text(toml[0].code)
    return folder


def test_quickstart_python_runs(quickstart_folder, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(quickstart_folder, folder)
    from sers.pipeline.anchor import select_anchors, write_anchors
    from sers.pipeline.similarity import compute_similarity

    # what the CPU block's `sers similarity` and `sers anchor --strategy group` write
    result = compute_similarity(folder / "msp.zarr", folder / "biic.zarr", folder / "sim", progress=False)
    write_anchors(select_anchors(result, strategy="group", group_size=3, exclude=[0]), folder / "anchors.json")
    assert any(is_slow(block) for block in doc_blocks.blocks(ROOT / "docs" / "quickstart.md"))
    run_page("docs/quickstart.md", folder, fast=True)


@pytest.mark.slow
def test_quickstart_runs_whole(quickstart_folder, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(quickstart_folder, folder)
    run_page("docs/quickstart.md", folder)
    assert (folder / "report.html").exists() and json.loads((folder / "anchors.json").read_text())["groups"]


@pytest.mark.slow
def test_readme_runs(tmp_path):
    write_pair(tmp_path, "msp.wavlm.zarr", "biic.wavlm.zarr")
    run_page("README.md", tmp_path)
    assert (tmp_path / "report.html").exists()


def test_vowels_page_runs(tmp_path):
    write_vowel_cache(tmp_path / "en.zarr", "en", ["train"] * 40, seed=1)
    ids = write_vowel_cache(tmp_path / "zh.zarr", "zh", ["train"] * 24 + ["dev"] * 24, seed=2)
    # the page's zh.ctm: its vowels where the cache's segments are, and a consonant before them
    (tmp_path / "zh.ctm").write_text("".join(
        f"{uid} 1 0.00 0.02 sh\n" + "".join(f"{uid} 1 {0.02 + 0.06 * v:.2f} 0.06 {phone}\n"
                                            for v, phone in enumerate(VOWELS.values())) for uid in ids))
    out = run_page("docs/vowels.md", tmp_path).splitlines()
    assert json.loads((tmp_path / "sim" / "similarity.json").read_text())["level"] == "segment"
    assert any(line.startswith("[") and line.endswith("]") for line in out), out  # the vowel a's best layers
    assert any("vowel segments" in line for line in out), out                     # add_segments' summary


def test_architecture_snippets_run(tmp_path):
    run_page("docs/architecture.md", tmp_path)
