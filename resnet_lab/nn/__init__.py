"""Network code that runs on any Keras 3 backend (JAX, TensorFlow, PyTorch): Keras layers and
`keras.ops` only, no TensorFlow (one exception: `layers.FusedBatchNormalization` calls
TensorFlow's fused kernel when the backend is TensorFlow, Keras' BatchNorm otherwise).

`blocks` (the residual blocks), `models` (stage tables and builders), `layers` (the lab's own
layers), `costs` (parameters and multiply-adds), `porting` (keras.applications weights into the
lab's builders), `walk` (the layer walker).
"""

from resnet_lab.nn.blocks import basic_block, bottleneck_block, keras_v2_block
from resnet_lab.nn.layers import (
    CaffePreprocess,
    FrozenBatchNormalization,
    FusedBatchNormalization,
)
from resnet_lab.nn.models import (
    build_resnet,
    cifar_resnet,
    plain_cifar,
    rescaled,
    resnet,
    resnet18,
    resnet34,
    resnet50,
    resnet50d,
    resnet50v2,
    resnet101,
    resnet101v2,
    resnet152,
    resnet152v2,
    resnet_v2,
    resnext50_32x4d,
    resnext101_32x8d,
    resnext101_64x4d,
    scratch_model,
    stage,
    wide_resnet50_2,
    wide_resnet101_2,
)

__all__ = [
    "CaffePreprocess",
    "FrozenBatchNormalization",
    "FusedBatchNormalization",
    "basic_block",
    "bottleneck_block",
    "keras_v2_block",
    "build_resnet",
    "cifar_resnet",
    "plain_cifar",
    "rescaled",
    "resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet50d",
    "resnet50v2",
    "resnet101v2",
    "resnet152",
    "resnet152v2",
    "resnet_v2",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "scratch_model",
    "stage",
    "wide_resnet50_2",
    "wide_resnet101_2",
]
