"""docs/python-api.md runs: its examples, in order, as one script on two generated caches."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from sers.synth.planted import planted_corpora

from test_speakers import with_voices, write_cache

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def test_the_python_api_page_runs(tmp_path):
    d = planted_corpora(n_source=120, n_target=120, seed=4)
    for side, language, splits in (("source", "en", ["train"] * 80 + ["dev"] * 40),
                                   ("target", "zh", ["train"] * 60 + ["test"] * 60)):
        speakers = np.repeat([f"{language}{i}" for i in range(12)], 10)  # 10 utterances each, one split each
        write_cache(tmp_path / f"{language}.zarr", with_voices(d[f"X_{side}"], speakers, 4), d[f"y_{side}"], splits,
                    language, speakers)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 5
    result = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[1] == "['dev', 'train']" and "True" in lines  # the saved model predicts as the fitted one
    assert lines[-1].startswith("{'anchors': [")  # the grid search's choice
    assert (tmp_path / "sim" / "similarity.json").exists() and (tmp_path / "runs" / "results.csv").exists()
