"""The Oxford 17-category flowers dataset: loading, decoding once into a cache, splitting.

1,360 JPEGs, 17 classes of 80 images (Nilsback and Zisserman, "A Visual Vocabulary for Flower
Classification", CVPR 2006). The official archive holds `jpg/image_0001.jpg` ...
`jpg/image_1360.jpg`, ordered by class: images 1-80 are class 0, 81-160 class 1, and so on.

`load_flowers17` decodes the images once per source and image size and caches them as
`17flowers-<key>_{H}x{W}.npy` in the cache folder; fetching, checking and the cache layout
live in `resnet_lab.data.download`. `split_indices` is the one
stratified splitter; `resnet_lab.data.pipeline` feeds the splits to Keras.

Set `RESNET_LAB_DATA` to a local archive, an extracted folder, a URL or a Google Drive id to
load from there instead of the official URL, and `RESNET_LAB_CACHE` to cache elsewhere.
"""

import numpy as np

from resnet_lab.checks import is_count
from resnet_lab.data import download
from resnet_lab.data.images import check_image_size, decode
from resnet_lab.results import atomic_write

CLASS_NAMES = (
    "Daffodil", "Snowdrop", "LilyValley", "Bluebell", "Crocus", "Iris", "Tigerlily", "Tulip",
    "Fritillary", "Sunflower", "Daisy", "ColtsFoot", "Dandelion", "Cowslip", "Buttercup",
    "Windflower", "Pansy",
)  # fmt: skip
NUM_CLASSES = 17
IMAGES_PER_CLASS = 80


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def load_flowers17(source=None, cache_dir=None, image_size=(224, 224), progress=True):
    """Load the 1,360 flowers as uint8 arrays, fetching and decoding them on first use.

    Each image is decoded by `resnet_lab.data.images.decode`, as `read_image` decodes a
    user's photo: turned upright by its EXIF orientation, made 8-bit RGB, scaled so that it
    just covers `image_size` (for a square target: its shorter side becomes the target) and
    center-cropped. The JPEG decoder first downscales in the DCT (`Image.draft`), then a
    bicubic resize finishes the job. The
    decoded images are cached as `cache_dir/17flowers-<key>_{H}x{W}.npy`, where `<key>`
    names the source (`resnet_lab.data.download.source_key`: the archive's md5, or a fingerprint
    of an extracted folder), and labels follow from the file numbers. A second load of the
    same source and size reads that file and touches neither the network nor the JPEGs;
    another source never gets those images. A plain `.npy` reads in ~0.1 s at 224x224
    (205 MB); the same array in an `.npz` takes ~0.75 s, because `np.load` pulls it through
    `zipfile` in 256 KB chunks.

    Args:
        source: where the data comes from; see `fetch_flowers17`.
        cache_dir: cache folder; see `fetch_flowers17`.
        image_size: `(height, width)` of the returned images.
        progress: show download and decoding progress bars.

    Returns:
        `(images, labels)`: `images` uint8 of shape `(1360, height, width, 3)` and `labels`
        int32 of shape `(1360,)`, in file-number order. The label of `image_NNNN.jpg` is
        `(NNNN - 1) // 80`, an index into `CLASS_NAMES`. Both arrays are fresh copies.

    Raises:
        ValueError: `image_size` is not a pair of positive integers, or `source` is invalid.
        DataError: fetching failed (see `fetch_flowers17`) or an image does not decode.
    """
    height, width = check_image_size(image_size)
    cache_dir = download.resolve_cache_dir(cache_dir)
    labels = (np.arange(download.NUM_IMAGES) // IMAGES_PER_CLASS).astype(np.int32)
    key = download.source_key(source, cache_dir)
    if key is not None and _decoded(cache_dir, key, height, width).is_file():
        return np.load(_decoded(cache_dir, key, height, width)), labels

    folder, key = download.fetch_keyed(source, cache_dir, progress=progress)
    images = _decode_all(folder, height, width, progress)
    atomic_write(
        _decoded(cache_dir, key, height, width), lambda file: np.save(file, images), mode="wb"
    )
    return images, labels


def _decoded(cache_dir, key, height, width):
    return cache_dir / f"17flowers-{key}_{height}x{width}.npy"


def _decode_all(folder, height, width, progress):
    """Every image of `folder` through `images.decode`, the decoder `read_image` uses too."""
    images = np.empty((download.NUM_IMAGES, height, width, 3), np.uint8)
    bar = None
    if progress:
        from resnet_lab.progress import ProgressBar  # noqa: PLC0415

        bar = ProgressBar(download.NUM_IMAGES, "Decoding 17flowers", "images", every=85)
    for i, name in enumerate(download.IMAGE_NAMES):
        try:
            images[i] = decode(folder / name, height, width)
        except ValueError as error:
            raise download.DataError(
                f"Could not decode {name} in {folder} ({error}). The file is corrupt: replace "
                f"it, or fetch the archive again."
            ) from error
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return images


def split_indices(labels, seed=0, per_class=(40, 20, 20)):
    """Split image indices into train, val and test sets, stratified by class.

    The official protocol uses 40 train, 20 val and 20 test images per class (three random
    splits ship as `datasplits.mat`); this draws such splits from a seed instead. Each class
    gets its own generator, seeded with `(seed, class)`, that permutes the class's indices
    taken in ascending order; train takes the first images of that permutation, then val,
    then test. So a class's split depends only on the seed, its label and the positions of
    its own images in `labels`: not on where other classes' images sit, in what order, or
    whether they are there at all, nor on whether `labels` is a list or an array of any
    integer dtype.

    Args:
        labels: non-empty 1-D sequence of non-negative integer class labels.
        seed: non-negative integer seed.
        per_class: `(train, val, test)` image counts drawn from every class. Images beyond
            their sum are left out. `train` may be `None`: every image of the class that val
            and test leave.

    Returns:
        `dict(train=..., val=..., test=...)` of sorted int64 index arrays into `labels`.

    Raises:
        ValueError: `labels` is not 1-D non-negative integers, `per_class` is not three
            non-negative integers (train may be `None`), or a class has fewer images than
            `per_class` asks for.
    """
    labels = np.asarray(labels)
    integers = labels.size > 0 and np.issubdtype(labels.dtype, np.integer)
    if labels.ndim != 1 or not integers or np.any(labels < 0):
        raise ValueError(
            f"`labels` must be a non-empty 1-D sequence of non-negative integers. Received: "
            f"labels with shape {labels.shape} and dtype {labels.dtype}"
        )
    if not (
        isinstance(per_class, (tuple, list))
        and len(per_class) == 3
        and (per_class[0] is None or is_count(per_class[0]))
        and is_count(per_class[1])
        and is_count(per_class[2])
    ):
        raise ValueError(
            "`per_class` must be three non-negative integers (train, val, test), train "
            f"possibly None (all the rest). Received: per_class={per_class!r}"
        )
    train, val, test = per_class
    need = val + test + (train or 0)
    parts = {"train": [], "val": [], "test": []}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < need:
            raise ValueError(
                f"`per_class` asks for {need} images per class but class {label} has only "
                f"{len(members)}. Received: per_class={tuple(per_class)!r}"
            )
        members = np.random.default_rng([seed, int(label)]).permutation(members)
        ends = np.cumsum([len(members) - val - test if train is None else train, val, test])
        for name, part in zip(parts, np.split(members[: ends[-1]], ends[:2])):
            parts[name].append(part)
    return {name: np.sort(np.concatenate(part)).astype(np.int64) for name, part in parts.items()}
