"""Fake flowers archives and a local HTTP server, for tests that must never touch the network.

`make_archive` writes a tiny archive in the official 17flowers layout (`jpg/image_0001.jpg`
... `jpg/image_1360.jpg` and `jpg/files.txt`), optionally broken in one of the ways
`resnet_lab.download` must detect. `serve` runs `http.server` on 127.0.0.1 and counts requests.

Use the fixtures by importing them into a test module:

    from flowers_fixture import flowers_server, make_archive, serve, tiny_archive  # noqa: F401

`tiny_archive` is built once per test session, however many modules import it.
"""

import contextlib
import dataclasses
import functools
import http.server
import io
import tarfile
import threading

import numpy as np
import pytest
from PIL import Image

NUM_IMAGES = 1360
IMAGES_PER_CLASS = 80

# One distinct colour per class, so that a model can learn the fake labels.
PALETTE = np.array(
    [[(37 * c) % 256, (91 * c + 60) % 256, (151 * c + 120) % 256] for c in range(17)]
)


def make_archive(
    path,
    n_images=NUM_IMAGES,
    size=(8, 8),
    corrupt=None,
    missing=(),
    html=False,
    traversal=False,
    truncate=False,
):
    """Write a synthetic 17flowers archive.

    Args:
        path: where to write the `.tgz`; its parent folder must exist.
        n_images: write `image_0001.jpg` ... `image_{n_images:04d}.jpg`.
        size: `(height, width)` of every JPEG.
        corrupt: image number, or numbers, whose file holds garbage instead of a JPEG.
        missing: image numbers to leave out.
        html: write a Google Drive style HTML error page instead of an archive.
        traversal: add a member `../evil.txt` that would land outside the extraction folder.
        truncate: cut the finished archive in half.

    Returns:
        `path`. Image `NNNN` is its class colour, `(NNNN - 1) // 80`, plus noise.
    """
    if html:
        path.write_text(
            "<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>"
            "<body>Too many users have viewed or downloaded this file recently.</body></html>"
        )
        return path
    corrupt = {corrupt} if isinstance(corrupt, int) else set(corrupt or ())
    rng = np.random.default_rng(0)
    names = []
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        _add(tar, "jpg/", None)
        for number in range(1, n_images + 1):
            if number in missing:
                continue
            name = f"image_{number:04d}.jpg"
            names.append(name)
            if number in corrupt:
                _add(tar, f"jpg/{name}", b"this is not a JPEG" * 4)
                continue
            colour = PALETTE[(number - 1) // IMAGES_PER_CLASS]
            pixels = colour + rng.integers(-20, 21, size=(*size, 3))
            buffer = io.BytesIO()
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG")
            _add(tar, f"jpg/{name}", buffer.getvalue())
        _add(tar, "jpg/files.txt", "".join(f"{name}\n" for name in names).encode())
        if traversal:
            _add(tar, "../evil.txt", b"escaped\n")
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.mtime = 1_700_000_000
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))


@dataclasses.dataclass
class Served:
    """What `serve` yields: the base `url` (no trailing slash) and the paths requested."""

    url: str
    requests: list


@contextlib.contextmanager
def serve(directory):
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
    with serve(tiny_archive.parent) as served:
        yield served
