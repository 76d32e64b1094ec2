"""The Oxford 17-category flowers dataset: fetch, decode, split and feed it.

1,360 JPEGs, 17 classes of 80 images (Nilsback and Zisserman, "A Visual Vocabulary for Flower
Classification", CVPR 2006). The official archive holds `jpg/image_0001.jpg` ...
`jpg/image_1360.jpg`, ordered by class: images 1-80 are class 0, 81-160 class 1, and so on.

Everything is cached in one folder (`RESNET_LAB_CACHE`, else the project's `data/`):

    17flowers.tgz           the downloaded archive
    17flowers/jpg/...       the extracted and validated images
    17flowers/.complete     written last: an extraction without it is never trusted
    17flowers_{H}x{W}.npy   decoded uint8 images, one file per image size

Set `RESNET_LAB_DATA` to a local archive, an extracted folder, a URL or a Google Drive id to
load from there instead of the official URL.
"""

import hashlib
import inspect
import math
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import gdown
import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps
from tqdm.auto import tqdm

OFFICIAL_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/17flowers.tgz"
OFFICIAL_MD5 = "b59a65d8d1a99cd66944d474e1289eab"

CLASS_NAMES = (
    "Daffodil", "Snowdrop", "LilyValley", "Bluebell", "Crocus", "Iris", "Tigerlily", "Tulip",
    "Fritillary", "Sunflower", "Daisy", "ColtsFoot", "Dandelion", "Cowslip", "Buttercup",
    "Windflower", "Pansy",
)  # fmt: skip
NUM_CLASSES = 17
IMAGES_PER_CLASS = 80

_NUM_IMAGES = NUM_CLASSES * IMAGES_PER_CLASS
_NUMBERS = np.arange(1, _NUM_IMAGES + 1)
_IMAGE_NAMES = tuple(f"image_{n:04d}.jpg" for n in _NUMBERS)
_ARCHIVE = "17flowers.tgz"
_EXTRACTED = "17flowers"
_STAMP = ".complete"
_DEFAULT_CACHE = Path(__file__).resolve().parents[1] / "data"
_DRIVE_ID = re.compile(r"[-\w]{25,}")
# gdown 5 needs `fuzzy=True` to turn a Drive share link into a download; gdown 6 always does
# and no longer accepts the argument.
_FUZZY = {"fuzzy": True} if "fuzzy" in inspect.signature(gdown.download).parameters else {}
# Python >= 3.11.4 (and backports) refuses unsafe members itself; our own check runs first
# so that the error names the member.
_DATA_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class DataError(RuntimeError):
    """The flowers data could not be fetched, checked or decoded; the message says why."""


# ---------------------------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------------------------


def fetch_flowers17(source=None, cache_dir=None, md5="auto", progress=True):
    """Download (or find), verify and extract the flowers archive; return the image folder.

    A validated extraction in `cache_dir` is reused whatever `source` is, so a second call
    downloads nothing. A `cache_dir/17flowers.tgz` placed there by hand is used instead of
    downloading. Every download and extraction goes to a temporary path inside `cache_dir`
    and is moved into place only once checked: on any failure (including `KeyboardInterrupt`)
    the cache is left as it was.

    Args:
        source: where the data comes from. `None` reads the `RESNET_LAB_DATA` environment
            variable, else uses `OFFICIAL_URL`. Otherwise an http(s) URL, a Google Drive file
            id or share link (handed to `gdown`), a local `.tgz` archive, or an extracted
            folder that contains `jpg/` or the images themselves (used in place, not copied).
        cache_dir: folder for the archive and its extraction. `None` reads `RESNET_LAB_CACHE`,
            else uses the project's `data/` folder.
        md5: expected md5 hex digest of the archive. `"auto"` checks `OFFICIAL_MD5` when
            `source` is `OFFICIAL_URL` and nothing otherwise; `None` never checks. Not used
            for an extracted folder.
        progress: show `gdown`'s download progress bar.

    Returns:
        `pathlib.Path` of the folder holding `image_0001.jpg` ... `image_1360.jpg`.

    Raises:
        ValueError: `source` is not a URL, Drive id or existing path, or `md5` is malformed.
        DataError: the download failed (offline?), the checksum differs, the server sent an
            HTML page, the archive is truncated or holds an unsafe member, images are
            missing, or a JPEG in the archive does not decode.
    """
    cache_dir = _cache_dir(cache_dir)
    if source is None:
        source = os.environ.get("RESNET_LAB_DATA") or OFFICIAL_URL
    kind = _source_kind(source)
    md5 = _resolve_md5(md5, source)
    if kind == "folder":
        folder = Path(source).expanduser()
        folder = folder / "jpg" if (folder / "jpg").is_dir() else folder
        _check_names(folder, where=f"folder {folder}")
        return folder

    extracted = cache_dir / _EXTRACTED
    if _is_complete(extracted):
        return extracted / "jpg"
    created = not cache_dir.exists()
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached_archive = cache_dir / _ARCHIVE
    temporaries = []
    try:
        downloaded = None
        if kind == "archive":
            archive = Path(source).expanduser()
        elif cached_archive.is_file():
            archive = cached_archive
        else:
            temporaries.append(Path(tempfile.mkdtemp(prefix=".download-", dir=cache_dir)))
            archive = downloaded = temporaries[-1] / _ARCHIVE
            _download(source, kind, archive, cached_archive, progress)
        origin = archive if downloaded is None else source
        _check_archive(archive, md5, origin, cached_archive)

        temporaries.append(Path(tempfile.mkdtemp(prefix=".extract-", dir=cache_dir)))
        staging = temporaries[-1]
        _extract(archive, staging)
        _check_names(staging / "jpg", where=f"archive {archive}")
        _check_jpegs(staging / "jpg", archive)

        if _is_complete(extracted):  # another process finished first
            return extracted / "jpg"
        if downloaded is not None:
            os.replace(downloaded, cached_archive)
        if extracted.exists():  # a half-made extraction without its stamp
            shutil.rmtree(extracted)
        os.rename(staging, extracted)
        (extracted / _STAMP).write_text(f"{_NUM_IMAGES}\n")
    finally:
        for path in temporaries:
            shutil.rmtree(path, ignore_errors=True)
        if created and not any(cache_dir.iterdir()):
            cache_dir.rmdir()
    return extracted / "jpg"


def _cache_dir(cache_dir):
    return Path(cache_dir or os.environ.get("RESNET_LAB_CACHE") or _DEFAULT_CACHE).expanduser()


def _source_kind(source):
    text = os.fspath(source)
    if re.match(r"https?://", text):
        return "url"
    path = Path(text).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "archive"
    if _DRIVE_ID.fullmatch(text):
        return "drive_id"
    raise ValueError(
        "`source` must be an http(s) URL, a Google Drive file id or link, a local .tgz "
        f"archive or an extracted folder; no such file or folder exists. Received: "
        f"source={text!r}"
    )


def _resolve_md5(md5, source):
    if md5 == "auto":
        return OFFICIAL_MD5 if source == OFFICIAL_URL else None
    if md5 is None or (isinstance(md5, str) and re.fullmatch(r"[0-9a-fA-F]{32}", md5)):
        return None if md5 is None else md5.lower()
    raise ValueError(
        f'`md5` must be "auto", None or a 32-digit hex string. Received: md5={md5!r}'
    )


def _is_complete(extracted):
    stamp = extracted / _STAMP
    return stamp.is_file() and stamp.read_text().strip() == str(_NUM_IMAGES)


def _download(source, kind, output, cached_archive, progress):
    try:
        if kind == "drive_id":
            gdown.download(id=source, output=str(output), quiet=not progress)
        else:
            gdown.download(source, output=str(output), quiet=not progress, **_FUZZY)
    except Exception as error:  # requests, gdown and OS errors all mean the same to the user
        raise DataError(
            f"Could not download the flowers archive from {source} ({error}). If you are "
            f"offline or the server is down, download the archive by other means and place "
            f"it at {cached_archive}, or set RESNET_LAB_DATA to a local archive or extracted "
            f"folder."
        ) from error
    if not output.is_file():  # gdown 5 reports some failures by returning None
        raise DataError(
            f"Could not download the flowers archive from {source}. Place the archive at "
            f"{cached_archive}, or set RESNET_LAB_DATA to a local archive or extracted folder."
        )


def _check_archive(archive, md5, origin, cached_archive):
    with open(archive, "rb") as file:
        head = file.read(512).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise DataError(
            f"Received an HTML page instead of the flowers archive from {origin}. Google Drive "
            f"sends one when a file is over its download quota or is not shared with 'Anyone "
            f"with the link'. Open the link in a browser, download the archive by hand and "
            f"place it at {cached_archive}, or set RESNET_LAB_DATA to its path."
        )
    if not head.startswith(b"\x1f\x8b"):
        raise DataError(
            f"{archive} is not a gzip archive (it starts with {head[:8]!r}). Replace it with "
            f"a good copy of 17flowers.tgz (if it sits in the cache, delete it and fetch again)."
        )
    if md5 is not None:
        digest = hashlib.md5()
        with open(archive, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != md5:
            raise DataError(
                f"Checksum mismatch for {origin}: expected md5 {md5}, received "
                f"{digest.hexdigest()}. The file is damaged or is not the official archive: "
                f"fetch again, or, if you trust this copy, pass md5=None or load it as a local "
                f"source (source=its path, or RESNET_LAB_DATA)."
            )


def _extract(archive, destination):
    def checked_members(tar):
        for member in tar:
            _check_member(member, archive)
            yield member

    try:
        # Stream mode reads the archive once, checking each member before it is written.
        with tarfile.open(archive, "r|gz") as tar:
            tar.extractall(destination, members=checked_members(tar), **_DATA_FILTER)
    except (tarfile.TarError, EOFError) as error:
        if isinstance(error, tarfile.FilterError):
            raise DataError(f"Refusing to extract {archive}: {error}.") from error
        raise DataError(
            f"Could not read {archive}: it is truncated or corrupt ({error}). Replace it with "
            f"a good copy (if it sits in the cache, delete it and fetch again)."
        ) from error


def _check_member(member, archive):
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        problem = "an absolute path"
    elif ".." in PurePosixPath(name.replace("\\", "/")).parts:
        problem = "a path that climbs out of the folder with '..'"
    elif member.issym() or member.islnk():
        problem = "a link"
    elif not (member.isfile() or member.isdir()):
        problem = "a device or other special file"
    else:
        return
    raise DataError(
        f"Refusing to extract {archive}: member {name!r} is {problem}. The archive is not the "
        f"flowers dataset or has been tampered with; nothing was kept."
    )


def _check_names(folder, where):
    present = set(os.listdir(folder)) if folder.is_dir() else set()
    missing = [name for name in _IMAGE_NAMES if name not in present]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(
            f"The {where} lacks {len(missing)} of the 1,360 images ({shown}). Expected the "
            f"official layout jpg/image_0001.jpg ... jpg/image_1360.jpg: use a complete copy "
            f"of 17flowers.tgz."
        )


def _check_jpegs(folder, archive):
    for name in _IMAGE_NAMES:
        try:
            with Image.open(folder / name) as image:
                # A decode at 1/8 scale in the DCT reads every byte but costs ~0.5 ms.
                image.draft("RGB", (image.width // 8, image.height // 8))
                image.load()
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise DataError(
                f"{name} in {archive} is not a readable JPEG ({error}). The archive is "
                f"corrupt: fetch it again."
            ) from error


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def load_flowers17(source=None, cache_dir=None, image_size=(224, 224), progress=True):
    """Load the 1,360 flowers as uint8 arrays, fetching and decoding them on first use.

    Each image is converted to RGB, scaled so that it just covers `image_size` (for a square
    target: its shorter side becomes the target) and center-cropped. The JPEG decoder first
    downscales in the DCT (`Image.draft`), then a bicubic resize finishes the job. The
    decoded images are cached as `cache_dir/17flowers_{H}x{W}.npy` (labels follow from the
    file numbers): a second load with the same size reads that file and touches neither the
    network nor the JPEGs, whatever `source` is (the cache holds one copy of the dataset:
    delete `cache_dir` to switch). A plain `.npy` reads in ~0.1 s at 224x224 (205 MB); the
    same array in an `.npz` takes ~0.75 s, because `np.load` pulls it through `zipfile` in
    256 KB chunks.

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
    height, width = _check_image_size(image_size)
    cache_dir = _cache_dir(cache_dir)
    labels = ((_NUMBERS - 1) // IMAGES_PER_CLASS).astype(np.int32)
    cached = cache_dir / f"17flowers_{height}x{width}.npy"
    if cached.is_file():
        return np.load(cached), labels

    folder = fetch_flowers17(source, cache_dir, progress=progress)
    images = np.empty((_NUM_IMAGES, height, width, 3), np.uint8)
    names = tqdm(_IMAGE_NAMES, desc="Decoding 17flowers", unit="img", disable=not progress)
    for i, name in enumerate(names):
        images[i] = _decode(folder / name, height, width)

    cache_dir.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".", suffix=".npy.part", dir=cache_dir)
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, images)
        os.replace(partial, cached)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return images, labels


def _check_image_size(image_size):
    if (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(n, (int, np.integer)) and n > 0 for n in image_size)
    ):
        return int(image_size[0]), int(image_size[1])
    raise ValueError(
        f"`image_size` must be a pair of positive integers (height, width). Received: "
        f"image_size={image_size!r}"
    )


def _decode(path, height, width):
    try:
        with Image.open(path) as image:
            scale = max(width / image.width, height / image.height)
            image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
            image = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.BICUBIC)
            return np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(
            f"Could not decode {path.name} in {path.parent} ({error}). The file is corrupt: "
            f"replace it, or fetch the archive again."
        ) from error


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def split_indices(labels, seed=0, per_class=(40, 20, 20)):
    """Split image indices into train, val and test sets, stratified by class.

    The official protocol uses 40 train, 20 val and 20 test images per class (three random
    splits ship as `datasplits.mat`); this draws such splits from a seed instead. Each class
    gets its own generator, seeded with `(seed, class)`, that permutes the class's indices
    (taken in ascending order). So a class's split depends only on the seed, its label and
    where its images sit in `labels`: not on the order or presence of other classes, nor on
    whether `labels` is a list or an array of any integer dtype.

    Args:
        labels: non-empty 1-D sequence of non-negative integer class labels.
        seed: non-negative integer seed.
        per_class: `(train, val, test)` image counts drawn from every class. Images beyond
            their sum are left out.

    Returns:
        `dict(train=..., val=..., test=...)` of sorted int64 index arrays into `labels`.

    Raises:
        ValueError: `labels` is not 1-D non-negative integers, `per_class` is not three
            non-negative integers, or a class has fewer images than `sum(per_class)`.
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
        and all(isinstance(n, (int, np.integer)) and n >= 0 for n in per_class)
    ):
        raise ValueError(
            "`per_class` must be three non-negative integers (train, val, test). Received: "
            f"per_class={per_class!r}"
        )
    ends = np.cumsum(per_class)
    parts = {"train": [], "val": [], "test": []}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < ends[-1]:
            raise ValueError(
                f"`per_class` asks for {ends[-1]} images per class but class {label} has "
                f"only {len(members)}. Received: per_class={tuple(per_class)!r}"
            )
        members = np.random.default_rng([seed, int(label)]).permutation(members)
        for name, part in zip(parts, np.split(members[: ends[-1]], ends[:2])):
            parts[name].append(part)
    return {name: np.sort(np.concatenate(part)).astype(np.int64) for name, part in parts.items()}


# ---------------------------------------------------------------------------------------------
# Feeding
# ---------------------------------------------------------------------------------------------


def augmentation(seed=None):
    """Random flips, small rotations, zoom-ins and shifts, for training only.

    Args:
        seed: integer seed for the random layers, or `None` for fresh randomness.

    Returns:
        A `keras.Sequential` named `"augmentation"`. It takes float images in any range
        (here 0..255) and returns float32 images of the same shape and range; it is the
        identity when called with `training=False`.
    """
    seeds = [None] * 4 if seed is None else [seed + i for i in range(4)]
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seeds[0]),
            keras.layers.RandomRotation(0.05, seed=seeds[1]),  # up to +-18 degrees
            keras.layers.RandomZoom((-0.2, 0.0), seed=seeds[2]),  # zoom in: a random crop
            keras.layers.RandomTranslation(0.1, 0.1, seed=seeds[3]),
        ],
        name="augmentation",
    )


def make_datasets(images, labels, splits, batch_size=32, augment=True, seed=0, image_size=None):
    """Build batched `tf.data` pipelines for the train, val and test splits.

    Each split is (optionally resized once), cached as uint8, then batched and cast to
    float32. Train is also shuffled (seeded, reshuffled every epoch) and augmented after
    batching; it drops its last incomplete batch, since BatchNorm statistics from a tiny
    batch are noisy. Val and test keep every image, in index order, unaugmented.

    Pixels stay on the 0..255 scale for every split. Model-specific preprocessing (the
    caffe-style BGR mean subtraction of `keras.applications` ResNet50, or `/ 255` for a
    network trained from scratch) belongs inside the model, so the same pipelines feed any
    model and a saved model carries its own preprocessing.

    Args:
        images: uint8 array `(N, H, W, 3)`, as from `load_flowers17`.
        labels: integer array `(N,)`.
        splits: dict with `train`, `val` and `test` index arrays, as from `split_indices`.
        batch_size: images per batch.
        augment: apply `augmentation(seed)` to training batches.
        seed: seed for the shuffle and the augmentation.
        image_size: `(height, width)` to resize to (without cropping) once, before caching;
            `None` keeps the arrays' size.

    Returns:
        `dict(train=..., val=..., test=...)` of `tf.data.Dataset`s yielding
        `(float32 images (batch, height, width, 3) in 0..255, int32 labels (batch,))`.

    Raises:
        ValueError: `images`, `labels` or `splits` have the wrong shape or keys, `batch_size`
            is not positive or larger than the training split, or `image_size` is malformed.
    """
    images, labels = _check_arrays(images, labels, splits)
    if images.dtype != np.uint8:
        raise ValueError(
            f"`images` must be uint8, as from load_flowers17, so that the pipeline caches "
            f"compact arrays. Received: images with dtype {images.dtype}"
        )
    n_train = len(splits["train"])
    if not isinstance(batch_size, (int, np.integer)) or not 0 < batch_size <= n_train:
        raise ValueError(
            f"`batch_size` must be a positive integer no larger than the training split "
            f"({n_train} images). Received: batch_size={batch_size!r}"
        )
    size = None if image_size is None else _check_image_size(image_size)
    augmenter = augmentation(seed) if augment else None
    auto = tf.data.AUTOTUNE

    datasets = {}
    for name in ("train", "val", "test"):
        train = name == "train"
        index = np.asarray(splits[name])
        ds = tf.data.Dataset.from_tensor_slices((images[index], labels[index]))
        if size is not None and size != images.shape[1:3]:
            ds = ds.map(lambda x, y: (_resize_uint8(x, size), y), num_parallel_calls=auto)
        ds = ds.cache()
        if train:
            ds = ds.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=train)
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=auto)
        if train and augmenter is not None:
            ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=auto)
        # tf.data's autotuner, on this 2-core CPU, now and then stretched a 5 s epoch to 10 s
        # (6 of 19 timed epochs); with it off none did, and the pipeline still feeds the
        # from-scratch model about 15x faster than it trains (benchmarks/README.md, item 4).
        options = tf.data.Options()
        options.autotune.enabled = False
        datasets[name] = ds.prefetch(auto).with_options(options)
    return datasets


def _resize_uint8(image, size):
    resized = tf.image.resize(image, size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _check_arrays(images, labels, splits):
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.shape[-1] != 3 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"`images` must be an (N, H, W, 3) array and `labels` an (N,) array. Received: "
            f"images with shape {images.shape}, labels with shape {labels.shape}"
        )
    if not isinstance(splits, dict) or not {"train", "val", "test"} <= set(splits):
        raise ValueError(
            f"`splits` must be a dict with keys 'train', 'val' and 'test', as from "
            f"split_indices. Received: splits={splits!r:.200}"
        )
    return images, labels.astype(np.int32, copy=False)


def as_numpy(images, labels, splits):
    """Gather the splits as plain arrays, for `model.fit(x, y)`.

    Args:
        images: array `(N, H, W, 3)`, as from `load_flowers17`.
        labels: array `(N,)`.
        splits: dict with `train`, `val` and `test` index arrays, as from `split_indices`.

    Returns:
        `dict(train=(x, y), val=(x, y), test=(x, y))`: `x` keeps the dtype of `images`,
        `y` is int32. They are copies: writing to them leaves `images` and `labels` intact.

    Raises:
        ValueError: `images`, `labels` or `splits` have the wrong shape or keys.
    """
    images, labels = _check_arrays(images, labels, splits)
    return {
        name: (np.take(images, splits[name], axis=0), np.take(labels, splits[name], axis=0))
        for name in ("train", "val", "test")
    }
