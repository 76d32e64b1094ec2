"""Synthetic flowers, for trying the pipeline offline and for tests: an archive in the official
layout and in-memory arrays shaped like the real ones, one colour per class plus noise, so a
small network learns them in a few epochs.

`make_archive` writes `jpg/image_0001.jpg` ... `jpg/image_1360.jpg` and `jpg/files.txt`,
optionally broken in one of the ways `resnet_lab.data.download` must detect; `flowers_like`
returns `(images, labels, splits)` as `load_flowers17` + `split_indices` would.
"""

import io
import tarfile

import numpy as np

from resnet_lab.data.download import NUM_IMAGES
from resnet_lab.data.flowers import IMAGES_PER_CLASS, split_indices

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
    from PIL import Image  # noqa: PLC0415 (only writing JPEGs needs Pillow)

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


def flowers_like(size=16, seed=0):
    """`(images, labels, splits)` shaped like `load_flowers17` + `split_indices` output.

    Image `i` is its class colour plus noise, so a small network learns it in a few epochs.
    """
    rng = np.random.default_rng(seed)
    labels = (np.arange(NUM_IMAGES) // IMAGES_PER_CLASS).astype(np.int32)
    palette = rng.integers(0, 256, size=(len(PALETTE), 3))
    noise = rng.normal(0, 20, size=(NUM_IMAGES, size, size, 3))
    images = np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels, split_indices(labels, seed=seed)
