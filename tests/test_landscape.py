"""The loss landscape: filter-normalised directions, the centre is the model's own loss."""

import keras
import numpy as np
import pytest

from resnet_lab import analysis, landscape, training
from resnet_lab.data.synthetic import flowers_like


@pytest.fixture(scope="module")
def net_and_batch():
    images, labels, _ = flowers_like(8)
    training.set_seed(0)
    return analysis.cifar_pair(8, 17, 8)["resnet-8"](), images[:16], labels[:16]


def own_loss(model, images, labels):
    probs = model(np.asarray(images, np.float32), training=False)
    return float(np.mean(keras.losses.sparse_categorical_crossentropy(labels, probs)))


def test_grid_centre_is_the_models_own_loss_and_weights_come_back(net_and_batch):
    model, images, labels = net_and_batch
    before = [w.copy() for w in model.get_weights()]
    grid = landscape.loss_landscape(model, images, labels, steps=3, span=0.5)
    np.testing.assert_allclose(grid["alphas"], [-0.5, 0, 0.5])
    np.testing.assert_allclose(grid["betas"], [-0.5, 0, 0.5])
    assert grid["losses"].shape == (3, 3) and np.all(np.isfinite(grid["losses"]))
    assert grid["center_loss"] == pytest.approx(own_loss(model, images, labels), rel=1e-5)
    assert grid["losses"][1, 1] == pytest.approx(grid["center_loss"], rel=1e-6)
    # Moving the weights changes the loss; afterwards every weight is back, bit for bit.
    assert np.ptp(grid["losses"]) > 1e-3
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_directions_are_seeded(net_and_batch):
    model, images, labels = net_and_batch
    first = landscape.loss_landscape(model, images, labels, steps=3, seed=0)["losses"]
    again = landscape.loss_landscape(model, images, labels, steps=3, seed=0)["losses"]
    other = landscape.loss_landscape(model, images, labels, steps=3, seed=1)["losses"]
    np.testing.assert_allclose(first, again, rtol=1e-6)
    assert not np.allclose(first, other, rtol=1e-3)


def test_each_filter_of_a_direction_has_its_weights_norm():
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(3, 3, 4, 5)) * np.arange(1, 6)  # filters of different norms
    dense = rng.normal(size=(7, 2))
    d_conv, d_dense = landscape.filter_normalized_direction([conv, dense], rng)
    np.testing.assert_allclose(
        np.sqrt(np.sum(d_conv**2, axis=(0, 1, 2))),
        np.sqrt(np.sum(conv**2, axis=(0, 1, 2))),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        np.linalg.norm(d_dense, axis=0), np.linalg.norm(dense, axis=0), rtol=1e-5
    )
    assert not np.allclose(d_conv, conv)


def test_only_kernels_move(net_and_batch):
    """Biases and BatchNorm get a zero direction (Li et al. 2018): BN alone can't change it."""
    model, images, labels = net_and_batch
    kernels = {id(k) for k in landscape._kernels(model)}
    moved = [v.path for v in model.trainable_weights if id(v) in kernels]
    assert all(path.endswith("kernel") for path in moved)
    assert not any("bn" in path for path in moved)
    assert len(moved) == 7 + 1  # 7 convolutions and the classifier of a CIFAR net of depth 8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 4}, "Received: steps=4"),
        ({"steps": 0}, "Received: steps=0"),
        ({"span": 0}, "Received: span=0"),
    ],
)
def test_bad_grids_are_refused(net_and_batch, kwargs, message):
    model, images, labels = net_and_batch
    with pytest.raises(ValueError, match=message):
        landscape.loss_landscape(model, images, labels, **kwargs)
