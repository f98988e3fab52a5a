"""docs/python-api.md runs: its examples, in order, as one script on two generated caches."""
import re
import subprocess
import sys
from pathlib import Path

from sers.synth.planted import planted_corpora

from test_train import write_cache

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def test_the_python_api_page_runs(tmp_path):
    d = planted_corpora(n_source=120, n_target=120, seed=4)
    write_cache(tmp_path / "en.zarr", d["X_source"], d["y_source"], ["train"] * 80 + ["dev"] * 40, "en")
    write_cache(tmp_path / "zh.zarr", d["X_target"], d["y_target"], ["train"] * 60 + ["test"] * 60, "zh")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 5
    result = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[1] == "['dev', 'train']" and lines[-1] == "True"
    assert (tmp_path / "sim" / "similarity.json").exists() and (tmp_path / "runs" / "results.csv").exists()
