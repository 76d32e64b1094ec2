"""The Oxford 17-category flowers dataset, split and fed; CIFAR-10 for the experiments.

1,360 JPEGs, 17 classes of 80 images (Nilsback and Zisserman, "A Visual Vocabulary for Flower
Classification", CVPR 2006). The official archive holds `jpg/image_0001.jpg` ...
`jpg/image_1360.jpg`, ordered by class: images 1-80 are class 0, 81-160 class 1, and so on.

`load_flowers17` decodes the images once per source and image size and caches them as
`17flowers-<key>_{H}x{W}.npy` in the cache folder; fetching, checking and the cache layout
live in `resnet_lab.download` (its names are re-exported here). `split_indices` is the one
stratified splitter; `make_datasets` and `as_numpy` feed the splits to Keras.

Set `RESNET_LAB_DATA` to a local archive, an extracted folder, a URL or a Google Drive id to
load from there instead of the official URL, and `RESNET_LAB_CACHE` to cache elsewhere.
"""

import math
import os
import tempfile
from pathlib import Path

import keras
import numpy as np

from resnet_lab import download
from resnet_lab.download import (  # noqa: F401 (re-exported: the data API as it always was)
    OFFICIAL_MD5,
    OFFICIAL_URL,
    DataError,
    default_cache_dir,
    fetch_flowers17,
)

CLASS_NAMES = (
    "Daffodil", "Snowdrop", "LilyValley", "Bluebell", "Crocus", "Iris", "Tigerlily", "Tulip",
    "Fritillary", "Sunflower", "Daisy", "ColtsFoot", "Dandelion", "Cowslip", "Buttercup",
    "Windflower", "Pansy",
)  # fmt: skip
NUM_CLASSES = 17
IMAGES_PER_CLASS = 80
_NUM_IMAGES = download.NUM_IMAGES  # NUM_CLASSES * IMAGES_PER_CLASS


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def load_flowers17(source=None, cache_dir=None, image_size=(224, 224), progress=True):
    """Load the 1,360 flowers as uint8 arrays, fetching and decoding them on first use.

    Each image is converted to RGB, scaled so that it just covers `image_size` (for a square
    target: its shorter side becomes the target) and center-cropped. The JPEG decoder first
    downscales in the DCT (`Image.draft`), then a bicubic resize finishes the job. The
    decoded images are cached as `cache_dir/17flowers-<key>_{H}x{W}.npy`, where `<key>`
    names the source (`resnet_lab.download.source_key`: the archive's md5, or a fingerprint
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
    height, width = _check_image_size(image_size)
    cache_dir = download.resolve_cache_dir(cache_dir)
    labels = (np.arange(_NUM_IMAGES) // IMAGES_PER_CLASS).astype(np.int32)
    key = download.source_key(source, cache_dir)
    if key is not None and _decoded(cache_dir, key, height, width).is_file():
        return np.load(_decoded(cache_dir, key, height, width)), labels

    folder, key = download.fetch_keyed(source, cache_dir, progress=progress)
    images = np.empty((_NUM_IMAGES, height, width, 3), np.uint8)
    bar = None
    if progress:
        from resnet_lab.progress import ProgressBar  # noqa: PLC0415

        bar = ProgressBar(_NUM_IMAGES, "Decoding 17flowers", "images", every=85)
    for i, name in enumerate(download.IMAGE_NAMES):
        images[i] = _decode(folder / name, height, width)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    cache_dir.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".", suffix=".npy.part", dir=cache_dir)
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, images)
        os.replace(partial, _decoded(cache_dir, key, height, width))
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return images, labels


def _decoded(cache_dir, key, height, width):
    return cache_dir / f"17flowers-{key}_{height}x{width}.npy"


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
    from PIL import Image, ImageOps  # noqa: PLC0415 (importing the data API needs no Pillow)

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


def read_image(path, image_size=(224, 224)):
    """One photo of any size and any format Pillow reads, decoded as the flowers are.

    Converted to RGB, scaled to cover `image_size` and center-cropped (`load_flowers17`'s
    decoding), so a model trained here sees a user's photo as it saw its training images.

    Args:
        path: Path of a JPEG, PNG, ... file.
        image_size: `(height, width)` to return.

    Returns:
        uint8 array `(height, width, 3)`.

    Raises:
        ValueError: If the file is missing or is not an image Pillow can read.
    """
    height, width = _check_image_size(image_size)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No file at {path}. Received: path={str(path)!r}")
    try:
        return _decode(path, height, width)
    except DataError as error:
        raise ValueError(f"{path} is not an image PIL can read ({error.__cause__}). "
                         f"Received: path={str(path)!r}") from error


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


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
        and (per_class[0] is None or _is_count(per_class[0]))
        and _is_count(per_class[1])
        and _is_count(per_class[2])
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


def _is_count(value):
    """A non-negative integer (Python or NumPy), and not a `bool`."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def load_cifar10(train_per_class=None, val_per_class=500, seed=0):
    """CIFAR-10 as the paper used it, for the degradation experiment (needs internet once).

    Downloads through `keras.datasets.cifar10` (cached by Keras in `~/.keras/datasets`). The
    validation split is held out of the 50,000 training images, stratified and seeded by
    `split_indices`; the test split is CIFAR-10's own 10,000 test images.

    Args:
        train_per_class: Training images per class (`None`: all that remain, 4,500 with the
            default validation size). Fewer make a CPU run affordable.
        val_per_class: Validation images per class, held out of the training set.
        seed: Seed for the split.

    Returns:
        `(images, labels, splits)` like `load_flowers17` + `split_indices`: uint8 images
        `(60000, 32, 32, 3)`, int32 labels, and index arrays `train`, `val`, `test`.

    Raises:
        ValueError: If the split sizes are not non-negative integers (`train_per_class` may
            be `None`) or exceed 5,000 per class.
    """
    if not ((train_per_class is None or _is_count(train_per_class)) and _is_count(val_per_class)):
        raise ValueError(
            "`train_per_class` and `val_per_class` must be non-negative integers "
            "(`train_per_class` may be None: all that remain). Received: "
            f"train_per_class={train_per_class!r}, val_per_class={val_per_class!r}"
        )
    if (train_per_class or 0) + val_per_class > 5000:
        raise ValueError(
            "`train_per_class + val_per_class` must be at most 5000 (CIFAR-10 has 5,000 "
            f"training images per class). Received: train_per_class={train_per_class}, "
            f"val_per_class={val_per_class}"
        )
    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    images = np.concatenate([x_train, x_test]).astype(np.uint8)
    labels = np.concatenate([y_train.ravel(), y_test.ravel()]).astype(np.int32)
    splits = split_indices(labels[: len(x_train)], seed, (train_per_class, val_per_class, 0))
    splits["test"] = np.arange(len(x_train), len(images), dtype=np.int64)
    return images, labels, splits


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
    import tensorflow as tf  # noqa: PLC0415 (tf.data only: the rest of the lab runs on any backend)

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
        ds = shuffled_batches(ds, len(index), batch_size, seed) if train else ds.batch(batch_size)
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=auto)
        if train and augmenter is not None:
            # One batch at a time: the random layers draw from one seed generator whose state
            # each call advances, so parallel calls would take its states in whatever order
            # the threads run, and one seed would not give one sequence of augmentations.
            ds = ds.map(lambda x, y: (augmenter(x, training=True), y))
        # tf.data's autotuner, on this 2-core CPU, now and then stretched a 5 s epoch to 10 s
        # (6 of 19 timed epochs); with it off none did, and the pipeline still feeds the
        # from-scratch model about 15x faster than it trains (benchmarks/README.md, item 4).
        options = tf.data.Options()
        options.autotune.enabled = False
        datasets[name] = ds.prefetch(auto).with_options(options)
    return datasets


def one_hot_labels(dataset, num_classes):
    """Map a batched `(images, int labels)` dataset to `(images, one-hot float32 labels)`.

    Label smoothing and mixup need probability vectors as targets.
    """
    import tensorflow as tf  # noqa: PLC0415

    return dataset.map(lambda x, y: (x, tf.one_hot(y, num_classes)))


def _check_alpha(alpha):
    if not alpha > 0:
        raise ValueError(f"`alpha` must be > 0. Received: alpha={alpha!r}")


def _beta(alpha, seed):
    """One draw of Beta(alpha, alpha), as g1 / (g1 + g2) with g ~ Gamma(alpha): tf.random has
    no Beta sampler."""
    import tensorflow as tf  # noqa: PLC0415

    g = tf.random.gamma([2], alpha, seed=seed)
    return g[0] / (g[0] + g[1])


def mixup(dataset, alpha, seed=0):
    """Mix each training batch with a shuffled copy of itself (Zhang et al. 2018, "mixup",
    arXiv:1710.09412): `x = l x_i + (1 - l) x_j`, `y = l y_i + (1 - l) y_j`,
    `l ~ Beta(alpha, alpha)` drawn once per batch.

    Args:
        dataset: Batched `(float images, one-hot labels)` (see `one_hot_labels`).
        alpha: Beta parameter, > 0; small values (0.2) mix little most of the time.
        seed: Seed of the mixing weights and partners.

    Returns:
        The mixed dataset; images stay in their range, labels stay probability vectors.

    Raises:
        ValueError: If `alpha` is not positive.
    """
    import tensorflow as tf  # noqa: PLC0415

    _check_alpha(alpha)

    def mix(x, y):
        weight = _beta(alpha, seed)
        partner = tf.random.shuffle(tf.range(tf.shape(x)[0]), seed=seed)
        x = weight * x + (1 - weight) * tf.gather(x, partner)
        y = weight * y + (1 - weight) * tf.gather(y, partner)
        return x, y

    return dataset.map(mix)


def cutmix(dataset, alpha, seed=0):
    """Paste a box of a shuffled partner into each training batch (Yun et al. 2019, "CutMix",
    arXiv:1905.04899): the box covers a fraction `1 - l` of the image, `l ~ Beta(alpha,
    alpha)` drawn once per batch, at a uniformly random centre (clipped at the borders); the
    labels mix by the area actually pasted, `y = (1 - a) y_i + a y_j`.

    Unlike mixup, every pixel stays a real pixel of one image, so local texture, which
    tells flowers apart, is never blended away.

    Args:
        dataset: Batched `(float images (B, H, W, C), one-hot labels)` (see `one_hot_labels`).
        alpha: Beta parameter, > 0 (1.0 in the paper: box areas uniform in 0..1).
        seed: Seed of the box and the partners.

    Returns:
        The mixed dataset.

    Raises:
        ValueError: If `alpha` is not positive.
    """
    import tensorflow as tf  # noqa: PLC0415

    _check_alpha(alpha)

    def mix(x, y):
        keep = _beta(alpha, seed)
        shape = tf.shape(x)
        size = tf.cast(shape[1:3], tf.float32)
        half = tf.sqrt(1.0 - keep) * size / 2  # box height and width, halved
        centre = tf.random.uniform([2], 0.0, 1.0, seed=seed + 1) * size
        low = tf.cast(tf.round(tf.clip_by_value(centre - half, 0.0, size)), tf.int32)
        high = tf.cast(tf.round(tf.clip_by_value(centre + half, 0.0, size)), tf.int32)
        rows = tf.range(shape[1])
        cols = tf.range(shape[2])
        inside = (((rows >= low[0]) & (rows < high[0]))[:, None]
                  & ((cols >= low[1]) & (cols < high[1]))[None, :])
        box = tf.cast(inside, x.dtype)[None, :, :, None]
        partner = tf.random.shuffle(tf.range(shape[0]), seed=seed)
        x = x * (1 - box) + tf.gather(x, partner) * box
        area = tf.reduce_mean(tf.cast(inside, y.dtype))
        y = (1 - area) * y + area * tf.gather(y, partner)
        return x, y

    return dataset.map(mix)


def shuffled_batches(dataset, size, batch_size, seed):
    """The training order of every pipeline in the lab: shuffle, batch, drop the remainder.

    All `size` elements are shuffled with `seed` and reshuffled every epoch; the last
    incomplete batch is dropped, since BatchNorm statistics from a tiny batch are noisy. The
    transfer head on cached features goes through this too, so with the same seed it sees
    the same images in the same batches as the head trained on images.

    Args:
        dataset: An unbatched `tf.data.Dataset` of `size` elements.
        size: Its number of elements (the shuffle buffer holds them all).
        batch_size: Elements per batch.
        seed: Shuffle seed.

    Returns:
        The batched `tf.data.Dataset`.
    """
    dataset = dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=True)


def _resize_uint8(image, size):
    import tensorflow as tf  # noqa: PLC0415

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
