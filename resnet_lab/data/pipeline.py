"""Feeding the splits to Keras: augmentation, `tf.data` pipelines, one-hot labels, mixup, CutMix.

The augmentation layers are Keras layers (any backend); the pipelines are `tf.data`, imported
only when a pipeline is built.
"""

import keras
import numpy as np

from resnet_lab.checks import check_choice
from resnet_lab.data.images import check_image_size


# Automatic augmentation policies after the flips and crops of `augmentation`.
AUTO_AUGMENTS = ("none", "randaugment", "trivialaugment")


def auto_augmentation(kind, seed=None):
    """An automatic augmentation layer: RandAugment, TrivialAugment's sampling, or `None`.

    - `"randaugment"`: Keras' `RandAugment` as Cubuk et al. 2020 ("RandAugment",
      arXiv:1909.13719) define it, two operations of magnitude up to 0.5 (Keras' default).
    - `"trivialaugment"`: the same operations sampled as Muller & Hutter 2021 do
      ("TrivialAugment", arXiv:2103.10158): one operation, its magnitude uniform over the
      whole range, no parameter to tune.

    Keras' layer draws the operation once per batch (every image of a batch gets the same
    operation at its own random magnitude), where the papers draw it per image.

    Args:
        kind: One of `AUTO_AUGMENTS`.
        seed: Integer seed, or `None`.

    Returns:
        A Keras layer for images in 0..255, or `None` for `"none"`.
    """
    check_choice("auto_augment", kind, AUTO_AUGMENTS)
    if kind == "none":
        return None
    ops, factor = (2, 0.5) if kind == "randaugment" else (1, (0.0, 1.0))
    return keras.layers.RandAugment(
        value_range=(0, 255), num_ops=ops, factor=factor, seed=seed, name=kind
    )


def augmentation(seed=None, auto_augment="none"):
    """Random flips, small rotations, zoom-ins and shifts, for training only.

    Args:
        seed: integer seed for the random layers, or `None` for fresh randomness.
        auto_augment: one of `AUTO_AUGMENTS`: an automatic augmentation policy applied
            after the flips and crops (`auto_augmentation`).

    Returns:
        A `keras.Sequential` named `"augmentation"`. It takes float images in any range
        (here 0..255) and returns float32 images of the same shape and range; it is the
        identity when called with `training=False`.
    """
    seeds = [None] * 5 if seed is None else [seed + i for i in range(5)]
    policy = auto_augmentation(auto_augment, seeds[4])
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seeds[0]),
            keras.layers.RandomRotation(0.05, seed=seeds[1]),  # up to +-18 degrees
            keras.layers.RandomZoom((-0.2, 0.0), seed=seeds[2]),  # zoom in: a random crop
            keras.layers.RandomTranslation(0.1, 0.1, seed=seeds[3]),
            *([policy] if policy is not None else []),
        ],
        name="augmentation",
    )


def make_datasets(
    images,
    labels,
    splits,
    batch_size=32,
    augment=True,
    seed=0,
    image_size=None,
    auto_augment="none",
):
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
        auto_augment: with `augment`, one of `AUTO_AUGMENTS` (`auto_augmentation`).

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
    size = None if image_size is None else check_image_size(image_size)
    if size == images.shape[1:3]:
        size = None
    augmenter = augmentation(seed, auto_augment) if augment else None
    return {
        name: _split_pipeline(
            images,
            labels,
            np.asarray(splits[name]),
            name == "train",
            batch_size,
            seed,
            size,
            augmenter,
        )
        for name in ("train", "val", "test")
    }


def _split_pipeline(images, labels, index, train, batch_size, seed, size, augmenter):
    """One split of `make_datasets`: (resized,) cached uint8, batched, float32, augmented."""
    import tensorflow as tf  # noqa: PLC0415 (tf.data only: the rest of the lab runs on any backend)

    auto = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices((images[index], labels[index]))
    if size is not None:
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
    return ds.prefetch(auto).with_options(options)


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
        inside = ((rows >= low[0]) & (rows < high[0]))[:, None] & (
            (cols >= low[1]) & (cols < high[1])
        )[None, :]
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
