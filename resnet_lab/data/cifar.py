"""CIFAR-10 as the paper used it, for the degradation experiment (needs internet once)."""

import keras
import numpy as np

from resnet_lab.checks import is_count
from resnet_lab.data.flowers import split_indices


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
    if not ((train_per_class is None or is_count(train_per_class)) and is_count(val_per_class)):
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
