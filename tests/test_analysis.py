"""Gradient flow and the degradation experiment, on tiny networks and images."""

import keras
import numpy as np
import pytest

from resnet_lab import analysis, training
from resnet_lab.data.synthetic import flowers_like
from resnet_lab.nn.blocks import basic_block


def test_gradient_norms_cover_every_conv_in_order():
    images, labels, _ = flowers_like(16)
    pair = analysis.cifar_pair(8, 17, 16)
    assert list(pair) == ["plain-8", "resnet-8"]
    for build in pair.values():
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
            max(again["norm"]) / min(again["norm"]), rel=1e-5
        )
        assert measured[name]["spread_per_parameter"] == pytest.approx(
            max(again["per_parameter"]) / min(again["per_parameter"]), rel=1e-5
        )


def test_plain_and_residual_share_weights_shapes():
    pair = analysis.cifar_pair(8, 17, 16)
    plain, residual = pair["plain-8"](), pair["resnet-8"]()
    assert [w.shape for w in plain.weights] == [w.shape for w in residual.weights]


def test_degradation_experiment_runs_the_grid():
    images, labels, splits = flowers_like(16)
    small = {k: v[::4] for k, v in splits.items()}
    out = analysis.degradation_experiment(
        images,
        labels,
        small,
        depths=(8,),
        epochs=2,
        batch_size=32,
        verbose=0,
        grad_batch=17,
        keep_models=True,
    )
    assert set(out["histories"]) == set(out["models"]) == {"plain-8", "resnet-8"}
    batch = np.array(out["gradient_batch"])
    assert np.bincount(labels[batch], minlength=17).tolist() == [1] * 17
    _, initial = analysis.gradient_flow(
        analysis.cifar_pair(8, 17, 16), images, labels, small["train"], 17
    )
    for name, history in out["histories"].items():
        result = out["results"][name]
        assert len(history["accuracy"]) == 2
        # Two different training errors, each named for what it is.
        assert result["running_train_error"] == pytest.approx(1 - history["accuracy"][-1])
        assert result["train_error"] == pytest.approx(1 - result["train_accuracy"])
        # Init norms are those of a fresh network on the batch; training changed them.
        np.testing.assert_allclose(
            out["gradients_init"][name]["norm"], initial[name]["norm"], rtol=1e-5
        )
        trained = np.array(out["gradients_trained"][name]["norm"])
        assert np.median(np.abs(trained / np.array(initial[name]["norm"]) - 1)) > 0.01
        assert np.array(result["confusion_matrix"]).shape == (17, 17)
        # The kept model is the trained one: it gives the trained gradient norms again.
        again = analysis.layer_gradient_norms(out["models"][name], images[batch], labels[batch])
        np.testing.assert_allclose(again["norm"], trained, rtol=1e-4)
    assert out["settings"]["depths"] == [8]


def test_degradation_on_ten_classes_records_a_10x10_confusion_matrix():
    images, labels, splits = flowers_like(16)
    keep = labels < 10
    index = np.flatnonzero(keep)
    remap = {k: np.searchsorted(index, v[keep[v]]) for k, v in splits.items()}
    small = {k: v[::4] for k, v in remap.items()}
    out = analysis.degradation_experiment(
        images[index],
        labels[index],
        small,
        depths=(8,),
        epochs=1,
        batch_size=16,
        verbose=0,
        grad_batch=10,
    )
    assert "models" not in out  # by default the result stays JSON-serialisable
    for result in out["results"].values():
        assert np.array(result["confusion_matrix"]).shape == (10, 10)


def test_spread_of_a_layer_without_gradient_is_infinite():
    assert analysis.spread([2.0, 0.5]) == 4.0
    assert analysis.spread([1.0, 0.0]) == float("inf")


def test_depth_sweep_measures_both_families_at_each_depth():
    images, labels, _ = flowers_like(8)
    batch, labels = images[:17], labels[:17]
    sweep = analysis.depth_sweep((8, 14), batch, labels, image_size=8, num_classes=17)
    assert sweep["depths"] == [8, 14] and len(sweep["seconds"]) == 2
    for family, name in (("plain", "plain"), ("residual", "resnet")):
        for index, depth in enumerate((8, 14)):
            training.set_seed(0)
            model = analysis.cifar_pair(depth, 17, 8)[f"{name}-{depth}"]()
            # The first convolution's norm is the first entry of the per-layer norms.
            first = analysis.layer_gradient_norms(model, batch, labels)["norm"][0]
            assert sweep[family]["grad_first"][index] == pytest.approx(first, rel=1e-4)
            net = model.layers[-1]
            features = keras.Model(net.input, net.get_layer("avg_pool").input)(
                batch.astype("float32") / 255, training=True
            )
            assert sweep[family]["act_last"][index] == pytest.approx(
                float(np.std(features)), rel=1e-3
            )


def residual_block_model(zero_init, preact=False):
    x = keras.Input((4, 4, 8))
    return keras.Model(
        x,
        basic_block(
            x, 8, shortcut="identity", zero_init=zero_init, preact=preact, name="conv2_block1"
        ),
    )


@pytest.mark.parametrize("preact", [False, True])
def test_a_zero_initialised_block_responds_with_zero_and_computes_relu(preact):
    model = residual_block_model(True, preact)
    x = np.random.default_rng(0).normal(size=(4, 4, 4, 8)).astype("float32")
    [response] = analysis.block_responses(model, x)
    assert response["block"] == "conv2_block1" and response["stage"] == "conv2"
    assert response["ratio"] == 0.0 and response["input_std"] > 0
    # Post-activation: relu(x + 0); pre-activation: x + 0 (no ReLU after the addition).
    expected = x if preact else np.maximum(x, 0)
    np.testing.assert_array_equal(model.predict_on_batch(x), expected)


def test_block_responses_divide_the_branch_std_by_the_input_std():
    keras.utils.set_random_seed(0)
    model = residual_block_model(False)
    x = np.random.default_rng(0).normal(size=(4, 4, 4, 8)).astype("float32")
    branch = keras.Model(model.input, model.get_layer("conv2_block1_2_bn").output)(x)
    [response] = analysis.block_responses(model, x)
    assert response["ratio"] == pytest.approx(float(np.std(branch) / np.std(x)), rel=1e-5)


def test_block_responses_cover_every_residual_block_in_order_through_the_wrapper():
    training.set_seed(0)
    model = analysis.cifar_pair(14, 17, 8)["resnet-14"]()
    images, _, _ = flowers_like(8)
    responses = analysis.block_responses(model, images[:8])
    assert [r["block"] for r in responses] == [
        f"conv{s}_block{b}" for s in (2, 3, 4) for b in (1, 2)
    ]
    assert [r["stage"] for r in responses] == ["conv2"] * 2 + ["conv3"] * 2 + ["conv4"] * 2
    assert all(np.isfinite(r["ratio"]) and r["ratio"] > 0 for r in responses)
    plain = analysis.cifar_pair(14, 17, 8)["plain-14"]()
    assert analysis.block_responses(plain, images[:8]) == []


def test_most_confused_pairs_largest_first():
    names = ["a", "b", "c"]
    matrix = [[9, 1, 4], [0, 5, 4], [2, 0, 7]]
    assert analysis.most_confused(matrix, names) == [("a", "c", 4), ("b", "c", 4), ("c", "a", 2)]
    assert analysis.most_confused(np.eye(3) * 5, names) == []
    with pytest.raises(ValueError, match="Received: top=0"):
        analysis.most_confused(matrix, names, top=0)
