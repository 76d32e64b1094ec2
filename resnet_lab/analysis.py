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

from resnet_lab import training
from resnet_lab.checks import check_positive_int
from resnet_lab.nn import models
from resnet_lab.nn.walk import all_layers


def stratified_batch(labels, indices, size=64, seed=0):
    """A random batch of `indices` with the classes as evenly represented as possible.

    Classes are visited in a random order and one image is drawn from each in turn (without
    replacement) until `size` are drawn, so 64 of 680 flowers hold 3 or 4 of each of the 17
    classes. The first 64 of a class-ordered split would hold only the first class or two.

    Args:
        labels: Integer labels of the whole data set.
        indices: The indices to draw from (e.g. `splits["train"]`).
        size: Batch size; at most `len(indices)`.
        seed: Seed of the draw.

    Returns:
        A sorted int64 array of `size` indices.
    """
    check_positive_int("size", size)
    indices = np.asarray(indices)
    if size > len(indices):
        raise ValueError(f"`size` must be at most the {len(indices)} indices to draw from. "
                         f"Received: size={size}")
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(indices[labels[indices] == c])
                for c in rng.permutation(np.unique(labels[indices]))]
    depth = max(len(members) for members in by_class)
    # Round robin: every class's first image, then every class's second, ...
    order = [members[i] for i in range(depth) for members in by_class if i < len(members)]
    return np.sort(np.asarray(order[:size], dtype=np.int64))


def layer_gradient_norms(model, images, labels):
    """Norm of the loss gradient for every convolution kernel, input side first.

    Computed on one batch in training mode (BatchNorm uses batch statistics, as during
    training), with sparse categorical cross-entropy. Two scales are returned because kernel
    sizes differ ~100-fold across a ResNet (3x3x3x16 in the stem, 3x3x64x64 at the end):
    `norm` is the raw L2 norm, which grows with the kernel's size; `per_parameter` is the
    root-mean-square gradient entry, `norm / sqrt(size)`, which compares layers of different
    sizes on one scale.

    Args:
        model: A classifier ending in softmax, taking images in 0..255.
        images: A batch `(B, H, W, 3)` in 0..255.
        labels: Integer labels `(B,)`.

    Returns:
        A dict with `layers` (convolution paths), `norm`, `per_parameter` (lists of floats),
        `parameters` (kernel sizes), and `spread` and `spread_per_parameter` (max/min over
        layers of each scale, `spread`).
    """
    import tensorflow as tf

    kernels = [(layer.path, layer.kernel) for layer in all_layers(model)
               if isinstance(layer, keras.layers.Conv2D)]
    images = tf.convert_to_tensor(np.asarray(images, np.float32))
    with tf.GradientTape() as tape:
        probs = model(images, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probs))
    grads = tape.gradient(loss, [kernel for _, kernel in kernels])
    norms = np.array([float(tf.norm(g)) for g in grads])
    sizes = np.array([int(np.prod(kernel.shape)) for _, kernel in kernels])
    per_parameter = norms / np.sqrt(sizes)
    return {"layers": [name for name, _ in kernels], "norm": norms.tolist(),
            "per_parameter": per_parameter.tolist(), "parameters": sizes.tolist(),
            "spread": spread(norms), "spread_per_parameter": spread(per_parameter)}


def spread(values):
    """max / min of positive values: how many-fold the gradient sizes differ over layers.

    A zero (a layer that gets no gradient, e.g. behind a zero-initialised BatchNorm gamma)
    gives `inf`.
    """
    values = np.asarray(values, np.float64)
    with np.errstate(divide="ignore"):
        return float(values.max() / values.min())


def gradient_flow(builders, images, labels, indices, batch_size=64, seed=0):
    """Per-layer gradient norms at initialisation of several networks, on one stratified batch.

    Every network is built after `set_seed(seed)` and measured on the same random
    class-stratified batch of `indices` (`stratified_batch`). The CLI's `gradients`, the
    notebook and `degradation_experiment` all call this.

    Args:
        builders: Mapping of name to a zero-argument model builder (e.g. `cifar_pair`).
        images: uint8 images of the whole data set.
        labels: Integer labels of the whole data set.
        indices: The indices to draw the batch from (the training split).
        batch_size: Images in the batch.
        seed: Seed of the weights and of the draw.

    Returns:
        `(batch, measured)`: the batch's indices, and per name the dict of
        `layer_gradient_norms` (with `spread` raw and `spread_per_parameter`).
    """
    batch = stratified_batch(labels, indices, batch_size, seed)
    measured = {}
    for name, build in builders.items():
        training.set_seed(seed)
        measured[name] = layer_gradient_norms(build(), images[batch], labels[batch])
    return batch, measured


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
            return models.rescaled(net, name=f"{prefix}-{depth}")

        return build

    return {
        f"plain-{depth}": builder("none", "plain"),
        f"resnet-{depth}": builder("identity", "resnet"),
    }


def degradation_experiment(
    images,
    labels,
    splits,
    depths=(20, 56),
    epochs=20,
    batch_size=64,
    learning_rate=0.05,
    seed=0,
    verbose="auto",
    grad_batch=64,
):
    """Train plain and residual networks of each depth for the same budget and compare.

    All networks get the same data, seed, optimizer (SGD, Nesterov, cosine schedule) and
    number of epochs: the budget. Per-layer gradient norms are taken at initialisation and
    after training on the same random class-stratified batch of training images
    (`gradient_flow`).

    Two training errors are reported, since they differ by tens of points on a short run:
    `running_train_error` is 1 - the accuracy Keras reports for the last epoch (a running
    mean over augmented batches, BatchNorm in training mode, weights changing as it goes);
    `train_error` is the error of the final weights on the clean training images in inference
    mode, the quantity of He et al.'s Fig. 1 and 6.

    Args:
        images: uint8 array `(N, S, S, 3)`, small (32x32 as CIFAR).
        labels: Integer labels `(N,)`.
        splits: Dict of index arrays `train`, `val`, `test`.
        depths: Network depths, each 6n+2.
        epochs: Training epochs per network (the budget).
        batch_size: Batch size.
        learning_rate: Peak SGD learning rate.
        seed: Seed for initialisation, shuffling and the gradient batch.
        verbose: As `resnet_lab.training.train_classifier`.
        grad_batch: Number of training images used for gradient norms.

    Returns:
        A dict with `histories` (name -> Keras history dict), `results` (name -> results
        dict without history: accuracies, wall time, `train_error`, `running_train_error`),
        `gradients_init` and `gradients_trained` (name -> per-layer dict of
        `layer_gradient_norms` with `spread` and `spread_per_parameter`), `gradient_batch`
        and `settings`.
    """
    num_classes = int(labels.max()) + 1
    out = {"histories": {}, "results": {}, "gradients_init": {}, "gradients_trained": {}}
    for depth in depths:
        builders = cifar_pair(depth, num_classes, images.shape[1])
        batch, initial = gradient_flow(builders, images, labels, splits["train"], grad_batch,
                                       seed)
        out["gradients_init"].update(initial)
        for name, build in builders.items():
            model, results = training.train_classifier(
                build, images, labels, splits, epochs=epochs, batch_size=batch_size,
                learning_rate=learning_rate, seed=seed, verbose=verbose, name=name,
            )
            out["gradients_trained"][name] = layer_gradient_norms(model, images[batch],
                                                                  labels[batch])
            history = results.pop("history")
            results["running_train_error"] = 1 - history["accuracy"][-1]
            results["train_error"] = 1 - results["train_accuracy"]
            out["histories"][name] = history
            out["results"][name] = results
    out["gradient_batch"] = batch.tolist()
    out["settings"] = {"depths": list(depths), "epochs": epochs, "batch_size": batch_size,
                       "learning_rate": learning_rate, "seed": seed,
                       "image_size": list(images.shape[1:3]), "grad_batch": grad_batch}
    return out
