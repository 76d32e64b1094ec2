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
    Xie et al. 2017, "Aggregated Residual Transformations for Deep Neural Networks"
        (ResNeXt), arXiv:1611.05431.
    Zagoruyko & Komodakis 2016, "Wide Residual Networks", arXiv:1605.07146.
    He et al. 2019, "Bag of Tricks for Image Classification with Convolutional Neural
        Networks" (ResNet-D), arXiv:1812.01187.
"""

import keras
from keras import layers

from resnet_lab.checks import check_choice, check_positive_int

# "avgpool" is ResNet-D's projection (He et al. 2019); listed first so the paper's three
# options read in their order after it.
SHORTCUTS = ("avgpool", "projection", "identity", "none")
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


def _conv(
    x, filters, kernel_size, stride, name, zero=False, groups=1, use_bias=False, padding=None
):
    # No bias by default: the BatchNorm that follows subtracts the mean and adds its own beta.
    # "same" on a stride-2 3x3 pads an even input by (0, 1), not torchvision's (1, 1): the
    # shapes agree, but torchvision weights would need explicit padding to match exactly.
    if padding is None:
        padding = "same" if kernel_size > 1 else "valid"
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding=padding,
        groups=groups,
        use_bias=use_bias,
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


def _relu(x, name):
    return layers.Activation("relu", name=name)(x)


def _shortcut(
    x, preactivated, out_channels, *, stride, shortcut, preact, bn_momentum, bn_epsilon, name
):
    """The skip path: `None` (plain net), identity, projection (B), avg-pool projection (D) or A."""
    in_channels = x.shape[-1]
    if shortcut == "none":
        return None
    if stride == 1 and in_channels == out_channels:
        return x
    if shortcut in ("projection", "avgpool"):
        # Pre-activation units project the pre-activated input, with no BN after it
        # (He et al. 2016): the next unit's BN normalises the sum.
        y = preactivated if preact else x
        if shortcut == "avgpool" and stride == 2:
            # ResNet-D (He et al. 2019, Sec. 4.1): a strided 1x1 conv drops 3/4 of its input,
            # an average pool first lets every input reach the sum. "same" averages only the
            # real values at an odd border, as timm's `ceil_mode=True, count_include_pad=False`.
            y = layers.AveragePooling2D(
                2, strides=2, padding="same", data_format=DATA_FORMAT, name=f"{name}_0_pool"
            )(y)
            stride = 1
        y = _conv(y, out_channels, 1, stride, f"{name}_0_conv")
        return y if preact else _bn(y, f"{name}_0_bn", bn_momentum, bn_epsilon)
    # Option A (He et al. 2015, Sec. 4.2): x[:, ::2, ::2, :], then zero channels appended.
    if stride == 2:
        x = layers.MaxPooling2D(1, strides=2, data_format=DATA_FORMAT, name=f"{name}_0_pool")(x)
    if out_channels > in_channels:
        # Read as channels_first, ZeroPadding2D pads the last two axes (width, channels): a
        # built-in layer pads the channel axis, so saving needs no custom objects.
        x = layers.ZeroPadding2D(
            ((0, 0), (0, out_channels - in_channels)),
            data_format="channels_first",
            name=f"{name}_0_pad",
        )(x)
    return x


def _add(skip, y, name):
    """The residual sum; the branch alone in a plain network (`skip is None`)."""
    return y if skip is None else layers.Add(name=f"{name}_add")([skip, y])


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
            `"avgpool"`: the same, but a stride-2 projection is a 2x2/2 average pool and a
            stride-1 1x1 conv (ResNet-D, He et al. 2019). `"identity"`: parameter-free
            option A, subsampling `x[:, ::2, ::2, :]` and appending zero channels.
            `"none"`: the plain counterpart, same layers, no addition.
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
    name = name or f"basic_block_{keras.backend.get_uid('basic_block')}"
    skip = {
        "stride": stride,
        "shortcut": shortcut,
        "preact": preact,
        "name": name,
        "bn_momentum": bn_momentum,
        "bn_epsilon": bn_epsilon,
    }

    def bn(y, suffix, zero=False):
        return _bn(y, f"{name}_{suffix}", bn_momentum, bn_epsilon, zero=zero)

    if preact:
        # He et al. 2016, Fig. 4(e): BN-ReLU-conv, BN-ReLU-conv, add; the sum stays as it is.
        a = _relu(bn(x, "preact_bn"), f"{name}_preact_relu")
        s = _shortcut(x, a, filters, **skip)
        y = _conv(a, filters, 3, stride, f"{name}_1_conv")
        y = _relu(bn(y, "1_bn"), f"{name}_1_relu")
        # The branch ends in a conv, so zero_init zeroes its kernel: a zero gamma followed
        # by ReLU would get no gradient (ReLU'(0) = 0) and never train.
        y = _conv(y, filters, 3, 1, f"{name}_2_conv", zero=zero_init)
        return _add(s, y, name)
    # He et al. 2015, Fig. 2: conv-BN-ReLU, conv-BN, add, ReLU.
    s = _shortcut(x, x, filters, **skip)
    y = _conv(x, filters, 3, stride, f"{name}_1_conv")
    y = _relu(bn(y, "1_bn"), f"{name}_1_relu")
    y = _conv(y, filters, 3, 1, f"{name}_2_conv")
    y = bn(y, "2_bn", zero=zero_init)
    return _relu(_add(s, y, name), f"{name}_out")


def bottleneck_width(filters, groups=1, width_per_group=64):
    """Channels of a bottleneck's 3x3 convolution, torchvision's rule.

    `int(filters * width_per_group / 64) * groups`: `filters` for ResNet (`groups=1,
    width_per_group=64`), `2 * filters` for Wide ResNet-50-2 (`width_per_group=128`, Zagoruyko
    & Komodakis 2016), `filters / 2` per group times 32 groups for ResNeXt-50 32x4d (Xie et al.
    2017, Table 1: 128 channels in conv2 where ResNet-50 has 64).

    Args:
        filters: The block's `filters` (it outputs `4 * filters` channels).
        groups: Groups of the 3x3 convolution (ResNeXt's cardinality).
        width_per_group: Channels per group, for a stage with `filters=64`.

    Returns:
        An `int`, a multiple of `groups`.

    Raises:
        ValueError: If an argument is not a positive integer, or the width would be 0.
    """
    for argument, value in (
        ("filters", filters),
        ("groups", groups),
        ("width_per_group", width_per_group),
    ):
        check_positive_int(argument, value)
    width = int(filters * width_per_group / 64) * groups
    if width < 1:
        raise ValueError(
            "`filters * width_per_group / 64` must be at least 1. "
            f"Received: filters={filters}, width_per_group={width_per_group}"
        )
    return width


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
    groups=1,
    width_per_group=64,
    name=None,
):
    """Bottleneck residual block: 1x1, 3x3, 1x1 convolutions (He et al. 2015, Fig. 5 right).

    The 1x1 convolutions reduce to `bottleneck_width(filters, groups, width_per_group)`
    channels (`filters` by default) and expand to `4 * filters` (`EXPANSION["bottleneck"]`).
    A grouped 3x3 (`groups > 1`, Keras' `Conv2D(groups=...)`) makes it ResNeXt's block (Xie et
    al. 2017, Fig. 3(c)); a larger `width_per_group` makes it Wide ResNet's. Activation
    ordering and shortcuts as in `basic_block`. On TensorFlow 2.21's CPU kernels a grouped
    Conv2D runs forward and backward (tested), but slowly: ResNeXt-50 infers at about 0.3x
    ResNet-50's images/s for 1.1x its multiply-adds (`benchmarks/family.py`).

    Where the stride sits:
        `"v1"`: on the first 1x1 convolution (`{name}_1_conv`), as in the paper and
        keras.applications `ResNet50`; required to port its weights.
        `"v1.5"`: on the 3x3 convolution (`{name}_2_conv`), as torchvision, timm and NVIDIA's
        "ResNet v1.5": a strided 1x1 discards 3/4 of its input, a strided 3x3 sees all of it
        (slightly more accurate, slightly slower).

    Args:
        x: 4-D input tensor `(batch, height, width, channels)`.
        filters: Bottleneck filters; the block outputs `4 * filters` channels.
        stride: `1` or `2`; `2` halves height and width.
        shortcut: `"projection"`, `"avgpool"`, `"identity"` or `"none"`, as in `basic_block`.
        stride_at: `"v1"` or `"v1.5"`, see above.
        preact: Use pre-activation ordering (He et al. 2016).
        zero_init: Start the residual branch at zero (Goyal et al. 2017), as in `basic_block`.
        bn_momentum: Momentum of the BatchNorm moving statistics.
        bn_epsilon: BatchNorm epsilon (`1.001e-5` as keras.applications).
        groups: Groups of the 3x3 convolution (torchvision's `groups`).
        width_per_group: torchvision's `width_per_group` (`64` for ResNet).
        name: Prefix of every layer name, e.g. `"conv2_block1"`; a unique one if `None`.

    Returns:
        The output tensor, `4 * filters` channels, spatial size divided by `stride`
        (rounded up).

    Raises:
        ValueError: If `x` is not 4-D, `filters`, `groups` or `width_per_group` not a positive
            integer, `stride` not 1 or 2, `shortcut` or `stride_at` unknown,
            `shortcut="identity"` would have to remove channels, or `zero_init` is combined
            with `shortcut="none"`.
    """
    out = EXPANSION["bottleneck"] * filters
    _check_block_args(x, filters, stride, shortcut, stride_at, EXPANSION["bottleneck"], zero_init)
    width = bottleneck_width(filters, groups, width_per_group)
    name = name or f"bottleneck_block_{keras.backend.get_uid('bottleneck_block')}"
    first, middle = (stride, 1) if stride_at == "v1" else (1, stride)
    skip = {
        "stride": stride,
        "shortcut": shortcut,
        "preact": preact,
        "name": name,
        "bn_momentum": bn_momentum,
        "bn_epsilon": bn_epsilon,
    }

    def bn(y, suffix, zero=False):
        return _bn(y, f"{name}_{suffix}", bn_momentum, bn_epsilon, zero=zero)

    if preact:
        # He et al. 2016: (BN-ReLU-conv) x 3, add; the sum stays as it is.
        a = _relu(bn(x, "preact_bn"), f"{name}_preact_relu")
        s = _shortcut(x, a, out, **skip)
        y = _conv(a, width, 1, first, f"{name}_1_conv")
        y = _relu(bn(y, "1_bn"), f"{name}_1_relu")
        y = _conv(y, width, 3, middle, f"{name}_2_conv", groups=groups)
        y = _relu(bn(y, "2_bn"), f"{name}_2_relu")
        y = _conv(y, out, 1, 1, f"{name}_3_conv", zero=zero_init)
        return _add(s, y, name)
    # He et al. 2015, Fig. 5: conv-BN-ReLU (1x1), conv-BN-ReLU (3x3), conv-BN (1x1), add, ReLU.
    s = _shortcut(x, x, out, **skip)
    y = _conv(x, width, 1, first, f"{name}_1_conv")
    y = _relu(bn(y, "1_bn"), f"{name}_1_relu")
    y = _conv(y, width, 3, middle, f"{name}_2_conv", groups=groups)
    y = _relu(bn(y, "2_bn"), f"{name}_2_relu")
    y = _conv(y, out, 1, 1, f"{name}_3_conv")
    y = bn(y, "3_bn", zero=zero_init)
    return _relu(_add(s, y, name), f"{name}_out")


def keras_v2_block(
    x,
    filters,
    stride=1,
    conv_shortcut=False,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """keras.applications' ResNetV2 unit (`residual_block_v2`), layer for layer.

    A pre-activation bottleneck, BN-ReLU then 1x1, 3x3, 1x1, as He et al. 2016, but where
    keras.applications' ImageNet weights were trained differently from the paper (and from
    `bottleneck_block(..., preact=True)`, which follows the paper):

    * the stride sits on the 3x3 (`{name}_2_conv`, explicitly padded by `{name}_2_pad` and
      `"valid"`, so an even input is padded (1, 1)) of the LAST block of a stage, not the first;
    * the shortcut of a strided unit is a 1x1/2 max pool of the raw input (`{name}_0_pool`,
      the paper's would be a projection), and only the first unit of each stage projects, with
      a 1x1 conv of stride 1 on the pre-activated input;
    * the projection `{name}_0_conv` and the last conv `{name}_3_conv` carry biases (no
      BatchNorm follows them, so the bias is not redundant here);
    * the addition is named `{name}_out`, as keras.applications names it.

    Args:
        x: 4-D input tensor.
        filters: Bottleneck filters; the unit outputs `4 * filters` channels.
        stride: `1` or `2` (on the 3x3).
        conv_shortcut: Project the shortcut with a 1x1 conv (the first unit of a stage).
        bn_momentum: Momentum of the BatchNorm moving statistics.
        bn_epsilon: BatchNorm epsilon (`1.001e-5` as keras.applications).
        name: Prefix of every layer name, e.g. `"conv2_block1"`; a unique one if `None`.

    Returns:
        The output tensor, `4 * filters` channels.

    Raises:
        ValueError: As `bottleneck_block`, for `x`, `filters` and `stride`.
    """
    _check_block_args(x, filters, stride, "projection", "v1", EXPANSION["bottleneck"], False)
    name = name or f"keras_v2_block_{keras.backend.get_uid('keras_v2_block')}"
    out = EXPANSION["bottleneck"] * filters

    def bn(y, suffix):
        return _bn(y, f"{name}_{suffix}", bn_momentum, bn_epsilon)

    a = _relu(bn(x, "preact_bn"), f"{name}_preact_relu")
    if conv_shortcut:
        s = _conv(a, out, 1, stride, f"{name}_0_conv", use_bias=True)
    elif stride > 1:
        s = layers.MaxPooling2D(1, strides=stride, data_format=DATA_FORMAT, name=f"{name}_0_pool")(
            x
        )
    else:
        s = x
    y = _conv(a, filters, 1, 1, f"{name}_1_conv")
    y = _relu(bn(y, "1_bn"), f"{name}_1_relu")
    y = layers.ZeroPadding2D(1, data_format=DATA_FORMAT, name=f"{name}_2_pad")(y)
    y = _conv(y, filters, 3, stride, f"{name}_2_conv", padding="valid")
    y = _relu(bn(y, "2_bn"), f"{name}_2_relu")
    y = _conv(y, out, 1, 1, f"{name}_3_conv", use_bias=True)
    return layers.Add(name=f"{name}_out")([s, y])


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}
