"""Block diagrams hold exactly the layers of the block they were drawn from."""

import keras
import pytest
from IPython.core.interactiveshell import InteractiveShell
from matplotlib.figure import Figure

from resnet_lab import basic_block, bottleneck_block, diagrams

PNG = b"\x89PNG\r\n\x1a\n"


def one_block(block, channels, *args, **kwargs):
    x = keras.Input((8, 8, channels))
    return keras.Model(x, block(x, *args, name="b", **kwargs))


def names(steps):
    return None if steps is None else [step.layer.name for step in steps]


def drawn(ax):
    """Layer names of the boxes (and the "+") drawn in `ax`."""
    return sorted(patch.get_gid() for patch in ax.patches if patch.get_gid())


def texts(ax):
    return {text.get_text() for text in ax.texts}


def block_layers(model):
    return sorted(
        layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
    )


CASES = {
    "basic, stride 2, projection": (
        (basic_block, 4, 8),
        {"stride": 2},
        [],
        ["b_1_conv", "b_1_bn", "b_1_relu", "b_2_conv", "b_2_bn"],
        ["b_0_conv", "b_0_bn"],
        ["b_out"],
        {"Conv 3×3, 8, /2", "Conv 3×3, 8", "Conv 1×1, 8, /2", "BatchNorm", "ReLU"},
    ),
    "basic, option A": (
        (basic_block, 4, 8),
        {"stride": 2, "shortcut": "identity"},
        [],
        ["b_1_conv", "b_1_bn", "b_1_relu", "b_2_conv", "b_2_bn"],
        ["b_0_pool", "b_0_pad"],
        ["b_out"],
        {"subsample /2", "zero-pad channels", "4×4×4", "4×4×8"},
    ),
    "basic, identity": (
        (basic_block, 8, 8),
        {},
        [],
        ["b_1_conv", "b_1_bn", "b_1_relu", "b_2_conv", "b_2_bn"],
        [],
        ["b_out"],
        {"identity", "+"},
    ),
    "plain": (
        (basic_block, 4, 8),
        {"shortcut": "none"},
        [],
        ["b_1_conv", "b_1_bn", "b_1_relu", "b_2_conv", "b_2_bn", "b_out"],
        None,
        [],
        {"input 8×8×4", "output 8×8×8"},
    ),
    "bottleneck, v1.5": (
        (bottleneck_block, 16, 4),
        {"stride": 2, "stride_at": "v1.5"},
        [],
        ["b_1_conv", "b_1_bn", "b_1_relu", "b_2_conv", "b_2_bn", "b_2_relu", "b_3_conv", "b_3_bn"],
        ["b_0_conv", "b_0_bn"],
        ["b_out"],
        {"Conv 1×1, 4", "Conv 3×3, 4, /2", "Conv 1×1, 16", "Conv 1×1, 16, /2"},
    ),
    "pre-activation, projection": (
        (basic_block, 4, 8),
        {"stride": 2, "preact": True},
        ["b_preact_bn", "b_preact_relu"],
        ["b_1_conv", "b_1_bn", "b_1_relu", "b_2_conv"],
        ["b_0_conv"],
        [],
        {"Conv 1×1, 8, /2"},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_trace_and_drawing_follow_the_graph(case):
    (block, channels, filters), kwargs, pre, main, shortcut, post, labels = case
    model = one_block(block, channels, filters, **kwargs)
    graph = diagrams.trace_block(model)
    assert names(graph["pre"]) == pre
    assert names(graph["main"]) == main
    assert names(graph["shortcut"]) == shortcut
    assert names(graph["post"]) == post
    assert (graph["add"] is None) == (shortcut is None)

    fig = diagrams.plot_block(model, title="block")
    ax = fig.axes[0]
    assert drawn(ax) == block_layers(model)
    assert labels <= texts(ax)
    assert ("+" in texts(ax)) == (shortcut is not None)


def test_plot_block_takes_the_output_tensor():
    x = keras.Input((8, 8, 4))
    y = basic_block(x, 8, stride=2, name="t")
    fig = diagrams.plot_block(y)
    assert drawn(fig.axes[0]) == block_layers(keras.Model(x, y))


def test_plot_blocks_one_axes_per_block_renders_png(tmp_path):
    blocks = {
        "plain pair": one_block(basic_block, 8, 8, shortcut="none"),
        "basic block": one_block(basic_block, 8, 8),
        "bottleneck": one_block(bottleneck_block, 16, 4),
    }
    path = tmp_path / "blocks.png"
    fig = diagrams.plot_blocks(blocks, path=path)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == list(blocks)
    for ax, model in zip(fig.axes, blocks.values()):
        assert drawn(ax) == block_layers(model)
    assert path.read_bytes()[:8] == PNG
    data, _ = InteractiveShell.instance().display_formatter.format(fig)
    assert data["image/png"][:8] == PNG


def test_two_blocks_are_rejected():
    x = keras.Input((8, 8, 8))
    y = basic_block(basic_block(x, 8, name="one"), 8, name="two")
    with pytest.raises(ValueError, match="one block"):
        diagrams.plot_block(keras.Model(x, y))


def test_not_a_block_is_rejected():
    with pytest.raises(ValueError, match="Received: block="):
        diagrams.plot_block("conv")


def test_a_grouped_convolution_is_labelled_with_its_groups(tmp_path):
    x = keras.Input((8, 8, 64))
    y = keras.layers.Conv2D(128, 3, padding="same", groups=32, use_bias=False, name="g")(x)
    ax = diagrams.plot_block(keras.Model(x, y)).axes[0]
    assert "Conv 3×3, 128, groups 32" in texts(ax)
    # A ResNeXt block (Xie et al. 2017) draws like the others, its 3x3 labelled grouped.
    resnext = one_block(bottleneck_block, 256, 128, groups=32, width_per_group=4)
    fig = diagrams.plot_block(resnext, path=tmp_path / "resnext.png")
    grouped = [t for t in texts(fig.axes[0]) if "groups 32" in t]
    assert grouped and all(t.startswith("Conv 3×3") for t in grouped)
    assert drawn(fig.axes[0]) == block_layers(resnext)
