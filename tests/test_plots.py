"""Every plot returns a figure that Jupyter renders as a PNG and saves a real PNG."""

import io

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell
from matplotlib.figure import Figure

from resnet_lab import data, plots

PNG = b"\x89PNG\r\n\x1a\n"
HISTORY = {
    "accuracy": [0.2, 0.5, 0.7],
    "val_accuracy": [0.2, 0.4, 0.5],
    "loss": [2.0, 1.5, 1.0],
    "val_loss": [2.2, 1.8, 1.6],
}
TRANSFER_HISTORY = {**HISTORY, **{f"fine_tune_{k}": v[:2] for k, v in HISTORY.items()}}
IMAGES = np.random.default_rng(0).integers(0, 256, (17, 8, 8, 3), dtype=np.uint8)
LABELS = np.arange(17)


AXIS = np.linspace(-1, 1, 5)
GRID = {
    "alphas": AXIS,
    "betas": AXIS,
    "center_loss": 0.5,
    "losses": 0.5 + 3 * (AXIS[:, None] ** 2 + 2 * AXIS[None, :] ** 2),
}
SWEEP = {
    "depths": [20, 56, 110],
    "seconds": [1, 2, 3],
    "plain": {"grad_first": [1, 100, 1e5], "act_last": [0.6, 0.6, 0.6]},
    "residual": {"grad_first": [0.5, 2, 5], "act_last": [1.5, 2.5, 3.6]},
}
RESPONSES = [
    {"block": f"conv{s}_block{b}", "stage": f"conv{s}", "ratio": 0.1 * s + 0.01 * b}
    for s in (2, 3, 4)
    for b in (1, 2, 3)
]


def flip(batch, training=False):
    return batch[:, :, ::-1] if training else batch


MAKERS = {
    "history": lambda p: plots.plot_history({"scratch": HISTORY, "transfer": HISTORY}, path=p),
    "confusion": lambda p: plots.plot_confusion_matrix(np.eye(17) * 20, data.CLASS_NAMES, path=p),
    "samples": lambda p: plots.plot_samples(
        IMAGES[:5], [0, 1, 2, 3, 4], data.CLASS_NAMES, predictions=[0, 1, 0, 3, 4], path=p
    ),
    "gradients": lambda p: plots.plot_gradient_norms(
        {"plain-20": [1, 0.1], "resnet-20": [1, 1]}, path=p
    ),
    "gradients per parameter": lambda p: plots.plot_gradient_norms(
        {"plain-20": [1, 0.1], "resnet-20": [1, 1]}, sizes=[432, 2304], path=p
    ),
    "degradation": lambda p: plots.plot_degradation(
        {"plain-20": HISTORY, "resnet-20": HISTORY}, path=p
    ),
    "comparison": lambda p: plots.plot_comparison(
        {"a": {"train_accuracy": 1, "val_accuracy": 0.5, "test_accuracy": 0.4}}, path=p
    ),
    "class examples": lambda p: plots.plot_class_examples(IMAGES, LABELS, data.CLASS_NAMES, path=p),
    "augmented": lambda p: plots.plot_augmented(IMAGES[0], flip, n=3, path=p),
    "schedule": lambda p: plots.plot_schedule(
        np.arange(100), np.linspace(0, 1, 100), warmup_steps=10, path=p
    ),
    "misclassified": lambda p: plots.plot_misclassified(
        IMAGES, LABELS, LABELS[::-1], data.CLASS_NAMES, n=4, path=p
    ),
    "per class": lambda p: plots.plot_per_class_accuracy(
        {"scratch": np.linspace(0, 1, 17), "transfer": np.ones(17)}, data.CLASS_NAMES, path=p
    ),
    "fine-tuning": lambda p: plots.plot_fine_tuning(TRANSFER_HISTORY, 3, path=p),
    "mixed": lambda p: plots.plot_mixed(
        IMAGES[:3],
        np.eye(17)[LABELS[:3]] * 0.7 + np.eye(17)[LABELS[3:6]] * 0.3,
        data.CLASS_NAMES,
        path=p,
    ),
    "gradcam": lambda p: plots.plot_gradcam(
        IMAGES[:2], [np.eye(3), np.ones((7, 5))], titles=["a", "b"], path=p
    ),
    "landscapes": lambda p: plots.plot_landscapes({"plain-56": GRID, "resnet-56": GRID}, path=p),
    "depth sweep": lambda p: plots.plot_depth_sweep(SWEEP, path=p),
    "block responses": lambda p: plots.plot_block_responses({"resnet-20": RESPONSES}, path=p),
}


@pytest.mark.parametrize("make", MAKERS.values(), ids=MAKERS.keys())
def test_plot_returns_figure_and_png(tmp_path, make):
    path = tmp_path / "sub" / "plot.png"
    assert isinstance(make(path), Figure)
    assert path.read_bytes()[:8] == PNG


@pytest.mark.parametrize("make", MAKERS.values(), ids=MAKERS.keys())
def test_jupyter_renders_the_figure_as_png(make):
    # IPython's own formatter, as a kernel uses it, with no `%matplotlib inline`: a plain
    # `Figure` made without pyplot gets only `text/plain` here.
    data_, _ = InteractiveShell.instance().display_formatter.format(make(None))
    assert data_["image/png"][:8] == PNG


PHOTO_FIGURES = ("class examples", "augmented", "misclassified", "mixed", "gradcam")


@pytest.mark.parametrize("name", PHOTO_FIGURES)
def test_photo_galleries_render_at_the_photo_resolution(name, tmp_path):
    """Photos render at PHOTO_DPI, the other figures at DPI: a gallery's PNG is what keeps the
    committed notebook small, in Jupyter and in a saved file alike."""
    from PIL import Image

    fig = MAKERS[name](tmp_path / "photo.png")
    chart = MAKERS["history"](None)
    assert (fig.png_dpi, chart.png_dpi) == (plots.PHOTO_DPI, plots.DPI)
    for png in (fig._repr_png_(), (tmp_path / "photo.png").read_bytes()):
        width = Image.open(io.BytesIO(png)).width
        # bbox "tight" moves the edges by a few pixels; at DPI the PNG would be 110/80 wider.
        assert width <= fig.get_figwidth() * (plots.PHOTO_DPI + plots.DPI) / 2


def test_gradient_norms_per_parameter_divide_by_sqrt_of_size():
    fig = plots.plot_gradient_norms({"net": [2.0, 30.0]}, sizes=[4, 900])
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1.0, 1.0])
    assert "√" in ax.get_ylabel()
    fig = plots.plot_gradient_norms({"net": [2.0, 30.0]}, ylabel="rms gradient")
    assert fig.axes[0].get_ylabel() == "rms gradient"
    with pytest.raises(ValueError, match="Received: sizes"):
        plots.plot_gradient_norms({"net": [2.0, 30.0]}, sizes=[4])


def test_class_examples_show_one_image_per_class_titled():
    labels = np.repeat(np.arange(17), 2)
    images = np.repeat(IMAGES, 2, axis=0)
    fig = plots.plot_class_examples(images, labels, data.CLASS_NAMES)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == list(data.CLASS_NAMES)
    assert all(len(ax.images) == 1 for ax in titled)


def test_augmented_calls_augment_in_training_mode():
    calls = []

    def augment(batch, training=False):
        calls.append((batch.shape, batch.dtype, training))
        return batch + 1

    fig = plots.plot_augmented(IMAGES[0], augment, n=4)
    assert calls == [((1, 8, 8, 3), np.float32, True)] * 4
    assert sum(len(ax.images) for ax in fig.axes) == 5


def test_misclassified_shows_only_the_wrong_ones():
    predictions = LABELS.copy()
    predictions[[2, 5]] = [3, 0]
    fig = plots.plot_misclassified(IMAGES, LABELS, predictions, data.CLASS_NAMES)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["LilyValley /\nBluebell", "Iris /\nDaffodil"]
    assert "2 of 17" in fig.get_suptitle()


def test_per_class_accuracy_one_bar_per_class_and_model():
    fig = plots.plot_per_class_accuracy({"a": np.full(17, 0.5), "b": np.ones(17)}, data.CLASS_NAMES)
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    assert heights == [50.0] * 17 + [100.0] * 17
    with pytest.raises(ValueError, match="Received: per_class"):
        plots.plot_per_class_accuracy({"a": [1.0]}, data.CLASS_NAMES)


def test_fine_tuning_concatenates_head_and_fine_tuning():
    fig = plots.plot_fine_tuning(TRANSFER_HISTORY)
    accuracy, loss = fig.axes
    assert list(accuracy.lines[0].get_ydata()) == [0.2, 0.5, 0.7, 0.2, 0.5]
    assert list(loss.lines[1].get_ydata()) == [2.2, 1.8, 1.6, 2.2, 1.8]
    marker = accuracy.lines[-1]
    assert list(marker.get_xdata()) == [3.5, 3.5]


def test_gradcam_stretches_each_heatmap_over_its_image():
    fig = plots.plot_gradcam(IMAGES[:2], [np.eye(3), np.ones((7, 5))])
    overlay = [ax for ax in fig.axes if len(ax.images) == 2]
    assert len(overlay) == 2
    for ax in overlay:
        image, heatmap = ax.images
        assert heatmap.get_extent() == image.get_extent()
    with pytest.raises(ValueError, match=r"Received: heatmaps\[0\]\.shape"):
        plots.plot_gradcam(IMAGES[:1], [np.ones((2, 2, 2))])
    with pytest.raises(ValueError, match="Received: 1 images, 2 heatmaps"):
        plots.plot_gradcam(IMAGES[:1], [np.eye(2), np.eye(2)])


def test_misclassified_spreads_over_the_true_classes():
    labels = np.repeat([0, 1, 2], 4)
    predictions = (labels + 1) % 3  # every image wrong, class 0 first in file order
    images = np.zeros((12, 8, 8, 3), np.uint8)
    fig = plots.plot_misclassified(images, labels, predictions, data.CLASS_NAMES, n=4)
    titles = [ax.get_title().split(" /")[0] for ax in fig.axes if ax.images]
    assert titles == ["Daffodil", "Snowdrop", "LilyValley", "Daffodil"]


def test_mixed_titles_name_each_class_with_its_weight():
    targets = np.zeros((2, 17))
    targets[0, [3, 7]] = [0.75, 0.25]
    targets[1, [1, 2, 5]] = [0.97, 0.02, 0.01]
    fig = plots.plot_mixed(IMAGES[:2], targets, data.CLASS_NAMES)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == [
        f"75% {data.CLASS_NAMES[3]}\n25% {data.CLASS_NAMES[7]}",
        f"97% {data.CLASS_NAMES[1]}",
    ]


def test_landscapes_share_axes_and_contour_levels_and_mark_the_centre():
    other = {**GRID, "losses": GRID["losses"] * 10}
    fig = plots.plot_landscapes({"a": GRID, "b": other})
    a, b = fig.axes[:2]
    levels = [ax.collections[0].levels for ax in (a, b)]
    np.testing.assert_allclose(levels[0], levels[1])
    # Log-spaced from the lowest loss of all grids to the highest.
    assert levels[0][0] == pytest.approx(0.5) and levels[0][-1] == pytest.approx(95, rel=1e-6)
    np.testing.assert_allclose(np.diff(np.log(levels[0])), np.log(190) / 14, rtol=1e-6)
    assert a.get_xlim() == b.get_xlim() and a.get_ylim() == b.get_ylim()
    assert all(list(ax.lines[0].get_xdata()) == [0] for ax in (a, b))
    assert len(fig.axes) == 3  # two panels and one colour bar
    fixed = plots.plot_landscapes({"a": GRID}, levels=[1, 2, 4])
    assert list(fixed.axes[0].collections[0].levels) == [1, 2, 4]


def test_depth_sweep_plots_both_quantities_on_log_axes():
    fig = plots.plot_depth_sweep(SWEEP)
    grad, act = fig.axes
    assert grad.get_yscale() == act.get_yscale() == "log"
    assert [list(line.get_ydata()) for line in grad.lines] == [[1, 100, 1e5], [0.5, 2, 5]]
    assert [line.get_label() for line in act.lines] == ["plain", "residual"]


def test_block_responses_one_line_per_network_with_stage_boundaries():
    fig = plots.plot_block_responses({"a": RESPONSES, "b": RESPONSES[:3]})
    ax = fig.axes[0]
    curves = [line for line in ax.lines if line.get_label() in ("a", "b")]
    np.testing.assert_allclose(curves[0].get_ydata(), [r["ratio"] for r in RESPONSES])
    assert len(curves[1].get_xdata()) == 3
    boundaries = [line.get_xdata()[0] for line in ax.lines if line not in curves]
    assert boundaries == [3.5, 6.5]


def test_degradation_marks_the_clean_training_error_and_pairs_the_deepest():
    histories = {name: HISTORY for name in ("plain-20", "plain-56", "resnet-20", "resnet-56")}
    results = {name: {"train_error": 0.1 * i} for i, name in enumerate(histories, 1)}
    fig = plots.plot_degradation(histories, results=results)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["plain networks", "resnet networks", "plain-56 vs resnet-56"]
    pair = fig.axes[2]
    dots = {line.get_label(): line for line in pair.lines if line.get_marker() == "o"}
    assert set(dots) == {"plain-56 train (clean, final)", "resnet-56 train (clean, final)"}
    dot = dots["resnet-56 train (clean, final)"]
    assert list(dot.get_xdata()) == [3] and list(dot.get_ydata()) == pytest.approx([40.0])
    # Without results, no dots; without a pair of one depth, no third panel.
    fig = plots.plot_degradation({"plain-20": HISTORY, "resnet-56": HISTORY})
    assert len(fig.axes) == 2 and not any(line.get_marker() == "o" for line in fig.axes[0].lines)


def test_confusion_matrix_sorted_by_accuracy_and_most_confused_outlined():
    names = ["a", "b", "c"]
    matrix = np.array([[5, 5, 0], [0, 10, 0], [1, 3, 6]])
    fig = plots.plot_confusion_matrix(matrix, names, sort=True, annotate_top=2)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "c", "a"]
    marked = sorted(p.get_gid() for p in ax.patches if (p.get_gid() or "").startswith("conf"))
    assert marked == ["confused a -> b", "confused c -> b"]
    legend = next(t.get_text() for t in ax.texts if t.get_text().startswith("most confused"))
    assert "1. a → b: 5" in legend and "2. c → b: 3" in legend
    unsorted = plots.plot_confusion_matrix(matrix, names).axes[0]
    assert [t.get_text() for t in unsorted.get_yticklabels()] == names


def test_per_class_accuracy_sorted_best_first():
    fig = plots.plot_per_class_accuracy(
        {"a": [0.2, 0.9, 0.5], "b": [0.4, 0.7, 0.5]}, ["x", "y", "z"]
    )
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["y", "z", "x"]
    assert [bar.get_height() for bar in ax.patches][:3] == pytest.approx([90, 50, 20])
    unsorted = plots.plot_per_class_accuracy({"a": [0.2, 0.9, 0.5]}, ["x", "y", "z"], sort=False)
    assert [t.get_text() for t in unsorted.axes[0].get_xticklabels()] == ["x", "y", "z"]
