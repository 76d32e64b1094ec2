"""Test weights: random ones that exercise a port, and the legacy Keras `.h5` layout of the
ImageNet downloads, written with h5py.

keras.applications' `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5` holds, at its root,
the attribute `layer_names` (every layer, in model order) and one group per layer whose
attribute `weight_names` lists its datasets (`conv1_conv/kernel:0`, ...), trainable weights
first. Keras' loader matches the groups with weights to the model's layers with weights, in
order. Writing the file here, through h5py's public API, keeps the tests off Keras' private
`keras.src.legacy` module.
"""

import h5py
import keras
import numpy as np


def save_legacy_h5(model, path):
    """Write `model`'s weights to `path` as keras.applications' ImageNet files are laid out."""
    with h5py.File(path, "w") as file:
        file.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        file.attrs["backend"] = b"tensorflow"
        file.attrs["keras_version"] = b"2.2.4"  # what the ImageNet downloads record
        for layer in model.layers:
            group = file.create_group(layer.name)
            weights = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}/{w.name}:0" for w in weights]
            group.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for name, weight in zip(names, weights):
                group.create_dataset(name, data=np.asarray(keras.ops.convert_to_numpy(weight)))
    return path


def randomize(model, seed=0):
    """Random kernels, conv biases, BN affine parameters and BN moving statistics."""
    rng = np.random.default_rng(seed)

    def assign(variable, values):
        variable.assign(values.astype("float32"))

    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            shape = layer.kernel.shape
            # He-style scale keeps activations O(1) through 50+ layers.
            assign(layer.kernel, rng.normal(0.0, np.sqrt(1.0 / np.prod(shape[:-1])), shape))
            if layer.use_bias:
                assign(layer.bias, rng.normal(0.0, 0.5, layer.bias.shape))
        elif isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            assign(layer.gamma, rng.uniform(0.5, 1.5, shape))
            assign(layer.beta, rng.normal(0.0, 0.2, shape))
            assign(layer.moving_mean, rng.normal(0.0, 0.5, shape))
            assign(layer.moving_variance, rng.uniform(0.5, 2.0, shape))
    return model
