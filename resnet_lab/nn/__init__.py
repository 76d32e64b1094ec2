"""Network code that runs on any Keras 3 backend (JAX, TensorFlow, PyTorch): Keras layers and
`keras.ops` only, no TensorFlow.

`blocks` (the residual blocks), `models` (stage tables and builders), `layers` (the lab's own
layers), `costs` (parameters and multiply-adds), `porting` (keras.applications weights into the
lab's builders), `walk` (the layer walker).
"""

from resnet_lab.nn.blocks import basic_block, bottleneck_block
from resnet_lab.nn.layers import CaffePreprocess, FrozenBatchNormalization
from resnet_lab.nn.models import (
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

__all__ = [
    "CaffePreprocess",
    "FrozenBatchNormalization",
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
]
