"""ResNet50.ipynb runs top to bottom in smoke mode, offline, against a tiny local archive, with
its parameters injected the way papermill injects them; every figure is a rendered PNG. The
committed notebook's outputs come from its current sources (`resnet_lab.notebook`), and the
runner and `publish` keep that promise on tiny notebooks of their own."""

import re

import nbformat
import pytest
from helpers import ROOT, run_python

from resnet_lab import notebook as runner

# One worker runs the smoke notebook (the session's `executed` fixture) for this file and
# test_page.py: with pytest-xdist, tests of one group share a worker.
pytestmark = pytest.mark.xdist_group("notebook")

NOTEBOOK = ROOT / runner.NOTEBOOK
MAX_COMMITTED_BYTES = 5 * 2**20  # diffs and renders quickly (issue 17, item 7)


def output_text(output):
    text = output.get("text") or output.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else text


def test_notebook_imports_the_library_and_defines_only_the_taught_block():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = "\n".join(cell.source for cell in runner.code_cells(nb))
    # Library code lives in resnet_lab; the one exception is the lesson's inline basic block.
    assert not re.search(r"^\s*class ", source, re.MULTILINE)
    functions = re.findall(r"^\s*def (\w+)", source, re.MULTILINE)
    assert len(functions) <= 1 and all("block" in name for name in functions), functions


def test_committed_outputs_come_from_the_committed_sources():
    """A clean notebook has nothing stale; a published one must also pass `publish`'s checks
    (every cell ran, its hash stored, run info in the first cell, not a smoke run)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert runner.stale_cells(nb) == []
    if any(cell.outputs for cell in runner.code_cells(nb)):
        assert runner.publish_problems(nb, nb) == []


def test_committed_notebook_is_small():
    size = NOTEBOOK.stat().st_size
    assert size < MAX_COMMITTED_BYTES, f"{NOTEBOOK.name} is {size / 2**20:.1f} MiB"


def _as_if_published(nb):
    """`nb` with an output and its source hash in every code cell, as `publish` leaves it."""
    for cell in runner.code_cells(nb):
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="out\n")]
        cell.metadata[runner.KEY] = {"source_sha256": runner.source_sha256(cell.source)}
    return nb


def test_editing_a_cell_after_its_run_makes_it_stale():
    nb = _as_if_published(nbformat.read(NOTEBOOK, as_version=4))
    assert runner.stale_cells(nb) == []
    code = runner.code_cells(nb)
    code[3].source += "\n# edited after the run"
    del code[5].metadata[runner.KEY]  # outputs without a hash are stale too
    code[6].outputs = []  # no outputs: nothing stale, whatever the hash
    code[6].source += "\n# edited, but it has no outputs"
    assert runner.stale_cells(nb) == [code[3].id, code[5].id]


def test_parameters_cell_holds_only_assignments():
    """papermill injects its cell right after the one tagged `parameters`: anything computed
    there (an environment override, a smoke switch) would be overwritten or would overwrite."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for line in tagged[0].source.splitlines():
        line = line.split("#")[0].strip()
        assert not line or re.fullmatch(r"[A-Z_][A-Z0-9_]* = .+", line), line


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


def test_the_smoke_run_stores_every_source_hash_and_the_run_info(executed):
    nb, _, _ = executed
    assert runner.stale_cells(nb) == []
    assert all(runner.stored_sha256(cell) for cell in runner.code_cells(nb))
    assert output_text(runner.code_cells(nb)[0].outputs[-1]).startswith(runner.RUN_INFO)


# ---------------------------------------------------------------------------------------------
# The runner and `publish` on tiny notebooks of three cells (a kernel start each, ~3 s)
# ---------------------------------------------------------------------------------------------


def write_notebook(path, *sources):
    """A notebook at `path`: a markdown heading, then one code cell per source."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny\n\n[Code](#Code)\n\n## Code")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A two-code-cell notebook run by `python -m resnet_lab.notebook run`: `(notebook, out)`."""
    folder = tmp_path_factory.mktemp("tiny_notebook")
    notebook = write_notebook(folder / "Tiny.ipynb", "import os\nprint(os.getcwd())", "6 * 7")
    done = run_python(
        "-m",
        "resnet_lab.notebook",
        "run",
        notebook,
        "--output-dir",
        folder / "runs",
        "--timeout",
        "120",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {folder / 'runs' / 'Tiny.ipynb'} in ")
    # A 20-minute job shows where it is: a bar over the code cells, on stderr.
    assert re.search(r"running the notebook: 100%.* 2/2 ", done.stderr), done.stderr
    return notebook, folder / "runs" / "Tiny.ipynb"


def test_run_stores_source_hashes_and_what_it_ran_on(tiny_run):
    notebook, out = tiny_run
    nb = nbformat.read(out, as_version=4)
    first, second = runner.code_cells(nb)
    assert output_text(first.outputs[0]) == f"{notebook.parent}\n"  # cwd: the notebook's folder
    assert output_text(second.outputs[0]) == "42"
    for cell in (first, second):
        assert runner.stored_sha256(cell) == runner.source_sha256(cell.source)
    info = output_text(first.outputs[-1])
    assert re.fullmatch(
        r"This run: \d{4}-\d\d-\d\d \d\d:\d\d UTC, commit .+\n"
        r"on .+ \(\d+ cores\), TensorFlow \d\S*, Keras 3\S*\n"
        r"wall time of the whole run: \d+ s\n",
        info,
    ), info
    # The notebook itself is left as it was, and nothing but the result is left in runs/.
    assert not any(cell.get("outputs") for cell in nbformat.read(notebook, as_version=4).cells)
    assert [path.name for path in out.parent.iterdir()] == ["Tiny.ipynb"]


def test_run_info_names_the_commit_and_local_changes(tmp_path):
    assert runner.git_commit(tmp_path) == "unknown (not a git checkout)"
    (tmp_path / "a.txt").write_text("a")
    made = run_python(
        code="""
        import subprocess
        for args in (["init", "-q"], ["add", "a.txt"], ["commit", "-qm", "a"]):
            subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True)
        print(subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True))
        """,
        cwd=tmp_path,
    )
    head = made.stdout.strip()
    assert made.returncode == 0 and runner.git_commit(tmp_path) == head, made.stderr
    (tmp_path / "a.txt").write_text("changed")
    assert runner.git_commit(tmp_path) == f"{head} + local changes"
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "new.py").write_text("")  # untracked: the notebook may import it
    assert runner.git_commit(tmp_path) == f"{head} + local changes"


def test_a_failing_cell_exits_nonzero_and_still_writes_the_partial_notebook(tmp_path):
    notebook = write_notebook(
        tmp_path / "Broken.ipynb", "print('first')", "raise ValueError('boom')", "print('never')"
    )
    done = run_python(
        "-m", "resnet_lab.notebook", "run", notebook, "--output-dir", tmp_path / "runs", timeout=300
    )
    failing = runner.code_cells(nbformat.read(notebook, as_version=4))[1].id
    assert done.returncode == 1
    assert f"stopped: cell {failing} raised ValueError: boom" in done.stderr
    assert "partial notebook" in done.stderr
    first, second, third = runner.code_cells(nbformat.read(tmp_path / "runs" / "Broken.ipynb", 4))
    assert output_text(first.outputs[0]) == "first\n"
    assert first.outputs[-1].text.startswith(runner.RUN_INFO)
    assert second.outputs[-1].output_type == "error" and not third.outputs


def test_the_executed_notebook_is_written_whole_or_not_at_all(tmp_path):
    path = tmp_path / "runs" / "Tiny.ipynb"
    runner.save_notebook(nbformat.v4.new_notebook(), path)
    before = path.read_bytes()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("'\ud800'")]  # a lone surrogate: UTF-8 fails mid-write
    with pytest.raises(UnicodeEncodeError):
        runner.save_notebook(nb, path)
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == [path.name]


def test_timeout_must_be_minus_one_or_positive():
    done = run_python("-m", "resnet_lab.notebook", "run", "--timeout", "0")
    assert done.returncode == 2
    assert "--timeout: must be -1 (no limit) or a positive number of seconds. Received: 0" in (
        done.stderr
    )


def test_publish_copies_outputs_and_refuses_an_edited_cell(tiny_run, tmp_path):
    notebook, out = tiny_run
    committed = tmp_path / notebook.name
    committed.write_bytes(notebook.read_bytes())
    page = tmp_path / "docs" / "index.html"
    done = run_python(
        "-m", "resnet_lab.notebook", "publish", out, "--into", committed, "--out", page
    )
    assert done.returncode == 0, done.stderr
    nb = nbformat.read(committed, as_version=4)
    assert runner.stale_cells(nb) == [] and runner.publish_problems(nb, nb) == []
    assert output_text(runner.code_cells(nb)[1].outputs[0]) == "42"
    assert 'id="Code"' in page.read_text()

    nb = nbformat.read(notebook, as_version=4)
    edited = runner.code_cells(nb)[1]
    edited.source = "6 * 9"
    nbformat.write(nb, committed)
    before = committed.read_bytes()
    done = run_python(
        "-m", "resnet_lab.notebook", "publish", out, "--into", committed, "--out", page
    )
    assert done.returncode == 1
    assert f"cell {edited.id}: its source differs from the one that ran" in done.stderr
    assert committed.read_bytes() == before


def test_publish_refuses_a_smoke_run_an_unfinished_one_and_changed_cells(tiny_run):
    _, out = tiny_run
    run_nb = nbformat.read(out, as_version=4)
    assert runner.publish_problems(run_nb, run_nb) == []
    first, second = runner.code_cells(run_nb)
    smoke = nbformat.v4.new_output("stream", name="stdout", text=f"{runner.SMOKE_MARK}: tiny\n")
    first.outputs.insert(0, smoke)
    second.execution_count = None
    problems = runner.publish_problems(run_nb, run_nb)
    assert problems == [
        f"cell {second.id}: did not run to completion",
        f"the run is a smoke run (it printed {runner.SMOKE_MARK!r})",
    ]
    committed = nbformat.read(out, as_version=4)
    committed.cells.append(nbformat.v4.new_code_cell("print('new')"))
    [problem] = runner.publish_problems(nbformat.read(out, as_version=4), committed)
    assert problem.startswith("the code cells differ") and committed.cells[-1].id in problem
