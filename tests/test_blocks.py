"""Residual blocks: exact shapes, layer placement, zero init, validation."""

import keras
import numpy as np
import pytest

from resnet_lab.nn.blocks import EXPANSION, basic_block, bottleneck_block

BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}
SHORTCUTS = ("projection", "identity", "none")
CHANNELS = 16


def is_in(tensor, tensors):
    # `in` would call KerasTensor.__eq__, which builds a symbolic op instead of comparing.
    return any(t is tensor for t in tensors)


def block_model(kind, filters, in_shape=(8, 8, CHANNELS), **kwargs):
    inputs = keras.Input(shape=in_shape)
    return keras.Model(inputs, BLOCKS[kind](inputs, filters, name="b", **kwargs))


def filters_for(kind, out_channels):
    return out_channels // EXPANSION[kind]


def names(model):
    return [layer.name for layer in model.layers]


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize("shortcut", SHORTCUTS)
@pytest.mark.parametrize("stride", (1, 2))
@pytest.mark.parametrize("out_channels", (CHANNELS, 2 * CHANNELS))
@pytest.mark.parametrize("preact", (False, True))
def test_output_shape(kind, shortcut, stride, out_channels, preact):
    model = block_model(
        kind, filters_for(kind, out_channels), stride=stride, shortcut=shortcut, preact=preact
    )
    y = model(np.random.rand(2, 8, 8, CHANNELS).astype("float32"), training=False)
    assert tuple(y.shape) == (2, 8 // stride, 8 // stride, out_channels)
    assert ("b_add" in names(model)) == (shortcut != "none")
    # A projection exists exactly when the shape changes (option B); option A has no weights.
    projects = shortcut == "projection" and (stride != 1 or out_channels != CHANNELS)
    assert ("b_0_conv" in names(model)) == projects


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize("shortcut", SHORTCUTS)
def test_odd_input_size_stride_2(kind, shortcut):
    # Both paths must agree on ceil(7 / 2) = 4, or the addition fails.
    model = block_model(
        kind, filters_for(kind, 32), in_shape=(7, 7, CHANNELS), stride=2, shortcut=shortcut
    )
    assert model.output_shape == (None, 4, 4, 32)


@pytest.mark.parametrize("kind", BLOCKS)
def test_post_activation_names_and_order(kind):
    model = block_model(kind, filters_for(kind, 32), stride=2)
    convs = 2 if kind == "basic" else 3
    expected = {"b_0_conv", "b_0_bn", "b_add", "b_out"}
    for index in range(1, convs + 1):
        expected |= {f"b_{index}_conv", f"b_{index}_bn"}
    expected |= {f"b_{index}_relu" for index in range(1, convs)}
    assert set(names(model)) - {model.layers[0].name} == expected
    assert isinstance(model.get_layer("b_out"), keras.layers.Activation)
    assert model.layers[-1].name == "b_out"


@pytest.mark.parametrize("kind", BLOCKS)
def test_preact_ordering(kind):
    model = block_model(kind, filters_for(kind, 32), stride=2, preact=True)
    layer_names = names(model)
    assert "b_preact_bn" in layer_names and "b_preact_relu" in layer_names
    assert "b_out" not in layer_names, "no ReLU after the addition (He et al. 2016)"
    assert model.layers[-1].name == "b_add"
    preactivated = model.get_layer("b_preact_relu").output
    # The projection shortcut and the branch both take the pre-activated input.
    assert model.get_layer("b_0_conv").input is preactivated
    assert model.get_layer("b_1_conv").input is preactivated
    assert "b_0_bn" not in layer_names
    # BN-ReLU-conv: the branch ends in a conv, which feeds the addition.
    last_conv = f"b_{2 if kind == 'basic' else 3}_conv"
    assert is_in(model.get_layer(last_conv).output, model.get_layer("b_add").input)


def test_preact_identity_shortcut_takes_raw_input():
    inputs = keras.Input(shape=(8, 8, CHANNELS))
    outputs = basic_block(inputs, CHANNELS, preact=True, name="b")
    model = keras.Model(inputs, outputs)
    assert is_in(inputs, model.get_layer("b_add").input)


@pytest.mark.parametrize("kind", BLOCKS)
def test_zero_init_zeroes_last_gamma(kind):
    model = block_model(kind, filters_for(kind, CHANNELS), zero_init=True)
    last = 2 if kind == "basic" else 3
    np.testing.assert_array_equal(model.get_layer(f"b_{last}_bn").gamma.numpy(), 0.0)
    for index in range(1, last):
        np.testing.assert_array_equal(model.get_layer(f"b_{index}_bn").gamma.numpy(), 1.0)
    default = block_model(kind, filters_for(kind, CHANNELS))
    np.testing.assert_array_equal(default.get_layer(f"b_{last}_bn").gamma.numpy(), 1.0)


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize("training", (False, True))
def test_zero_init_block_computes_its_shortcut(kind, training):
    x = np.random.default_rng(0).normal(size=(2, 8, 8, CHANNELS)).astype("float32")
    model = block_model(kind, filters_for(kind, CHANNELS), shortcut="identity", zero_init=True)
    np.testing.assert_allclose(model(x, training=training), np.maximum(x, 0.0), atol=1e-6)


@pytest.mark.parametrize("kind", BLOCKS)
def test_zero_init_option_a_subsamples_and_pads(kind):
    x = np.random.default_rng(1).normal(size=(2, 8, 8, CHANNELS)).astype("float32")
    model = block_model(
        kind, filters_for(kind, 2 * CHANNELS), stride=2, shortcut="identity", zero_init=True
    )
    expected = np.concatenate([x[:, ::2, ::2, :], np.zeros((2, 4, 4, CHANNELS))], axis=-1)
    np.testing.assert_allclose(model(x, training=False), np.maximum(expected, 0.0), atol=1e-6)


@pytest.mark.parametrize("kind", BLOCKS)
def test_zero_init_preact_zeroes_last_conv(kind):
    x = np.random.default_rng(2).normal(size=(2, 8, 8, CHANNELS)).astype("float32")
    model = block_model(kind, filters_for(kind, CHANNELS), preact=True, zero_init=True)
    last = 2 if kind == "basic" else 3
    np.testing.assert_array_equal(model.get_layer(f"b_{last}_conv").kernel.numpy(), 0.0)
    # A pre-activation unit with a zero branch is exactly the identity.
    np.testing.assert_allclose(model(x, training=False), x, atol=1e-6)


@pytest.mark.parametrize(
    "stride_at, strides",
    [
        ("v1", {"b_1_conv": (2, 2), "b_2_conv": (1, 1)}),
        ("v1.5", {"b_1_conv": (1, 1), "b_2_conv": (2, 2)}),
    ],
)
def test_bottleneck_stride_placement(stride_at, strides):
    model = block_model("bottleneck", 8, stride=2, stride_at=stride_at)
    for name, stride in strides.items():
        assert model.get_layer(name).strides == stride
    assert model.get_layer("b_3_conv").strides == (1, 1)
    assert model.get_layer("b_0_conv").strides == (2, 2)


def test_basic_block_strides_first_conv():
    model = block_model("basic", 32, stride=2)
    assert model.get_layer("b_1_conv").strides == (2, 2)
    assert model.get_layer("b_2_conv").strides == (1, 1)


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize("preact", (False, True))
def test_no_conv_has_a_bias(kind, preact):
    model = block_model(kind, filters_for(kind, 32), stride=2, preact=preact)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and not any(layer.use_bias for layer in convs)


def test_unnamed_blocks_get_unique_names():
    inputs = keras.Input(shape=(8, 8, CHANNELS))
    x = basic_block(inputs, CHANNELS)
    x = basic_block(x, CHANNELS)
    x = bottleneck_block(x, 4)
    model = keras.Model(inputs, x)
    assert len(set(names(model))) == len(model.layers)


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stride": 3}, r"Received: stride=3"),
        ({"stride": 0}, r"Received: stride=0"),
        ({"filters": 0}, r"Received: filters=0"),
        ({"filters": 2.5}, r"Received: filters=2.5"),
        ({"filters": "16"}, r"Received: filters='16'"),
        ({"shortcut": "B"}, r"'projection', 'identity', 'none'. Received: shortcut='B'"),
    ],
)
def test_bad_arguments(kind, kwargs, message):
    inputs = keras.Input(shape=(8, 8, CHANNELS))
    arguments = {"filters": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        BLOCKS[kind](inputs, **arguments)


def test_bad_stride_at():
    inputs = keras.Input(shape=(8, 8, CHANNELS))
    with pytest.raises(ValueError, match=r"'v1', 'v1.5'. Received: stride_at='v2'"):
        bottleneck_block(inputs, 4, stride_at="v2")


@pytest.mark.parametrize("kind", BLOCKS)
def test_input_must_be_4d(kind):
    with pytest.raises(ValueError, match=r"4-D .* Received: x.shape=\(None, 8, 16\)"):
        BLOCKS[kind](keras.Input(shape=(8, 16)), 4)


@pytest.mark.parametrize("kind, filters", [("basic", 8), ("bottleneck", 2)])
def test_option_a_cannot_remove_channels(kind, filters):
    with pytest.raises(ValueError, match=rf"16 channels to 8. Received: filters={filters}"):
        BLOCKS[kind](keras.Input(shape=(8, 8, CHANNELS)), filters, shortcut="identity")


def test_zero_init_needs_a_shortcut():
    with pytest.raises(ValueError, match=r"Received: zero_init=True, shortcut='none'"):
        basic_block(keras.Input(shape=(8, 8, CHANNELS)), CHANNELS, shortcut="none", zero_init=True)
