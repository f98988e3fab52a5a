"""Hub ids with no network (this suite never has one: the hub endpoint points at a closed port):
a cached model loads, an uncached one fails in one line with a way out, never with retry lines."""
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

from tiny_models import make_tiny_model

REPO = "sers-test/tiny-wavlm"


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    return {**env, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9", **extra}


def _extract(tmp_path, env):
    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    (tmp_path / "m.csv").write_text("path\na.wav\n")
    return subprocess.run([sys.executable, "-m", "sers.cli", "extract", "--model", REPO, "--manifest",
                           str(tmp_path / "m.csv"), "--out", str(tmp_path / "x.zarr"), "--workers", "0"],
                          env=env, capture_output=True, text=True, timeout=300)


def test_uncached_hub_id_offline_is_one_line_with_the_ways_out(tmp_path):
    for env in (_env(tmp_path), _env(tmp_path, HF_HUB_OFFLINE="1")):
        result = _extract(tmp_path, env)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Retrying" not in result.stderr and "Traceback" not in result.stderr, lines
        assert lines[0].startswith(f"error: --model {REPO}: ")
        for way_out in ("local model folder", "CTranslate2", "HF_HUB_OFFLINE=1", "not in the local Hugging Face cache"):
            assert way_out in lines[0]
    assert "HF_HUB_OFFLINE is set" in lines[0]


def test_cached_hub_id_loads_without_the_network(tmp_path):
    commit = "0" * 40
    repo = tmp_path / "hf" / "hub" / f"models--{REPO.replace('/', '--')}"
    make_tiny_model("wavlm", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    code = f"from sers.upstream import load_upstream; print(load_upstream({REPO!r}).num_layers)"
    result = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "3" and "Retrying" not in result.stderr
