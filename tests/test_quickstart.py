"""docs/quickstart.ipynb runs top to bottom (nbclient) and shows its pictures: it never goes stale."""

import os

import pytest
from paths import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = os.path.join(REPO, "docs", "quickstart.ipynb")


def test_quickstart_notebook_executes_and_shows_images(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp_path)  # the notebook's tiny run goes under tmp_path
    try:
        nbclient.NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": REPO}}
        ).execute()
    finally:
        if env_before is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = env_before
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    # 3 captions from the shipped model, the tiny run's sample grid, 1 caption from the tiny model
    assert len(pngs) == 5, [o.output_type for o in outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "stages: [" in text and "step_" in text
