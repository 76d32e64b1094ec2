"""Grad-CAM: right shapes, the right place for the right class, nested equals flat."""

import keras
import numpy as np
import pytest

from resnet_lab import gradcam
from resnet_lab.nn import models


def _two_region_model(scale=2.0):
    """Channel 0 votes for class 0, channel 1 for class 1; `features` copies the input.

    The logits are `scale * (m0 - m1)` and `scale * (m1 - m0)`, `m` the channel means, so
    Grad-CAM for class 0 is `ReLU(A0 - A1)` and for class 1 `ReLU(A1 - A0)`, up to a factor.
    """
    inputs = keras.Input((8, 8, 2))
    features = keras.layers.Conv2D(2, 1, use_bias=False, name="features")
    x = features(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    head = keras.layers.Dense(2, activation="softmax", name="predictions")
    model = keras.Model(inputs, head(x))
    features.set_weights([np.eye(2, dtype="float32")[None, None]])
    head.set_weights([scale * np.array([[1, -1], [-1, 1]], "float32"), np.zeros(2, "float32")])
    return model


def _left_right_image():
    """Channel 0 lit on the left half, channel 1 half as bright on the right half."""
    image = np.zeros((1, 8, 8, 2), "float32")
    image[0, :, :4, 0] = 1.0
    image[0, :, 4:, 1] = 0.5
    return image


LEFT = np.repeat([[1.0] * 4 + [0.0] * 4], 8, axis=0)


def test_heatmap_follows_the_class_not_the_brightness():
    model, image = _two_region_model(), _left_right_image()
    # The predicted class (0) lives on the left; class 1 on the right. Ignoring the
    # gradients (weighting channels equally) would light both halves for both classes.
    np.testing.assert_allclose(gradcam.gradcam_heatmaps(model, image, "features")[0], LEFT)
    np.testing.assert_allclose(gradcam.gradcam_heatmaps(model, image, "features", 0)[0], LEFT)
    np.testing.assert_allclose(gradcam.gradcam_heatmaps(model, image, "features", 1)[0], 1.0 - LEFT)


def test_scores_are_taken_before_the_softmax():
    # Logits 200 apart: float32 probabilities are exactly 1 and 0, so the softmax's gradient
    # vanishes; the score before it still says where class 1 is.
    model, image = _two_region_model(scale=400.0), _left_right_image()
    assert model.predict(image, verbose=0)[0, 1] == 0.0
    np.testing.assert_allclose(gradcam.gradcam_heatmaps(model, image, "features", 1)[0], 1.0 - LEFT)


def test_one_class_per_image():
    model = _two_region_model()
    images = np.concatenate([_left_right_image()] * 2)
    maps = gradcam.gradcam_heatmaps(model, images, "features", class_index=[0, 1])
    np.testing.assert_allclose(maps, [LEFT, 1.0 - LEFT])


@pytest.fixture(scope="module")
def scratch():
    keras.utils.set_random_seed(0)
    # 16 filters, not fewer: TensorFlow 2.21's oneDNN crashes on the input gradient of a
    # 1x1 stride-2 convolution (the projection shortcut) with fewer than 16 input channels.
    model = models.scratch_model(
        image_size=16, num_classes=4, stages=((16, 1), (32, 1)), stem_filters=16
    )
    images = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    return model, images


def test_shapes_and_range_on_the_scratch_network(scratch):
    model, images = scratch
    assert gradcam.last_conv_layer(model) == "conv3_block1_out"
    maps = gradcam.gradcam_heatmaps(model, images, "conv3_block1_out")
    assert maps.shape == (3, 8, 8) and maps.dtype == np.float32
    assert maps.min() >= 0.0
    np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0)
    assert gradcam.gradcam_heatmaps(model, images, "conv2_block1_out").shape == (3, 16, 16)


def test_nested_network_gives_the_flat_networks_heatmap(scratch):
    model, images = scratch
    net = model.layers[-1]  # rescale -> net: the flat network takes 0..1 images
    for layer_name in ("conv3_block1_out", "conv2_block1_out"):
        nested = gradcam.gradcam_heatmaps(model, images, layer_name)
        flat = gradcam.gradcam_heatmaps(net, images / 255.0, layer_name)
        np.testing.assert_allclose(nested, flat, atol=1e-5)


def _backbone():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu", name="features_out")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="backbone")


def test_layer_inside_a_frozen_backbone_as_in_the_transfer_model():
    keras.utils.set_random_seed(1)
    backbone = _backbone()
    backbone.trainable = False  # its variables are not watched: the gradient must still flow
    dropout = keras.layers.Dropout(0.5, name="head_dropout")
    head = keras.layers.Dense(3, activation="softmax", name="predictions")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255, name="preprocess")(inputs)
    x = keras.layers.Identity(name="backbone_pool")(backbone(x, training=False))
    nested = keras.Model(inputs, head(dropout(x)))
    # The same layers wired flat; the head is shared, as `transfer.head_model` shares it.
    flat = keras.Model(backbone.inputs, head(dropout(backbone.outputs[0])))
    images = np.random.default_rng(1).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    assert gradcam.last_conv_layer(nested) == "features_out"
    maps = gradcam.gradcam_heatmaps(nested, images, "features_out", class_index=2)
    assert maps.shape == (4, 8, 8)
    np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(
        maps, gradcam.gradcam_heatmaps(flat, images / 255.0, "features_out", 2), atol=1e-5
    )


def test_a_chain_that_computes_something_else_is_refused():
    backbone = _backbone()
    inputs = keras.Input((16, 16, 3))
    # `keras.ops` calls are not layers: running `model.layers` in turn skips the doubling.
    x = backbone(inputs * 2.0)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    images = np.random.default_rng(2).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    with pytest.raises(ValueError, match="not reproduce its output.*Received: layer_name="):
        gradcam.gradcam_heatmaps(model, images, "features_out")


def test_unknown_layer_lists_candidates(scratch):
    model, images = scratch
    with pytest.raises(ValueError, match=r"conv3_block1_out\. Received: layer_name='nope'"):
        gradcam.gradcam_heatmaps(model, images, "nope")


def test_layer_without_a_spatial_output_is_refused(scratch):
    model, images = scratch
    with pytest.raises(ValueError, match="4-D output.*Received: layer_name='avg_pool'"):
        gradcam.gradcam_heatmaps(model, images, "avg_pool")


def test_class_index_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"Received: class_index=2"):
        gradcam.gradcam_heatmaps(_two_region_model(), _left_right_image(), "features", 2)


def test_last_conv_layer_needs_a_spatial_layer():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="mlp")
    with pytest.raises(ValueError, match="Received: model='mlp'"):
        gradcam.last_conv_layer(model)


def test_overlay_has_the_images_shape():
    images = np.zeros((2, 32, 24, 3), "float32")
    maps = np.zeros((2, 4, 3), "float32")
    maps[:, 0, 0] = 1.0
    overlay = gradcam.overlay_heatmaps(images, maps, alpha=0.5)
    assert overlay.shape == (2, 32, 24, 3) and overlay.dtype == np.uint8
    # Hot corner red-ish, cold corner blue-ish (jet), each at half strength over black.
    assert overlay[0, 0, 0, 0] > overlay[0, 0, 0, 2]
    assert overlay[0, -1, -1, 2] > overlay[0, -1, -1, 0]
    with pytest.raises(ValueError, match="Received: alpha=2"):
        gradcam.overlay_heatmaps(images, maps, alpha=2)


@pytest.mark.slow
def test_resnet50_transfer_model_conv5():
    from resnet_lab import transfer

    model = transfer.build_transfer_model(num_classes=3, weights=None, input_shape=(64, 64, 3))
    images = np.random.default_rng(3).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    assert gradcam.last_conv_layer(model) == "conv5_block3_out"
    maps = gradcam.gradcam_heatmaps(model, images, "conv5_block3_out")
    assert maps.shape == (2, 2, 2) and 0.0 <= maps.min() and maps.max() <= 1.0
