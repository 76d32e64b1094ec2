"""Data, on TensorFlow: the flowers archive fetched and checked (`download`), decoded once and
split (`flowers`), one image file decoded (`images`), CIFAR-10 (`cifar`) and the `tf.data`
pipelines with augmentation, mixup and CutMix (`pipeline`).

The names below are the data API; each lives in the module named beside it.
"""

from resnet_lab.data.cifar import load_cifar10
from resnet_lab.data.download import (
    OFFICIAL_MD5,
    OFFICIAL_URL,
    DataError,
    default_cache_dir,
    fetch_flowers17,
)
from resnet_lab.data.flowers import (
    CLASS_NAMES,
    IMAGES_PER_CLASS,
    NUM_CLASSES,
    load_flowers17,
    split_indices,
)
from resnet_lab.data.images import read_image
from resnet_lab.data.pipeline import (
    AUTO_AUGMENTS,
    as_numpy,
    augmentation,
    auto_augmentation,
    cutmix,
    make_datasets,
    mixup,
    one_hot_labels,
    shuffled_batches,
)

__all__ = [
    "AUTO_AUGMENTS",
    "CLASS_NAMES",
    "IMAGES_PER_CLASS",
    "NUM_CLASSES",
    "OFFICIAL_MD5",
    "OFFICIAL_URL",
    "DataError",
    "as_numpy",
    "augmentation",
    "auto_augmentation",
    "cutmix",
    "default_cache_dir",
    "fetch_flowers17",
    "load_cifar10",
    "load_flowers17",
    "make_datasets",
    "mixup",
    "one_hot_labels",
    "read_image",
    "shuffled_batches",
    "split_indices",
]
