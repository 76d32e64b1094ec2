"""Costs: the FLOP counter counts what it says, stage tables add up, the paper's figures hold."""

import keras
import pytest

from resnet_lab.nn import costs, models


def test_forward_flops_counts_conv_and_dense_multiply_adds():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(5)(x))
    conv = 4 * 4 * 4 * 3 * 3 * 3  # output 4x4x4, each a 3x3x3 dot product
    dense = 64 * 5
    assert costs.multiply_adds(model) == conv + dense
    assert costs.forward_flops(model) == 2 * (conv + dense)


def test_forward_flops_descends_into_nested_models_and_counts_groups():
    inputs = keras.Input((6, 6, 4))
    inner = keras.Model(inputs, keras.layers.Conv2D(8, 1, groups=2, use_bias=False)(inputs))
    outer_inputs = keras.Input((6, 6, 4))
    outer = keras.Model(outer_inputs, keras.layers.Conv2D(2, 1)(inner(outer_inputs)))
    grouped = 6 * 6 * 8 * 2  # each output sees C_in / groups = 2 channels
    assert costs.multiply_adds(outer) == grouped + 6 * 6 * 2 * 8


@pytest.fixture(scope="module")
def resnet18_rows():
    model = models.resnet18()
    return model, costs.stage_table(model)


def test_stage_table_of_resnet18_has_the_papers_shapes(resnet18_rows):
    _, rows = resnet18_rows
    # He et al. 2015, Table 1: conv1 112x112, then 56, 28, 14, 7 with 64..512 channels.
    got = [(r["stage"], r["height"], r["width"], r["channels"], r["blocks"]) for r in rows]
    assert got == [
        ("conv1", 112, 112, 64, None),
        ("conv2", 56, 56, 64, 2),
        ("conv3", 28, 28, 128, 2),
        ("conv4", 14, 14, 256, 2),
        ("conv5", 7, 7, 512, 2),
        ("head", None, None, 1000, None),
        ("total", None, None, None, 8),
    ]


def test_stage_table_rows_add_up_to_the_model(resnet18_rows):
    model, rows = resnet18_rows
    *stages, total = rows
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    assert sum(r["params"] for r in stages) == total["params"] == trainable == 11_689_512
    assert sum(r["macs"] for r in stages) == total["macs"] == costs.multiply_adds(model)
    # The stem conv alone: 112 * 112 * 64 outputs of a 7x7x3 dot product; the head's dense.
    assert rows[0]["macs"] == 112 * 112 * 64 * 7 * 7 * 3
    assert rows[0]["params"] == 7 * 7 * 3 * 64 + 2 * 64
    assert rows[5]["macs"] == rows[5]["params"] - 1000 == 512 * 1000


def test_stage_table_counts_frozen_layers_and_not_moving_statistics():
    model = models.cifar_resnet(8, input_shape=(8, 8, 3))
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    assert costs.stage_table(model)[-1]["params"] == trainable
    # count_params() adds BatchNorm's moving mean and variance, which are not trained.
    moving = sum(
        2 * layer.moving_mean.shape[0]
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    assert model.count_params() == trainable + moving
    model.trainable = False
    assert costs.stage_table(model)[-1]["params"] == trainable


def test_stage_table_looks_into_a_wrapped_network():
    net = models.build_resnet(
        input_shape=(16, 16, 3), stages=((4, 1), (8, 1)), stem_filters=4, num_classes=3
    )
    wrapped = models.rescaled(net)
    assert costs.stage_table(wrapped) == costs.stage_table(net)
    assert [r["stage"] for r in costs.stage_table(net)] == [
        "conv1",
        "conv2",
        "conv3",
        "head",
        "total",
    ]


def test_stage_table_rejects_a_model_without_resnet_names():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="features")(inputs))
    with pytest.raises(ValueError, match="Received: model with layers"):
        costs.stage_table(model)


def test_format_stage_table_aligns_columns(resnet18_rows):
    _, rows = resnet18_rows
    lines = costs.format_stage_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert len({len(line) for line in lines}) == 1
    assert lines[2].split() == ["conv1", "112x112x64", "-", "9,536", "118.0"]
    assert lines[-1].split()[:3] == ["total", "8", "11,689,512"]


def test_resnet50_multiply_adds_match_the_paper():
    measured = costs.multiply_adds(models.resnet50())
    assert measured == pytest.approx(costs.PAPER_GMACS[50] * 1e9, rel=0.05)


@pytest.mark.parametrize("depth", [20, 56])
def test_cifar_trainable_parameters_match_the_papers_table_6(depth):
    model = models.cifar_resnet(depth, shortcut="identity")
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    # Table 6 rounds to two digits: 0.27M, 0.85M.
    assert trainable == pytest.approx(costs.PAPER_CIFAR_PARAMS[depth], rel=0.02)
    assert costs.stage_table(model)[-1]["params"] == trainable
