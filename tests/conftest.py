"""Shared fixtures: quiet TensorFlow, the real archive when present, a synthetic archive and a
local HTTP server on 127.0.0.1 (tests never touch the network). Plain helpers that tests call
are in `helpers.py`."""

import contextlib
import dataclasses
import functools
import http.server
import os
import threading
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from resnet_lab.data.synthetic import make_archive  # noqa: E402

REAL_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "17flowers.tgz"


@pytest.fixture(scope="session")
def real_archive():
    """Path to ../shared/data/17flowers.tgz, or skip the test when it is absent."""
    if not REAL_ARCHIVE.is_file():
        pytest.skip(f"real archive not found at {REAL_ARCHIVE}")
    return REAL_ARCHIVE


@dataclasses.dataclass
class Served:
    """What `serve` yields: the base `url` (no trailing slash) and the paths requested."""

    url: str
    requests: list


@contextlib.contextmanager
def _serve(directory):
    """Serve `directory` over HTTP on 127.0.0.1, on a free port, from a thread.

    Clients that honour proxy settings (requests, hence gdown) also need
    `NO_PROXY=127.0.0.1,localhost`; the `flowers_server` fixture sets it.

    Args:
        directory: folder whose files are served.

    Yields:
        `Served`: `served.url` is the base URL; `served.requests` lists each GET's path,
        so `len(served.requests)` counts downloads.
    """
    served = Served(url="", requests=[])

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            served.requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    handler = functools.partial(Handler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="session")
def serve():
    """`serve(folder)`: a context manager serving `folder` on 127.0.0.1 (see `_serve`)."""
    return _serve


_built = {}


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory):
    """A valid synthetic `17flowers.tgz` of 1,360 8x8 JPEGs, built once per session."""
    if "archive" not in _built or not _built["archive"].is_file():
        folder = tmp_path_factory.mktemp("tiny_archive")
        _built["archive"] = make_archive(folder / "17flowers.tgz")
    return _built["archive"]


@pytest.fixture
def flowers_server(tiny_archive, monkeypatch):
    """Serve `tiny_archive`'s folder (URL `served.url + "/17flowers.tgz"`), bypassing proxies."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with _serve(tiny_archive.parent) as served:
        yield served


@pytest.fixture(scope="session")
def executed(tmp_path_factory, tiny_archive):
    """`ResNet50.ipynb` run once per session in smoke mode by the lab's runner, offline, on
    `tiny_archive`, its parameters injected after the `parameters` cell as papermill does.

    Returns:
        `(nb, seconds, folder)`: the executed notebook, its run time, and the kernel's working
        folder (the notebook's `OUT` is `folder / "out"`).
    """
    import time  # noqa: PLC0415

    import nbformat  # noqa: PLC0415

    from resnet_lab.notebook import NOTEBOOK, execute  # noqa: PLC0415

    tmp_path = tmp_path_factory.mktemp("notebook")
    nb = nbformat.read(Path(__file__).resolve().parents[1] / NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell(
        f"# Parameters\nSMOKE = True\nSEED = 3\nDATA_SOURCE = {str(tiny_archive)!r}\n"
        f"OUT = {str(tmp_path / 'out')!r}\n"
    )
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    start = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RESNET_LAB_SMOKE", raising=False)
        mp.delenv("RESNET_LAB_DATA", raising=False)
        mp.setenv("RESNET_LAB_CACHE", str(tmp_path / "cache"))
        mp.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # the notebook must hide them itself
        execute(nb, tmp_path, timeout=600)
    return nb, time.perf_counter() - start, tmp_path
