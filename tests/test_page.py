"""The page (`python -m resnet_lab.notebook page`): one static HTML file of the executed notebook
that a real headless Chromium renders offline with every figure decoded and displayed, every
contents link landing on its heading, no console error and no request at all.

The browser checks need Debian's `chromium` (`apt-get install -y chromium`) and skip without it.
`RESNET_LAB_SCREENSHOT=1` also saves the screenshot as `docs/page-screenshot.png`.
"""

import json
import os
import re
import shutil
import subprocess

import nbformat
import pytest
from helpers import ROOT, run_python

from resnet_lab import notebook as runner

# With test_notebook.py on one worker, so the smoke notebook runs once (see there).
pytestmark = pytest.mark.xdist_group("notebook")

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed: apt-get install -y chromium"
)
# Headless as root, offline: no sandbox (root), no GPU, and none of Chromium's own traffic.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,2400",
)
MAX_PAGE_BYTES = 5 * 2**20

# Put first in <head>, so it sees everything the page does; on `load` it writes its verdict
# into the DOM, which `--dump-dom` prints.
CHECK_SCRIPT = """<script>
(function () {
  const problems = [];
  const consoleError = console.error;
  console.error = function (...args) {
    problems.push("console.error: " + args.join(" "));
    consoleError.apply(console, args);
  };
  window.addEventListener("error", (event) => {
    const target = event.target;
    problems.push(target && target !== window
      ? "failed to load: <" + target.tagName + "> " + (target.src || target.href)
      : "uncaught error: " + event.message);
  }, true);
  window.addEventListener("unhandledrejection", (event) => {
    problems.push("unhandled rejection: " + event.reason);
  });
  window.addEventListener("load", () => {
    const images = [...document.images].map((img) => {
      const box = img.getBoundingClientRect();
      return {src: img.src.slice(0, 40), complete: img.complete, naturalWidth: img.naturalWidth,
              width: box.width, height: box.height};
    });
    const links = [...document.querySelectorAll('a[href^="#"]:not(.anchor-link)')].map((a) => {
      const id = a.getAttribute("href").slice(1);
      const target = document.getElementById(id) || document.getElementById(decodeURIComponent(id));
      a.click();  // a fragment navigation: synchronous, it scrolls and sets :target
      return {href: id, tag: target ? target.tagName : null,
              landed: target !== null && document.querySelector(":target") === target,
              top: target ? target.getBoundingClientRect().top : null};
    });
    const verdict = document.createElement("pre");
    verdict.id = "resnet-lab-verdict";
    verdict.textContent = JSON.stringify({
      problems, images, links, viewport: window.innerHeight,
      requests: performance.getEntriesByType("resource").map((entry) => entry.name),
    });
    document.body.appendChild(verdict);
  });
})();
</script>"""


def chromium(profile, *args):
    """Headless Chromium with `FLAGS` and a fresh profile folder; the finished process."""
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def png_outputs(nb):
    return sum("image/png" in o.get("data", {}) for c in runner.code_cells(nb) for o in c.outputs)


@pytest.fixture(scope="module")
def page(executed, tmp_path_factory):
    """The smoke run's notebook rendered by `python -m resnet_lab.notebook page`."""
    folder = tmp_path_factory.mktemp("page")
    notebook = runner.save_notebook(executed[0], folder / "ResNet50.ipynb")
    done = run_python("-m", "resnet_lab.notebook", "page", notebook, "--out", folder / "index.html")
    assert done.returncode == 0, done.stderr
    return folder / "index.html"


def test_the_page_is_one_static_file(page, executed):
    html = page.read_text()
    assert page.stat().st_size < MAX_PAGE_BYTES
    assert "<script" not in html and "<link" not in html  # CSS inline, nothing to fetch
    sources = re.findall(r'<img[^>]* src="([^"]*)"', html)
    assert len(sources) == png_outputs(executed[0]) >= 15
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert runner.broken_links(html) == []


def check_in_chromium(page, nb, tmp_path):
    """Open `page` in headless Chromium: no console error or request, every figure of `nb`
    decoded and displayed, every contents link landing on its heading. Returns a screenshot
    of the figures (cells without one hidden)."""
    checked = tmp_path / "checked.html"
    checked.write_text(page.read_text().replace("<head>", "<head>" + CHECK_SCRIPT, 1))
    done = chromium(
        tmp_path / "profile", "--dump-dom", "--virtual-time-budget=5000", checked.as_uri()
    )
    found = re.search(r'<pre id="resnet-lab-verdict">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found, f"no verdict in the DOM; chromium said:\n{done.stderr[-2000:]}"
    text = found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    verdict = json.loads(text)
    assert verdict["problems"] == [] and verdict["requests"] == []
    assert len(verdict["images"]) == png_outputs(nb)
    for image in verdict["images"]:
        assert image["complete"] and image["naturalWidth"] > 0, image
        assert image["width"] > 0 and image["height"] > 0, image
    contents = committed_notebook().cells[0].source
    assert len(verdict["links"]) >= contents.count("](#") >= 10
    for link in verdict["links"]:
        assert re.fullmatch(r"H[1-6]", link["tag"] or "") and link["landed"], link
        assert -1 < link["top"] < verdict["viewport"], link  # in view (-1: subpixel scroll)

    # Cells without a figure are hidden in the screenshot (2400 px tall), so it shows figures.
    shown = tmp_path / "shown.html"
    figures_only = "<style>.jp-Cell:not(:has(img)):has(~ .jp-Cell img) {display: none}</style>"
    shown.write_text(page.read_text().replace("</head>", figures_only + "</head>", 1))
    screenshot = tmp_path / "page.png"
    done = chromium(tmp_path / "profile-shot", f"--screenshot={screenshot}", shown.as_uri())
    assert screenshot.is_file() and screenshot.stat().st_size > 50_000, done.stderr[-2000:]
    return screenshot  # a blank page's is about 13 kB


@needs_chromium
def test_chromium_shows_every_figure_and_lands_every_contents_link(page, executed, tmp_path):
    check_in_chromium(page, executed[0], tmp_path)


def committed_notebook():
    return nbformat.read(ROOT / runner.NOTEBOOK, as_version=4)


def committed_page():
    if not any(cell.get("outputs") for cell in runner.code_cells(committed_notebook())):
        pytest.skip("the committed notebook carries no run yet: no page to check")
    return ROOT / runner.PAGE


def test_the_committed_page_is_the_committed_notebooks(tmp_path):
    """docs/index.html is what `page` renders from the committed ResNet50.ipynb today, so the
    page never shows another run than the notebook beside it (`publish` writes both)."""
    page = committed_page()
    out = tmp_path / "page.html"
    done = run_python("-m", "resnet_lab.notebook", "page", ROOT / runner.NOTEBOOK, "--out", out)
    assert done.returncode == 0, done.stderr
    assert page.read_bytes() == out.read_bytes()


@needs_chromium
def test_chromium_shows_the_committed_page(tmp_path):
    page = committed_page()
    screenshot = check_in_chromium(page, committed_notebook(), tmp_path)
    if os.environ.get("RESNET_LAB_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, ROOT / "docs" / "page-screenshot.png")


def _tiny(path, contents, outputs=True):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(contents), nbformat.v4.new_code_cell("1")]
    nb.cells += [nbformat.v4.new_markdown_cell("## 1. Setup (about 10.5 min)")]
    if outputs:
        nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nbformat.write(nb, path)
    return path


def test_the_page_refuses_a_contents_link_to_no_heading_and_a_notebook_without_outputs(tmp_path):
    good = _tiny(tmp_path / "good.ipynb", "# T\n[1. Setup](#1.-Setup-(about-10.5-min))")
    html = runner.render_page(good, tmp_path / "good.html").read_text()
    assert 'id="1.-Setup-(about-10.5-min)"' in html  # the anchor form the contents must use
    broken = _tiny(tmp_path / "broken.ipynb", "# T\n[1. Setup](#1.-Setup)")
    with pytest.raises(runner.NotebookError, match=r"land on no heading: #1\.-Setup$"):
        runner.render_page(broken, tmp_path / "broken.html")
    clean = _tiny(tmp_path / "clean.ipynb", "# T", outputs=False)
    with pytest.raises(runner.NotebookError, match="has no outputs"):
        runner.render_page(clean, tmp_path / "clean.html")
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "broken.ipynb",
        "clean.ipynb",
        "good.html",
        "good.ipynb",
    ]


def test_broken_links_matches_fragments_as_a_browser_does():
    html = (
        '<h2 id="%C3%9Cber-%E2%80%93-x">Über – x</h2><h3 id="A-&amp;-B">A</h3>'
        '<a href="#Über-–-x">1</a><a href="#%C3%9Cber-%E2%80%93-x">1</a>'
        '<a href="#A-&amp;-B">2</a><a href="#gone">3</a>'
        '<a class="anchor-link" href="#also-gone">¶</a>'
    )
    assert runner.broken_links(html) == ["#gone"]
