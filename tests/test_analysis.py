"""Gradient flow and the degradation experiment, on tiny networks and images."""

import numpy as np
import pytest

from resnet_lab import analysis, training
from resnet_lab.data.synthetic import flowers_like


def test_gradient_norms_cover_every_conv_in_order():
    images, labels, _ = flowers_like(16)
    pair = analysis.cifar_pair(8, 17, 16)
    assert list(pair) == ["plain-8", "resnet-8"]
    for name, build in pair.items():
        training.set_seed(0)
        measured = analysis.layer_gradient_norms(build(), images[:16], labels[:16])
        names, norms = measured["layers"], np.array(measured["norm"])
        # depth 8 = 1 stem conv + 3 stages x 1 block x 2 convs (+ 1 dense), option A: no 1x1.
        assert len(names) == len(norms) == 7
        assert names[0].endswith("conv1_conv") and names[-1].endswith("conv4_block1_2_conv")
        assert np.all(np.isfinite(norms)) and np.all(norms > 0)
        # Per parameter: the norm divided by the square root of the kernel's size.
        sizes = np.array(measured["parameters"])
        assert sizes[0] == 3 * 3 * 3 * 16 and sizes[-1] == 3 * 3 * 64 * 64
        np.testing.assert_allclose(measured["per_parameter"], norms / np.sqrt(sizes))


def test_stratified_batch_spreads_over_classes_and_is_seeded():
    labels = np.repeat(np.arange(17), 80)
    train = np.sort(np.random.default_rng(0).permutation(1360)[:680])
    batch = analysis.stratified_batch(labels, train, 64, seed=0)
    assert len(batch) == len(set(batch)) == 64 and set(batch) <= set(train)
    counts = np.bincount(labels[batch], minlength=17)
    assert counts.min() >= 3 and counts.max() <= 4  # 64 = 17 x 3 + 13
    np.testing.assert_array_equal(batch, analysis.stratified_batch(labels, train, 64, seed=0))
    assert not np.array_equal(batch, analysis.stratified_batch(labels, train, 64, seed=1))
    # What the CLI and notebook used to take: the first 64 of a class-ordered split.
    assert len(np.unique(labels[train[:64]])) <= 2
    with pytest.raises(ValueError, match="Received: size=700"):
        analysis.stratified_batch(labels, train, 700)


def test_gradient_flow_measures_every_network_at_init_on_one_batch():
    images, labels, splits = flowers_like(16)
    builders = analysis.cifar_pair(8, 17, 16)
    batch, measured = analysis.gradient_flow(builders, images, labels, splits["train"], 34)
    assert np.bincount(labels[batch], minlength=17).tolist() == [2] * 17
    for name, build in builders.items():
        training.set_seed(0)  # at initialisation: the same seed gives the same weights
        again = analysis.layer_gradient_norms(build(), images[batch], labels[batch])
        np.testing.assert_allclose(measured[name]["norm"], again["norm"], rtol=1e-5)
        assert measured[name]["spread"] == pytest.approx(
            max(again["norm"]) / min(again["norm"]), rel=1e-5)
        assert measured[name]["spread_per_parameter"] == pytest.approx(
            max(again["per_parameter"]) / min(again["per_parameter"]), rel=1e-5)


def test_plain_and_residual_share_weights_shapes():
    pair = analysis.cifar_pair(8, 17, 16)
    plain, residual = pair["plain-8"](), pair["resnet-8"]()
    assert [w.shape for w in plain.weights] == [w.shape for w in residual.weights]


def test_degradation_experiment_runs_the_grid():
    images, labels, splits = flowers_like(16)
    small = {k: v[::4] for k, v in splits.items()}
    out = analysis.degradation_experiment(images, labels, small, depths=(8,), epochs=2,
                                          batch_size=32, verbose=0, grad_batch=17)
    assert set(out["histories"]) == {"plain-8", "resnet-8"}
    batch = np.array(out["gradient_batch"])
    assert np.bincount(labels[batch], minlength=17).tolist() == [1] * 17
    _, initial = analysis.gradient_flow(analysis.cifar_pair(8, 17, 16), images, labels,
                                        small["train"], 17)
    for name, history in out["histories"].items():
        result = out["results"][name]
        assert len(history["accuracy"]) == 2
        # Two different training errors, each named for what it is.
        assert result["running_train_error"] == pytest.approx(1 - history["accuracy"][-1])
        assert result["train_error"] == pytest.approx(1 - result["train_accuracy"])
        # Init norms are those of a fresh network on the batch; training changed them.
        np.testing.assert_allclose(out["gradients_init"][name]["norm"],
                                   initial[name]["norm"], rtol=1e-5)
        trained = np.array(out["gradients_trained"][name]["norm"])
        assert np.median(np.abs(trained / np.array(initial[name]["norm"]) - 1)) > 0.01
        assert np.array(result["confusion_matrix"]).shape == (17, 17)
    assert out["settings"]["depths"] == [8]


def test_degradation_on_ten_classes_records_a_10x10_confusion_matrix():
    images, labels, splits = flowers_like(16)
    keep = labels < 10
    index = np.flatnonzero(keep)
    remap = {k: np.searchsorted(index, v[keep[v]]) for k, v in splits.items()}
    small = {k: v[::4] for k, v in remap.items()}
    out = analysis.degradation_experiment(images[index], labels[index], small, depths=(8,),
                                          epochs=1, batch_size=16, verbose=0, grad_batch=10)
    for result in out["results"].values():
        assert np.array(result["confusion_matrix"]).shape == (10, 10)


def test_spread_of_a_layer_without_gradient_is_infinite():
    assert analysis.spread([2.0, 0.5]) == 4.0
    assert analysis.spread([1.0, 0.0]) == float("inf")
