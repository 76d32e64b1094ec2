"""What a network costs: multiply-adds, FLOPs and parameters, overall and stage by stage.

Counts are analytic, read from the layer shapes, so they need no run and no profiler. A
convolution does `H_out * W_out * C_out * (C_in / groups) * k_h * k_w` multiply-adds per image,
a dense layer `inputs * units`, and one multiply-add is 2 FLOPs. BatchNorm, ReLU, additions and
pooling are left out: under 1% of ResNet-50's work, and the paper leaves them out too.

He et al. 2015 ("Deep Residual Learning for Image Recognition", arXiv:1512.03385) count
multiply-adds but call them "FLOPs" (Table 1: ResNet-50 has "3.8 x 10^9 FLOPs"); this module
says multiply-adds (MACs) for those and FLOPs for twice as many, as the benchmarks do.

torchvision's "GFLOPS" column (`PUBLISHED`) is multiply-adds too, and of convolutions and
dense layers only: `multiply_adds` reproduces every family member's figure to the two
published decimals. ResNet-50's 4.09 against the lab's 3.86 is not BatchNorm, ReLU, pooling or
the additions (together well under 1%): it is where the bottleneck strides. torchvision
strides the 3x3 ("v1.5"), which then runs at the higher resolution of the block's input;
`resnet50(stride_at="v1.5")` counts 4.089e9. The lab's default, the paper's and
keras.applications' "v1" strides the first 1x1 and gives 3.858e9 (the paper's 3.8).
"""

import statistics
import time

import keras
import numpy as np

from resnet_lab.checks import check_positive_int
from resnet_lab.nn.walk import all_layers

PAPER_GMACS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
"""Multiply-adds of one 224x224 forward pass, in billions, per ImageNet ResNet depth.

He et al. 2015, Table 1, bottom row ("FLOPs": 1.8, 3.6, 3.8, 7.6 and 11.3 x 10^9); the paper's
"FLOPs" there are multiply-adds. The lab's `resnet(depth)` (`stride_at="v1"`, as the paper)
should land within a few percent of these: `multiply_adds(resnet50())` is 3.86e9.
"""

PAPER_CIFAR_PARAMS = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6}
"""Parameters of the CIFAR-10 ResNets of depth 6n+2, as He et al. 2015 report them.

Table 6 ("# params" column: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M), for the networks of Sec. 4.2
with identity shortcuts (option A, parameter-free). They are trainable parameters: compare with
the trainable weights of `cifar_resnet(depth, shortcut="identity")`, not with
`count_params()`, which also counts BatchNorm's moving mean and variance (non-trainable).
"""

_TORCHVISION = "torchvision.models, weights tables (num_params, GFLOPS), torchvision 0.17 docs"
_TIMM = "timm models/resnet.py resnet50d; params 25,576,264, GMACs 4.4 (model card, 224 px)"
_KERAS = "keras.io/api/applications table (params in millions; no FLOPs published)"

PUBLISHED = {
    "resnet18": {"params": 11_689_512, "gflops": 1.81, "source": _TORCHVISION},
    "resnet34": {"params": 21_797_672, "gflops": 3.66, "source": _TORCHVISION},
    "resnet50": {"params": 25_557_032, "gflops": 4.09, "source": _TORCHVISION},
    "resnet101": {"params": 44_549_160, "gflops": 7.80, "source": _TORCHVISION},
    "resnet152": {"params": 60_192_808, "gflops": 11.51, "source": _TORCHVISION},
    "resnext50_32x4d": {"params": 25_028_904, "gflops": 4.23, "source": _TORCHVISION},
    "resnext101_32x8d": {"params": 88_791_336, "gflops": 16.41, "source": _TORCHVISION},
    "resnext101_64x4d": {"params": 83_455_272, "gflops": 15.46, "source": _TORCHVISION},
    "wide_resnet50_2": {"params": 68_883_240, "gflops": 11.40, "source": _TORCHVISION},
    "wide_resnet101_2": {"params": 126_886_696, "gflops": 22.75, "source": _TORCHVISION},
    "resnet50d": {"params": 25_576_264, "gflops": 4.4, "source": _TIMM},
    "resnet50v2": {"params": 25_600_000, "gflops": None, "source": _KERAS},
    "resnet101v2": {"params": 44_700_000, "gflops": None, "source": _KERAS},
    "resnet152v2": {"params": 60_400_000, "gflops": None, "source": _KERAS},
    "vgg16": {"params": 138_400_000, "gflops": None, "source": _KERAS},
    "mobilenetv2": {"params": 3_500_000, "gflops": None, "source": _KERAS},
    "efficientnetb0": {"params": 5_300_000, "gflops": None, "source": _KERAS},
}
"""Parameters and GFLOPS as torchvision, timm and keras.applications publish them, per model.

`params`: torchvision's and timm's are exact trainable counts (the lab's builders match them,
tested); keras.applications publishes millions, rounded, of `count_params()` (BatchNorm's
moving statistics included). `gflops`: torchvision's "GFLOPS", which are in fact billions of
multiply-adds of 224x224 images through convolutions and dense layers, `multiply_adds`' unit
(see the module docstring for ResNet-50's 4.09 against the lab's 3.86); timm's "GMACs" (ResNet-D:
4.33 by `multiply_adds`, timm's card rounds its profiler's count to 4.4); `None` where the
source publishes none. `source` says where each number comes from.
"""


def inference_speed(model, batch_size=8, repeats=3, image_size=None, seed=0):
    """Inference throughput of `model` on this machine, in images per second.

    One warm-up call first (it traces and compiles the graph), then `repeats` timed calls of
    `model.predict_on_batch` on one random batch; the median of the repeats, so that one
    call slowed by another process does not decide the figure.

    Args:
        model: A `keras.Model` taking images `(batch, height, width, channels)`.
        batch_size: Images per call.
        repeats: Timed calls, at least 1.
        image_size: Square size for inputs whose height and width are `None`; required then.
        seed: Seed of the random batch (uniform in 0..1).

    Returns:
        A `float`: `batch_size / median seconds per call`.

    Raises:
        ValueError: If `batch_size` or `repeats` is not a positive integer, or the input size
            is unknown and `image_size` not given.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("repeats", repeats)
    height, width, channels = model.input_shape[1:]
    if image_size is not None:
        height, width = check_positive_int("image_size", image_size), image_size
    if height is None or width is None:
        raise ValueError(
            "`model` takes any image size: say which with `image_size`. "
            f"Received: image_size=None, model.input_shape={model.input_shape}"
        )
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 1.0, (batch_size, height, width, channels)).astype("float32")
    model.predict_on_batch(images)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(images)
        seconds.append(time.perf_counter() - start)
    return batch_size / statistics.median(seconds)


def _layer_macs(layer):
    """Multiply-adds of one image through `layer`: convolutions and dense layers only."""
    if isinstance(layer, keras.layers.Conv2D):
        # Each output value (H_out * W_out * C_out of them, in either data format) is a dot
        # product over the kernel's (k_h, k_w, C_in / groups): grouped convolutions count right.
        kernel_h, kernel_w, channels_in, _ = layer.kernel.shape
        return int(np.prod(layer.output.shape[1:])) * kernel_h * kernel_w * channels_in
    if isinstance(layer, keras.layers.Dense):
        return int(np.prod(layer.kernel.shape))
    return 0


def _layer_params(layer):
    """Weights of `layer` trained by gradient descent, whether or not it is frozen now.

    Everything in `layer.weights` except BatchNorm's moving mean and variance, which
    training updates by averaging, not by gradients.
    """
    if isinstance(layer, keras.layers.BatchNormalization):
        weights = [w for w in (layer.gamma, layer.beta) if w is not None]
    else:
        weights = layer.weights
    return int(sum(np.prod(w.shape) for w in weights))


def multiply_adds(model):
    """Multiply-adds of one image's forward pass through `model`'s convolutions and dense layers.

    Args:
        model: A built `keras.Model` with fixed input height and width; nested models
            (a backbone inside a transfer model) are counted layer by layer.

    Returns:
        An `int`: what He et al. 2015 (Table 1) call "FLOPs".
    """
    return int(sum(_layer_macs(layer) for layer in all_layers(model)))


def forward_flops(model):
    """FLOPs of one image's forward pass through `model`'s convolutions and dense layers.

    Two FLOPs per multiply-add (`2 * multiply_adds(model)`). A training step costs about 3x
    this: the forward pass, then gradients with respect to activations and to weights, each
    about as costly.

    Args:
        model: A built `keras.Model` with fixed input height and width; nested models are
            counted layer by layer.

    Returns:
        An `int`.
    """
    return 2 * multiply_adds(model)


def _stage_of(name):
    """`conv1`..`convN` from a ResNet layer name; `None` for layers outside the stages."""
    if name.startswith("pool1_"):
        # He et al. 2015, Table 1 open conv2_x with the 3x3 max pool, so conv1's output is
        # the 112x112 convolution output, conv2's the 56x56 of its blocks.
        return "conv2"
    prefix = name.split("_", 1)[0]
    if prefix.startswith("conv") and prefix[4:].isdigit() and "_" in name:
        return prefix
    return None


def stage_table(model):
    """Output shape, blocks, parameters and multiply-adds of each stage of a ResNet.

    For models built by `resnet_lab.nn.models` (or keras.applications ResNets, which use the
    same names): stem layers `conv1_*`, stage layers `conv{s}_block{b}_*`, then the head.
    Rows follow He et al. 2015, Table 1: `conv1` is the stem convolution (with its BatchNorm
    and ReLU), `conv2` starts with the stem's max pool (`pool1_*`, no weights, no work),
    `conv3`.. are the later stages, and `head` is everything else: global pooling, dropout,
    the classifier, the final `post_bn` of pre-activation networks, and weightless layers
    before the stem such as a wrapper's `rescale`. Nested models are looked into, so a
    wrapped or transfer model works too.

    Args:
        model: A built `keras.Model` with fixed input height and width.

    Returns:
        A list of dicts, one per stage then a `"total"` row, with keys `stage`, `height`,
        `width` and `channels` (of the stage's output; `height` and `width` are `None` for a
        2-D head output and for the total), `blocks` (`None` outside `conv2`..), `params`
        (trainable kind: kernels, biases, BatchNorm gamma and beta, not its moving
        statistics) and `macs` (multiply-adds per image, as `multiply_adds`).

    Raises:
        ValueError: If `model` has no `conv1_*` or `conv{s}_block{b}_*` layers.
    """
    rows = {}
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        stage = _stage_of(layer.name) or "head"
        row = rows.setdefault(stage, {"stage": stage, "blocks": set(), "params": 0, "macs": 0})
        row["params"] += _layer_params(layer)
        row["macs"] += int(_layer_macs(layer))
        if "_block" in layer.name:
            row["blocks"].add(layer.name.split("_")[1])
        row["shape"] = tuple(layer.output.shape[1:])
    if not set(rows) - {"head"}:
        names = [layer.name for layer in all_layers(model)][:5]
        raise ValueError(
            "`model` must be a ResNet with layers named `conv1_*` and "
            f"`conv{{s}}_block{{b}}_*`, as `resnet_lab.nn.models` builds. Received: model with "
            f"layers {names}..."
        )
    order = sorted((s for s in rows if s != "head"), key=lambda s: int(s[4:]))
    table = []
    for stage in order + (["head"] if "head" in rows else []):
        row = rows[stage]
        shape = row.pop("shape")
        spatial = shape[:2] if len(shape) == 3 else (None, None)
        blocks = len(row.pop("blocks")) or None
        table.append(
            {
                "stage": stage,
                "height": spatial[0],
                "width": spatial[1],
                "channels": shape[-1],
                "blocks": blocks,
                "params": row["params"],
                "macs": row["macs"],
            }
        )
    table.append(
        {
            "stage": "total",
            "height": None,
            "width": None,
            "channels": None,
            "blocks": sum(row["blocks"] or 0 for row in table),
            "params": sum(row["params"] for row in table),
            "macs": sum(row["macs"] for row in table),
        }
    )
    return table


def format_stage_table(rows):
    """`stage_table`'s rows as an aligned text table, ready to print.

    Args:
        rows: The list returned by `stage_table`.

    Returns:
        A `str`: one line per row, columns stage, output (`HxWxC`, or `C` for a 2-D
        output), blocks, parameters and multiply-adds in millions.
    """
    header = ("stage", "output", "blocks", "params", "MACs (M)")
    lines = []
    for row in rows:
        if row["height"] is not None:
            output = f"{row['height']}x{row['width']}x{row['channels']}"
        else:
            output = "" if row["channels"] is None else str(row["channels"])
        lines.append(
            (
                row["stage"],
                output,
                "-" if row["blocks"] is None else str(row["blocks"]),
                f"{row['params']:,}",
                f"{row['macs'] / 1e6:,.1f}",
            )
        )
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def text(line):
        # Names left-aligned, numbers right-aligned.
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths))
        )

    return "\n".join([text(header), "  ".join("-" * w for w in widths), *map(text, lines)])
