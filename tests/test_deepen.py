"""Deepening a trained network: zero-initialised residual blocks change no prediction."""

import keras
import numpy as np
import pytest

from resnet_lab.nn import models
from resnet_lab.nn.deepen import deepen
from resnet_lab.nn.walk import all_layers

IMAGES = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")


@pytest.fixture(scope="module")
def trained():
    """A scratch model whose BatchNorm layers hold non-trivial "trained" statistics."""
    keras.utils.set_random_seed(0)
    model = models.scratch_model(image_size=16, num_classes=5)
    rng = np.random.default_rng(1)
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [w + rng.uniform(0, 0.5, w.shape).astype("float32") for w in layer.get_weights()]
            )
    return model


def blocks_of(model, stage):
    return sorted(
        {
            layer.name.split("_")[1]
            for layer in all_layers(model)
            if layer.name.startswith(f"{stage}_block")
        }
    )


def test_zero_init_blocks_keep_every_prediction(trained):
    deeper = deepen(trained, 2)
    for stage in ("conv2", "conv3", "conv4"):
        assert blocks_of(deeper, stage) == ["block1", "block2", "block3", "block4"]
    before, after = trained.predict_on_batch(IMAGES), deeper.predict_on_batch(IMAGES)
    assert np.abs(after - before).max() < 1e-6
    # 2 blocks x 3 stages of 2 convs + 2 BNs each, in the stage's width.
    assert len(list(all_layers(deeper))) == len(list(all_layers(trained))) + 2 * 3 * 7
    assert deeper.get_layer("resnet_seed").get_layer("conv4_block4_2_conv").filters == 64


def test_trained_weights_are_copied_not_shared(trained):
    deeper = deepen(trained, 1)
    copies = {layer.name: layer for layer in all_layers(deeper)}
    for layer in all_layers(trained):
        assert len(layer.weights) == len(copies[layer.name].weights)
        for old, new in zip(layer.get_weights(), copies[layer.name].get_weights()):
            np.testing.assert_array_equal(old, new)
    copies["conv1_conv"].kernel.assign(np.zeros(copies["conv1_conv"].kernel.shape))
    original = trained.get_layer("resnet_seed").get_layer("conv1_conv")
    assert np.abs(original.get_weights()[0]).max() > 0


def test_plain_blocks_without_the_skip_change_the_predictions(trained):
    plain = deepen(trained, 1, skip=False)
    assert not any(layer.name.endswith("block3_add") for layer in all_layers(plain))
    difference = np.abs(plain.predict_on_batch(IMAGES) - trained.predict_on_batch(IMAGES))
    assert difference.max() > 0.05


def test_pre_activation_and_bottleneck_blocks_deepen_too():
    keras.utils.set_random_seed(0)
    for net in (
        models.cifar_resnet(8, 5, (16, 16, 3), preact=True, shortcut="identity"),
        models.build_resnet((16, 16, 3), 5, stages=((8, 1), (8, 1)), block="bottleneck"),
    ):
        deeper = deepen(net, 1)
        x = IMAGES / 255
        assert np.abs(deeper.predict_on_batch(x) - net.predict_on_batch(x)).max() < 1e-6
        assert len(deeper.layers) > len(net.layers)


def test_bad_arguments_name_themselves(trained):
    with pytest.raises(ValueError, match="Received: extra_blocks=0"):
        deepen(trained, 0)
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="convS_blockB"):
        deepen(dense)
