"""Deepen a trained ResNet by appending blocks to each stage, keeping every trained weight.

The identity-mapping argument of He et al. 2015 (Sec. 3.1): "if the added layers can be
constructed as identity mappings, a deeper model should have training error no greater than
its shallower counterpart". A residual block whose branch starts at zero (Goyal et al. 2017,
"Accurate, Large Minibatch SGD", Sec. 5.1: the last BatchNorm's gamma is 0) *is* its
shortcut, so the deepened network computes exactly what the trained one did. The same block
without the skip, initialised as usual, replaces the stage's output by a random function of it.

Keras only (public `keras.models.clone_model` with a `call_function`), any backend.
"""

import re

import keras

from resnet_lab.checks import check_positive_int
from resnet_lab.nn.blocks import BLOCKS
from resnet_lab.nn.walk import all_layers

_BLOCK_NAME = re.compile(r"^(conv\d+)_block(\d+)_")


def _stage_ends(model):
    """`{name of each stage's last layer: (stage, index of its last block)}`.

    A functional model lists its layers in graph order, so the last layer named
    `convS_blockB_*` of the highest `B` is the stage's output (`..._out`, or `..._add` for a
    pre-activation block).
    """
    last = {}
    for layer in all_layers(model):
        match = _BLOCK_NAME.match(layer.name)
        if match:
            stage, index = match[1], int(match[2])
            if stage not in last or index >= last[stage][1]:
                last[stage] = (layer.name, index)
    return {name: (stage, index) for stage, (name, index) in last.items()}


def _block_settings(layers, prefix):
    """Block type, width and BatchNorm settings of the block named `prefix`, read from it."""
    preact = f"{prefix}_preact_bn" in layers
    bn = layers[f"{prefix}_preact_bn" if preact else f"{prefix}_1_bn"]
    return {
        "block": "bottleneck" if f"{prefix}_3_conv" in layers else "basic",
        "filters": layers[f"{prefix}_2_conv"].filters,
        "preact": preact,
        "bn_momentum": bn.momentum,
        "bn_epsilon": bn.epsilon,
        "dtype_policy": layers[f"{prefix}_1_conv"].dtype_policy,
    }


def deepen(model, extra_blocks=1, *, skip=True, zero_init=True, seed=0):
    """The same network with `extra_blocks` more blocks at the end of every stage.

    The new blocks have stride 1 and the stage's width and type (basic or bottleneck,
    post- or pre-activation), and are named on from the stage's last block
    (`conv2_block3`, ... after `conv2_block2`). Every layer of `model` keeps its name and its
    trained weights (copied, not shared: training one model leaves the other alone).

    Args:
        model: A functional ResNet of the lab with stage blocks named `convS_blockB_*`, e.g.
            a trained `scratch_model` (a `Rescaling` wrapper around `build_resnet`, nested
            models are followed) or a `cifar_resnet`.
        extra_blocks: Blocks appended to each stage, a positive integer.
        skip: `True`: residual blocks with an identity shortcut. `False`: the plain
            counterpart, the same layers without the addition.
        zero_init: For residual blocks, start each new branch at zero (Goyal et al. 2017), so
            that the deepened model's outputs equal `model`'s. Plain blocks always get the
            usual He initialisation: a zero-initialised plain block would output zeros.
        seed: Seed of the new blocks' initial weights (`keras.utils.set_random_seed`, which
            reseeds Python, NumPy and the backend).

    Returns:
        A new `keras.Model` with `model`'s inputs and outputs and the trained weights.

    Raises:
        ValueError: If `extra_blocks` is not a positive integer or `model` has no blocks
            named `convS_blockB_*`.
    """
    check_positive_int("extra_blocks", extra_blocks)
    ends = _stage_ends(model)
    if not ends:
        raise ValueError(
            "`model` must hold ResNet stages with blocks named `convS_blockB_*` "
            f"(the lab's builders). Received: model={model.name!r}"
        )
    layers = {layer.name: layer for layer in all_layers(model)}
    keras.utils.set_random_seed(seed)

    def call(layer, *args, **kwargs):
        x = layer(*args, **kwargs)
        if layer.name in ends:
            stage, last = ends[layer.name]
            settings = _block_settings(layers, f"{stage}_block{last}")
            x = _append_blocks(x, stage, last, extra_blocks, settings, skip, zero_init)
        return x

    deeper = keras.models.clone_model(model, call_function=call, recursive=True)
    copies = {layer.name: layer for layer in all_layers(deeper)}
    for name, layer in layers.items():
        if layer.weights:
            copies[name].set_weights(layer.get_weights())
    return deeper


def _append_blocks(x, stage, last, count, settings, skip, zero_init):
    """`count` blocks after block `last` of `stage`, in the trained block's dtype policy."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(settings["dtype_policy"])
    try:
        for index in range(last + 1, last + 1 + count):
            x = BLOCKS[settings["block"]](
                x,
                settings["filters"],
                stride=1,
                shortcut="identity" if skip else "none",
                preact=settings["preact"],
                zero_init=skip and zero_init,
                bn_momentum=settings["bn_momentum"],
                bn_epsilon=settings["bn_epsilon"],
                name=f"{stage}_block{index}",
            )
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    return x
