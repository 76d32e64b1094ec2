"""Port keras.applications ResNet50/101/152 weights into this package's bias-free ResNets.

keras.applications convolutions carry a bias right before a BatchNorm. In inference mode

    BN(Wx + b) = gamma * (Wx + b - mean) / sqrt(var + eps) + beta,

so the bias folds exactly into the moving mean: BN with mean `mean - b` applied to `Wx` gives
the same output (Ioffe & Szegedy 2015, "Batch Normalization", arXiv:1502.03167, Sec. 3.2,
why the bias is redundant). In training mode BatchNorm uses batch statistics, which subtract
any constant per channel, so the bias never mattered there either.
"""

import os
import re
import tempfile
from pathlib import Path

import keras
import numpy as np

# Bottleneck blocks per stage (conv2..conv5) of the keras.applications ResNets (V1 and V2).
KERAS_RESNETS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}

# keras.applications' ImageNet files: name -> (md5 with top, md5 without), as
# `keras/src/applications/resnet.py` (`WEIGHTS_HASHES`) hashes them.
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
WEIGHTS_HASHES = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    "resnet50v2": ("3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    "resnet101v2": ("6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152v2": ("a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
}


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be downloaded or found in Keras' cache."""


def weights_file(name, include_top):
    """keras.applications' file name for `name`'s ImageNet weights, e.g. `resnet50_..._notop.h5`.

    Args:
        name: A key of `WEIGHTS_HASHES`.
        include_top: With the classifier (`True`) or without.

    Returns:
        A `str`.
    """
    return f"{name}_weights_tf_dim_ordering_tf_kernels{'' if include_top else '_notop'}.h5"


def keras_cache_folder():
    """Where `keras.utils.get_file` keeps downloads: `$KERAS_HOME/models/` (default
    `~/.keras/models/`), or `/tmp/.keras/models/` when that folder is not writable."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    if not os.access(home, os.W_OK):
        home = os.path.join(tempfile.gettempdir(), ".keras")
    return Path(home) / "models"


def imagenet_weights_path(name="resnet50", include_top=False):
    """keras.applications' ImageNet weights file, downloaded once into Keras' cache (md5-checked).

    Uses `keras.utils.get_file` with keras.applications' URL, file name and md5, so a file that
    `keras.applications.ResNet50(weights="imagenet")` downloaded before is reused.

    Args:
        name: `"resnet50"`, `"resnet101"`, `"resnet152"`, `"resnet50v2"`, `"resnet101v2"` or
            `"resnet152v2"`.
        include_top: The file with the 1000-class classifier, or without (`_notop`).

    Returns:
        The local path, a `str`.

    Raises:
        ValueError: If `name` has no ImageNet weights in keras.applications.
        WeightsUnavailableError: If the file is not cached and cannot be downloaded; the
            message says which file to place where, with its md5.
    """
    if name not in WEIGHTS_HASHES:
        allowed = ", ".join(map(repr, WEIGHTS_HASHES))
        raise ValueError(
            f"keras.applications has ImageNet weights only for {allowed}. Received: name={name!r}"
        )
    file, md5 = weights_file(name, include_top), WEIGHTS_HASHES[name][0 if include_top else 1]
    try:
        return keras.utils.get_file(file, WEIGHTS_URL + file, cache_subdir="models", file_hash=md5)
    except Exception as error:  # Keras raises a bare Exception on a failed download.
        raise WeightsUnavailableError(
            f"Could not download the ImageNet weights for {name} ({error}).\n"
            f"Offline? Download {WEIGHTS_URL + file} on a machine with internet and place it "
            f"at\n  {keras_cache_folder() / file}\n(md5 {md5}; Keras' cache folder is "
            "$KERAS_HOME/models, default ~/.keras/models), or pass its path as `weights=`. To "
            "run without ImageNet weights say so explicitly with `weights=None`."
        ) from error


_BLOCK_CONV = re.compile(r"^conv(\d+)_block(\d+)_(\d)_conv$")


def _layout(names):
    """`(block type, blocks per stage)`, read from layer names like `conv3_block4_1_conv`."""
    blocks, convs = {}, 0
    for name in names:
        match = _BLOCK_CONV.match(name)
        if match:
            stage, index, conv = map(int, match.groups())
            blocks[stage] = max(blocks.get(stage, 0), index)
            convs = max(convs, conv)
    kind = "bottleneck" if convs == 3 else "basic"
    return kind, tuple(blocks[stage] for stage in sorted(blocks))


def _describe(layout):
    kind, counts = layout
    depth = KERAS_RESNETS.get(counts) if kind == "bottleneck" else None
    return f"{kind} blocks per stage {counts}" + (f" (ResNet-{depth})" if depth else "")


def _file_layout(path):
    """`(layout, has top)` of a keras.applications weights file, as `_layout` describes it."""
    import h5py  # only here: importing the builders should not load HDF5

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No weights file at {path!r}.")
    if not h5py.is_hdf5(path):
        raise ValueError(f"`source` is not an HDF5 weights file. Received: source={path!r}")
    with h5py.File(path, "r") as file:
        if "layer_names" not in file.attrs and "model_weights" in file:
            file = file["model_weights"]  # a whole legacy model saved with `model.save`
        if "layer_names" in file.attrs:
            # Legacy format of the ImageNet downloads: groups named after the layers.
            names = [
                n.decode() if isinstance(n, bytes) else str(n) for n in file.attrs["layer_names"]
            ]
            return _layout(names), "predictions" in names
        if "layers" in file:
            # Keras 3 `.weights.h5`: groups are named by layer class (`conv2d_17`), so count.
            keys = list(file["layers"])
            convs = sum(key.startswith("conv2d") for key in keys)
            has_top = any(key.startswith("dense") for key in keys)
            for counts in KERAS_RESNETS:
                # stem + 3 per block + one projection per stage
                if convs == 1 + 3 * sum(counts) + len(counts):
                    return ("bottleneck", counts), has_top
            return ("unknown", f"({convs} convolutions)"), has_top
    raise ValueError(f"`source` is not a Keras weights file. Received: source={path!r}")


def _source_from_file(path, target):
    """Builds the keras.applications ResNet that `target` mirrors and loads `path` into it."""
    layout = _layout(layer.name for layer in target.layers)
    kind, counts = layout
    if kind != "bottleneck" or counts not in KERAS_RESNETS:
        raise ValueError(
            "`target` must be a ResNet-50, -101 or -152 (or V2) of this package; it has "
            f"{_describe(layout)}. Received: target={target.name!r}"
        )
    include_top = _has_top(target)
    file_layout, file_top = _file_layout(path)
    if file_layout != layout or file_top != include_top:
        raise ValueError(
            f"The weights file does not match the target: file has {_describe(file_layout)}, "
            f"top={file_top}; target has {_describe(layout)}, top={include_top}. "
            f"Received: source={path!r}"
        )
    # keras' V2 keeps the stem conv's bias (no BatchNorm follows it); the lab's V1 has none.
    v2 = target.get_layer("conv1_conv").use_bias
    builder = getattr(keras.applications, f"ResNet{KERAS_RESNETS[counts]}{'V2' if v2 else ''}")
    if include_top:
        # Weights do not depend on the image size; keras.applications wants 224 with a top.
        units = target.get_layer("predictions").units
        source = builder(weights=None, include_top=True, classes=units)
    else:
        source = builder(weights=None, include_top=False, input_shape=(None, None, 3))
    source.load_weights(path)
    return source


def _has_top(model):
    return any(layer.name == "predictions" for layer in model.layers)


def _weighted_layers(model):
    return {layer.name: layer for layer in model.layers if layer.weights}


def _check_same(what, name, source_value, target_value):
    if source_value != target_value:
        raise ValueError(
            f"Layer `{name}` differs in {what}: source has {source_value}, target has "
            f"{target_value}."
        )


def _check_foldable(sources, targets):
    """Every source conv bias the target drops must feed a BatchNorm named after the conv."""
    for name, layer in sources.items():
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias and not targets[name].use_bias:
            bn = sources.get(name.removesuffix("_conv") + "_bn")
            if not isinstance(bn, keras.layers.BatchNormalization) or bn.input is not layer.output:
                raise ValueError(
                    f"Cannot fold the bias of `{name}`: no BatchNormalization named after it "
                    "takes its output."
                )


def _check_compatible(source, target):
    """Raises unless `source` and `target` have the same depth, head and weighted layers."""
    source_layout = _layout(layer.name for layer in source.layers)
    target_layout = _layout(layer.name for layer in target.layers)
    if source_layout != target_layout:
        raise ValueError(
            f"Source and target differ in depth: source has {_describe(source_layout)}, "
            f"target has {_describe(target_layout)}."
        )
    if _has_top(source) != _has_top(target):
        raise ValueError(
            f"Source and target differ in include_top: source {_has_top(source)}, target "
            f"{_has_top(target)}."
        )
    sources, targets = _weighted_layers(source), _weighted_layers(target)
    if sources.keys() != targets.keys():
        only_source = sorted(sources.keys() - targets.keys())
        only_target = sorted(targets.keys() - sources.keys())
        raise ValueError(
            "Source and target have different layers with weights: only in source "
            f"{only_source[:5]}{'...' if len(only_source) > 5 else ''}, only in target "
            f"{only_target[:5]}{'...' if len(only_target) > 5 else ''}. Only `preact=False` "
            "targets mirror keras.applications' ResNet v1."
        )
    return sources, targets


def _conv_plan(name, source_layer, target_layer):
    for attribute in ("kernel_size", "strides"):
        _check_same(
            attribute, name, getattr(source_layer, attribute), getattr(target_layer, attribute)
        )
    _check_same("padding", name, source_layer.padding.lower(), target_layer.padding.lower())
    _check_same("kernel shape", name, source_layer.kernel.shape, target_layer.kernel.shape)
    plan = [(target_layer.kernel, keras.ops.convert_to_numpy(source_layer.kernel))]
    if target_layer.use_bias and not source_layer.use_bias:
        raise ValueError(f"Layer `{name}` has a bias in the target, none in the source.")
    if target_layer.use_bias:  # keras' V2: a bias with no BatchNorm after it, copied
        plan.append((target_layer.bias, source_layer.bias.numpy()))
    return plan


def _batchnorm_plan(name, source_layer, target_layer, sources, targets):
    _check_same("epsilon", name, source_layer.epsilon, target_layer.epsilon)
    _check_same("channels", name, source_layer.gamma.shape, target_layer.gamma.shape)
    mean = source_layer.moving_mean.numpy()
    conv = sources.get(name.removesuffix("_bn") + "_conv")
    folded = isinstance(conv, keras.layers.Conv2D) and conv.use_bias
    if folded and not targets[name.removesuffix("_bn") + "_conv"].use_bias:
        mean = mean - conv.bias.numpy()  # BN(Wx + b), mean m  ==  BN(Wx), mean m - b
    return [
        (target_layer.gamma, source_layer.gamma.numpy()),
        (target_layer.beta, source_layer.beta.numpy()),
        (target_layer.moving_mean, mean),
        (target_layer.moving_variance, source_layer.moving_variance.numpy()),
    ]


def _plan(source, target):
    """Pairs every target variable with its value; raises before anything is assigned."""
    sources, targets = _check_compatible(source, target)
    _check_foldable(sources, targets)
    plan = []
    for name, target_layer in targets.items():
        source_layer = sources[name]
        _check_same("type", name, type(source_layer).__name__, type(target_layer).__name__)
        if isinstance(target_layer, keras.layers.Conv2D):
            plan += _conv_plan(name, source_layer, target_layer)
        elif isinstance(target_layer, keras.layers.BatchNormalization):
            plan += _batchnorm_plan(name, source_layer, target_layer, sources, targets)
        elif isinstance(target_layer, keras.layers.Dense):
            _check_same("kernel shape", name, source_layer.kernel.shape, target_layer.kernel.shape)
            plan += [
                (target_layer.kernel, source_layer.kernel.numpy()),
                (target_layer.bias, source_layer.bias.numpy()),
            ]
        else:
            raise ValueError(f"Cannot port layer `{name}` of type {type(target_layer).__name__}.")
    return plan


def port_keras_weights(source, target):
    """Copies keras.applications ResNet (V1 or V2) weights into the lab's network of that name.

    Layers are matched by name (this package keeps keras.applications' names). Each V1 conv
    bias of the source is folded exactly into the moving mean of the BatchNorm after it:
    `BN(Wx + b)` with mean `m` equals `BN(Wx)` with mean `m - b`. A V1 target must be built
    with the defaults that match keras.applications: `stride_at="v1"`, `preact=False`,
    `bn_epsilon=1.001e-5`. A V2 target (`resnet50v2()`, ...) keeps keras' biases, which no
    BatchNorm follows there, and they are copied. Nothing is assigned unless every layer matches.

    Args:
        source: A `keras.applications.ResNet50/101/152` or `ResNet50V2/101V2/152V2` model, or
            the path of a weights file for one (the ImageNet `.h5` downloads, with or without
            top, or a Keras 3 `.weights.h5`). For a path, the keras.applications model that the
            target mirrors (V2 when its `conv1_conv` has a bias) is built with `weights=None`
            and `include_top` as the target's, then loaded.
        target: `resnet50()`, `resnet101()`, `resnet152()` or `resnet50v2()`, `resnet101v2()`,
            `resnet152v2()` from `resnet_lab.nn.models`, with or without top (same as the
            source) and any input size.

    Returns:
        `target`, now holding the source's weights.

    Raises:
        ValueError: If source and target differ in depth, blocks per stage, `include_top`,
            layer names, conv strides or shapes, BatchNorm epsilon or classifier size, if
            the path is not a Keras weights file, or if `source` or `target` is not a model.
        FileNotFoundError: If `source` is a path to no file.
    """
    if not isinstance(target, keras.Model):
        raise ValueError(f"`target` must be a keras.Model. Received: target={target!r}")
    if isinstance(source, (str, os.PathLike)):
        source = _source_from_file(os.fspath(source), target)
    elif not isinstance(source, keras.Model):
        raise ValueError(
            "`source` must be a keras.applications ResNet model or a weights file path. "
            f"Received: source={source!r}"
        )
    for variable, value in _plan(source, target):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return target


def max_output_difference(source, target, images):
    """Largest absolute difference between two models' inference outputs on `images`.

    The check that a port is exact: after `port_keras_weights(source, target)` it is below
    1e-4 for float32 ImageNet inputs (tested), the rounding of a folded bias.

    Args:
        source: A model, e.g. `keras.applications.ResNet50`.
        target: A model taking the same inputs, e.g. this package's `resnet50()`.
        images: A float32 batch both models accept (already preprocessed).

    Returns:
        A Python float.
    """
    images = np.asarray(images, np.float32)
    expected = keras.ops.convert_to_numpy(source(images, training=False))
    actual = keras.ops.convert_to_numpy(target(images, training=False))
    return float(np.max(np.abs(expected - actual)))
