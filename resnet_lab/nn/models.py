"""ResNet builders: variants are data tables, one private builder, thin public functions.

Three families share `_build` and its layer names (stem `conv1_*`, stages `conv2`, `conv3`, ...,
blocks `conv2_block1_*`, head `avg_pool` / `predictions`):

* ImageNet ResNet-18...152 (He et al. 2015, Table 1): `resnet`, `resnet18`, ..., `resnet152`,
  and their descendants as data over the same stage table (`VARIANTS`): ResNeXt
  (`resnext50_32x4d`, `resnext101_32x8d`, `resnext101_64x4d`), Wide ResNet (`wide_resnet50_2`,
  `wide_resnet101_2`) with torchvision's exact counts, and timm's ResNet-D (`resnet50d`).
* keras.applications' ResNet V2, layer for layer: `resnet_v2`, `resnet50v2`, ... (its own stem
  and block, `blocks.keras_v2_block`, since keras' V2 is not He et al. 2016's network).
* CIFAR ResNets of depth 6n+2 (He et al. 2015, Sec. 4.2): `cifar_resnet`, `plain_cifar`.
* The lab's small from-scratch network: `build_resnet` with `SEED_STAGES`, and `scratch_model`,
  the same behind a `Rescaling` so that it takes pixels in 0..255 (`rescaled`).

The ImageNet builders take keras.applications' arguments by the same names (`weights`,
`input_tensor`, `input_shape`, `include_top`, `pooling`, `classes`, `classifier_activation`).
For ImageNet inputs and labels use keras.applications' own `keras.applications.resnet.
preprocess_input` (V1: caffe, BGR minus the mean), `keras.applications.resnet_v2.
preprocess_input` (V2: scaled to -1..1) and `decode_predictions`: the lab re-exports none.

The three levels of keras.applications: a block (`resnet_lab.nn.blocks`), a stage of blocks
(`stage`, Keras' `stack`, d2l's `resnet_block`), one builder (`_build`).

References:
    He et al. 2015, "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
    He et al. 2016, "Identity Mappings in Deep Residual Networks", arXiv:1603.05027.
    Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
        arXiv:1706.02677.
"""

import numbers
import os

import keras
from keras import layers

from resnet_lab import hardware
from resnet_lab.checks import check_choice, check_positive_int, is_positive_int
from resnet_lab.nn import blocks as blocks_lib
from resnet_lab.nn import porting
from resnet_lab.nn.blocks import (
    BLOCKS,
    BN_EPSILON,
    BN_MOMENTUM,
    DATA_FORMAT,
    SHORTCUTS,
    STRIDE_AT,
)
from resnet_lab.nn.layers import FusedBatchNormalization, replace_batchnorm
from resnet_lab.nn.porting import KERAS_RESNETS

# `scratch_model`'s BatchNorm: Keras' layer, or the lab's around TensorFlow's fused kernel.
BATCH_NORMS = ("keras", "fused")

# depth: (block type, blocks per stage); stage filters are IMAGENET_FILTERS (Table 1).
IMAGENET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_FILTERS = (64, 128, 256, 512)
CIFAR_FILTERS = (16, 32, 64)
# The CIFAR nets' total stride, hence their smallest image: a stride-1 stem without pooling,
# then stride 2 at the start of every stage but the first (He et al. 2015, Sec. 4.2).
CIFAR_TOTAL_STRIDE = 2 ** (len(CIFAR_FILTERS) - 1)

# The lab's seed network as (filters, blocks) per stage: a ResNet-14 of CIFAR shape.
SEED_STAGES = ((16, 2), (32, 2), (64, 2))

POOLINGS = (None, "avg", "max")
STEMS = ("single", "deep")

# The family as data: name -> (depth, options of `resnet`) over the same stage table. torchvision
# (ResNeXt, Wide ResNet) and timm (ResNet-D) stride the 3x3 of a bottleneck ("v1.5").
VARIANTS = {
    "resnext50_32x4d": (50, {"groups": 32, "width_per_group": 4, "stride_at": "v1.5"}),
    "resnext101_32x8d": (101, {"groups": 32, "width_per_group": 8, "stride_at": "v1.5"}),
    "resnext101_64x4d": (101, {"groups": 64, "width_per_group": 4, "stride_at": "v1.5"}),
    "wide_resnet50_2": (50, {"width_per_group": 128, "stride_at": "v1.5"}),
    "wide_resnet101_2": (101, {"width_per_group": 128, "stride_at": "v1.5"}),
    "resnet50d": (50, {"stem": "deep", "shortcut": "avgpool", "stride_at": "v1.5"}),
}


def _check_input_shape(input_shape, total_stride):
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(
            "`input_shape` must be a 3-tuple (height, width, channels). "
            f"Received: input_shape={input_shape!r}"
        )
    height, width, channels = input_shape
    if not is_positive_int(channels):
        raise ValueError(
            "`input_shape` must end with a known channel count. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    for size in (height, width):
        if size is not None and (not isinstance(size, numbers.Integral) or size < total_stride):
            raise ValueError(
                f"`input_shape` is too small: this network downsamples by a total stride of "
                f"{total_stride}, so height and width must be at least {total_stride} "
                f"(or None). Received: input_shape={tuple(input_shape)}"
            )


def _check_stages(stages):
    if (
        not isinstance(stages, (tuple, list))
        or not stages
        or not all(isinstance(stage, (tuple, list)) and len(stage) == 2 for stage in stages)
        or not all(is_positive_int(f) and is_positive_int(b) for f, b in stages)
    ):
        raise ValueError(
            "`stages` must be a non-empty sequence of (filters, blocks) pairs of positive "
            f"integers, e.g. {SEED_STAGES}. Received: stages={stages!r}"
        )


def stage(x, block, filters, blocks, stride, name, **options):
    """A stage: `blocks` residual blocks of one width; the first may downsample.

    Keras' `stack` in keras.applications, d2l's `resnet_block`. The first block takes
    `stride` and, where the shape changes, a shortcut that matches it (see `shortcut` in
    `resnet_lab.nn.blocks.basic_block`); the others keep the shape and use identity shortcuts.

    Args:
        x: 4-D input tensor.
        block: `"basic"` or `"bottleneck"`.
        filters: Filters of every block (bottlenecks output `4 * filters` channels).
        blocks: Number of blocks, at least 1.
        stride: Stride of the first block, `1` or `2`.
        name: Stage prefix, e.g. `"conv3"`: blocks are named `conv3_block1`, `conv3_block2`, ...
        **options: Block arguments shared by every block (`shortcut`, `preact`, `zero_init`,
            `bn_momentum`, `bn_epsilon`, and `stride_at` for bottlenecks).

    Returns:
        The output tensor of the last block.

    Raises:
        ValueError: If `block` is unknown or `blocks` is not a positive integer, or a block
            rejects its arguments.
    """
    check_choice("block", block, tuple(BLOCKS))
    check_positive_int("blocks", blocks)
    for index in range(1, blocks + 1):
        x = BLOCKS[block](
            x, filters, stride=stride if index == 1 else 1, name=f"{name}_block{index}", **options
        )
    return x


def _check_keras_arguments(
    weights, include_top, classes, input_shape, classifier_activation, has_imagenet
):
    """keras.applications' argument checks (`keras/src/applications/resnet.py`), its errors."""
    if not (weights in ("imagenet", None) or os.path.exists(str(weights))):
        raise ValueError(
            "The `weights` argument should be either `None` (random initialization), "
            "'imagenet' (pre-training on ImageNet), or the path to the weights file to be "
            f"loaded. Received: weights={weights!r}"
        )
    if weights == "imagenet" and not has_imagenet:
        raise ValueError(
            "keras.applications has no ImageNet weights for this network (only for "
            "resnet50/101/152 and their V2, with the default structure). "
            "Received: weights='imagenet'"
        )
    check_positive_int("classes", classes)
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            "If using `weights='imagenet'` with `include_top=True`, `classes` should be 1000. "
            f"Received: classes={classes}"
        )
    if weights == "imagenet" and include_top and input_shape not in (None, (224, 224, 3)):
        raise ValueError(
            "When setting `include_top=True` and loading `imagenet` weights, `input_shape` "
            f"should be (224, 224, 3). Received: input_shape={input_shape}"
        )
    if weights is not None and include_top and classifier_activation not in (None, "softmax"):
        raise ValueError(
            "Only `None` and `softmax` activations are allowed for the "
            "`classifier_activation` argument when using pretrained weights, with "
            f"`include_top=True`. Received: classifier_activation={classifier_activation!r}"
        )


def _inputs(input_tensor, input_shape, include_top, total_stride):
    """`(graph input, model inputs)`: a new `input` layer, or keras.applications' `input_tensor`."""
    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise ValueError(
                "`input_tensor` must be a Keras tensor (`keras.Input(...)` or a layer's "
                f"output). Received: input_tensor={input_tensor!r}"
            )
        shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tuple(input_shape) != shape:
            raise ValueError(
                "`input_shape` and `input_tensor` disagree. Received: "
                f"input_shape={tuple(input_shape)}, input_tensor.shape={input_tensor.shape}"
            )
        _check_input_shape(shape, total_stride)
        return input_tensor, keras.utils.get_source_inputs(input_tensor)
    if input_shape is None:
        input_shape = (224, 224, 3) if include_top else (None, None, 3)
    _check_input_shape(input_shape, total_stride)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    return inputs, inputs


def _stem(x, *, stem, filters, kernel, stride, pool, preact, bn_momentum, bn_epsilon):
    """`conv1_*` (one conv, or ResNet-D's three) and the optional `pool1_*` max pool."""

    def conv_bn_relu(x, filters, kernel, stride, prefix):
        x = layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            data_format=DATA_FORMAT,
            name=f"{prefix}_conv",
        )(x)
        x = layers.BatchNormalization(
            momentum=bn_momentum, epsilon=bn_epsilon, name=f"{prefix}_bn"
        )(x)
        return layers.Activation("relu", name=f"{prefix}_relu")(x)

    if stem == "deep":
        # ResNet-C (He et al. 2019, Sec. 4.2; timm's `stem_type="deep"`): three 3x3 convs,
        # 32-32-64 channels, cost about what one 7x7 costs and see as far.
        x = conv_bn_relu(x, filters // 2, 3, stride, "conv1_1")
        x = conv_bn_relu(x, filters // 2, 3, 1, "conv1_2")
        x = conv_bn_relu(x, filters, 3, 1, "conv1_3")
    else:
        x = layers.ZeroPadding2D(kernel // 2, data_format=DATA_FORMAT, name="conv1_pad")(x)
        x = layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            use_bias=False,
            kernel_initializer="he_normal",
            data_format=DATA_FORMAT,
            name="conv1_conv",
        )(x)
        if not preact or pool:
            # A bare pre-activation stem lets the first block's BN-ReLU activate it (the CIFAR
            # nets); a pooling stem is conv-BN-ReLU-pool in both orderings (He et al. 2016,
            # ImageNet models), since max-pooling a raw convolution is not what they trained.
            x = layers.BatchNormalization(
                momentum=bn_momentum, epsilon=bn_epsilon, name="conv1_bn"
            )(x)
            x = layers.Activation("relu", name="conv1_relu")(x)
    if pool:
        x = layers.ZeroPadding2D(1, data_format=DATA_FORMAT, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, data_format=DATA_FORMAT, name="pool1_pool")(x)
    return x


def _head(x, *, include_top, pooling, classes, classifier_activation, dropout):
    """keras.applications' head: `avg_pool` + `predictions`, or `avg_pool`/`max_pool`/nothing."""
    if include_top:
        x = layers.GlobalAveragePooling2D(data_format=DATA_FORMAT, name="avg_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        # Under a mixed policy (bfloat16 or float16 arithmetic) the classifier still computes
        # in float32: a softmax in bfloat16 rounds probabilities to 8 bits, so its log does
        # not learn (Keras' mixed precision guide: the model's output in float32).
        mixed = keras.mixed_precision.dtype_policy().compute_dtype != "float32"
        return layers.Dense(
            classes,
            activation=classifier_activation,
            name="predictions",
            dtype="float32" if mixed else None,
        )(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(data_format=DATA_FORMAT, name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(data_format=DATA_FORMAT, name="max_pool")(x)
    return x


def _load(model, weights, keras_name, include_top):
    """keras.applications' `weights=`: ImageNet (downloaded) or a file, ported or loaded."""
    if weights == "imagenet":
        weights = porting.imagenet_weights_path(keras_name, include_top)
    if weights is not None and keras_name:
        porting.port_keras_weights(str(weights), model)
    elif weights is not None:
        model.load_weights(weights)
    return model


def _build(*, input_shape, stages, block, stem, preact, head, name, input_tensor=None, **options):
    """Builds every ResNet V1 and pre-activation ResNet: stem, stages of blocks, head.

    `stem` holds `_stem`'s settings, `head` `_head`'s; `options` are the block arguments
    shared by every block (`shortcut`, `stride_at`, `zero_init`, `bn_momentum`, ...).
    """
    check_choice("block", block, tuple(BLOCKS))
    check_choice("shortcut", options["shortcut"], SHORTCUTS)
    stride_at = check_choice("stride_at", options.pop("stride_at"), STRIDE_AT)
    check_choice("stem", stem["stem"], STEMS)
    check_choice("stem_stride", stem["stride"], (1, 2))
    check_positive_int("stem_filters", stem["filters"])
    check_choice("pooling", head["pooling"], POOLINGS)
    _check_stages(stages)
    if not 0.0 <= head["dropout"] < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={head['dropout']!r}")
    if block == "bottleneck":
        options["stride_at"] = stride_at
    elif (options.pop("groups", 1), options.pop("width_per_group", 64)) != (1, 64):
        raise ValueError(
            "`groups` and `width_per_group` are bottleneck options (torchvision's rule). "
            f"Received: block={block!r}"
        )
    # Every stage but the first starts with stride 2.
    total_stride = stem["stride"] * (2 if stem["pool"] else 1) * 2 ** (len(stages) - 1)
    x, inputs = _inputs(input_tensor, input_shape, head["include_top"], total_stride)
    x = _stem(
        x,
        **stem,
        preact=preact,
        bn_momentum=options["bn_momentum"],
        bn_epsilon=options["bn_epsilon"],
    )
    for index, (filters, blocks) in enumerate(stages, start=2):
        x = stage(
            x,
            block,
            filters,
            blocks,
            stride=1 if index == 2 else 2,
            name=f"conv{index}",
            preact=preact,
            **options,
        )
    if preact:
        # Pre-activation blocks end in an addition: normalise and activate once before the
        # head (He et al. 2016: "an extra activation right after its element-wise
        # addition" for the last unit).
        x = layers.BatchNormalization(
            momentum=options["bn_momentum"], epsilon=options["bn_epsilon"], name="post_bn"
        )(x)
        x = layers.Activation("relu", name="post_relu")(x)
    return keras.Model(inputs, _head(x, **head), name=name)


def resnet(
    depth,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    *,
    stride_at="v1",
    preact=False,
    zero_init_residual=False,
    groups=1,
    width_per_group=64,
    stem="single",
    shortcut="projection",
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """ImageNet ResNet of He et al. 2015 (Table 1) and its descendants, without conv biases.

    Stem: 7x7/2 conv with 64 filters, BN, ReLU, 3x3/2 max pool; then stages `conv2`..`conv5`
    with 64, 128, 256, 512 filters (basic blocks for depths 18/34, bottlenecks x4 for 50+),
    stride 2 at the start of `conv3`..`conv5`, projection shortcuts (option B). Layer names
    match keras.applications `ResNet50/101/152` wherever the layer exists there. ResNeXt,
    Wide ResNet and ResNet-D are the same stage table with other options (`VARIANTS`).

    The first eight arguments are keras.applications' (`keras.applications.ResNet50`), by the
    same names, meanings and checks, except that `weights` defaults to `None` (no download
    unless asked for).

    Args:
        depth: One of `18, 34, 50, 101, 152` (`IMAGENET_STAGES`).
        include_top: Add global average pooling (`avg_pool`) and the classifier
            (`predictions`).
        weights: `None` (random initialisation), `"imagenet"` (keras.applications' file,
            downloaded once by `keras.utils.get_file` and ported: depths 50/101/152 with the
            default structure only) or a path: a keras.applications weights file for those
            (ported), a file written by `model.save_weights` for the others.
        input_tensor: A Keras tensor to use as the input, e.g. another model's output.
        input_shape: `(height, width, channels)`; defaults to `(224, 224, 3)` with the top,
            `(None, None, 3)` without (or `input_tensor`'s shape).
        pooling: With `include_top=False`: `None` (4-D feature map), `"avg"` or `"max"`
            global pooling. Ignored when `include_top=True`, as in keras.applications.
        classes: Classifier units, with `include_top=True` (1000 with ImageNet weights).
        classifier_activation: Activation of `predictions`; `None` returns logits.
        stride_at: Bottlenecks only: `"v1"` (stride on the first 1x1, paper and
            keras.applications) or `"v1.5"` (stride on the 3x3, torchvision and timm).
            Basic blocks always stride their first 3x3.
        preact: Pre-activation blocks as He et al. 2016 (arXiv:1603.05027) define them: the
            stride in the FIRST block of a stage, projections on the pre-activated input, no
            conv biases, a conv-BN-ReLU-pool stem and a final `post_bn`/`post_relu`. This is
            not keras.applications' `ResNet50V2`, which strides the last block of a stage and
            keeps conv biases: for that use `resnet50v2` (see `blocks.keras_v2_block`).
        zero_init_residual: Start every residual branch at zero (Goyal et al. 2017).
        groups: Groups of every bottleneck's 3x3 (ResNeXt's cardinality, Xie et al. 2017).
        width_per_group: torchvision's `width_per_group`: `64` for ResNet, `128` for Wide
            ResNet-50-2, `4` with `groups=32` for ResNeXt-50 32x4d.
        stem: `"single"` (one 7x7 conv) or `"deep"` (three 3x3 convs, 32-32-64, ResNet-C).
        shortcut: `"projection"` (option B) or `"avgpool"` (ResNet-D's pooled projection).
        bn_momentum: BatchNorm momentum (Keras default `0.99`).
        bn_epsilon: BatchNorm epsilon (`1.001e-5` as keras.applications).
        name: Model name; defaults to `"resnet{depth}"` (`"preact_resnet{depth}"`).

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: If `depth` is not in `IMAGENET_STAGES`, an option is unknown, `input_shape`
            is not 3-D or smaller than the total stride (32), or keras.applications would
            reject the `weights`/`classes`/`input_shape`/`input_tensor` combination.
        resnet_lab.nn.porting.WeightsUnavailableError: If ImageNet weights cannot be
            downloaded (offline).
    """
    check_choice("depth", depth, tuple(IMAGENET_STAGES))
    block, counts = IMAGENET_STAGES[depth]
    mirrors_keras = (
        depth in KERAS_RESNETS.values()
        and not preact
        and groups == 1
        and width_per_group == 64
        and stem == "single"
        and shortcut == "projection"
    )
    _check_keras_arguments(
        weights,
        include_top,
        classes,
        input_shape,
        classifier_activation,
        has_imagenet=mirrors_keras,
    )
    model = _build(
        input_shape=input_shape,
        input_tensor=input_tensor,
        stages=tuple(zip(IMAGENET_FILTERS, counts)),
        block=block,
        stem={"stem": stem, "filters": 64, "kernel": 7, "stride": 2, "pool": True},
        preact=preact,
        head={
            "include_top": include_top,
            "pooling": pooling,
            "classes": classes,
            "classifier_activation": classifier_activation,
            "dropout": 0.0,
        },
        name=name or f"{'preact_' if preact else ''}resnet{depth}",
        shortcut=check_choice("shortcut", shortcut, ("projection", "avgpool")),
        stride_at=stride_at,
        zero_init=zero_init_residual,
        groups=groups,
        width_per_group=width_per_group,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
    )
    return _load(model, weights, f"resnet{depth}" if mirrors_keras else None, include_top)


def _imagenet(depth, keras_arguments, options, variant=None):
    """A thin public builder: `resnet(depth, ...)` with a `VARIANTS` entry's options."""
    depth, chosen = VARIANTS[variant] if variant else (depth, {})
    return resnet(depth, *keras_arguments, **{"name": variant, **chosen, **options})


def resnet18(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """ResNet-18: basic blocks, (2, 2, 2, 2) per stage (He et al. 2015); arguments as `resnet`."""
    return _imagenet(
        18,
        (include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation),
        options,
    )


def resnet34(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """ResNet-34: basic blocks, (3, 4, 6, 3) per stage (He et al. 2015); arguments as `resnet`."""
    return _imagenet(
        34,
        (include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation),
        options,
    )


def resnet50(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """ResNet-50: bottlenecks, (3, 4, 6, 3) per stage (He et al. 2015); arguments as `resnet`."""
    return _imagenet(
        50,
        (include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation),
        options,
    )


def resnet101(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """ResNet-101: bottlenecks, (3, 4, 23, 3) per stage (He et al. 2015); arguments as `resnet`."""
    return _imagenet(
        101,
        (include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation),
        options,
    )


def resnet152(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """ResNet-152: bottlenecks, (3, 8, 36, 3) per stage (He et al. 2015); arguments as `resnet`."""
    return _imagenet(
        152,
        (include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation),
        options,
    )


def resnext50_32x4d(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """ResNeXt-50 32x4d (Xie et al. 2017), torchvision's; arguments as `resnet`."""
    return _imagenet(
        None,
        (include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation),
        options,
        "resnext50_32x4d",
    )


def resnext101_32x8d(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """ResNeXt-101 32x8d (Xie et al. 2017), torchvision's; arguments as `resnet`."""
    return _imagenet(
        None,
        (include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation),
        options,
        "resnext101_32x8d",
    )


def resnext101_64x4d(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """ResNeXt-101 64x4d (Xie et al. 2017), torchvision's; arguments as `resnet`."""
    return _imagenet(
        None,
        (include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation),
        options,
        "resnext101_64x4d",
    )


def wide_resnet50_2(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016), torchvision's; arguments as `resnet`."""
    return _imagenet(
        None,
        (include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation),
        options,
        "wide_resnet50_2",
    )


def wide_resnet101_2(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """Wide ResNet-101-2 (Zagoruyko & Komodakis 2016), torchvision's; arguments as `resnet`."""
    return _imagenet(
        None,
        (include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation),
        options,
        "wide_resnet101_2",
    )


def resnet50d(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """ResNet-50-D (He et al. 2019, Bag of Tricks), timm's `resnet50d`; arguments as `resnet`."""
    return _imagenet(
        None,
        (include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation),
        options,
        "resnet50d",
    )


def _keras_v2_stage(x, filters, blocks, stride, name, **bn):
    # keras.applications' `stack_residual_blocks_v2`: project in block 1, stride in the last.
    x = blocks_lib.keras_v2_block(x, filters, conv_shortcut=True, name=f"{name}_block1", **bn)
    for index in range(2, blocks):
        x = blocks_lib.keras_v2_block(x, filters, name=f"{name}_block{index}", **bn)
    return blocks_lib.keras_v2_block(x, filters, stride=stride, name=f"{name}_block{blocks}", **bn)


def resnet_v2(
    depth,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    *,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """keras.applications' ResNet V2 (`ResNet50V2`...), layer for layer and parameter for parameter.

    A pre-activation ResNet (He et al. 2016) as keras.applications built it for its ImageNet
    weights, which differs from the paper and from `resnet(depth, preact=True)`: the stem conv
    (`conv1_conv`, 7x7/2) has a bias and no BatchNorm before the max pool; each stage strides
    its LAST block, on the 3x3 (conv5 does not stride); shortcut projections and each block's
    last 1x1 carry biases (see `resnet_lab.nn.blocks.keras_v2_block`). Same names as keras,
    except keras' unnamed 1x1 max pools of strided shortcuts, here `conv{s}_block{b}_0_pool`.

    Args:
        depth: `50`, `101` or `152`.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation: keras.applications' arguments, as in `resnet`; the weights
            files are `resnet{depth}v2_*` (ported by `porting.port_keras_weights`).
        bn_momentum: BatchNorm momentum (Keras default `0.99`).
        bn_epsilon: BatchNorm epsilon (`1.001e-5` as keras.applications).
        name: Model name; defaults to `"resnet{depth}v2"`.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: As `resnet`.
    """
    check_choice("depth", depth, tuple(KERAS_RESNETS.values()))
    check_choice("pooling", pooling, POOLINGS)
    _check_keras_arguments(
        weights, include_top, classes, input_shape, classifier_activation, has_imagenet=True
    )
    x, inputs = _inputs(input_tensor, input_shape, include_top, 32)
    x = layers.ZeroPadding2D(3, data_format=DATA_FORMAT, name="conv1_pad")(x)
    x = layers.Conv2D(64, 7, strides=2, data_format=DATA_FORMAT, name="conv1_conv")(x)
    x = layers.ZeroPadding2D(1, data_format=DATA_FORMAT, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, data_format=DATA_FORMAT, name="pool1_pool")(x)
    bn = {"bn_momentum": bn_momentum, "bn_epsilon": bn_epsilon}
    stages = zip(IMAGENET_FILTERS, IMAGENET_STAGES[depth][1], (2, 2, 2, 1))
    for index, (filters, blocks, stride) in enumerate(stages, start=2):
        x = _keras_v2_stage(x, filters, blocks, stride, f"conv{index}", **bn)
    x = layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name="post_bn")(x)
    x = layers.Activation("relu", name="post_relu")(x)
    x = _head(
        x,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=0.0,
    )
    model = keras.Model(inputs, x, name=name or f"resnet{depth}v2")
    return _load(model, weights, f"resnet{depth}v2", include_top)


def resnet50v2(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """keras.applications' `ResNet50V2`; arguments as `resnet_v2`."""
    return resnet_v2(
        50,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        **options,
    )


def resnet101v2(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """keras.applications' `ResNet101V2`; arguments as `resnet_v2`."""
    return resnet_v2(
        101,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        **options,
    )


def resnet152v2(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    **options,
):
    """keras.applications' `ResNet152V2`; arguments as `resnet_v2`."""
    return resnet_v2(
        152,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        **options,
    )


def check_cifar_depth(depth):
    """Checks a CIFAR network depth: `6n + 2` with `n >= 1` (He et al. 2015, Sec. 4.2).

    `n` basic blocks of two convolutions in each of the three stages, plus the stem and the
    classifier: 8, 14, 20, 26, 32, ... layers.

    Args:
        depth: The depth to check.

    Returns:
        `depth` as an `int`.

    Raises:
        ValueError: If `depth` is not an integer `6n + 2` with `n >= 1`, e.g.
            `... Received: depth=57`.
    """
    if not is_positive_int(depth) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            "`depth` must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, ...; the paper uses 20, 32, "
            f"44, 56, 110). Received: depth={depth!r}"
        )
    return int(depth)


def cifar_resnet(
    depth,
    num_classes=10,
    input_shape=(32, 32, 3),
    shortcut="projection",
    preact=False,
    zero_init_residual=False,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """CIFAR ResNet of depth 6n+2 (He et al. 2015, Sec. 4.2).

    A 3x3 conv with 16 filters, three stages of `n` basic blocks with 16, 32, 64 filters
    (stride 2 at the start of the second and third), global average pooling and a softmax
    classifier: `6n` convs in the blocks, plus the stem and the classifier. The paper uses
    `shortcut="identity"` (option A: ResNet-20 has 0.27M parameters).

    Args:
        depth: `6n + 2` with `n >= 1`: 8, 14, 20, 32, 44, 56, 110, ...
        num_classes: Classifier units.
        input_shape: `(height, width, channels)`; any size of at least `CIFAR_TOTAL_STRIDE`
            (4) works.
        shortcut: `"projection"` (option B), `"identity"` (option A, parameter-free) or
            `"none"` (the plain network of the paper's Fig. 6).
        preact: Pre-activation blocks (He et al. 2016).
        zero_init_residual: Start every residual branch at zero (Goyal et al. 2017).
        bn_momentum: BatchNorm momentum.
        bn_epsilon: BatchNorm epsilon.
        name: Model name; defaults to `"cifar_resnet{depth}"`.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: If `depth` is not 6n+2 with n >= 1, `shortcut` is unknown,
            `zero_init_residual` is set without a shortcut, or `input_shape` is bad.
    """
    n = (check_cifar_depth(depth) - 2) // 6
    check_positive_int("num_classes", num_classes)
    return _build(
        input_shape=input_shape,
        stages=tuple((filters, n) for filters in CIFAR_FILTERS),
        block="basic",
        stem={"stem": "single", "filters": 16, "kernel": 3, "stride": 1, "pool": False},
        preact=preact,
        head={
            "include_top": True,
            "pooling": None,
            "classes": num_classes,
            "classifier_activation": "softmax",
            "dropout": 0.0,
        },
        shortcut=shortcut,
        stride_at="v1",
        zero_init=zero_init_residual,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        name=name or f"cifar_resnet{depth}",
    )


def plain_cifar(
    depth,
    num_classes=10,
    input_shape=(32, 32, 3),
    preact=False,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """Plain CIFAR network of depth 6n+2: `cifar_resnet` with the shortcuts removed.

    The same layers as the residual network, without the additions (He et al. 2015, Sec. 4.2,
    Fig. 6 left): the deeper plain nets train worse, the degradation problem.

    Args:
        depth: `6n + 2` with `n >= 1`.
        num_classes: Classifier units.
        input_shape: `(height, width, channels)`.
        preact: BN-ReLU-conv ordering, as the pre-activation residual net.
        bn_momentum: BatchNorm momentum.
        bn_epsilon: BatchNorm epsilon.
        name: Model name; defaults to `"plain_cifar{depth}"`.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: As `cifar_resnet`.
    """
    return cifar_resnet(
        depth,
        num_classes=num_classes,
        input_shape=input_shape,
        shortcut="none",
        preact=preact,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        name=name or f"plain_cifar{depth}",
    )


def build_resnet(
    input_shape=(None, None, 3),
    num_classes=17,
    stages=SEED_STAGES,
    block="basic",
    shortcut="projection",
    stem_filters=16,
    stem_stride=1,
    stem_pool=False,
    preact=False,
    dropout=0.0,
    zero_init_residual=False,
    bn_momentum=0.9,
    bn_epsilon=1e-3,
    name="resnet_seed",
):
    """The lab's small ResNet, trained from scratch; its shape is a table of stages.

    Default (the seed): 3x3 conv with 16 filters, basic blocks 16, 16, 32 (stride 2), 32,
    64 (stride 2), 64, global average pooling, optional dropout, softmax over `num_classes`.
    Any input size works. Wider or deeper variants are other `stages` tables; for larger
    images use `stem_stride=2, stem_pool=True` (ImageNet-style 4x downsampling in the stem).

    `bn_momentum` defaults to `0.9`, not Keras' `0.99`: on a small data set an epoch is a few
    dozen steps, and moving statistics averaged over ~100 steps (0.99) lag far behind the
    weights, so inference-mode accuracy trails training accuracy for many epochs.

    Args:
        input_shape: `(height, width, channels)`; `None` for a spatial size means any.
        num_classes: Classifier units.
        stages: `(filters, blocks)` per stage; every stage but the first starts with stride 2.
            Bottleneck stages output `4 * filters` channels.
        block: `"basic"` or `"bottleneck"` (stride on the 3x3, `"v1.5"`).
        shortcut: `"projection"` (option B), `"identity"` (option A) or `"none"` (plain net).
        stem_filters: Filters of the 3x3 stem convolution.
        stem_stride: `1` or `2`.
        stem_pool: Add a 3x3/2 max pool after the stem (`pool1_pad`, `pool1_pool`).
        preact: Pre-activation blocks (He et al. 2016).
        dropout: Dropout rate before the classifier (`top_dropout`), in `[0, 1)`.
        zero_init_residual: Start every residual branch at zero (Goyal et al. 2017).
        bn_momentum: BatchNorm momentum, see above.
        bn_epsilon: BatchNorm epsilon.
        name: Model name.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: If `stages` is not a non-empty sequence of positive `(filters, blocks)`,
            `block`, `shortcut` or `stem_stride` is unknown, `dropout` is outside `[0, 1)`,
            or `input_shape` is not 3-D or smaller than the total stride.
    """
    check_positive_int("num_classes", num_classes)
    return _build(
        input_shape=input_shape,
        stages=stages,
        block=block,
        stem={
            "stem": "single",
            "filters": stem_filters,
            "kernel": 3,
            "stride": stem_stride,
            "pool": stem_pool,
        },
        preact=preact,
        head={
            "include_top": True,
            "pooling": None,
            "classes": num_classes,
            "classifier_activation": "softmax",
            "dropout": dropout,
        },
        shortcut=shortcut,
        stride_at="v1.5",
        zero_init=zero_init_residual,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        name=name,
    )


def rescaled(net, name=None):
    """Wrap `net` so it takes pixels in 0..255: `Rescaling(1/255)` then `net`.

    The lab's pipelines keep images in 0..255 and leave model-specific preprocessing to the
    model, so one pipeline serves from-scratch and pretrained networks alike, and a saved
    model carries its own preprocessing.

    Args:
        net: A `keras.Model` with a fixed input shape.
        name: Name of the wrapping model (default: `net.name`).

    Returns:
        A `keras.Model` with layers `image`, `rescale` and `net` (nested).
    """
    inputs = keras.Input(net.input_shape[1:], name="image")
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    return keras.Model(inputs, net(x), name=name or net.name)


def scratch_model(
    image_size=64,
    num_classes=17,
    stages=SEED_STAGES,
    stem_filters=16,
    dropout=0.0,
    name="scratch_resnet",
    stem_stride=1,
    dtype_policy="float32",
    batch_norm="keras",
):
    """The from-scratch classifier: `build_resnet` behind a 0..255 -> 0..1 rescaling.

    `resnet_lab.training.SCRATCH_RECIPE` holds the measured settings; `train_scratch` passes
    them here.

    Args:
        image_size: Square input size in pixels (or `None` for any size).
        num_classes: Number of classes.
        stages: `(filters, blocks)` per stage, as in `build_resnet`.
        stem_filters: Filters of the 3x3 stem convolution.
        dropout: Dropout rate before the classifier.
        name: Model name.
        stem_stride: `1`, or `2` to halve the resolution in the stem (wider stages at a
            quarter of the pixels cost about what the narrow ones cost at full resolution).
        dtype_policy: Keras dtype policy of the layers: `"float32"`, `"mixed_bfloat16"`
            (float32 weights, bfloat16 arithmetic: about 1.4x faster on CPUs with AVX-512
            BF16, slower where bfloat16 is emulated; `benchmarks/README.md`, item 8), or
            `"auto"`: bfloat16 where it is native
            (`resnet_lab.hardware.resolve_dtype_policy`). The classifier
            computes in float32 either way. Keras' global policy is restored.
        batch_norm: `"keras"` (Keras' `BatchNormalization`: the model loads with Keras
            alone) or `"fused"` (`resnet_lab.nn.layers.FusedBatchNormalization`, TensorFlow's
            fused kernel: the same function, about 1.4x the bfloat16 training step here,
            `benchmarks/README.md` item 8; loading the model needs `import resnet_lab`).

    Returns:
        A `keras.Model` taking float images in 0..255.

    Raises:
        ValueError: If `batch_norm` is not one of `BATCH_NORMS`.
    """
    check_choice("batch_norm", batch_norm, BATCH_NORMS)
    dtype_policy = hardware.resolve_dtype_policy(dtype_policy)
    previous = keras.mixed_precision.dtype_policy()
    # Layers take the global policy when they are created: set it for this model only.
    keras.mixed_precision.set_dtype_policy(dtype_policy)
    try:
        net = build_resnet(
            input_shape=(image_size, image_size, 3),
            num_classes=num_classes,
            stages=tuple(tuple(s) for s in stages),
            stem_filters=stem_filters,
            stem_stride=stem_stride,
            dropout=dropout,
        )
        if batch_norm == "fused":
            net = replace_batchnorm(net, FusedBatchNormalization)
        return rescaled(net, name=name)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
