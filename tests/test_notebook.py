"""ResNet50.ipynb runs top to bottom in smoke mode, offline, against a tiny local archive."""

import json
import re
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from flowers_fixture import tiny_archive  # noqa: F401

NOTEBOOK = Path(__file__).resolve().parents[1] / "ResNet50.ipynb"


def test_notebook_is_committed_clean_and_imports_the_library():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert "parameters" in code[0]["metadata"].get("tags", [])
    source = "\n".join("".join(c["source"]) for c in code)
    # Library code lives in resnet_lab: no function or class is defined in the notebook.
    assert not re.search(r"^\s*(def|class) ", source, re.MULTILINE)


def test_notebook_runs_in_smoke_mode(tmp_path, tiny_archive, monkeypatch):  # noqa: F811
    monkeypatch.setenv("RESNET_LAB_SMOKE", "1")
    monkeypatch.setenv("RESNET_LAB_DATA", str(tiny_archive))
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    elapsed = time.perf_counter() - start
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
    assert "SMOKE RUN" in text and "NOT transfer learning" in text
    assert "MISMATCH" not in text and text.count(" ok") >= 3
    assert elapsed < 180, f"smoke notebook took {elapsed:.0f} s (budget 180 s)"
