"""Block diagrams drawn from the Keras graph of a built block, so they cannot disagree with it.

`plot_block` walks the graph of one block from its output back to its input: the residual
branch becomes a column of boxes (one per layer, labelled with its kind and settings, e.g.
"Conv 3×3, 64, /2"), the shortcut a side path (a line labelled "identity", or its own layers:
a 1x1 projection with BatchNorm, or option A's subsampling and zero channels), the addition a
"+" and the layers after it follow below, as in He et al. 2015, Fig. 2 and 5. A plain block
(no shortcut) is a single column. Matplotlib only, no graphviz.

Every box carries its layer's name as the patch's `gid`, so tests (and curious learners) can
check that the picture holds exactly the block's layers.

References:
    Xie et al. 2017, "Aggregated Residual Transformations for Deep Neural Networks"
        (ResNeXt), arXiv:1611.05431: a grouped convolution is labelled with its groups.
    He et al. 2015, "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
    He et al. 2016, "Identity Mappings in Deep Residual Networks", arXiv:1603.05027.
"""

from collections import namedtuple

import keras
from matplotlib.patches import Circle, FancyBboxPatch

from resnet_lab.keras_internals import is_symbolic, producer
from resnet_lab.plots import LabFigure, finish

# One layer call in the graph: the layer, its input tensor and its output tensor.
Step = namedtuple("Step", "layer input output")

BOX_W, BOX_H = 2.8, 0.56  # a layer box, in data units (one row = 1)
SIDE_X = 3.3  # centre of the shortcut column
RADIUS = 0.24  # the "+" node
LABEL_CHARS = 18  # the longest label that fits a box at 9 points
SCALE = 0.45  # inches per data unit
XLIM = (-BOX_W / 2 - 0.1, SIDE_X + BOX_W / 2 + 0.1)
TITLE_ROWS = 0.9  # room above the diagram for its title
COLORS = {"Conv": "#cfe2f3", "BatchNorm": "#fff2cc", "ReLU": "#d9ead3"}
OTHER_COLOR = "#e8e8e8"


def _walk_back(tensor):
    """Follow single-input layers back from `tensor`; return `(steps, first_tensor)`.

    The walk stops at a model input or at a layer with several inputs (the addition);
    `steps` is in forward order and starts from `first_tensor`.
    """
    steps = []
    while True:
        layer, inputs = producer(tensor)
        if len(inputs) != 1:
            return steps[::-1], tensor
        steps.append(Step(layer, inputs[0], tensor))
        tensor = inputs[0]


def _output_tensor(block):
    outputs = getattr(block, "outputs", None)
    if outputs is None and is_symbolic(block):
        return block
    if outputs is None or len(outputs) != 1:
        raise ValueError(
            "`block` must be a Keras functional model with one output, or the output tensor of "
            f"one block. Received: block={block!r}"
        )
    return outputs[0]


def _split_at(steps, tensor):
    """Split forward `steps` into those up to `tensor` (inclusive) and those after it."""
    for i, step in enumerate(steps):
        if step.output is tensor:
            return steps[: i + 1], steps[i + 1 :]
    return [], steps


def trace_block(block):
    """Read one residual block from its Keras graph.

    Args:
        block: A functional `keras.Model` built from one block, e.g.
            `keras.Model(x, basic_block(x, 64, name="b"))`, or the block's output tensor.

    Returns:
        A dict of `Step(layer, input, output)` lists in forward order: `pre` (layers before
        the shortcut branches off, e.g. the pre-activation BN-ReLU), `main` (the residual
        branch), `shortcut` (`[]` for an identity shortcut, `None` for a plain block), `add`
        (the merging step, or `None`) and `post` (layers after the addition); plus `input` and
        `output`, the block's first and last tensors.

    Raises:
        ValueError: If `block` is neither, or holds more than one merge (several blocks).
    """
    output = _output_tensor(block)
    post, merged = _walk_back(output)
    layer, inputs = producer(merged)
    if not inputs:  # reached the input: a plain block
        return {
            "pre": [],
            "main": post,
            "shortcut": None,
            "add": None,
            "post": [],
            "input": merged,
            "output": output,
        }
    if len(inputs) != 2:
        raise ValueError(
            "`block` must merge exactly two paths (branch and shortcut). "
            f"Received: block merging {len(inputs)} tensors in layer {layer.name!r}"
        )
    paths = []
    for tensor in inputs:
        steps, start = _walk_back(tensor)
        if producer(start)[1]:
            raise ValueError(
                "`block` must hold one block (one addition); found another merge before "
                f"{layer.name!r}. Received: block={getattr(block, 'name', block)!r}"
            )
        paths.append([Step(None, start, start)] + steps)  # the input opens the path
    first, second = paths
    second_outputs = {id(step.output) for step in second}
    # The last tensor both paths share is where the shortcut branches off.
    branch = next(s.output for s in reversed(first) if id(s.output) in second_outputs)
    (pre, a), (_, b) = (_split_at(path[1:], branch) for path in paths)
    main, shortcut = (a, b) if len(a) >= len(b) else (b, a)
    return {
        "pre": pre,
        "main": main,
        "shortcut": shortcut,
        "add": Step(layer, inputs, merged),
        "post": post,
        "input": paths[0][0].input,
        "output": output,
    }


def _shape(tensor):
    return "×".join(str(d) for d in tensor.shape[1:])


def _label(step):
    """A box label: the layer's kind and its key settings."""
    layer = step.layer
    if isinstance(layer, keras.layers.Conv2D):
        kernel = "×".join(str(k) for k in layer.kernel_size)
        stride = "" if max(layer.strides) == 1 else f", /{max(layer.strides)}"
        # A grouped convolution (ResNeXt's cardinality, Xie et al. 2017) says so: it holds
        # 1/groups of a full convolution's weights.
        groups = f", groups {layer.groups}" if getattr(layer, "groups", 1) > 1 else ""
        return "Conv", f"Conv {kernel}, {layer.filters}{stride}{groups}"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "BatchNorm", "BatchNorm"
    if isinstance(layer, keras.layers.ReLU) or (
        isinstance(layer, keras.layers.Activation)
        and getattr(layer.activation, "__name__", "") == "relu"
    ):
        return "ReLU", "ReLU"
    if isinstance(layer, keras.layers.MaxPooling2D) and tuple(layer.pool_size) == (1, 1):
        return "other", f"subsample /{max(layer.strides)}"
    if isinstance(layer, keras.layers.ZeroPadding2D):
        # The channel counts show in the shape written below the box.
        channels = step.input.shape[-1] != step.output.shape[-1]
        return "other", "zero-pad channels" if channels else "ZeroPadding2D"
    return "other", type(layer).__name__


def _arrow(ax, start, end):
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        zorder=1,
        arrowprops={"arrowstyle": "-|>", "color": "0.25", "lw": 1.1, "shrinkA": 0, "shrinkB": 0},
    )


def _box(ax, step, x, y):
    """Draw one layer as a box centred on `(x, y)`; give its output shape if that changed."""
    kind, text = _label(step)
    ax.add_patch(
        FancyBboxPatch(
            (x - BOX_W / 2, y - BOX_H / 2),
            BOX_W,
            BOX_H,
            boxstyle="round,pad=0,rounding_size=0.1",
            facecolor=COLORS.get(kind, OTHER_COLOR),
            edgecolor="0.3",
            lw=1,
            zorder=2,
            gid=step.layer.name,
        )
    )
    # Long labels (a grouped convolution's) shrink to stay inside the box.
    ax.text(
        x, y, text, ha="center", va="center", fontsize=min(9, 9 * LABEL_CHARS / len(text)), zorder=3
    )
    if step.input.shape != step.output.shape:  # written beside the arrow leaving the box
        ax.text(
            x + 0.1,
            y - 0.5,
            _shape(step.output),
            ha="left",
            va="center",
            fontsize=7.5,
            color="0.35",
            zorder=3,
        )


def _rows(graph):
    """Rows the main column takes: input, layers, add, output."""
    layers = len(graph["pre"]) + len(graph["main"]) + len(graph["post"])
    return 2 + layers + (graph["add"] is not None)


def plot_block(block, title=None, ax=None, path=None):
    """Draw one residual (or plain) block from its Keras graph.

    Args:
        block: A functional `keras.Model` built from one block, e.g.
            `keras.Model(x, resnet_lab.basic_block(x, 64, name="b"))`, or its output tensor.
        title: Optional title above the diagram.
        ax: Optional matplotlib axes to draw into; a new figure otherwise.
        path: Optional PNG path to save the figure to.

    Returns:
        The figure (a `LabFigure` when `ax` is `None`). Each layer box has the layer's name
        as its `gid`.

    Raises:
        ValueError: As `trace_block`.
    """
    graph = trace_block(block)
    rows = _rows(graph)
    if ax is None:
        ax = _figure_axes(1, rows)[0]
    ax.set_xlim(*XLIM)
    ax.set_ylim(-rows + 0.5, 0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10, fontweight="bold")

    ax.text(0, 0, f"input {_shape(graph['input'])}", ha="center", va="center", fontsize=9)
    y, bottom = 0, -0.18  # current row and the lower edge of what was drawn last
    branch_y = -0.5
    for step in graph["pre"] + graph["main"]:
        y -= 1
        _arrow(ax, (0, bottom), (0, y + BOX_H / 2))
        _box(ax, step, 0, y)
        bottom = y - BOX_H / 2
        if step is (graph["pre"] or [None])[-1]:
            branch_y = y - 0.5
    if graph["add"] is not None:
        y -= 1
        add_y = y
        _arrow(ax, (0, bottom), (0, y + RADIUS))
        ax.add_patch(
            Circle(
                (0, y),
                RADIUS,
                facecolor="white",
                edgecolor="0.25",
                lw=1.2,
                zorder=2,
                gid=graph["add"].layer.name,
            )
        )
        ax.text(0, y, "+", ha="center", va="center", fontsize=13, zorder=3)
        bottom = y - RADIUS
        _draw_shortcut(ax, graph["shortcut"], branch_y, add_y)
    for step in graph["post"]:
        y -= 1
        _arrow(ax, (0, bottom), (0, y + BOX_H / 2))
        _box(ax, step, 0, y)
        bottom = y - BOX_H / 2
    y -= 1
    _arrow(ax, (0, bottom), (0, y + 0.18))
    ax.text(0, y, f"output {_shape(graph['output'])}", ha="center", va="center", fontsize=9)
    return finish(ax.figure, path)


def _draw_shortcut(ax, shortcut, branch_y, add_y):
    """The side path: from the branch point right, down past its layers, into the "+"."""
    line = {"color": "0.25", "lw": 1.1, "zorder": 1}
    ax.plot([0, SIDE_X, SIDE_X], [branch_y, branch_y, add_y], **line)
    ax.plot([0], [branch_y], "o", color="0.25", markersize=4, zorder=3)
    _arrow(ax, (SIDE_X, add_y), (RADIUS, add_y))
    middle = (branch_y + add_y) / 2
    if not shortcut:
        ax.text(
            SIDE_X,
            middle,
            "identity",
            ha="center",
            va="center",
            fontsize=9,
            style="italic",
            zorder=3,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 2},
        )
        return
    top = middle + (len(shortcut) - 1) / 2
    for i, step in enumerate(shortcut):
        _box(ax, step, SIDE_X, top - i)


def plot_blocks(blocks, path=None):
    """Several blocks side by side, drawn to the same scale.

    Args:
        blocks: Mapping of title to block (as `plot_block` takes), e.g.
            `{"plain pair": m1, "basic block": m2, "bottleneck": m3}`.
        path: Optional PNG path to save to.

    Returns:
        The `LabFigure`; each axes holds one block, its boxes' `gid`s are the layer names.

    Raises:
        ValueError: As `trace_block`, or if `blocks` is empty.
    """
    if not blocks:
        raise ValueError(f"`blocks` must name at least one block. Received: blocks={blocks!r}")
    rows = max(_rows(trace_block(block)) for block in blocks.values())
    axes = _figure_axes(len(blocks), rows)
    for ax, (title, block) in zip(axes, blocks.items()):
        plot_block(block, title=title, ax=ax)
        ax.set_ylim(-rows + 0.5, 0.5)  # same scale, tops aligned
    return finish(axes[0].figure, path)


def _figure_axes(n, rows):
    """A `LabFigure` with `n` axes side by side, one data unit = `SCALE` inches."""
    width = XLIM[1] - XLIM[0]
    fig = LabFigure(figsize=(SCALE * width * n, SCALE * (rows + TITLE_ROWS)))
    height = rows / (rows + TITLE_ROWS)
    return [fig.add_axes((i / n, 0, 1 / n, height)) for i in range(n)]
