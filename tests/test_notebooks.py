"""Every notebook in notebooks/ runs top to bottom on the bundled model (small settings).

Notebooks read ``INTERP_NB_SMALL=1`` to shrink prompt counts and training steps; outputs are
never committed (the test executes a copy in memory).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} has committed outputs; clear them (jupyter nbconvert --clear-output --inplace)"
    )
    env_before = os.environ.get("INTERP_NB_SMALL")
    os.environ["INTERP_NB_SMALL"] = "1"
    try:
        client = nbclient.NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop("INTERP_NB_SMALL", None)
        else:
            os.environ["INTERP_NB_SMALL"] = env_before
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
