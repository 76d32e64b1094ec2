"""Why residuals work, measured: gradient flow and the degradation problem.

He et al. 2015 ("Deep Residual Learning for Image Recognition", Sec. 1 and 4.2, Fig. 1 and 6)
observed that a deeper *plain* network reaches a higher *training* error than a shallower one:
the degradation problem, an optimisation difficulty rather than overfitting. Identical networks
with identity shortcuts do not degrade. This module reruns that comparison on the flowers data at
CIFAR size with the paper's CIFAR networks (`cifar_resnet` with option-A shortcuts, so plain and
residual networks have exactly the same parameters), and measures the per-layer gradient norms
that explain it.
"""

import re
import time

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
        raise ValueError(
            f"`size` must be at most the {len(indices)} indices to draw from. Received: size={size}"
        )
    rng = np.random.default_rng(seed)
    by_class = [
        rng.permutation(indices[labels[indices] == c])
        for c in rng.permutation(np.unique(labels[indices]))
    ]
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
    kernels = [
        (layer.path, layer.kernel)
        for layer in all_layers(model)
        if isinstance(layer, keras.layers.Conv2D)
    ]
    images = np.asarray(images, np.float32)
    grads, _ = _training_gradients(
        lambda: (model(images, training=True), None), labels, [kernel for _, kernel in kernels]
    )
    norms = np.array([float(np.linalg.norm(keras.ops.convert_to_numpy(g))) for g in grads])
    sizes = np.array([int(np.prod(kernel.shape)) for _, kernel in kernels])
    per_parameter = norms / np.sqrt(sizes)
    return {
        "layers": [name for name, _ in kernels],
        "norm": norms.tolist(),
        "per_parameter": per_parameter.tolist(),
        "parameters": sizes.tolist(),
        "spread": spread(norms),
        "spread_per_parameter": spread(per_parameter),
    }


def _training_gradients(forward, labels, variables):
    """Gradients of the mean sparse cross-entropy of `forward()`'s probabilities.

    `forward` returns `(probabilities, extra)`; `extra` (e.g. activations computed in the
    same pass) is returned beside the gradients.
    """
    import tensorflow as tf

    with tf.GradientTape() as tape:
        probs, extra = forward()
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probs))
    return tape.gradient(loss, variables), extra


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


def _nested_net(model):
    """`(net, prepare)`: the model holding `model`'s layers, and what feeds its input.

    For the lab's `rescaled` models (`image -> rescale -> net`), `net` is the nested network
    and `prepare` the chain before it (a model from `model`'s input to `net`'s input); for a
    bare network, `net` is `model` and `prepare` is `None`.
    """
    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.Model):
            return layer, keras.Model(model.input, model.layers[index - 1].output)
    return model, None


def _probe(model, tensors_of):
    """A function of images returning `tensors_of(net)`, computed in `model`'s nested net."""
    net, prepare = _nested_net(model)
    probe = keras.Model(net.input, tensors_of(net))

    def run(images, training):
        x = np.asarray(images, np.float32)
        if prepare is not None:
            x = prepare(x, training=training)
        return probe(x, training=training)

    return net, run


def depth_sweep(depths, images, labels, *, image_size, num_classes, seed=0):
    """Gradient and activation scale at initialisation of plain and residual nets by depth.

    For each depth, the plain and residual CIFAR networks of `cifar_pair` (option-A shortcuts,
    so both have the same weights) are built after `set_seed(seed)` and measured on one
    batch in training mode (BatchNorm on batch statistics, as in the first training step):
    `grad_first`, the norm of the loss gradient at the first convolution's kernel
    (`conv1_conv`), and `act_last`, the standard deviation of the last stage's output before
    pooling. He et al. 2015 (Sec. 4.1) trained plain nets with BatchNorm so that signals
    neither vanish nor explode in the forward pass; this shows what happens backwards.

    Args:
        depths: CIFAR depths, each 6n+2 (e.g. `(20, 56, 110)`).
        images: One batch `(B, image_size, image_size, 3)` in 0..255, e.g. a
            `stratified_batch` of the training split.
        labels: Integer labels `(B,)`.
        image_size: Square input size of the networks.
        num_classes: Classifier units.
        seed: Seed of the weights.

    Returns:
        `{"depths": [...], "plain": {"grad_first": [...], "act_last": [...]},
        "residual": {...}, "seconds": [...]}`, one value per depth; `seconds` is the time to
        build and measure both networks of that depth.
    """
    sweep = {
        "depths": [int(d) for d in depths],
        "seconds": [],
        "plain": {"grad_first": [], "act_last": []},
        "residual": {"grad_first": [], "act_last": []},
    }
    for depth in depths:
        start = time.perf_counter()
        for family, build in zip(
            ("plain", "residual"), cifar_pair(depth, num_classes, image_size).values()
        ):
            training.set_seed(seed)
            grad_first, act_last = _first_gradient_last_scale(build(), images, labels)
            sweep[family]["grad_first"].append(grad_first)
            sweep[family]["act_last"].append(act_last)
        sweep["seconds"].append(time.perf_counter() - start)
    return sweep


def _first_gradient_last_scale(model, images, labels):
    """`(‖∂loss/∂conv1 kernel‖, std of the input of avg_pool)` in training mode."""
    net, run = _probe(model, lambda net: [net.outputs[0], net.get_layer("avg_pool").input])
    (grad,), features = _training_gradients(
        lambda: run(images, True), labels, [net.get_layer("conv1_conv").kernel]
    )
    return (
        float(np.linalg.norm(keras.ops.convert_to_numpy(grad))),
        float(np.std(keras.ops.convert_to_numpy(features))),
    )


def block_responses(model, images):
    """How large each residual branch's output is, relative to the block's input.

    He et al. 2015, Sec. 4.2 and Fig. 7: the standard deviations of the residual functions'
    responses are generally small, so a residual block stays close to its identity shortcut.
    Here, per block with an addition (`{block}_add`), `ratio = std(branch) / std(input)`:
    the branch output is its last BatchNorm (post-activation) or last convolution
    (pre-activation), before the addition; BatchNorm in inference mode.

    Args:
        model: A lab ResNet with blocks named `convS_blockB_*` (e.g. a trained
            `cifar_resnet`, or a `rescaled` / `scratch_model` wrapper around one).
        images: A batch as the model takes it (the lab's wrapped models: 0..255).

    Returns:
        One dict per residual block, in graph order: `block` (e.g. `"conv3_block2"`),
        `stage` (`"conv3"`), `ratio`, `branch_std` and `input_std`.
    """
    net, _ = _nested_net(model)
    layers = list(all_layers(net))
    names = {layer.name for layer in layers}
    blocks = [layer.name[: -len("_add")] for layer in layers if layer.name.endswith("_add")]
    if not blocks:  # a plain network: no residual branch to measure
        return []
    ends = []
    for block in blocks:
        last = max(
            int(m[1]) for m in (re.match(rf"{block}_(\d+)_(?:bn|conv)$", n) for n in names) if m
        )
        ends.append(
            f"{block}_{last}_bn" if f"{block}_{last}_bn" in names else f"{block}_{last}_conv"
        )
    firsts = [
        next(layer for layer in layers if layer.name.startswith(f"{block}_")) for block in blocks
    ]

    def tensors_of(net):
        return [f.input for f in firsts] + [net.get_layer(end).output for end in ends]

    _, run = _probe(model, tensors_of)
    values = [np.std(keras.ops.convert_to_numpy(t)) for t in run(images, False)]
    inputs, branches = values[: len(blocks)], values[len(blocks) :]
    return [
        {
            "block": block,
            "stage": block.split("_")[0],
            "ratio": float(b / i),
            "branch_std": float(b),
            "input_std": float(i),
        }
        for block, i, b in zip(blocks, inputs, branches)
    ]


def most_confused(matrix, class_names, top=3):
    """The `top` most frequent mistakes of a confusion matrix, largest first.

    Args:
        matrix: Square counts, `matrix[true, predicted]`.
        class_names: One name per class.
        top: How many pairs, a positive integer.

    Returns:
        A list of `(true name, predicted name, count)`, off-diagonal, counts > 0, ties in
        the order of the matrix's rows and columns.
    """
    check_positive_int("top", top)
    matrix = np.asarray(matrix)
    off = matrix * (1 - np.eye(len(matrix), dtype=matrix.dtype))
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = [np.unravel_index(k, off.shape) for k in order]
    return [(class_names[i], class_names[j], int(off[i, j])) for i, j in pairs if off[i, j] > 0]


def _train_one(build, images, labels, splits, fit, seed, verbose, name):
    """Train one network; `(model, history, results)` with both training errors named."""
    model, results = training.train_classifier(
        build, images, labels, splits, fit, seed=seed, verbose=verbose, name=name
    )
    history = results.pop("history")
    results["running_train_error"] = 1 - history["accuracy"][-1]
    results["train_error"] = 1 - results["train_accuracy"]
    return model, history, results


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
    keep_models=False,
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
        keep_models: Also return the trained models under `models` (name -> `keras.Model`),
            e.g. for `resnet_lab.landscape.loss_landscape` or `block_responses`; the result
            is then no longer JSON-serialisable.

    Returns:
        A dict with `histories` (name -> Keras history dict), `results` (name -> results
        dict without history: accuracies, wall time, `train_error`, `running_train_error`),
        `gradients_init` and `gradients_trained` (name -> per-layer dict of
        `layer_gradient_norms` with `spread` and `spread_per_parameter`), `gradient_batch`
        and `settings`; and `models` with `keep_models=True`.
    """
    num_classes = int(labels.max()) + 1
    fit = training.FitSettings(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
    out = {"histories": {}, "results": {}, "gradients_init": {}, "gradients_trained": {}}
    for depth in depths:
        builders = cifar_pair(depth, num_classes, images.shape[1])
        batch, initial = gradient_flow(builders, images, labels, splits["train"], grad_batch, seed)
        out["gradients_init"].update(initial)
        for name, build in builders.items():
            model, history, results = _train_one(
                build, images, labels, splits, fit, seed, verbose, name
            )
            out["gradients_trained"][name] = layer_gradient_norms(
                model, images[batch], labels[batch]
            )
            out["histories"][name], out["results"][name] = history, results
            if keep_models:
                out.setdefault("models", {})[name] = model
    out["gradient_batch"] = batch.tolist()
    out["settings"] = {
        "depths": list(depths),
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "image_size": list(images.shape[1:3]),
        "grad_batch": grad_batch,
    }
    return out
