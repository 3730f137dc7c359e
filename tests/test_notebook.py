"""notebooks/explore_deltas.ipynb runs headlessly, draws its figures, prints numbers that
agree with a store built here, and is committed without outputs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from dyngnn.data import DeltaStore, load_snapshots

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_deltas.ipynb"
# the settings of the notebook's first code cell
SETTINGS = {"window": "1d", "lifetime": "30d", "weight": "count", "undirected": True}
KEYFRAME_EVERY = 64
PLOT_CELLS = 4
# appended to the executed copy only: which Python the kernel runs
PROBE = "import sys\nprint(sys.prefix)"


def _kernelspec_here(root: Path) -> Path:
    """A ``python3`` kernelspec that runs this interpreter, so that no other Python
    registered on the machine (user or system kernelspecs) can take the kernel's place."""
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3",
        "language": "python",
    }
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return root


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> nbformat.NotebookNode:
    """The notebook executed in a temporary working directory, plus the probe cell."""
    tmp = tmp_path_factory.mktemp("notebook")
    work = tmp / "work"
    work.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MPLBACKEND", "Agg")
        mp.setenv("JUPYTER_PATH", str(_kernelspec_here(tmp / "jupyter")))
        mp.setenv("JUPYTER_RUNTIME_DIR", str(tmp / "runtime"))
        mp.setenv("IPYTHONDIR", str(tmp / "ipython"))
        # raises CellExecutionError, with the cell and its traceback, if any cell fails
        NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(work)}}).execute()
    return nb


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o["text"] for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def test_kernel_is_this_python(executed):
    assert _stdout(executed.cells[-1]).strip() == sys.prefix


def test_every_plot_cell_draws_a_figure(executed):
    plots = [c for c in executed.cells if c.cell_type == "code" and "plt.show()" in c.source]
    assert len(plots) == PLOT_CELLS
    for cell in plots:
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source.splitlines()[0]


def test_summary_agrees_with_the_store(executed):
    snaps, meta = load_snapshots("bitcoinalpha", **SETTINGS)
    st = DeltaStore.from_snapshots(snaps, keyframe_every=KEYFRAME_EVERY, source=meta).stats(per_snapshot=False)
    summary = next(_stdout(c) for c in executed.cells if c.cell_type == "code" and "stored bytes" in _stdout(c))

    def number(label: str) -> int:
        m = re.search(rf"^{label}\s+([\d,]+)", summary, re.MULTILINE)
        assert m, f"no {label!r} line in the summary:\n{summary}"
        return int(m.group(1).replace(",", ""))

    assert number("stored bytes") == st["stored_graph_bytes"]
    assert number("full bytes") == st["full_snapshot_bytes"]
    assert number("nodes") == st["num_nodes"]
    assert f"{st['num_snapshots']:,} ({st['keyframes']:,} keyframes" in summary
    assert st["stored_graph_bytes"] < st["full_snapshot_bytes"]


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [], f"outputs committed in: {cell.source.splitlines()[0]}"
        assert cell.execution_count is None, f"execution count committed in: {cell.source.splitlines()[0]}"
