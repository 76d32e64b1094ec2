"""The loss landscape: a 2-D slice of the training loss around a network's weights.

Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets" (arXiv:1712.09913), Sec. 4:
pick two random Gaussian directions `d1`, `d2` in weight space, scale each filter of each
direction to the norm of the same filter of the weights ("filter normalisation", which makes
slices of differently scaled networks comparable), and evaluate
`loss(w + alpha * d1 + beta * d2)` on a grid of `(alpha, beta)`. Biases and BatchNorm
parameters get a zero direction, as the paper does. Their Fig. 1 and 5: skip connections
keep the landscape of a deep network smooth and convex-looking; without them, a 56-layer
network's landscape is chaotic.
"""

import keras
import numpy as np

from resnet_lab.checks import check_positive_int
from resnet_lab.nn.walk import all_layers


def _kernels(model):
    """The kernels of every convolution and dense layer: the weights the directions move."""
    return [
        layer.kernel
        for layer in all_layers(model)
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    ]


def _filter_norms(array, axes):
    return np.sqrt(np.sum(np.square(array, dtype=np.float64), axis=axes))


def filter_normalized_direction(weights, rng):
    """One random direction, each filter scaled to the norm of the weights' filter.

    A filter is one output unit's slice: `kernel[..., j]` of a convolution (`h, w, in, out`)
    or a dense layer (`in, out`). Li et al. 2018, Sec. 4, Eq. in "Filter-Wise
    Normalization".

    Args:
        weights: The kernels, as NumPy arrays (last axis: output units).
        rng: A `numpy.random.Generator`.

    Returns:
        A list of float32 arrays of the kernels' shapes.
    """
    direction = []
    for w in weights:
        d = rng.standard_normal(w.shape)
        axes = tuple(range(w.ndim - 1))
        scale = _filter_norms(w, axes) / np.maximum(_filter_norms(d, axes), 1e-12)
        direction.append((d * scale).astype(np.float32))
    return direction


def _loss(model, images, labels):
    # `predict_on_batch`: inference mode (BatchNorm's moving statistics), and one traced
    # function reused at every grid point, about 2.5x faster than eager calls on 2 cores.
    probs = model.predict_on_batch(images)
    losses = keras.losses.sparse_categorical_crossentropy(labels, probs)
    return float(np.mean(keras.ops.convert_to_numpy(losses)))


def loss_landscape(model, images, labels, *, steps=11, span=1.0, seed=0):
    """The loss on a `steps x steps` grid around `model`'s weights (Li et al. 2018).

    The loss is sparse categorical cross-entropy of the model's outputs on one batch, with
    BatchNorm in inference mode; no compiled loss is needed. The model's weights are
    restored afterwards, also when an error interrupts the sweep.

    Args:
        model: A classifier ending in softmax (e.g. the lab's CIFAR nets, taking 0..255).
        images: One batch `(B, H, W, 3)` as the model takes it.
        labels: Integer labels `(B,)`.
        steps: Grid points per axis (odd, so that the grid holds the weights themselves).
        span: The grid covers `[-span, span]` along each direction.
        seed: Seed of the two directions.

    Returns:
        A dict with `alphas` and `betas` (1-D, `steps` values), `losses` (`steps x steps`,
        `losses[i, j]` at `w + alphas[i] * d1 + betas[j] * d2`) and `center_loss` (the
        model's own loss on the batch).

    Raises:
        ValueError: If `steps` is not a positive odd integer or `span` is not positive.
    """
    check_positive_int("steps", steps)
    if steps % 2 == 0:
        raise ValueError(
            f"`steps` must be odd so that the grid holds the weights themselves "
            f"(alpha = beta = 0). Received: steps={steps}"
        )
    if not span > 0:
        raise ValueError(f"`span` must be a positive number. Received: span={span!r}")
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    variables = _kernels(model)
    original = [keras.ops.convert_to_numpy(v) for v in variables]
    rng = np.random.default_rng(seed)
    d1 = filter_normalized_direction(original, rng)
    d2 = filter_normalized_direction(original, rng)
    alphas = betas = np.linspace(-span, span, steps)
    losses = np.empty((steps, steps))
    center_loss = _loss(model, images, labels)
    try:
        for i, alpha in enumerate(alphas):
            for j, beta in enumerate(betas):
                for v, w, a, b in zip(variables, original, d1, d2):
                    v.assign(w + alpha * a + beta * b)
                losses[i, j] = _loss(model, images, labels)
    finally:
        for v, w in zip(variables, original):
            v.assign(w)
    return {"alphas": alphas, "betas": betas.copy(), "losses": losses, "center_loss": center_loss}
