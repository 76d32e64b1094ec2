"""resnet_lab: a Keras 3 teaching lab for Residual Networks.

Blocks and builders (`blocks`, `models`), weight porting from keras.applications (`porting`),
the Oxford 17 flowers data (`data`), training (`training`), ResNet-50 transfer learning
(`transfer`), the degradation and gradient-flow experiments (`analysis`) and plots (`plots`).
"""

from resnet_lab.blocks import basic_block, bottleneck_block
from resnet_lab.data import (
    CLASS_NAMES,
    DataError,
    as_numpy,
    augmentation,
    fetch_flowers17,
    load_flowers17,
    make_datasets,
    split_indices,
)
from resnet_lab.models import (
    build_resnet,
    cifar_resnet,
    plain_cifar,
    resnet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
)
from resnet_lab.porting import port_keras_weights

__version__ = "0.1.0"

__all__ = [
    "CLASS_NAMES",
    "DataError",
    "as_numpy",
    "augmentation",
    "basic_block",
    "bottleneck_block",
    "build_resnet",
    "cifar_resnet",
    "fetch_flowers17",
    "load_flowers17",
    "make_datasets",
    "plain_cifar",
    "port_keras_weights",
    "resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "split_indices",
]
