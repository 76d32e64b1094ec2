"""Every plot returns a figure that Jupyter renders as a PNG and saves a real PNG."""

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell
from matplotlib.figure import Figure

from resnet_lab import data, plots

PNG = b"\x89PNG\r\n\x1a\n"
HISTORY = {"accuracy": [0.2, 0.5, 0.7], "val_accuracy": [0.2, 0.4, 0.5],
           "loss": [2.0, 1.5, 1.0], "val_loss": [2.2, 1.8, 1.6]}
TRANSFER_HISTORY = {**HISTORY, **{f"fine_tune_{k}": v[:2] for k, v in HISTORY.items()}}
IMAGES = np.random.default_rng(0).integers(0, 256, (17, 8, 8, 3), dtype=np.uint8)
LABELS = np.arange(17)


def flip(batch, training=False):
    return batch[:, :, ::-1] if training else batch


MAKERS = {
    "history": lambda p: plots.plot_history({"scratch": HISTORY, "transfer": HISTORY}, path=p),
    "confusion": lambda p: plots.plot_confusion_matrix(np.eye(17) * 20, data.CLASS_NAMES,
                                                       path=p),
    "samples": lambda p: plots.plot_samples(IMAGES[:5], [0, 1, 2, 3, 4], data.CLASS_NAMES,
                                            predictions=[0, 1, 0, 3, 4], path=p),
    "gradients": lambda p: plots.plot_gradient_norms({"plain-20": [1, 0.1],
                                                      "resnet-20": [1, 1]}, path=p),
    "gradients per parameter": lambda p: plots.plot_gradient_norms(
        {"plain-20": [1, 0.1], "resnet-20": [1, 1]}, sizes=[432, 2304], path=p),
    "degradation": lambda p: plots.plot_degradation({"plain-20": HISTORY, "resnet-20": HISTORY},
                                                    path=p),
    "comparison": lambda p: plots.plot_comparison(
        {"a": {"train_accuracy": 1, "val_accuracy": 0.5, "test_accuracy": 0.4}}, path=p),
    "class examples": lambda p: plots.plot_class_examples(IMAGES, LABELS, data.CLASS_NAMES,
                                                          path=p),
    "augmented": lambda p: plots.plot_augmented(IMAGES[0], flip, n=3, path=p),
    "schedule": lambda p: plots.plot_schedule(np.arange(100), np.linspace(0, 1, 100),
                                              warmup_steps=10, path=p),
    "misclassified": lambda p: plots.plot_misclassified(IMAGES, LABELS, LABELS[::-1],
                                                        data.CLASS_NAMES, n=4, path=p),
    "per class": lambda p: plots.plot_per_class_accuracy(
        {"scratch": np.linspace(0, 1, 17), "transfer": np.ones(17)}, data.CLASS_NAMES, path=p),
    "fine-tuning": lambda p: plots.plot_fine_tuning(TRANSFER_HISTORY, 3, path=p),
    "mixed": lambda p: plots.plot_mixed(IMAGES[:3], np.eye(17)[LABELS[:3]] * 0.7 +
                                        np.eye(17)[LABELS[3:6]] * 0.3, data.CLASS_NAMES,
                                        path=p),
    "gradcam": lambda p: plots.plot_gradcam(IMAGES[:2], [np.eye(3), np.ones((7, 5))],
                                            titles=["a", "b"], path=p),
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
    fig = plots.plot_per_class_accuracy({"a": np.full(17, 0.5), "b": np.ones(17)},
                                        data.CLASS_NAMES)
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
    assert titles == [f"75% {data.CLASS_NAMES[3]}\n25% {data.CLASS_NAMES[7]}",
                      f"97% {data.CLASS_NAMES[1]}"]
