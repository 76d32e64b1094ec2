"""resnet_lab: a Keras 3 teaching lab for Residual Networks.

Two layers, two folders:

* `resnet_lab.nn`: network code on any Keras backend (JAX, TensorFlow or PyTorch): blocks,
  builders, the lab's layers, costs, weight porting.
* `resnet_lab.data`: data on TensorFlow: the flowers archive, decoding, CIFAR-10, `tf.data`
  pipelines and augmentation.

The flat modules use both: training (`training`), measuring (`evaluation`, `results`),
transfer learning (`transfer`), the experiments (`analysis`), Grad-CAM (`gradcam`), plots
(`plots`, `diagrams`), the CLI (`cli`), the machine (`hardware`) and `quiet`, which hides
TensorFlow's start-up lines when asked to (importing this package changes no process state).

`from resnet_lab import basic_block, resnet50` imports Keras and the network code only: every
name below loads its module on first use (PEP 562).
"""

import importlib
from importlib import metadata

try:
    __version__ = metadata.version("resnet_lab")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

# name -> module that defines it, imported on first access.
_LAZY = {
    **dict.fromkeys(
        (
            "CaffePreprocess",
            "FrozenBatchNormalization",
            "FusedBatchNormalization",
            "basic_block",
            "bottleneck_block",
            "build_resnet",
            "cifar_resnet",
            "plain_cifar",
            "rescaled",
            "resnet",
            "resnet18",
            "resnet34",
            "resnet50",
            "resnet101",
            "resnet152",
            "scratch_model",
            "stage",
            "keras_v2_block",
            "resnet_v2",
            "resnet50v2",
            "resnet101v2",
            "resnet152v2",
            "resnext50_32x4d",
            "resnext101_32x8d",
            "resnext101_64x4d",
            "wide_resnet50_2",
            "wide_resnet101_2",
            "resnet50d",
        ),
        "nn",
    ),
    "port_keras_weights": "nn.porting",
    **dict.fromkeys(
        (
            "CLASS_NAMES",
            "DataError",
            "as_numpy",
            "augmentation",
            "fetch_flowers17",
            "load_cifar10",
            "load_flowers17",
            "make_datasets",
            "read_image",
            "split_indices",
        ),
        "data",
    ),
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"resnet_lab.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'resnet_lab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
