"""Porting keras.applications ResNet weights: exact outputs after folding the conv biases."""

import keras
import numpy as np
import pytest
from h5_weights import randomize, save_legacy_h5

from resnet_lab.nn.models import resnet, resnet50
from resnet_lab.nn.porting import max_output_difference, port_keras_weights


def keras_resnet(depth, include_top=False, **kwargs):
    if include_top:
        kwargs.setdefault("input_shape", (64, 64, 3))
    else:
        kwargs.setdefault("input_shape", (None, None, 3))
        kwargs.setdefault("pooling", "avg")
    builder = getattr(keras.applications, f"ResNet{depth}")
    return builder(weights=None, include_top=include_top, **kwargs)


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(42).uniform(-1.0, 1.0, (2, 64, 64, 3)).astype("float32")


@pytest.fixture(scope="module")
def source50():
    return randomize(keras_resnet(50))


@pytest.fixture(scope="module")
def source50_top():
    return randomize(
        keras_resnet(50, include_top=True, classes=7, classifier_activation=None), seed=1
    )


@pytest.fixture(scope="module")
def target101():
    # Failed ports assign nothing, so the mismatch tests can share one target.
    return resnet(101, include_top=False)


def assert_same_outputs(source, target, batch):
    expected = np.asarray(source(batch, training=False))
    actual = np.asarray(target(batch, training=False))
    assert np.std(expected) > 0.1, "outputs should not be trivially small"
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)


def test_port_resnet50_features(source50, batch):
    target = resnet50(include_top=False, pooling="avg")
    assert port_keras_weights(source50, target) is target
    assert_same_outputs(source50, target, batch)
    assert max_output_difference(source50, target, batch) < 1e-4
    assert max_output_difference(source50, resnet50(include_top=False, pooling="avg"), batch) > 0.1
    # The bias went into the moving mean, not lost.
    conv, bn = source50.get_layer("conv2_block1_2_conv"), source50.get_layer("conv2_block1_2_bn")
    np.testing.assert_allclose(
        target.get_layer("conv2_block1_2_bn").moving_mean.numpy(),
        bn.moving_mean.numpy() - conv.bias.numpy(),
    )


def test_port_resnet50_with_top(source50_top, batch):
    target = resnet50(input_shape=(64, 64, 3), classes=7, classifier_activation=None)
    port_keras_weights(source50_top, target)
    assert_same_outputs(source50_top, target, batch)


def test_port_from_legacy_h5_file(source50, batch, tmp_path):
    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    save_legacy_h5(source50, path)
    target = port_keras_weights(str(path), resnet50(include_top=False, pooling="avg"))
    assert_same_outputs(source50, target, batch)


def test_port_from_keras3_weights_file_with_top(source50_top, batch, tmp_path):
    path = tmp_path / "resnet50.weights.h5"
    source50_top.save_weights(path)
    target = resnet50(input_shape=(64, 64, 3), classes=7, classifier_activation=None)
    port_keras_weights(path, target)
    assert_same_outputs(source50_top, target, batch)


@pytest.mark.slow
def test_port_resnet101(batch):
    source = randomize(keras_resnet(101), seed=101)
    target = resnet(101, include_top=False, pooling="avg")
    port_keras_weights(source, target)
    assert_same_outputs(source, target, batch)


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: resnet50(include_top=False, pooling="avg", stride_at="v1.5"),
            r"`conv3_block1_1_conv` differs in strides: source has \(2, 2\), target has \(1, 1\)",
        ),
        (
            lambda: resnet50(include_top=False, pooling="avg", bn_epsilon=1e-3),
            r"differs in epsilon",
        ),
        (
            lambda: resnet50(include_top=False, pooling="avg", preact=True),
            r"only in target \['conv2_block1_preact_bn'",
        ),
        (lambda: resnet50(input_shape=(64, 64, 3)), r"differ in include_top"),
        (
            lambda: resnet(34, include_top=False),
            r"differ in depth: source has bottleneck .*, target has basic blocks",
        ),
    ],
    ids=["v1.5", "epsilon", "preact", "top", "basic"],
)
def test_mismatched_target_raises(source50, build, message):
    target = build()
    before = [w.copy() for w in target.get_weights()]
    with pytest.raises(ValueError, match=message):
        port_keras_weights(source50, target)
    assert all(np.array_equal(a, b) for a, b in zip(before, target.get_weights()))


def test_mismatched_depth_raises(source50, target101):
    with pytest.raises(
        ValueError,
        match=r"source has bottleneck blocks per stage \(3, 4, 6, 3\) "
        r"\(ResNet-50\), target has .*\(3, 4, 23, 3\)",
    ):
        port_keras_weights(source50, target101)


def test_mismatched_file_raises(source50, target101, tmp_path):
    path = tmp_path / "notop.h5"
    save_legacy_h5(source50, path)
    with pytest.raises(
        ValueError,
        match=r"file has .*\(ResNet-50\), top=False; target has "
        r".*\(ResNet-101\), top=False",
    ):
        port_keras_weights(path, target101)
    with pytest.raises(ValueError, match=r"top=False; target has .*top=True"):
        port_keras_weights(path, resnet50())
    with pytest.raises(ValueError, match=r"must be a ResNet-50, -101 or -152"):
        port_keras_weights(path, resnet(34, include_top=False))


def test_mismatched_classifier_raises(source50_top):
    with pytest.raises(ValueError, match=r"`predictions` differs in kernel shape"):
        port_keras_weights(source50_top, resnet50(input_shape=(64, 64, 3), classes=5))


def test_not_a_weights_file_raises(target101, tmp_path):
    path = tmp_path / "weights.h5"
    path.write_text("not hdf5")
    with pytest.raises(ValueError, match=r"not an HDF5 weights file"):
        port_keras_weights(path, target101)
