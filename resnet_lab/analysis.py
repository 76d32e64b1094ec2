"""Why residuals work, measured: gradient flow and the degradation problem.

He et al. 2015 ("Deep Residual Learning for Image Recognition", Sec. 1 and 4.2, Fig. 1 and 6)
observed that a deeper *plain* network reaches a higher *training* error than a shallower one:
the degradation problem, an optimisation difficulty rather than overfitting. Identical networks
with identity shortcuts do not degrade. This module reruns that comparison on the flowers data at
CIFAR size with the paper's CIFAR networks (`cifar_resnet` with option-A shortcuts, so plain and
residual networks have exactly the same parameters), and measures the per-layer gradient norms
that explain it.
"""

import keras
import numpy as np
import tensorflow as tf

from resnet_lab import models, training


def conv_gradient_norms(model, images, labels):
    """L2 norm of the loss gradient for every convolution kernel, input side first.

    Computed on one batch in training mode (BatchNorm uses batch statistics, as during
    training), with sparse categorical cross-entropy.

    Args:
        model: A classifier ending in softmax, taking images in 0..255.
        images: A batch `(B, H, W, 3)` in 0..255.
        labels: Integer labels `(B,)`.

    Returns:
        `(names, norms)`: the convolution layer names and a float64 array of norms.
    """
    kernels = [
        (layer.path, layer.kernel)
        for layer in all_layers(model)
        if isinstance(layer, keras.layers.Conv2D)
    ]
    images = tf.convert_to_tensor(np.asarray(images, np.float32))
    with tf.GradientTape() as tape:
        probs = model(images, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(labels, probs)
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, [kernel for _, kernel in kernels])
    return [name for name, _ in kernels], np.array([float(tf.norm(g)) for g in grads])


def all_layers(model):
    """Layers of `model` in order, descending into nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
        else:
            yield layer


def cifar_pair(depth, num_classes, image_size):
    """Builders for the plain and residual CIFAR networks of one depth (option-A shortcuts).

    Args:
        depth: 6n+2 (20, 32, 44, 56, 110, ...).
        num_classes: Number of classes.
        image_size: Square input size.

    Returns:
        Dict `{"plain-D": build_fn, "resnet-D": build_fn}` of zero-argument builders of
        models taking images in 0..255.
    """

    def builder(shortcut, prefix):
        def build():
            net = models.cifar_resnet(
                depth,
                num_classes=num_classes,
                input_shape=(image_size, image_size, 3),
                shortcut=shortcut,
                bn_momentum=0.9,
                name=f"{prefix}{depth}",
            )
            return training.rescaled(net, name=f"{prefix}-{depth}")

        return build

    return {
        f"plain-{depth}": builder("none", "plain"),
        f"resnet-{depth}": builder("identity", "resnet"),
    }


def load_cifar10(train_per_class=None, val_per_class=500, seed=0):
    """CIFAR-10 as the paper used it, for the degradation experiment (needs internet once).

    Downloads through `keras.datasets.cifar10` (cached by Keras in `~/.keras/datasets`). The
    validation split is held out of the 50,000 training images, stratified and seeded; the
    test split is CIFAR-10's own 10,000 test images.

    Args:
        train_per_class: Training images per class (`None`: all that remain, 4,500 with the
            default validation size). Fewer make a CPU run affordable.
        val_per_class: Validation images per class, held out of the training set.
        seed: Seed for the split.

    Returns:
        `(images, labels, splits)` like `load_flowers17` + `split_indices`: uint8 images
        `(60000, 32, 32, 3)`, int32 labels, and index arrays `train`, `val`, `test`.

    Raises:
        ValueError: If the requested split sizes exceed 5,000 per class.
    """
    if (train_per_class or 0) + val_per_class > 5000:
        raise ValueError(
            "`train_per_class + val_per_class` must be at most 5000 (CIFAR-10 has 5,000 "
            f"training images per class). Received: train_per_class={train_per_class}, "
            f"val_per_class={val_per_class}"
        )
    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    images = np.concatenate([x_train, x_test]).astype(np.uint8)
    labels = np.concatenate([y_train.ravel(), y_test.ravel()]).astype(np.int32)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y_train.ravel() == c))
        val.append(idx[:val_per_class])
        train.append(idx[val_per_class:][:train_per_class])
    splits = {
        "train": np.sort(np.concatenate(train)),
        "val": np.sort(np.concatenate(val)),
        "test": np.arange(len(x_train), len(images)),
    }
    return images, labels, splits


def degradation_experiment(
    images,
    labels,
    splits,
    depths=(20, 56),
    epochs=20,
    batch_size=64,
    learning_rate=0.05,
    seed=0,
    verbose=2,
    grad_batch=64,
):
    """Train plain and residual networks of each depth for the same budget and compare.

    All networks get the same data, seed, optimizer (SGD, Nesterov, cosine schedule) and
    number of epochs: the budget. Per-layer gradient norms are taken at initialisation and
    after training on the same fixed batch of training images.

    Args:
        images: uint8 array `(N, S, S, 3)`, small (32x32 as CIFAR).
        labels: Integer labels `(N,)`.
        splits: Dict of index arrays `train`, `val`, `test`.
        depths: Network depths, each 6n+2.
        epochs: Training epochs per network (the budget).
        batch_size: Batch size.
        learning_rate: Peak SGD learning rate.
        seed: Seed for initialisation, shuffling and the gradient batch.
        verbose: Keras progress setting.
        grad_batch: Number of training images used for gradient norms.

    Returns:
        A dict with `histories` (name -> Keras history dict), `results` (name -> results
        dict without history: accuracies, wall time, final training error),
        `gradients_init` and `gradients_trained` (name -> list of per-layer norms), and
        `settings`.
    """
    num_classes = int(labels.max()) + 1
    rng = np.random.default_rng(seed)
    batch = rng.choice(splits["train"], size=min(grad_batch, len(splits["train"])), replace=False)
    out = {"histories": {}, "results": {}, "gradients_init": {}, "gradients_trained": {}}
    for depth in depths:
        for name, build in cifar_pair(depth, num_classes, images.shape[1]).items():
            training.set_seed(seed)
            _, norms = conv_gradient_norms(build(), images[batch], labels[batch])
            out["gradients_init"][name] = norms.tolist()
            model, results = training.train_classifier(
                build, images, labels, splits, epochs=epochs, batch_size=batch_size,
                learning_rate=learning_rate, seed=seed, verbose=verbose, name=name,
            )
            _, norms = conv_gradient_norms(model, images[batch], labels[batch])
            out["gradients_trained"][name] = norms.tolist()
            history = results.pop("history")
            results["final_train_error"] = 1 - history["accuracy"][-1]
            out["histories"][name] = history
            out["results"][name] = results
    out["settings"] = {"depths": list(depths), "epochs": epochs, "batch_size": batch_size,
                       "learning_rate": learning_rate, "seed": seed,
                       "image_size": list(images.shape[1:3])}
    return out
