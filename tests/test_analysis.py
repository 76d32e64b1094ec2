"""Gradient flow and the degradation experiment, on tiny networks and images."""

import numpy as np
import pytest

from resnet_lab import analysis, training
from synthetic import flowers_like


def test_gradient_norms_cover_every_conv_in_order():
    images, labels, _ = flowers_like(16)
    pair = analysis.cifar_pair(8, 17, 16)
    assert list(pair) == ["plain-8", "resnet-8"]
    for name, build in pair.items():
        training.set_seed(0)
        names, norms = analysis.conv_gradient_norms(build(), images[:16], labels[:16])
        # depth 8 = 1 stem conv + 3 stages x 1 block x 2 convs (+ 1 dense), option A: no 1x1.
        assert len(names) == len(norms) == 7
        assert names[0].endswith("conv1_conv") and names[-1].endswith("conv4_block1_2_conv")
        assert np.all(np.isfinite(norms)) and np.all(norms > 0)


def test_plain_and_residual_share_weights_shapes():
    pair = analysis.cifar_pair(8, 17, 16)
    plain, residual = pair["plain-8"](), pair["resnet-8"]()
    assert [w.shape for w in plain.weights] == [w.shape for w in residual.weights]


def test_degradation_experiment_runs_the_grid():
    images, labels, splits = flowers_like(16)
    small = {k: v[::4] for k, v in splits.items()}
    out = analysis.degradation_experiment(images, labels, small, depths=(8,), epochs=2,
                                          batch_size=32, verbose=0, grad_batch=16)
    assert set(out["histories"]) == {"plain-8", "resnet-8"}
    for name, history in out["histories"].items():
        assert len(history["accuracy"]) == 2
        assert 0 <= out["results"][name]["final_train_error"] <= 1
        assert len(out["gradients_init"][name]) == len(out["gradients_trained"][name]) == 7
        assert out["gradients_init"][name] != out["gradients_trained"][name]
    assert out["settings"]["depths"] == [8]


def test_cifar10_splits_are_stratified_and_held_out(monkeypatch):
    """The CIFAR-10 path with `keras.datasets.cifar10.load_data` replaced by small arrays
    (the real one downloads 170 MB)."""
    rng = np.random.default_rng(0)
    fake_train = (rng.integers(0, 256, (600, 32, 32, 3), dtype=np.uint8),
                  np.repeat(np.arange(10), 60)[:, None])
    fake_test = (rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8),
                 np.repeat(np.arange(10), 5)[:, None])
    monkeypatch.setattr(analysis.keras.datasets.cifar10, "load_data",
                        lambda: (fake_train, fake_test))
    images, labels, splits = analysis.load_cifar10(train_per_class=20, val_per_class=10)
    assert images.shape == (650, 32, 32, 3) and images.dtype == np.uint8
    assert np.bincount(labels[splits["train"]]).tolist() == [20] * 10
    assert np.bincount(labels[splits["val"]]).tolist() == [10] * 10
    assert splits["test"].tolist() == list(range(600, 650))
    assert not set(splits["train"]) & set(splits["val"])
    with pytest.raises(ValueError, match="Received: train_per_class=4600"):
        analysis.load_cifar10(train_per_class=4600)
