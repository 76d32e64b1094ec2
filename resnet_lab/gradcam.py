"""Grad-CAM: where a classifier looks, from the gradient of one class score.

Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization" (arXiv:1610.02391): for the activations `A` (`h x w x K`) of a convolutional
layer and the score `y_c` of class `c` *before the softmax*, channel `k` weighs
`alpha_k = mean over (i, j) of d y_c / d A[i, j, k]` (Eq. 1), and the map is
`ReLU(sum_k alpha_k A[:, :, k])` (Eq. 2), kept at the layer's resolution. The code follows the
keras.io example "Grad-CAM class activation visualization", with two differences: the class
score is taken before the softmax without modifying the model, and the layer may sit inside a
nested model, as in the lab's from-scratch network (`image -> rescale -> net`) and transfer
model (`image -> preprocess -> resnet50 -> backbone_pool -> head_dropout -> predictions`).

Supported structures: the layer is a layer (not a model) of a single-input functional model,
possibly nested. The model that holds it directly may be any graph (a ResNet is one); every
model above it must be a chain, each layer applied to the previous one's output, as the lab's
wrappers are. A chain is checked by comparing its output with the model's own; a mismatch
raises `ValueError`. Channels-last activations only (the lab's convention). TensorFlow backend.
"""

import keras
import numpy as np
import tensorflow as tf

from resnet_lab.keras_internals import producer
from resnet_lab.nn.walk import all_layers


def _spatial_layers(model):
    """Names of the layers with a 4-D output `(batch, height, width, channels)`, in order."""
    names = []
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            rank = len(layer.output.shape)
        except (AttributeError, ValueError):  # never called, or called in several places
            continue
        if rank == 4:
            names.append(layer.name)
    return names


def last_conv_layer(model):
    """The name of `model`'s last layer with a 4-D output, looking into nested models.

    The usual Grad-CAM layer: the last stage's output, e.g. `conv4_block2_out` for the lab's
    from-scratch network and `conv5_block3_out` for ResNet-50.

    Args:
        model: A built `keras.Model`.

    Returns:
        A layer name (a `str`).

    Raises:
        ValueError: If no layer of `model` has a 4-D output.
    """
    names = _spatial_layers(model)
    if not names:
        raise ValueError(
            "`model` has no layer with a 4-D output (batch, height, width, channels) for "
            f"Grad-CAM. Received: model={model.name!r}"
        )
    return names[-1]


def _find_path(model, layer_name):
    """`[nested model, ..., layer]` leading from `model` to the layer named `layer_name`."""
    for layer in model.layers:
        if layer.name == layer_name and not isinstance(layer, keras.Model):
            return [layer]
        if isinstance(layer, keras.Model):
            path = _find_path(layer, layer_name)
            if path:
                return [layer, *path]
    return None


def _is_softmax_dense(layer):
    name = getattr(getattr(layer, "activation", None), "__name__", "")
    return isinstance(layer, keras.layers.Dense) and name == "softmax"


def _steps(model, path):
    """Callables that, applied in turn to `model`'s input, compute its output.

    One of them is a two-output model returning `(activation, output)`: the model holding the
    layer, rewired to also output the layer's activation. When that model ends in a softmax
    `Dense`, the `Dense` becomes a step of its own, so its input is at hand for the logits.
    """
    if len(path) > 1:
        steps = []
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            steps.extend(_steps(layer, path[1:]) if layer is path[0] else [layer])
        return steps
    if len(model.inputs) != 1:
        raise ValueError(
            "Grad-CAM supports models with one input. "
            f"Received: model={model.name!r} with {len(model.inputs)} inputs"
        )
    target = path[0]
    # The layer and call that produced the output; `layer.input` would be ambiguous for a
    # layer shared with another model (`resnet_lab.transfer.head_model` shares the head).
    last, inputs = producer(model.outputs[0])
    if _is_softmax_dense(last):
        return [keras.Model(model.inputs, [target.output, inputs[0]]), last]
    return [keras.Model(model.inputs, [target.output, model.outputs[0]])]


def _forward(steps, images):
    """Run `steps`; return the layer's activation, the class scores and the probabilities."""
    x, activation, scores = images, None, None
    for index, step in enumerate(steps):
        if index == len(steps) - 1 and _is_softmax_dense(step):
            # The class score before the softmax (Selvaraju et al. 2017, Sec. 3).
            scores = keras.ops.matmul(x, step.kernel)
            if step.use_bias:
                scores = scores + step.bias
        x = step(x, training=False)
        if isinstance(x, (list, tuple)):
            activation, x = x
    return activation, (x if scores is None else scores), x


def _class_indices(class_index, probs):
    count, classes = probs.shape
    if class_index is None:
        return tf.argmax(probs, axis=-1, output_type=tf.int32)
    indices = np.broadcast_to(np.asarray(class_index), (count,))
    integer = np.issubdtype(indices.dtype, np.integer)
    if not integer or indices.min() < 0 or indices.max() >= classes:
        raise ValueError(
            f"`class_index` must be None, or one integer or one per image in [0, {classes}). "
            f"Received: class_index={class_index!r}"
        )
    return tf.constant(indices, tf.int32)


def _checked_path(model, layer_name):
    """`_find_path`, refusing a missing layer or one without a 4-D output."""
    path = _find_path(model, layer_name)
    if path is None:
        candidates = ", ".join(_spatial_layers(model)[-5:])
        raise ValueError(
            f"`layer_name` must name a layer of `model` or of a model nested in it; the last "
            f"layers with a 4-D output are: {candidates}. Received: layer_name={layer_name!r}"
        )
    if len(path[-1].output.shape) != 4:
        raise ValueError(
            "`layer_name` must name a layer with a 4-D output (batch, height, width, "
            f"channels); its output shape is {tuple(path[-1].output.shape)}. "
            f"Received: layer_name={layer_name!r}"
        )
    return path


def gradcam_heatmaps(model, images, layer_name, class_index=None):
    """Grad-CAM heatmaps of `images` at layer `layer_name` (Selvaraju et al. 2017).

    Everything runs in inference mode (`training=False`): BatchNorm uses its moving
    statistics and dropout is off, as when the model predicts.

    Args:
        model: A classifier as described in the module docstring, e.g. the lab's
            from-scratch or transfer model. A final softmax `Dense` is evaluated without its
            softmax to get the class scores; any other output is taken as the scores.
        images: A batch `(N, H, W, 3)` as the model takes it (the lab's models: 0..255).
        layer_name: A layer with a 4-D output, in `model` or in a model nested in it, e.g.
            `last_conv_layer(model)`.
        class_index: The class to explain: `None` (each image's predicted class), one
            integer, or one integer per image.

    Returns:
        A float32 array `(N, h, w)` in `[0, 1]`, `(h, w)` the layer's spatial size; each map
        is scaled so that its maximum is 1 (all zeros where no location supports the class).

    Raises:
        ValueError: If no layer is named `layer_name`, it is a model or its output is not
            4-D, a model above it is not a chain, or `class_index` is out of range.
    """
    path = _checked_path(model, layer_name)
    steps = _steps(model, path)
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    # Watch the images, not the weights: the gradient must flow through frozen layers too
    # (a transfer model's backbone is frozen, so its variables are not watched).
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(images)
        activation, scores, probs = _forward(steps, images)
        classes = _class_indices(class_index, probs)
        chosen = tf.gather(scores, classes, axis=1, batch_dims=1)
    if len(path) > 1:
        expected = keras.ops.convert_to_numpy(model(images, training=False))
        if not np.allclose(probs.numpy(), expected, rtol=1e-4, atol=1e-5):
            raise ValueError(
                "Grad-CAM inside a nested model needs every model above it to be a chain of "
                f"layers, each applied to the previous one's output; `{model.name}` is not "
                f"(running its layers in turn does not reproduce its output). "
                f"Received: layer_name={layer_name!r}"
            )
    # Each image's score depends on its own activations only (inference mode), so the
    # gradient of the batch's scores holds every image's own gradient.
    grads = tape.gradient(chosen, activation)
    weights = tf.reduce_mean(grads, axis=(1, 2))  # Eq. 1
    cam = tf.nn.relu(tf.einsum("nhwk,nk->nhw", activation, weights))  # Eq. 2
    cam = tf.math.divide_no_nan(cam, tf.reduce_max(cam, axis=(1, 2), keepdims=True))
    return cam.numpy().astype(np.float32)


def overlay_heatmaps(images, heatmaps, alpha=0.4, colormap="jet"):
    """Blend heatmaps, resized to the images and coloured, over the images.

    Args:
        images: `(N, H, W, 3)` in 0..255.
        heatmaps: `(N, h, w)` in `[0, 1]`, from `gradcam_heatmaps`.
        alpha: Weight of the coloured heatmap, in `[0, 1]`.
        colormap: A matplotlib colormap name (`"jet"` as the keras.io example).

    Returns:
        A uint8 array `(N, H, W, 3)`.

    Raises:
        ValueError: If `alpha` is outside `[0, 1]` or the batch sizes differ.
    """
    import matplotlib  # Only the colormap; no pyplot, no backend.

    images = np.asarray(images, np.float32)
    heatmaps = np.asarray(heatmaps, np.float32)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha!r}")
    if len(images) != len(heatmaps):
        raise ValueError(
            "`heatmaps` must hold one map per image. "
            f"Received: heatmaps with shape {heatmaps.shape} for images {images.shape}"
        )
    resized = tf.image.resize(heatmaps[..., None], images.shape[1:3]).numpy()[..., 0]
    colours = matplotlib.colormaps[colormap](np.clip(resized, 0.0, 1.0))[..., :3] * 255.0
    blended = (1.0 - alpha) * images + alpha * colours
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
