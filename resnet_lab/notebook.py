"""`python -m resnet_lab.notebook`: run the notebook headless, publish its outputs, render a page.

    python -m resnet_lab.notebook run [NOTEBOOK] [--output-dir runs] [--timeout -1]
    python -m resnet_lab.notebook publish [EXECUTED] [--into ResNet50.ipynb] [--out docs/index.html]
    python -m resnet_lab.notebook page [NOTEBOOK] [--out docs/index.html]

`run` executes `ResNet50.ipynb` as `jupyter nbconvert --execute` would (kernel `python3`, working
folder the notebook's own) and writes `runs/ResNet50.ipynb` atomically. Each code cell stores the
sha256 of the source that produced its outputs (`metadata["resnet_lab"]["source_sha256"]`), and
the first code cell's outputs end with what the run ran on (date, commit, CPU, versions, wall
time). A failing cell stops the run with exit status 1; the partial notebook is still written.

`publish` copies a run's outputs into the committed notebook once every code cell's stored hash
matches the committed source (so outputs never silently disagree with the code beside them),
then renders the page. `page` writes the notebook as one static HTML file: images embedded, no
script, nothing fetched from the network.
"""

import argparse
import hashlib
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from html.parser import HTMLParser
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote

import nbformat
from jinja2 import DictLoader
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter

from resnet_lab import hardware
from resnet_lab.results import atomic_write

NOTEBOOK = Path("ResNet50.ipynb")
RUNS = Path("runs")
PAGE = Path("docs/index.html")
KEY = "resnet_lab"  # cell.metadata[KEY]["source_sha256"]
RUN_INFO = "This run:"  # first line of the run-info output appended to the first code cell
SMOKE_MARK = "SMOKE RUN"  # the notebook prints it in smoke mode: such outputs are not published
RUN_ERRORS = (CellExecutionError, CellTimeoutError, DeadKernelError)

# nbconvert's JupyterLab template without its scripts: require.js and MathJax come from a CDN
# (a console error offline, and the notebook has no widget and no LaTeX), and mermaid.js is only
# imported for diagrams the notebook does not have. The page is then plain HTML and CSS.
PAGE_TEMPLATE_NAME = "resnet_lab_page.html.j2"
PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


class NotebookError(RuntimeError):
    """A run that stopped at a cell, or a notebook that cannot be published or rendered."""


def source_sha256(source):
    """The sha256 (hex) of a cell's source, as stored in `metadata["resnet_lab"]`."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def code_cells(nb):
    """The code cells of notebook `nb`, in order."""
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def stored_sha256(cell):
    """The source hash the runner stored in `cell`, or `None`."""
    return cell.metadata.get(KEY, {}).get("source_sha256")


def stale_cells(nb):
    """Ids of the code cells whose outputs may not come from their current source.

    A cell with outputs is stale when it stores no source hash or the hash of another source;
    a cell without outputs has nothing stale.

    Args:
        nb: A notebook (`nbformat.NotebookNode`).

    Returns:
        The stale cells' ids, in notebook order (empty when every output is current).
    """
    return [
        cell.get("id")
        for cell in code_cells(nb)
        if cell.outputs and stored_sha256(cell) != source_sha256(cell.source)
    ]


def format_duration(seconds):
    """`seconds` as `"15 min 44 s"` (or `"42 s"` under a minute)."""
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def git_commit(folder):
    """Short hash of `HEAD` in `folder`, plus `" + local changes"` when the tree is dirty.

    Untracked files count as changes (the notebook may import them); ignored ones (`runs/`,
    `data/`) do not. Outside a git checkout, or without git: `"unknown (not a git checkout)"`.
    """
    try:
        head, status = (
            subprocess.run(
                ["git", *args], cwd=folder, capture_output=True, text=True, check=True
            ).stdout.strip()
            for args in (("rev-parse", "--short", "HEAD"), ("status", "--porcelain"))
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" + local changes" if status else "")


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(folder):
    """What a run in `folder` runs on: UTC date, git commit, CPU model and cores, versions.

    Read from package metadata, so the runner itself never imports TensorFlow.

    Returns:
        Two lines of text, each ending in a newline, the first starting with `RUN_INFO`.
    """
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{RUN_INFO} {date}, commit {git_commit(folder)}\n"
        f"on {hardware.cpu_model()} ({hardware.usable_cores()} cores), "
        f"TensorFlow {_version('tensorflow')}, Keras {_version('keras')}\n"
    )


def execute(nb, folder, timeout=None, progress=False):
    """Run every code cell of `nb` in place, as `jupyter nbconvert --execute` does.

    Outputs of an earlier run are cleared first, so a run that stops leaves none behind. Each
    code cell stores the sha256 of its source (`stale_cells` reads it); the first code cell's
    outputs end with `machine_info` and the wall time of the run, also when a cell fails.

    Args:
        nb: The notebook (`nbformat.NotebookNode`), modified in place.
        folder: The kernel's working folder (the notebook's own, as nbconvert uses).
        timeout: Seconds a cell may run; `None` for no limit.
        progress: Show a progress bar over the code cells (`resnet_lab.progress.ProgressBar`),
            naming the cell that just finished.

    Raises:
        nbclient.exceptions.CellExecutionError: A cell raised (also `CellTimeoutError`,
            `DeadKernelError`); `nb` then holds the outputs up to that cell.
    """
    for cell in code_cells(nb):
        cell.outputs, cell.execution_count = [], None
        cell.metadata[KEY] = {"source_sha256": source_sha256(cell.source)}
    info = machine_info(folder)  # before the run: the commit whose code runs
    # Per-cell timestamps would make every rerun a diff of every cell; sections print times.
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(folder)}},
    )
    bar = None
    if progress:
        from resnet_lab.progress import ProgressBar  # noqa: PLC0415 (tqdm only when shown)

        bar = ProgressBar(len(code_cells(nb)), "running the notebook", "cells")
        client.on_cell_executed = lambda cell, **_: bar.update(1, {"done": cell.get("id")})
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        if bar is not None:
            bar.close()
        wall = format_duration(time.perf_counter() - start)
        if code_cells(nb):
            text = f"{info}wall time of the whole run: {wall}\n"
            code_cells(nb)[0].outputs.append(
                nbformat.v4.new_output("stream", name="stdout", text=text)
            )


def save_notebook(nb, path):
    """Write `nb` to `path` atomically (temporary file, then rename); return the path."""
    text = nbformat.writes(nb) + "\n"  # as `nbformat.write` and Jupyter save it
    return atomic_write(path, lambda file: file.write(text.encode("utf-8")), mode="wb")


def _failure(nb, error):
    started = [cell for cell in code_cells(nb) if cell.execution_count is not None]
    where = f"cell {started[-1].get('id')}" if started else "before any cell ran"
    if isinstance(error, CellExecutionError):
        return f"{where} raised {error.ename}: {error.evalue}"
    return f"{where}: {type(error).__name__}: {str(error).strip().splitlines()[-1]}"


def run(notebook=NOTEBOOK, output_dir=RUNS, timeout=None, progress=True):
    """Execute `notebook` headless and write it, with all its outputs, into `output_dir`.

    Args:
        notebook: The notebook to run (it is not modified).
        output_dir: Folder of the executed copy, `output_dir / notebook.name`.
        timeout: Seconds a cell may run; `None` for no limit.
        progress: Show a progress bar over the code cells on stderr.

    Returns:
        The executed notebook's path.

    Raises:
        NotebookError: A cell failed, timed out or killed the kernel; the message names the
            cell, and the partial notebook is written all the same.
    """
    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    out = Path(output_dir) / notebook.name
    try:
        execute(nb, notebook.resolve().parent, timeout, progress=progress)
    except RUN_ERRORS as error:
        save_notebook(nb, out)
        raise NotebookError(
            f"{notebook} stopped: {_failure(nb, error)}. "
            f"The partial notebook, with the traceback, is at {out}."
        ) from error
    return save_notebook(nb, out)


def publish_problems(executed, committed):
    """Why the outputs of `executed` cannot go into `committed`, one message per problem.

    Every code cell must be in both (same ids, same order), have run without error in
    `executed` with the hash of `committed`'s source, and the run must be a full one written
    by `run` (run info present, no smoke-mode marker).

    Returns:
        A list of messages, each naming its cell id; empty when publishing is safe.
    """
    ran, ids = code_cells(executed), [cell.get("id") for cell in code_cells(committed)]
    if [cell.get("id") for cell in ran] != ids:
        extra = [cell.get("id") for cell in ran if cell.get("id") not in ids]
        missing = [i for i in ids if i not in {cell.get("id") for cell in ran}]
        return [f"the code cells differ: not in the run {missing}, only in the run {extra}"]
    problems = []
    for cell, source in zip(ran, (cell.source for cell in code_cells(committed))):
        if stored_sha256(cell) != source_sha256(source):
            problems.append(f"cell {cell.get('id')}: its source differs from the one that ran")
        if cell.execution_count is None or any(o.output_type == "error" for o in cell.outputs):
            problems.append(f"cell {cell.get('id')}: did not run to completion")
    if ran and not any(str(o.get("text", "")).startswith(RUN_INFO) for o in ran[0].outputs):
        problems.append(f"cell {ids[0]}: no run info (not written by `notebook run`)")
    if any(SMOKE_MARK in str(o.get("text", "")) for cell in ran for o in cell.outputs):
        problems.append(f"the run is a smoke run (it printed {SMOKE_MARK!r})")
    return problems


def publish(executed=RUNS / NOTEBOOK.name, into=NOTEBOOK, page=PAGE):
    """Copy a run's outputs into the committed notebook, then render its page.

    Args:
        executed: A notebook written by `run`.
        into: The committed notebook: its cells and sources are kept, only outputs,
            execution counts and source hashes are taken from `executed`.
        page: The HTML page to write (see `render_page`).

    Returns:
        `(into, page)` as paths.

    Raises:
        NotebookError: `publish_problems` found any (nothing is written then).
    """
    run_nb, committed = (nbformat.read(path, as_version=4) for path in (executed, into))
    problems = publish_problems(run_nb, committed)
    if problems:
        raise NotebookError(
            f"refusing to publish {executed} into {into}: "
            + "; ".join(problems)
            + ". Run `python -m resnet_lab.notebook run` again."
        )
    for cell, ran in zip(code_cells(committed), code_cells(run_nb)):
        cell.outputs, cell.execution_count = ran.outputs, ran.execution_count
        cell.metadata[KEY] = ran.metadata[KEY]
    committed.metadata["language_info"] = run_nb.metadata.get("language_info", {})
    save_notebook(committed, into)
    return Path(into), render_page(into, page)


class _Anchors(HTMLParser):
    """Collects heading ids and in-page links (not nbconvert's own `¶` anchor links)."""

    def __init__(self):
        super().__init__()
        self.headings, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if re.fullmatch(r"h[1-6]", tag) and attrs.get("id"):
            self.headings.add(unquote(attrs["id"]))
        href, classes = attrs.get("href") or "", (attrs.get("class") or "").split()
        if tag == "a" and href.startswith("#") and "anchor-link" not in classes:
            self.links.append(href)


def broken_links(html):
    """The in-page links (`href="#..."`) of `html` that land on no heading's id.

    A browser matches a fragment to an id as written or percent-decoded; so does this.
    """
    anchors = _Anchors()
    anchors.feed(html)
    return [link for link in anchors.links if unquote(link[1:]) not in anchors.headings]


def render_page(notebook=NOTEBOOK, out=PAGE):
    """Render an executed notebook as one static HTML page: images embedded, no script.

    nbconvert's JupyterLab template gives headings the ids the contents links use
    (`## 7. Training (about 10.5 min)` -> `#7.-Training-(about-10.5-min)`).

    Args:
        notebook: An executed notebook (`.ipynb`).
        out: The page to write, atomically.

    Returns:
        `out` as a path.

    Raises:
        NotebookError: The notebook has no outputs, or a contents link lands on no heading.
    """
    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    if not any(cell.outputs for cell in code_cells(nb)):
        raise NotebookError(f"{notebook} has no outputs: `run` it (and `publish`) first.")
    exporter = HTMLExporter(
        template_name="lab",
        template_file=PAGE_TEMPLATE_NAME,
        embed_images=True,
        extra_loaders=[DictLoader({PAGE_TEMPLATE_NAME: PAGE_TEMPLATE})],
    )
    resources = {"metadata": {"name": notebook.stem, "path": str(notebook.resolve().parent)}}
    html, _ = exporter.from_notebook_node(nb, resources=resources)
    broken = broken_links(html)
    if broken:
        raise NotebookError(f"{notebook}: links that land on no heading: {', '.join(broken)}")
    return atomic_write(out, lambda file: file.write(html.encode("utf-8")), mode="wb")


def _timeout(text):
    """argparse type of `--timeout`: seconds per cell, `-1` for no limit (`None`)."""
    value = int(text) if re.fullmatch(r"-?\d+", text.strip()) else 0
    if value == -1:
        return None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be -1 (no limit) or a positive number of seconds. Received: {text}"
        )
    return value


def parser():
    """The command-line parser of `python -m resnet_lab.notebook`."""
    main_parser = argparse.ArgumentParser(
        prog="python -m resnet_lab.notebook",
        description=(
            "Run ResNet50.ipynb headless, publish its outputs, render it as a static page."
        ),
    )
    commands = main_parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="execute the notebook into --output-dir")
    run_parser.add_argument("notebook", nargs="?", type=Path, default=NOTEBOOK)
    run_parser.add_argument("--output-dir", type=Path, default=RUNS)
    run_parser.add_argument(
        "--timeout", type=_timeout, default=None, help="seconds per cell; -1 (default): no limit"
    )
    publish_parser = commands.add_parser("publish", help="copy a run's outputs into the notebook")
    publish_parser.add_argument("executed", nargs="?", type=Path, default=RUNS / NOTEBOOK.name)
    publish_parser.add_argument("--into", type=Path, default=NOTEBOOK)
    publish_parser.add_argument("--out", type=Path, default=PAGE, help="the page to render")
    page_parser = commands.add_parser("page", help="render an executed notebook as HTML")
    page_parser.add_argument("notebook", nargs="?", type=Path, default=NOTEBOOK)
    page_parser.add_argument("--out", type=Path, default=PAGE)
    return main_parser


def main(argv=None):
    """Entry point; returns the exit status (1 when a run stops or a check refuses)."""
    args = parser().parse_args(argv)
    try:
        if args.command == "run":
            start = time.perf_counter()
            path = run(args.notebook, args.output_dir, args.timeout)
            print(f"wrote {path} in {format_duration(time.perf_counter() - start)}")
        elif args.command == "publish":
            into, page = publish(args.executed, args.into, args.out)
            print(f"wrote the outputs of {args.executed} into {into}, and {page}")
        else:
            page = render_page(args.notebook, args.out)
            print(f"wrote {page} ({page.stat().st_size / 2**20:.1f} MiB)")
    except NotebookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
