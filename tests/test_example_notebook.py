"""docs/notebooks/layer-anchoring.ipynb runs top to bottom on the caches it generates, and the
estimator it fits agrees with `sers train` on the same caches."""
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402  (installed with nbclient)
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "notebooks" / "layer-anchoring.ipynb"
AGREEMENT = re.compile(r"^(\S+): target UAR estimator ([0-9.]+), sers train ([0-9.]+), "
                       r"largest probability difference (\S+)$", re.M)


def _kernel():
    # No kernel directories: only ipykernel's built-in spec, which launches sys.executable. A fresh
    # venv needs no registered kernelspec, and a user's own "python3" spec (another interpreter,
    # without sers) cannot be picked instead.
    return KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))


def _text(cell) -> str:
    return "".join(out.get("text", "") for out in cell.outputs if out.get("output_type") == "stream")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notebook")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The notebook's own relative paths (WORK) land in the temporary folder, not in docs/.
    client = nbclient.NotebookClient(nb, km=_kernel(), timeout=300, resources={"metadata": {"path": str(folder)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    return nb, folder


def test_the_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "parameters" in code[0].metadata.get("tags", []) and "EN_CACHE = None" in code[0].source


def test_every_cell_runs_without_an_error(executed):
    nb, _ = executed
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.get("output_type") == "error" or out.get("name") == "stderr" and "Traceback" in out.get("text", "")]
    assert not errors


def test_it_generates_caches_and_finds_the_planted_anchors(executed):
    nb, folder = executed
    text = "\n".join(_text(cell) for cell in nb.cells if cell.cell_type == "code")
    work = folder / "layer-anchoring-work"
    assert (work / "en.zarr").is_dir() and (work / "zh.zarr").is_dir()
    assert "splits: ['dev', 'train'] | layers: 8" in text and "splits: ['test', 'train'] | layers: 8" in text
    assert re.search(r"^anchors by coral : \[3, 4\]$", text, re.M), text
    assert (work / "similarity" / "similarity.json").exists() and (work / "anchors.json").exists()


def test_the_similarity_plot_is_drawn(executed):
    nb, folder = executed
    images = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if "image/png" in out.get("data", {})]
    assert len(images) == 1
    assert (folder / "layer-anchoring-work" / "similarity.png").stat().st_size > 10_000


def test_the_estimator_agrees_with_sers_train(executed):
    nb, folder = executed
    agreement = AGREEMENT.findall(_text(nb.cells[-2]))
    assert [method for method, *_ in agreement] == ["last", "lam"]
    uar = {}
    for method, estimator, ran, difference in agreement:
        assert abs(float(estimator) - float(ran)) <= 1e-6 and float(difference) < 1e-5
        uar[method] = float(estimator)
    # The story the notebook tells: aligning the planted anchors transfers, the last layer does not.
    assert uar["lam"] > uar["last"] + 0.2 and uar["lam"] > 0.6, uar
    assert (folder / "layer-anchoring-work" / "runs" / "results.csv").exists()
