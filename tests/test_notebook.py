"""ResNet50.ipynb runs top to bottom in smoke mode, offline, against a tiny local archive, with
its parameters injected the way papermill injects them; every figure is a rendered PNG."""

import json
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient


NOTEBOOK = Path(__file__).resolve().parents[1] / "ResNet50.ipynb"


def output_text(output):
    text = output.get("text") or output.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else text


def test_notebook_is_committed_clean_and_imports_the_library():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    source = "\n".join("".join(c["source"]) for c in code)
    # Library code lives in resnet_lab: no function or class is defined in the notebook.
    assert not re.search(r"^\s*(def|class) ", source, re.MULTILINE)


def test_parameters_cell_holds_only_assignments():
    """papermill injects its cell right after the one tagged `parameters`: anything computed
    there (an environment override, a smoke switch) would be overwritten or would overwrite."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for line in tagged[0].source.splitlines():
        line = line.split("#")[0].strip()
        assert not line or re.fullmatch(r"[A-Z_][A-Z0-9_]* = .+", line), line


@pytest.fixture(scope="module")
def executed(tmp_path_factory, tiny_archive):
    tmp_path = tmp_path_factory.mktemp("notebook")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell(
        f"# Parameters\nSMOKE = True\nSEED = 3\nDATA_SOURCE = {str(tiny_archive)!r}\n"
        f"OUT = {str(tmp_path / 'out')!r}\n")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    start = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RESNET_LAB_SMOKE", raising=False)
        mp.delenv("RESNET_LAB_DATA", raising=False)
        mp.setenv("RESNET_LAB_CACHE", str(tmp_path / "cache"))
        mp.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # the notebook must hide them itself
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb, time.perf_counter() - start, tmp_path


def test_injected_parameters_take_effect(executed):
    nb, _, tmp_path = executed
    text = "\n".join(output_text(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "SMOKE RUN" in text and "SEED=3" in text
    assert "NOT transfer learning" in text
    assert (tmp_path / "out" / "scratch" / "model.keras").is_file()


def test_every_figure_is_a_png_and_outputs_are_short_and_quiet(executed):
    nb, elapsed, _ = executed
    code = [c for c in nb.cells if c.cell_type == "code"]
    displays = sum(c.source.count("display(") for c in code)
    pngs = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert displays >= 15 and pngs == displays, f"{pngs} PNG outputs for {displays} figures"
    for cell in code:
        lines = sum(len(output_text(o).splitlines()) for o in cell.outputs)
        assert lines <= 40, f"{lines} output lines in:\n{cell.source[:200]}"
        for output in cell.outputs:
            assert output.get("output_type") != "error", output
            text = output_text(output)
            assert "oneDNN custom operations" not in text and "cuda drivers" not in text
            assert "image/png" in output.get("data", {}) or "<Figure size" not in text
    text = "\n".join(output_text(o) for c in code for o in c.outputs)
    assert "MISMATCH" not in text and text.count(" ok") >= 3
    assert len(re.findall(r"Section \d+ took", text)) >= 9
    assert elapsed < 240, f"smoke notebook took {elapsed:.0f} s (budget 240 s)"
