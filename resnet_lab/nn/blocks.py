"""Residual blocks as functions on tensors (Keras functional API).

Each block takes a 4-D `channels_last` tensor and returns one, adding named layers to the graph,
so `model.summary()` shows every layer and models save and load without custom objects. Every
layer is given `data_format="channels_last"` explicitly: Keras' global
`keras.config.image_data_format()` would otherwise turn the convolutions to `channels_first`
while BatchNorm, told `axis=-1`, kept normalising the last axis, a silently wrong graph.
Layer names follow keras.applications (`conv2_block1_1_conv`, `..._0_conv`, `..._add`,
`..._out`), which makes weight porting a matter of matching names.

References:
    He et al. 2015, "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
    He et al. 2016, "Identity Mappings in Deep Residual Networks", arXiv:1603.05027.
    Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
        arXiv:1706.02677.
"""

import keras
from keras import layers

from resnet_lab.checks import check_choice, check_positive_int

SHORTCUTS = ("projection", "identity", "none")
STRIDE_AT = ("v1", "v1.5")

# BatchNorm defaults of every builder, as keras.applications' ResNets: Keras' momentum and
# Caffe's epsilon (1e-5, written 1.001e-5 so that cuDNN, which needs > 1e-5, accepts it).
BN_MOMENTUM = 0.99
BN_EPSILON = 1.001e-5
DATA_FORMAT = "channels_last"

# Output channels = expansion * filters, as torchvision's `Block.expansion`: lets one stage
# builder serve both block types.
EXPANSION = {"basic": 1, "bottleneck": 4}


def _check_block_args(x, filters, stride, shortcut, stride_at, expansion, zero_init):
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4 or shape[-1] is None:
        raise ValueError(
            "`x` must be a 4-D tensor (batch, height, width, channels) with a known channel "
            f"count. Received: x.shape={shape}"
        )
    check_positive_int("filters", filters)
    check_choice("stride", stride, (1, 2))
    check_choice("shortcut", shortcut, SHORTCUTS)
    check_choice("stride_at", stride_at, STRIDE_AT)
    if shortcut == "identity" and expansion * filters < shape[-1]:
        raise ValueError(
            '`shortcut="identity"` (option A) can only add channels, by zero padding: this '
            f"block would map {shape[-1]} channels to {expansion * filters}. "
            f"Received: filters={filters}"
        )
    if zero_init and shortcut == "none":
        raise ValueError(
            '`zero_init=True` needs a shortcut: with `shortcut="none"` it would zero the '
            "block's output. Received: zero_init=True, shortcut='none'"
        )


def _conv(x, filters, kernel_size, stride, name, zero=False):
    # No bias: the BatchNorm that follows subtracts the mean and adds its own beta.
    # "same" on a stride-2 3x3 pads an even input by (0, 1), not torchvision's (1, 1): the
    # shapes agree, but torchvision weights would need explicit padding to match exactly.
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding="same" if kernel_size > 1 else "valid",
        use_bias=False,
        kernel_initializer="zeros" if zero else "he_normal",
        data_format=DATA_FORMAT,
        name=name,
    )(x)


def _bn(x, name, momentum, epsilon, zero=False):
    return layers.BatchNormalization(
        axis=-1,
        momentum=momentum,
        epsilon=epsilon,
        gamma_initializer="zeros" if zero else "ones",
        name=name,
    )(x)


def _shortcut(x, preactivated, out_channels, *, stride, shortcut, preact, bn_momentum,
              bn_epsilon, name):
    """The skip path: identity, projection (option B) or parameter-free option A."""
    in_channels = x.shape[-1]
    if stride == 1 and in_channels == out_channels:
        return x
    if shortcut == "projection":
        if preact:
            # Pre-activation units project the pre-activated input, with no BN after it
            # (He et al. 2016): the next unit's BN normalises the sum.
            return _conv(preactivated, out_channels, 1, stride, f"{name}_0_conv")
        y = _conv(x, out_channels, 1, stride, f"{name}_0_conv")
        return _bn(y, f"{name}_0_bn", bn_momentum, bn_epsilon)
    # Option A (He et al. 2015, Sec. 4.2): x[:, ::2, ::2, :], then zero channels appended.
    if stride == 2:
        x = layers.MaxPooling2D(1, strides=2, data_format=DATA_FORMAT,
                                name=f"{name}_0_pool")(x)
    if out_channels > in_channels:
        # Read as channels_first, ZeroPadding2D pads the last two axes (width, channels): a
        # built-in layer pads the channel axis, so saving needs no custom objects.
        x = layers.ZeroPadding2D(
            ((0, 0), (0, out_channels - in_channels)),
            data_format="channels_first",
            name=f"{name}_0_pad",
        )(x)
    return x


def _residual(x, convs, *, stride, shortcut, preact, zero_init, bn_momentum, bn_epsilon, name):
    """Shared body of both block types.

    `convs` lists `(filters, kernel_size, stride)` of the residual branch, in order. In both
    orderings `{name}_{k}_bn` normalises the output of `{name}_{k}_conv`.
    """
    preactivated = x
    if preact:
        preactivated = _bn(x, f"{name}_preact_bn", bn_momentum, bn_epsilon)
        preactivated = layers.Activation("relu", name=f"{name}_preact_relu")(preactivated)

    skip = None
    if shortcut != "none":
        skip = _shortcut(
            x, preactivated, convs[-1][0], stride=stride, shortcut=shortcut, preact=preact,
            bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=name,
        )

    y = preactivated
    for k, (filters, kernel_size, conv_stride) in enumerate(convs, start=1):
        last = k == len(convs)
        if preact and k > 1:
            y = _bn(y, f"{name}_{k - 1}_bn", bn_momentum, bn_epsilon)
            y = layers.Activation("relu", name=f"{name}_{k - 1}_relu")(y)
        # Pre-activation branches end in a conv, whose kernel zero_init zeroes: a zero gamma
        # followed by ReLU would get no gradient (ReLU'(0) = 0) and never train.
        y = _conv(y, filters, kernel_size, conv_stride, f"{name}_{k}_conv",
                  zero=zero_init and preact and last)
        if not preact:
            y = _bn(y, f"{name}_{k}_bn", bn_momentum, bn_epsilon, zero=zero_init and last)
            if not last:
                y = layers.Activation("relu", name=f"{name}_{k}_relu")(y)

    if skip is not None:
        y = layers.Add(name=f"{name}_add")([skip, y])
    if not preact:
        y = layers.Activation("relu", name=f"{name}_out")(y)
    return y


def basic_block(
    x,
    filters,
    stride=1,
    shortcut="projection",
    preact=False,
    zero_init=False,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """Basic residual block: two 3x3 convolutions (He et al. 2015, Fig. 2 left).

    Post-activation (`preact=False`, the 2015 paper): conv-BN-ReLU, conv-BN, add the shortcut,
    ReLU. Pre-activation (`preact=True`, He et al. 2016): BN-ReLU-conv twice, add, no ReLU
    after the addition; a network of such blocks needs a final BN-ReLU, which the builders add.
    The stride sits on the first 3x3. Output channels: `filters` (`EXPANSION["basic"] == 1`).

    Args:
        x: 4-D input tensor `(batch, height, width, channels)`.
        filters: Number of filters of both convolutions.
        stride: `1` or `2`; `2` halves height and width.
        shortcut: `"projection"`: a 1x1 conv (+ BN when post-activation) when the stride is
            not 1 or the channels change, identity otherwise (option B of He et al. 2015).
            `"identity"`: parameter-free option A, subsampling `x[:, ::2, ::2, :]` and
            appending zero channels. `"none"`: the plain counterpart, same layers, no addition.
        preact: Use pre-activation ordering (He et al. 2016). In that case a projection
            shortcut takes the pre-activated input, as in the paper.
        zero_init: Start the residual branch at zero so the block begins as its shortcut
            (Goyal et al. 2017): the last BN's gamma is zero; with `preact=True`, where the
            branch ends in a conv, that conv's kernel is zero. Needs a shortcut.
        bn_momentum: Momentum of the BatchNorm moving statistics.
        bn_epsilon: BatchNorm epsilon (`1.001e-5` as keras.applications).
        name: Prefix of every layer name, e.g. `"conv2_block1"`; a unique one if `None`.

    Returns:
        The output tensor, `filters` channels, spatial size divided by `stride` (rounded up).

    Raises:
        ValueError: If `x` is not 4-D, `filters` not a positive integer, `stride` not 1 or 2,
            `shortcut` unknown, `shortcut="identity"` would have to remove channels, or
            `zero_init` is combined with `shortcut="none"`.
    """
    _check_block_args(x, filters, stride, shortcut, "v1", EXPANSION["basic"], zero_init)
    if name is None:
        name = f"basic_block_{keras.backend.get_uid('basic_block')}"
    convs = [(filters, 3, stride), (filters, 3, 1)]
    return _residual(
        x, convs, stride=stride, shortcut=shortcut, preact=preact, zero_init=zero_init,
        bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=name,
    )


def bottleneck_block(
    x,
    filters,
    stride=1,
    shortcut="projection",
    stride_at="v1",
    preact=False,
    zero_init=False,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """Bottleneck residual block: 1x1, 3x3, 1x1 convolutions (He et al. 2015, Fig. 5 right).

    The 1x1 convolutions reduce to `filters` channels and expand back to `4 * filters`
    (`EXPANSION["bottleneck"] == 4`). Activation ordering and shortcuts as in `basic_block`.

    Where the stride sits:
        `"v1"`: on the first 1x1 convolution (`{name}_1_conv`), as in the paper and
        keras.applications `ResNet50`; required to port its weights.
        `"v1.5"`: on the 3x3 convolution (`{name}_2_conv`), as torchvision and NVIDIA's
        "ResNet v1.5": a strided 1x1 discards 3/4 of its input, a strided 3x3 sees all of it
        (slightly more accurate, slightly slower).

    Args:
        x: 4-D input tensor `(batch, height, width, channels)`.
        filters: Bottleneck width; the block outputs `4 * filters` channels.
        stride: `1` or `2`; `2` halves height and width.
        shortcut: `"projection"`, `"identity"` or `"none"`, as in `basic_block`.
        stride_at: `"v1"` or `"v1.5"`, see above.
        preact: Use pre-activation ordering (He et al. 2016).
        zero_init: Start the residual branch at zero (Goyal et al. 2017), as in `basic_block`.
        bn_momentum: Momentum of the BatchNorm moving statistics.
        bn_epsilon: BatchNorm epsilon (`1.001e-5` as keras.applications).
        name: Prefix of every layer name, e.g. `"conv2_block1"`; a unique one if `None`.

    Returns:
        The output tensor, `4 * filters` channels, spatial size divided by `stride`
        (rounded up).

    Raises:
        ValueError: If `x` is not 4-D, `filters` not a positive integer, `stride` not 1 or 2,
            `shortcut` or `stride_at` unknown, `shortcut="identity"` would have to remove
            channels, or `zero_init` is combined with `shortcut="none"`.
    """
    _check_block_args(x, filters, stride, shortcut, stride_at, EXPANSION["bottleneck"], zero_init)
    if name is None:
        name = f"bottleneck_block_{keras.backend.get_uid('bottleneck_block')}"
    first, middle = (stride, 1) if stride_at == "v1" else (1, stride)
    convs = [(filters, 1, first), (filters, 3, middle), (EXPANSION["bottleneck"] * filters, 1, 1)]
    return _residual(
        x, convs, stride=stride, shortcut=shortcut, preact=preact, zero_init=zero_init,
        bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=name,
    )


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}
