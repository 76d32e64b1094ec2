"""Gradient flow and the degradation experiment, on tiny networks and images."""

import numpy as np

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
