"""benchmarks/gpu_extract.py, the GPU benchmark that must run the day a GPU is lent: its code path
on CPU (--dry-run), so it cannot rot."""
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_extract.py"


def test_dry_run_writes_every_row_and_the_limit(tmp_path):
    doc = tmp_path / "extract-gpu.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--doc", str(doc)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "running: sers extract bf16, --batch-seconds auto" in done.stdout  # progress while it runs
    rows = {line.split(" | ")[0].lstrip("| "): line for line in doc.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| method")}
    assert set(rows) == {"per-file loop (fp32, padded to 30 s)", "forward only (fp32, sers batches)",
                         "forward only (bf16, sers batches)", "sers extract bf16, --batch-seconds 200",
                         "sers extract bf16, --batch-seconds auto", "arithmetic limit (measured bf16 matmul)"}
    gflop = float(re.search(r"([\d.]+) GFLOP per second of audio", doc.read_text()).group(1))
    assert gflop > 0
    for name, line in rows.items():
        cells = [cell.strip() for cell in line.strip("| ").split(" | ")]
        assert float(cells[1]) > 0, name  # x real time
        if not name.startswith("arithmetic"):
            assert 0 < float(cells[5]) < 1, name  # a fraction of the measured limit
