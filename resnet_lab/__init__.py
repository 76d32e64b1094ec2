"""resnet_lab: a Keras 3 teaching lab for Residual Networks.

Backend-agnostic (Keras layers and `keras.ops` only; they run on JAX, TensorFlow or PyTorch):
blocks (`blocks`), builders (`models`), the custom layers (`layers`), FLOP counts (`costs`) and
weight porting (`porting`). TensorFlow: the flowers data and its `tf.data` pipelines (`data`,
`download`), training (`training`), measuring (`evaluation`), transfer learning (`transfer`), the
degradation and gradient-flow experiments (`analysis`) and Grad-CAM (`gradcam`). Plots
(`plots`, `diagrams`) need matplotlib.

`from resnet_lab import basic_block, resnet50` imports Keras and nothing else heavy: the data,
download, training and plotting names below load their module on first use.
"""

import importlib
import os
import sys


def _import_keras_quietly():
    """Import Keras with TensorFlow's C++ start-up lines hidden when the user asked for it.

    TensorFlow 2.20+ prints `oneDNN custom operations are on ...` and `Could not find cuda
    drivers ...` before its absl logging starts, so `TF_CPP_MIN_LOG_LEVEL` no longer hides
    them; a notebook shows them in its first cell. When `TF_CPP_MIN_LOG_LEVEL` is 1 or more
    (TensorFlow's own switch for these lines) and TensorFlow is not loaded yet, the process's
    stderr is pointed at /dev/null for the import only. Python errors still raise.
    """
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    if "tensorflow" in sys.modules or not level.isdigit() or int(level) < 1:
        import keras  # noqa: F401
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_keras_quietly()

from resnet_lab.blocks import basic_block, bottleneck_block  # noqa: E402
from resnet_lab.layers import CaffePreprocess, FrozenBatchNormalization  # noqa: E402
from resnet_lab.models import (  # noqa: E402
    build_resnet,
    cifar_resnet,
    plain_cifar,
    rescaled,
    resnet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    scratch_model,
    stage,
)

__version__ = "0.2.0"

# name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "CLASS_NAMES": "data",
    "DataError": "download",
    "as_numpy": "data",
    "augmentation": "data",
    "fetch_flowers17": "download",
    "load_cifar10": "data",
    "load_flowers17": "data",
    "make_datasets": "data",
    "split_indices": "data",
    "port_keras_weights": "porting",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"resnet_lab.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'resnet_lab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CLASS_NAMES",
    "CaffePreprocess",
    "DataError",
    "FrozenBatchNormalization",
    "as_numpy",
    "augmentation",
    "basic_block",
    "bottleneck_block",
    "build_resnet",
    "cifar_resnet",
    "fetch_flowers17",
    "load_cifar10",
    "load_flowers17",
    "make_datasets",
    "plain_cifar",
    "port_keras_weights",
    "rescaled",
    "resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "scratch_model",
    "split_indices",
    "stage",
]
