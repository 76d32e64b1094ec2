"""ResNet builders: variants are data tables, one private builder, thin public functions.

Three families share `_build` and its layer names (stem `conv1_*`, stages `conv2`, `conv3`, ...,
blocks `conv2_block1_*`, head `avg_pool` / `predictions`):

* ImageNet ResNet-18...152 (He et al. 2015, Table 1): `resnet`, `resnet18`, ..., `resnet152`.
* CIFAR ResNets of depth 6n+2 (He et al. 2015, Sec. 4.2): `cifar_resnet`, `plain_cifar`.
* The lab's small from-scratch network: `build_resnet` with `SEED_STAGES`, and `scratch_model`,
  the same behind a `Rescaling` so that it takes pixels in 0..255 (`rescaled`).

The three levels of keras.applications: a block (`resnet_lab.nn.blocks`), a stage of blocks
(`stage`, Keras' `stack`, d2l's `resnet_block`), one builder (`_build`).

References:
    He et al. 2015, "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
    He et al. 2016, "Identity Mappings in Deep Residual Networks", arXiv:1603.05027.
    Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
        arXiv:1706.02677.
"""

import numbers

import keras
from keras import layers

from resnet_lab import hardware
from resnet_lab.nn.blocks import (
    BLOCKS,
    BN_EPSILON,
    BN_MOMENTUM,
    DATA_FORMAT,
    SHORTCUTS,
    STRIDE_AT,
)
from resnet_lab.checks import check_choice, check_positive_int, is_positive_int

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

# The lab's seed network as (filters, blocks) per stage: a ResNet-14 of CIFAR shape.
SEED_STAGES = ((16, 2), (32, 2), (64, 2))

POOLINGS = (None, "avg", "max")


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
        x = BLOCKS[block](x, filters, stride=stride if index == 1 else 1,
                          name=f"{name}_block{index}", **options)
    return x


def _build(
    *,
    input_shape,
    stages,
    block,
    shortcut,
    stride_at,
    stem_filters,
    stem_kernel,
    stem_stride,
    stem_pool,
    preact,
    zero_init_residual,
    bn_momentum,
    bn_epsilon,
    include_top,
    pooling,
    num_classes,
    classifier_activation,
    dropout,
    name,
):
    """Builds every ResNet in this module: stem, stages of blocks, head."""
    check_choice("block", block, tuple(BLOCKS))
    check_choice("shortcut", shortcut, SHORTCUTS)
    check_choice("stride_at", stride_at, STRIDE_AT)
    check_choice("pooling", pooling, POOLINGS)
    check_choice("stem_stride", stem_stride, (1, 2))
    check_positive_int("stem_filters", stem_filters)
    check_positive_int("num_classes", num_classes)
    _check_stages(stages)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    # Every stage but the first starts with stride 2.
    total_stride = stem_stride * (2 if stem_pool else 1) * 2 ** (len(stages) - 1)
    _check_input_shape(input_shape, total_stride)

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.ZeroPadding2D(stem_kernel // 2, data_format=DATA_FORMAT, name="conv1_pad")(inputs)
    x = layers.Conv2D(
        stem_filters,
        stem_kernel,
        strides=stem_stride,
        use_bias=False,
        kernel_initializer="he_normal",
        data_format=DATA_FORMAT,
        name="conv1_conv",
    )(x)
    if not preact or stem_pool:
        # A bare pre-activation stem lets the first block's BN-ReLU activate it (the CIFAR
        # nets); a pooling stem is conv-BN-ReLU-pool in both orderings (He et al. 2016,
        # ImageNet models), since max-pooling a raw convolution is not what they trained.
        x = layers.BatchNormalization(
            momentum=bn_momentum, epsilon=bn_epsilon, name="conv1_bn"
        )(x)
        x = layers.Activation("relu", name="conv1_relu")(x)
    if stem_pool:
        x = layers.ZeroPadding2D(1, data_format=DATA_FORMAT, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, data_format=DATA_FORMAT, name="pool1_pool")(x)

    options = {"stride_at": stride_at} if block == "bottleneck" else {}
    for index, (filters, blocks) in enumerate(stages, start=2):
        x = stage(x, block, filters, blocks, stride=1 if index == 2 else 2, name=f"conv{index}",
                  shortcut=shortcut, preact=preact, zero_init=zero_init_residual,
                  bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, **options)
    if preact:
        # Pre-activation blocks end in an addition: normalise and activate once before the
        # head (He et al. 2016: "an extra activation right after its element-wise
        # addition" for the last unit).
        x = layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name="post_bn")(x)
        x = layers.Activation("relu", name="post_relu")(x)

    if include_top:
        x = layers.GlobalAveragePooling2D(data_format=DATA_FORMAT, name="avg_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        # Under a mixed policy (bfloat16 or float16 arithmetic) the classifier still computes
        # in float32: a softmax in bfloat16 rounds probabilities to 8 bits, so its log does
        # not learn (Keras' mixed precision guide: the model's output in float32).
        mixed = keras.mixed_precision.dtype_policy().compute_dtype != "float32"
        x = layers.Dense(num_classes, activation=classifier_activation, name="predictions",
                         dtype="float32" if mixed else None)(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(data_format=DATA_FORMAT, name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(data_format=DATA_FORMAT, name="max_pool")(x)
    return keras.Model(inputs, x, name=name)


def resnet(
    depth,
    include_top=True,
    pooling=None,
    input_shape=None,
    num_classes=1000,
    classifier_activation="softmax",
    stride_at="v1",
    preact=False,
    zero_init_residual=False,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """ImageNet ResNet of He et al. 2015 (Table 1), without conv biases.

    Stem: 7x7/2 conv with 64 filters, BN, ReLU, 3x3/2 max pool; then stages `conv2`..`conv5`
    with 64, 128, 256, 512 filters (basic blocks for depths 18/34, bottlenecks x4 for 50+),
    stride 2 at the start of `conv3`..`conv5`, projection shortcuts (option B). Layer names
    match keras.applications `ResNet50/101/152` wherever the layer exists there; see
    `resnet_lab.nn.porting.port_keras_weights` for its ImageNet weights.

    Args:
        depth: One of `18, 34, 50, 101, 152` (`IMAGENET_STAGES`).
        include_top: Add global average pooling (`avg_pool`) and the classifier
            (`predictions`).
        pooling: With `include_top=False`: `None` (4-D feature map), `"avg"` or `"max"`
            global pooling. Ignored when `include_top=True`, as in keras.applications.
        input_shape: `(height, width, channels)`; defaults to `(224, 224, 3)` with the top,
            `(None, None, 3)` without.
        num_classes: Classifier units, with `include_top=True`.
        classifier_activation: Activation of `predictions`; `None` returns logits.
        stride_at: Bottlenecks only: `"v1"` (stride on the first 1x1, paper and
            keras.applications) or `"v1.5"` (stride on the 3x3, torchvision). Basic blocks
            always stride their first 3x3.
        preact: Pre-activation blocks (He et al. 2016), a bare stem and a final
            `post_bn`/`post_relu`.
        zero_init_residual: Start every residual branch at zero (Goyal et al. 2017).
        bn_momentum: BatchNorm momentum (Keras default `0.99`).
        bn_epsilon: BatchNorm epsilon (`1.001e-5` as keras.applications).
        name: Model name; defaults to `"resnet{depth}"` (`"preact_resnet{depth}"`).

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: If `depth` is not in `IMAGENET_STAGES`, `pooling` or `stride_at` is
            unknown, `input_shape` is not 3-D or smaller than the total stride (32).
    """
    check_choice("depth", depth, tuple(IMAGENET_STAGES))
    block, counts = IMAGENET_STAGES[depth]
    if input_shape is None:
        input_shape = (224, 224, 3) if include_top else (None, None, 3)
    return _build(
        input_shape=input_shape,
        stages=tuple(zip(IMAGENET_FILTERS, counts)),
        block=block,
        shortcut="projection",
        stride_at=stride_at,
        stem_filters=64,
        stem_kernel=7,
        stem_stride=2,
        stem_pool=True,
        preact=preact,
        zero_init_residual=zero_init_residual,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        include_top=include_top,
        pooling=pooling,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout=0.0,
        name=name or f"{'preact_' if preact else ''}resnet{depth}",
    )


def resnet18(
    include_top=True,
    pooling=None,
    input_shape=None,
    num_classes=1000,
    classifier_activation="softmax",
    stride_at="v1",
    preact=False,
    zero_init_residual=False,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """ResNet-18: basic blocks, (2, 2, 2, 2) per stage (He et al. 2015, Table 1); arguments as `resnet`."""
    return resnet(18, include_top=include_top, pooling=pooling, input_shape=input_shape,
                  num_classes=num_classes, classifier_activation=classifier_activation,
                  stride_at=stride_at, preact=preact, zero_init_residual=zero_init_residual,
                  bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=name)


def resnet34(
    include_top=True,
    pooling=None,
    input_shape=None,
    num_classes=1000,
    classifier_activation="softmax",
    stride_at="v1",
    preact=False,
    zero_init_residual=False,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """ResNet-34: basic blocks, (3, 4, 6, 3) per stage (He et al. 2015, Table 1); arguments as `resnet`."""
    return resnet(34, include_top=include_top, pooling=pooling, input_shape=input_shape,
                  num_classes=num_classes, classifier_activation=classifier_activation,
                  stride_at=stride_at, preact=preact, zero_init_residual=zero_init_residual,
                  bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=name)


def resnet50(
    include_top=True,
    pooling=None,
    input_shape=None,
    num_classes=1000,
    classifier_activation="softmax",
    stride_at="v1",
    preact=False,
    zero_init_residual=False,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """ResNet-50: bottleneck blocks, (3, 4, 6, 3) per stage (He et al. 2015, Table 1); arguments as `resnet`."""
    return resnet(50, include_top=include_top, pooling=pooling, input_shape=input_shape,
                  num_classes=num_classes, classifier_activation=classifier_activation,
                  stride_at=stride_at, preact=preact, zero_init_residual=zero_init_residual,
                  bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=name)


def resnet101(
    include_top=True,
    pooling=None,
    input_shape=None,
    num_classes=1000,
    classifier_activation="softmax",
    stride_at="v1",
    preact=False,
    zero_init_residual=False,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """ResNet-101: bottleneck blocks, (3, 4, 23, 3) per stage (He et al. 2015, Table 1); arguments as `resnet`."""
    return resnet(101, include_top=include_top, pooling=pooling, input_shape=input_shape,
                  num_classes=num_classes, classifier_activation=classifier_activation,
                  stride_at=stride_at, preact=preact, zero_init_residual=zero_init_residual,
                  bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=name)


def resnet152(
    include_top=True,
    pooling=None,
    input_shape=None,
    num_classes=1000,
    classifier_activation="softmax",
    stride_at="v1",
    preact=False,
    zero_init_residual=False,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    name=None,
):
    """ResNet-152: bottleneck blocks, (3, 8, 36, 3) per stage (He et al. 2015, Table 1); arguments as `resnet`."""
    return resnet(152, include_top=include_top, pooling=pooling, input_shape=input_shape,
                  num_classes=num_classes, classifier_activation=classifier_activation,
                  stride_at=stride_at, preact=preact, zero_init_residual=zero_init_residual,
                  bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=name)


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
        input_shape: `(height, width, channels)`; any size of at least 4 works.
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
    if not is_positive_int(depth) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            "`depth` must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...). "
            f"Received: depth={depth!r}"
        )
    n = (depth - 2) // 6
    return _build(
        input_shape=input_shape,
        stages=tuple((filters, n) for filters in CIFAR_FILTERS),
        block="basic",
        shortcut=shortcut,
        stride_at="v1",
        stem_filters=16,
        stem_kernel=3,
        stem_stride=1,
        stem_pool=False,
        preact=preact,
        zero_init_residual=zero_init_residual,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        include_top=True,
        pooling=None,
        num_classes=num_classes,
        classifier_activation="softmax",
        dropout=0.0,
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
    return _build(
        input_shape=input_shape,
        stages=stages,
        block=block,
        shortcut=shortcut,
        stride_at="v1.5",
        stem_filters=stem_filters,
        stem_kernel=3,
        stem_stride=stem_stride,
        stem_pool=stem_pool,
        preact=preact,
        zero_init_residual=zero_init_residual,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        include_top=True,
        pooling=None,
        num_classes=num_classes,
        classifier_activation="softmax",
        dropout=dropout,
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

    Returns:
        A `keras.Model` taking float images in 0..255.
    """
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
        return rescaled(net, name=name)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
