"""ResNet builders: exact parameter counts, shapes, names, plain vs residual, saving, errors."""

import re

import keras
import numpy as np
import pytest

from resnet_lab.nn.models import (
    CIFAR_TOTAL_STRIDE,
    SEED_STAGES,
    build_resnet,
    check_cifar_depth,
    cifar_resnet,
    plain_cifar,
    resnet,
    resnet18,
    resnet50,
    scratch_model,
    stage,
)


def count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def counts(model):
    return count(model.trainable_weights), count(model.non_trainable_weights)


def signature(model):
    return [(layer.name, type(layer).__name__) for layer in model.layers]


# Trainable counts are torchvision's `num_params` for the same nets (no conv bias before
# BN); non-trainable are the BN moving mean and variance, two per BN channel.
@pytest.mark.parametrize(
    "depth, expected",
    [
        (18, (11_689_512, 9_600)),
        (34, (21_797_672, 17_024)),
        (50, (25_557_032, 53_120)),
        pytest.param(101, (44_549_160, 105_344), marks=pytest.mark.slow),
        pytest.param(152, (60_192_808, 151_424), marks=pytest.mark.slow),
    ],
)
def test_imagenet_parameter_counts(depth, expected):
    model = resnet(depth)
    assert counts(model) == expected
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 1000)


# He et al. 2015, Table 6 lists these nets with option A (0.27M for ResNet-20).
CIFAR_COUNTS = {
    20: (272_474, 269_722),
    32: (466_906, 464_154),
    44: (661_338, 658_586),
    56: (855_770, 853_018),
    110: (1_730_714, 1_727_962),
}


def cifar_non_trainable(depth, projection):
    # Moving mean and variance per BN channel: stem 16, two BNs per block, and the BNs of
    # the two projection shortcuts (32 and 64 channels).
    n = (depth - 2) // 6
    return 2 * (16 + 2 * n * (16 + 32 + 64) + (32 + 64 if projection else 0))


@pytest.mark.parametrize("depth", [20, 32, 44, 56, pytest.param(110, marks=pytest.mark.slow)])
def test_cifar_parameter_counts(depth):
    projection, option_a = CIFAR_COUNTS[depth]
    assert counts(cifar_resnet(depth)) == (projection, cifar_non_trainable(depth, True))
    assert counts(cifar_resnet(depth, shortcut="identity")) == (
        option_a,
        cifar_non_trainable(depth, False),
    )
    assert counts(plain_cifar(depth)) == (option_a, cifar_non_trainable(depth, False))


def test_cifar_shapes():
    model = cifar_resnet(20)
    assert model.output_shape == (None, 10)
    stage_outputs = {
        f"conv{s}_block3_out": model.get_layer(f"conv{s}_block3_out").output.shape
        for s in (2, 3, 4)
    }
    assert stage_outputs == {
        "conv2_block3_out": (None, 32, 32, 16),
        "conv3_block3_out": (None, 16, 16, 32),
        "conv4_block3_out": (None, 8, 8, 64),
    }


@pytest.mark.parametrize("preact", (False, True))
def test_plain_is_residual_minus_additions(preact):
    plain = plain_cifar(20, preact=preact)
    residual = cifar_resnet(20, shortcut="identity", preact=preact)
    # Drop the additions and option A's parameter-free shortcut layers (`_0_pool`, `_0_pad`).
    kept = [
        (name, kind)
        for name, kind in signature(residual)
        if not name.endswith("_add") and "_0_" not in name
    ]
    assert signature(plain) == kept
    assert not any(kind == "Add" for _, kind in signature(plain))
    assert sum(kind == "Add" for _, kind in signature(residual)) == 9


def test_seed_network_is_the_default_table():
    model = build_resnet()
    assert SEED_STAGES == ((16, 2), (32, 2), (64, 2))
    assert model.name == "resnet_seed"
    assert model.input_shape == (None, None, None, 3)
    assert model.output_shape == (None, 17)
    assert counts(model) == (175_713, 1_120)
    blocks = [
        name[: -len("_out")]
        for name in (layer.name for layer in model.layers)
        if name.endswith("_out")
    ]
    assert blocks == [
        "conv2_block1",
        "conv2_block2",
        "conv3_block1",
        "conv3_block2",
        "conv4_block1",
        "conv4_block2",
    ]
    filters = [model.get_layer(f"{block}_2_conv").filters for block in blocks]
    assert filters == [16, 16, 32, 32, 64, 64]
    # Few steps per epoch on small data: faster-moving BN statistics than Keras' 0.99.
    assert model.get_layer("conv1_bn").momentum == 0.9


def test_seed_network_runs_at_any_size():
    model = build_resnet()
    stages = keras.Model(
        model.input,
        [model.get_layer(f"conv{s}_block2_out").output for s in (2, 3, 4)] + [model.output],
    )
    for size in (32, 57, 96):
        outputs = stages(np.zeros((2, size, size, 3), "float32"), training=False)
        half, quarter = -(-size // 2), -(-size // 4)
        assert [tuple(o.shape) for o in outputs] == [
            (2, size, size, 16),
            (2, half, half, 32),
            (2, quarter, quarter, 64),
            (2, 17),
        ]
        np.testing.assert_allclose(np.sum(outputs[-1], axis=-1), 1.0, rtol=1e-5)


def test_seed_variants_through_the_same_arguments():
    model = build_resnet(
        input_shape=(128, 128, 3),
        stages=((32, 2), (64, 2), (128, 2), (256, 2)),
        stem_filters=32,
        stem_stride=2,
        stem_pool=True,
        dropout=0.3,
        num_classes=17,
    )
    assert model.get_layer("conv5_block2_out").output.shape == (None, 4, 4, 256)
    assert model.get_layer("top_dropout").rate == 0.3
    assert model.output_shape == (None, 17)

    wide = build_resnet(
        input_shape=(64, 64, 3),
        block="bottleneck",
        preact=True,
        shortcut="identity",
        zero_init_residual=True,
    )
    assert wide.get_layer("conv4_block2_add").output.shape == (None, 16, 16, 256)
    assert wide.get_layer("conv3_block1_2_conv").strides == (2, 2), "bottleneck v1.5"
    assert "post_bn" in [layer.name for layer in wide.layers]


NAME = re.compile(
    r"^(input|conv1_(pad|conv|bn|relu)|pool1_(pad|pool)|post_(bn|relu)"
    r"|conv\d+_block\d+_(\d_(conv|bn|relu|pool|pad)|preact_(bn|relu)|add|out)"
    r"|avg_pool|max_pool|top_dropout|predictions)$"
)


@pytest.mark.parametrize(
    "build",
    [
        lambda: resnet18(),
        lambda: resnet50(include_top=False, pooling="max", preact=True),
        lambda: cifar_resnet(14, shortcut="identity"),
        lambda: build_resnet(dropout=0.5, stem_pool=True),
    ],
    ids=["resnet18", "resnet50-preact", "cifar14-A", "seed"],
)
def test_names_are_hierarchical_and_unique(build):
    model = build()
    layer_names = [layer.name for layer in model.layers]
    assert len(set(layer_names)) == len(layer_names)
    assert [name for name in layer_names if not NAME.match(name)] == []


def test_resnet50_names_match_keras_applications():
    ours = resnet50(include_top=True)
    theirs = keras.applications.ResNet50(weights=None)
    assert [layer.name for layer in ours.layers[1:]] == [layer.name for layer in theirs.layers[1:]]
    assert not any(
        getattr(layer, "use_bias", False)
        for layer in ours.layers
        if isinstance(layer, keras.layers.Conv2D)
    )
    # Keras' conv biases: 26,560 parameters that BatchNorm cancels.
    assert theirs.count_params() - ours.count_params() == 26_560


@pytest.mark.parametrize(
    "include_top, pooling, shape",
    [
        (True, None, (None, 1000)),
        (False, None, (None, None, None, 512)),
        (False, "avg", (None, 512)),
        (False, "max", (None, 512)),
    ],
)
def test_imagenet_heads(include_top, pooling, shape):
    model = resnet18(include_top=include_top, pooling=pooling)
    assert model.output_shape == shape
    if pooling:
        assert model.layers[-1].name == f"{pooling}_pool"


def test_imagenet_options():
    model = resnet18(
        input_shape=(64, 64, 3), classes=5, classifier_activation=None, zero_init_residual=True
    )
    assert model.get_layer("conv5_block2_out").output.shape == (None, 2, 2, 512)
    assert model.get_layer("predictions").activation is keras.activations.linear
    last_bns = [layer for layer in model.layers if re.fullmatch(r"conv\d_block\d_2_bn", layer.name)]
    assert len(last_bns) == 8
    assert all(np.all(layer.gamma.numpy() == 0.0) for layer in last_bns)

    v15 = resnet50(include_top=False, stride_at="v1.5")
    assert v15.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert v15.get_layer("conv3_block1_2_conv").strides == (2, 2)

    preact = resnet50(include_top=False, pooling="avg", preact=True)
    layer_names = [layer.name for layer in preact.layers]
    # The ImageNet pre-activation stem is conv -> BN -> ReLU -> max-pool (He et al. 2016):
    # the pool takes the activated convolution, not the raw one.
    assert layer_names[1:7] == [
        "conv1_pad",
        "conv1_conv",
        "conv1_bn",
        "conv1_relu",
        "pool1_pad",
        "pool1_pool",
    ]
    assert layer_names[-3:] == ["post_bn", "post_relu", "avg_pool"]
    assert preact.name == "preact_resnet50"


def test_preact_cifar_stem_stays_bare():
    # No pool in the CIFAR stem: the first unit's BN-ReLU activates the convolution.
    names = [layer.name for layer in cifar_resnet(8, preact=True).layers]
    assert "conv1_bn" not in names and "pool1_pool" not in names
    assert names[names.index("conv1_conv") + 1] == "conv2_block1_preact_bn"


def test_stage_builds_named_blocks_and_downsamples_once():
    inputs = keras.Input((16, 16, 32))
    outputs = stage(inputs, "bottleneck", 16, 3, stride=2, name="conv3", shortcut="projection")
    model = keras.Model(inputs, outputs)
    names = {layer.name for layer in model.layers}
    assert {"conv3_block1_out", "conv3_block2_out", "conv3_block3_out"} <= names
    assert "conv3_block4_out" not in names
    assert outputs.shape == (None, 8, 8, 64)
    strided = [layer.name for layer in model.layers if getattr(layer, "strides", None) == (2, 2)]
    assert sorted(strided) == ["conv3_block1_0_conv", "conv3_block1_1_conv"]
    with pytest.raises(ValueError, match=r"Received: blocks=0"):
        stage(inputs, "basic", 16, 0, stride=1, name="s")


@pytest.mark.parametrize(
    "build",
    [
        lambda: build_resnet(
            input_shape=(16, 16, 3), stages=((8, 1), (16, 1)), stem_filters=8, shortcut="identity"
        ),
        lambda: resnet18(input_shape=(32, 32, 3), classes=4),
        lambda: cifar_resnet(8, input_shape=(16, 16, 3), preact=True),
    ],
)
def test_global_channels_first_setting_builds_the_same_network(build):
    """Keras' global image_data_format must not change the graph: every layer says
    channels_last (today's bug: convolutions followed the global flag, BatchNorm did not)."""
    keras.utils.set_random_seed(0)
    reference = build()
    x = np.random.default_rng(0).random((2, *reference.input_shape[1:])).astype("float32")
    before = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        model = build()
    finally:
        keras.config.set_image_data_format(before)
    assert signature(model) == signature(reference)
    model.set_weights(reference.get_weights())
    np.testing.assert_allclose(model(x, training=False), reference(x, training=False), atol=1e-5)


def test_saves_and_loads_without_custom_objects(tmp_path):
    # Option A shortcuts (pool + channel padding) are the layers most likely to break saving.
    model = build_resnet(
        input_shape=(16, 16, 3),
        stages=((8, 1), (16, 1)),
        num_classes=3,
        stem_filters=8,
        shortcut="identity",
        dropout=0.2,
    )
    assert "conv3_block1_0_pad" in [layer.name for layer in model.layers]
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    path = tmp_path / "seed.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert signature(loaded) == signature(model)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: resnet(42), r"18, 34, 50, 101, 152. Received: depth=42"),
        (
            lambda: resnet50(include_top=False, pooling="mean"),
            r"None, 'avg', 'max'. Received: pooling='mean'",
        ),
        (lambda: resnet50(stride_at="v2"), r"Received: stride_at='v2'"),
        (
            lambda: resnet50(input_shape=(16, 16, 3)),
            r"total stride of 32.*at least 32.*Received: input_shape=\(16, 16, 3\)",
        ),
        (lambda: resnet50(input_shape=(224, 224)), r"Received: input_shape=\(224, 224\)"),
        (lambda: cifar_resnet(57), r"6n\+2.*Received: depth=57"),
        (lambda: cifar_resnet(2), r"Received: depth=2"),
        (lambda: plain_cifar(21), r"Received: depth=21"),
        (lambda: cifar_resnet(20, shortcut="B"), r"Received: shortcut='B'"),
        (lambda: cifar_resnet(20, input_shape=(2, 2, 3)), r"at least 4"),
        (
            lambda: cifar_resnet(20, shortcut="none", zero_init_residual=True),
            r"Received: zero_init=True, shortcut='none'",
        ),
        (lambda: build_resnet(block="wide"), r"'basic', 'bottleneck'. Received: block='wide'"),
        (lambda: build_resnet(stages=()), r"Received: stages=\(\)"),
        (lambda: build_resnet(stages=((16, 0),)), r"Received: stages=\(\(16, 0\),\)"),
        (lambda: build_resnet(stages=(16, 32)), r"Received: stages=\(16, 32\)"),
        (
            lambda: build_resnet(input_shape=(32, 32, None)),
            r"known channel count. Received: input_shape=\(32, 32, None\)",
        ),
        (lambda: build_resnet(dropout=1.0), r"Received: dropout=1.0"),
        (lambda: build_resnet(num_classes=0), r"Received: num_classes=0"),
        (lambda: build_resnet(stem_stride=4), r"Received: stem_stride=4"),
        (
            lambda: build_resnet(input_shape=(8, 8, 3), stem_stride=2, stem_pool=True),
            r"total stride of 16",
        ),
    ],
)
def test_bad_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_scratch_model_stem_stride_halves_the_resolution_at_the_same_parameters():
    args = {"image_size": 32, "num_classes": 5, "stages": ((16, 1), (32, 1)), "stem_filters": 16}
    full = scratch_model(**args, stem_stride=1)
    strided = scratch_model(**args, stem_stride=2)
    assert full.count_params() == strided.count_params()
    assert full.get_layer("resnet_seed").get_layer("conv1_conv").output.shape[1:3] == (32, 32)
    assert strided.get_layer("resnet_seed").get_layer("conv1_conv").output.shape[1:3] == (16, 16)
    assert strided.get_layer("resnet_seed").get_layer("conv3_block1_out").output.shape[1:3] == (
        8,
        8,
    )


def test_scratch_model_in_mixed_bfloat16_computes_in_bfloat16_but_answers_in_float32():
    """Keras' mixed precision: float32 weights, bfloat16 convolutions; the classifier stays
    float32 (a bfloat16 softmax keeps 8 bits of each probability). The global policy is only
    borrowed."""
    args = {
        "image_size": 16,
        "num_classes": 5,
        "stages": ((16, 1), (32, 1)),
        "stem_filters": 16,
        "stem_stride": 2,
    }
    mixed = scratch_model(**args, dtype_policy="mixed_bfloat16")
    assert keras.mixed_precision.dtype_policy().name == "float32"
    net = mixed.get_layer("resnet_seed")
    conv = net.get_layer("conv2_block1_1_conv")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    assert net.get_layer("predictions").compute_dtype == "float32"
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    probs = mixed(x, training=False)
    assert str(probs.dtype) in ("float32", "<dtype: 'float32'>")
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, atol=1e-5)
    # Same architecture, same parameters; the arithmetic differs by bfloat16's rounding only.
    plain = scratch_model(**args)
    assert plain.count_params() == mixed.count_params()
    plain.set_weights(mixed.get_weights())
    np.testing.assert_allclose(np.asarray(plain(x, training=False)), np.asarray(probs), atol=0.05)
    with pytest.raises(ValueError, match="Received: dtype_policy='bfloat16'"):
        scratch_model(**args, dtype_policy="bfloat16")


def test_auto_dtype_policy_is_bfloat16_only_where_it_is_native(tmp_path, monkeypatch):
    from resnet_lab import hardware

    def cpuinfo(flags):
        path = tmp_path / f"cpuinfo-{len(flags)}"
        path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {' '.join(flags)}\n")
        return str(path)

    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert (
        hardware.resolve_dtype_policy("auto", cpuinfo(["avx512f", "avx512_bf16"]))
        == "mixed_bfloat16"
    )
    assert hardware.resolve_dtype_policy("auto", cpuinfo(["amx_bf16"])) == "mixed_bfloat16"
    assert hardware.resolve_dtype_policy("auto", cpuinfo(["avx512f"])) == "float32"
    assert hardware.resolve_dtype_policy("auto", str(tmp_path / "missing")) == "float32"
    assert hardware.resolve_dtype_policy("float32", cpuinfo(["avx512_bf16"])) == "float32"
    with pytest.raises(ValueError, match="Received: dtype_policy='fp8'"):
        hardware.resolve_dtype_policy("fp8")


@pytest.mark.parametrize("depth", [8, 14, 20, 26, 56, 110, np.int64(32)])
def test_check_cifar_depth_accepts_6n_plus_2(depth):
    checked = check_cifar_depth(depth)
    assert checked == depth and type(checked) is int


@pytest.mark.parametrize("depth", [57, 2, 0, -4, 21, 20.0, True, "20", None])
def test_check_cifar_depth_rejects_the_rest_and_both_builders_use_it(depth):
    message = rf"`depth` must be 6n\+2 with n >= 1 .*Received: depth={re.escape(repr(depth))}$"
    for check in (check_cifar_depth, cifar_resnet, plain_cifar):
        with pytest.raises(ValueError, match=message):
            check(depth)


def test_cifar_total_stride_is_the_smallest_image():
    """The last stage keeps one pixel from `CIFAR_TOTAL_STRIDE` on; one pixel less is refused."""
    model = cifar_resnet(8, input_shape=(CIFAR_TOTAL_STRIDE, CIFAR_TOTAL_STRIDE, 3))
    assert model.get_layer("conv4_block1_out").output.shape[1:3] == (1, 1)
    size = CIFAR_TOTAL_STRIDE - 1
    with pytest.raises(ValueError, match=f"total stride of {CIFAR_TOTAL_STRIDE}"):
        plain_cifar(8, input_shape=(size, size, 3))
