"""Plots for the lab: curves, confusion matrices, sample grids, gradient flow, degradation.

Every function takes plain data (history dicts, NumPy arrays), never a model, returns a
`matplotlib.figure.Figure` and, given `path`, also saves it as a PNG. Figures are made without
`pyplot`, so they work headless (CLI, tests) and display once when returned in a notebook.
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def save_figure(fig, path):
    """Save `fig` to `path` (PNG), creating the parent folder; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _finish(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_history(histories, metrics=("accuracy", "loss"), path=None):
    """Training curves of several runs side by side, one panel per metric.

    Args:
        histories: Mapping of run name to a Keras-style history dict (`{"accuracy": [...],
            "val_accuracy": [...], ...}`), e.g. `{"scratch": h1, "transfer": h2}`.
        metrics: Metric names to plot; the `val_` curve is drawn dashed beside each.
        path: Optional PNG path to save to.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    fig = Figure(figsize=(5.5 * len(metrics), 4))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for i, (name, history) in enumerate(histories.items()):
            color = f"C{i}"
            for key, style, label in ((metric, "-", "train"), (f"val_{metric}", "--", "val")):
                values = history.get(key)
                if values:
                    epochs = np.arange(1, len(values) + 1)
                    ax.plot(epochs, values, style, color=color, label=f"{name} ({label})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_confusion_matrix(matrix, class_names, normalize=True, title=None, path=None):
    """A confusion matrix with class names (rows: true class, columns: predicted).

    Args:
        matrix: Square array of counts, `matrix[true, predicted]`.
        class_names: One name per class.
        normalize: Show each row as fractions of that class's images.
        title: Optional title (e.g. the run name and its accuracy).
        path: Optional PNG path to save to.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if normalize:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    fig = Figure(figsize=(0.45 * n + 2.5, 0.45 * n + 1.5))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in range(n):
        for j in range(n):
            if matrix[i, j] > 0:
                text = f"{matrix[i, j]:.2f}".lstrip("0") if normalize else f"{matrix[i, j]:.0f}"
                color = "white" if matrix[i, j] > 0.6 * matrix.max() else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=6, color=color)
    return _finish(fig, path)


def plot_samples(images, labels, class_names, predictions=None, n=16, cols=8, path=None):
    """A grid of images titled with their class (and prediction, green if right, red if not).

    Args:
        images: Array `(N, H, W, 3)`, uint8 or float in 0..255.
        labels: Integer class per image.
        class_names: One name per class.
        predictions: Optional predicted class per image.
        n: How many images to show (the first `n`).
        cols: Images per row.
        path: Optional PNG path to save to.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    n = min(n, len(images))
    rows = -(-n // cols)
    fig = Figure(figsize=(1.6 * cols, 1.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for i in range(n):
        axes[i].imshow(np.clip(np.asarray(images[i]), 0, 255).astype(np.uint8))
        title, color = class_names[labels[i]], "black"
        if predictions is not None:
            right = predictions[i] == labels[i]
            title = title if right else f"{class_names[predictions[i]]}\n(true: {title})"
            color = "green" if right else "red"
        axes[i].set_title(title, fontsize=7, color=color)
    return _finish(fig, path)


def plot_gradient_norms(norms, title="Gradient norm per layer at initialisation", path=None):
    """Per-layer gradient norms against depth, one line per network, log scale.

    Args:
        norms: Mapping of network name to a sequence of gradient norms, input side first.
        title: Figure title.
        path: Optional PNG path to save to.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for i, (name, values) in enumerate(norms.items()):
        style = "--" if name.startswith("plain") else "-"
        ax.plot(np.arange(1, len(values) + 1), values, style, color=f"C{i}", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("layer (input side → output side)")
    ax.set_ylabel("‖∂loss/∂kernel‖")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _finish(fig, path)


def plot_degradation(histories, path=None):
    """Training and validation error of plain vs residual nets, as in He et al. 2015, Fig. 1/6.

    Thin dashed lines are training error, bold lines validation error; plain nets on the left,
    residual nets on the right, sharing the y axis.

    Args:
        histories: Mapping of network name (`"plain-20"`, `"resnet-56"`, ...) to a Keras-style
            history dict with `accuracy` and `val_accuracy`.
        path: Optional PNG path to save to.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, family in zip(axes, ("plain", "resnet")):
        runs = [(name, h) for name, h in histories.items() if name.startswith(family)]
        for i, (name, history) in enumerate(runs):
            color = f"C{i}"
            train_error = 100 * (1 - np.asarray(history["accuracy"]))
            epochs = np.arange(1, len(train_error) + 1)
            ax.plot(epochs, train_error, "--", lw=1, color=color, label=f"{name} train")
            if history.get("val_accuracy"):
                val_error = 100 * (1 - np.asarray(history["val_accuracy"]))
                ax.plot(epochs, val_error, "-", lw=2, color=color, label=f"{name} val")
        ax.set_title(f"{family} networks")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%)")
    return _finish(fig, path)


def plot_comparison(results, path=None):
    """Bar chart of train / validation / test accuracy for several runs.

    Args:
        results: Mapping of run name to a results dict with `train_accuracy`,
            `val_accuracy` and `test_accuracy` (fractions; missing ones are skipped).
        path: Optional PNG path to save to.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    keys = ("train_accuracy", "val_accuracy", "test_accuracy")
    names = list(results)
    fig = Figure(figsize=(2.2 * len(names) + 2, 4))
    ax = fig.subplots()
    width = 0.8 / len(keys)
    for k, key in enumerate(keys):
        values = [100 * (results[n].get(key) or 0) for n in names]
        bars = ax.bar(np.arange(len(names)) + (k - 1) * width, values, width, label=key[:-9])
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    return _finish(fig, path)
