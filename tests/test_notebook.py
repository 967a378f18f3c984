"""The lesson notebook, examples/lesson_cnn_architectures.ipynb: committed without outputs, and executed from the
first cell to the last, small, on the real shared data (MNIST and the Dogs vs. Cats sample).

A notebook that nobody runs rots; this test runs it in a Jupyter kernel as a reader would (nbclient), with the
small settings injected after its ``parameters`` cell, in the notebook's own folder so that its relative paths hold.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, shared_data_dir

NOTEBOOK = REPO / "examples" / "lesson_cnn_architectures.ipynb"
# The small size (the notebook's own defaults, restated so that a change of defaults cannot make CI slow).
SMALL = {"LENET_EPOCHS": 1, "AUGMENT_EPOCHS": 2, "ALEXNET_EPOCHS": 1, "DVC_IMAGES": 100, "KAGGLE_IMAGES": 12}
CELL_TIMEOUT_S = 600  # one cell; the slowest, one LeNet-5 epoch or AlexNet-BN's, takes seconds on a quiet machine


def read_notebook():
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e '.[dev]')")
    return nbformat, nbformat.read(NOTEBOOK, as_version=4)


def parameters_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{NOTEBOOK.name}: expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def test_committed_notebook_has_no_outputs_and_one_parameter_cell():
    # Read as committed: nbformat.read adds a missing cell id itself (with a warning that it will become an error)
    without_id = [i for i, c in enumerate(json.loads(NOTEBOOK.read_text())["cells"]) if "id" not in c]
    assert not without_id, f"{NOTEBOOK.name}: cells {without_id} have no id, which nbformat 4.5 requires"
    nbformat, nb = read_notebook()
    nbformat.validate(nb)
    with_outputs = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not with_outputs, (
        f"{NOTEBOOK.name}: cells {with_outputs} carry outputs or execution counts; clear them before committing "
        f"(Jupyter: Edit > Clear Outputs of All Cells, or jupyter nbconvert --clear-output --inplace)"
    )
    assert "widgets" not in nb.metadata, f"{NOTEBOOK.name}: widget state saved in the notebook's metadata"
    index = parameters_cell(nb)
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert index == code_cells[0], "the parameters cell must be the first code cell"
    assigned = {line.split("=")[0].strip() for line in nb.cells[index].source.splitlines() if "=" in line}
    assert set(SMALL) | {"OUT_DIR", "DVC_DIR"} <= assigned


def this_python_kernel(jupyter_path: Path) -> str:
    """A kernel spec, found through $JUPYTER_PATH, that runs this Python (the venv running the tests) whatever
    'python3' kernel the machine has; returns its name."""
    spec = jupyter_path / "kernels" / "cnnlab-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "cnnlab test", "language": "python"}))
    return spec.name


@pytest.mark.slow
def test_notebook_executes_small_on_the_real_data(tmp_path, monkeypatch):
    nbformat, nb = read_notebook()
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e '.[dev]')")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e '.[dev]')")
    data = shared_data_dir()
    if data is None or not (data / "dogs-vs-cats-small" / "train").is_dir():
        pytest.skip("the shared data (MNIST and dogs-vs-cats-small/train) is not in ../shared/data or CNNLAB_DATA")

    out = tmp_path / "out"
    settings = {**SMALL, "OUT_DIR": str(out), "DVC_DIR": str(data / "dogs-vs-cats-small" / "train")}
    injected = "\n".join(
        ["# Injected by tests/test_notebook.py: the small size, and a check that the kernel is this venv's Python."]
        + [f"{name} = {value!r}" for name, value in settings.items()]
        + ["import sys as _sys", f"assert _sys.prefix == {sys.prefix!r}, _sys.prefix"]
    )
    nb.cells.insert(parameters_cell(nb) + 1, nbformat.v4.new_code_cell(injected))

    monkeypatch.setenv("CNNLAB_DATA", str(data))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # nothing written to the user's profile
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    client = nbclient.NotebookClient(
        nb,
        kernel_name=this_python_kernel(tmp_path / "jupyter"),
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # the kernel's working directory: examples/
    )
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:  # its text: the failing cell's source and its traceback
        error = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # without IPython's colours
    finally:
        nbformat.write(nb, tmp_path / "executed.ipynb")
    if error:  # failed here, not in the except block, so that the report holds the cell's error only once
        pytest.fail(f"{NOTEBOOK.name} failed (executed copy: {tmp_path / 'executed.ipynb'}):\n{error}", pytrace=False)
    print(f"{NOTEBOOK.name} executed small in {time.perf_counter() - start:.1f} s")

    # What a reader looks at came out: the pictures inline, and the files the runs wrote.
    pictures = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert pictures >= 7  # curves and mistakes of LeNet-5, preview, comparison, two charts, Dogs vs. Cats curves
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for expected in (
        "Total params: 61,706",
        "Total params: 58,327,810",
        "Non-trainable params: 19,136",
        "10-crop",
        "rank-5",
        "0 warning(s), 0 note(s): follows the lesson's practices",
    ):
        assert expected in text, f"the executed notebook printed no {expected!r}"
    rows = (out / "submission.csv").read_text().splitlines()
    assert rows[0] == "id,label" and len(rows) == 1 + SMALL["KAGGLE_IMAGES"]
