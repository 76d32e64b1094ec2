"""Plots for the lab: curves, confusion matrices, galleries, gradient flow, Grad-CAM, schedules.

Every function takes plain data (history dicts, NumPy arrays, a callable for augmentation),
never a model, returns a `LabFigure` and, given `path`, also saves it as a PNG. Figures are made
without `pyplot`, so they work headless (CLI, tests) and are never shown twice. A `LabFigure` is
a `matplotlib.figure.Figure` that renders itself as a PNG in IPython's display system
(`_repr_png_`): `display(fig)`, or a figure as a cell's last expression, shows an image in
Jupyter with no `%matplotlib inline`, in a live kernel or under `jupyter nbconvert --execute`.
"""

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 110
# Galleries of photos: at 80 dpi a 1.5-inch panel is 120 pixels, about the images' own size
# (96-128 px), and a photo's PNG costs half of what it does at 110 dpi, which keeps the
# committed notebook, its figures embedded, a few MB.
PHOTO_DPI = 80


class LabFigure(Figure):
    """A matplotlib `Figure` that Jupyter displays as a PNG image.

    A figure made without `pyplot` has no notebook display of its own: IPython shows its text
    repr (`<Figure size 640x480 with 1 Axes>`) unless `%matplotlib inline` has registered a
    formatter. `_repr_png_` is IPython's rich-display protocol, so every kernel renders it.
    `png_dpi` is the resolution it renders and saves at (`DPI`; `PHOTO_DPI` for photos).
    """

    png_dpi = DPI

    def _repr_png_(self):
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=self.png_dpi, bbox_inches="tight")
        return buffer.getvalue()


def save_figure(fig, path):
    """Save `fig` to `path` (PNG), creating the parent folder; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=getattr(fig, "png_dpi", DPI), bbox_inches="tight")
    return path


def finish(fig, path):
    """Save `fig` to `path` when one is given (`save_figure`); return `fig`.

    The last line of every plot here and in `resnet_lab.diagrams`.
    """
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
        The `LabFigure`.
    """
    fig = LabFigure(figsize=(5.5 * len(metrics), 4))
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
    return finish(fig, path)


def plot_confusion_matrix(
    matrix, class_names, normalize=True, title=None, path=None, *, sort=False, annotate_top=0
):
    """A confusion matrix with class names (rows: true class, columns: predicted).

    Args:
        matrix: Square array of counts, `matrix[true, predicted]`.
        class_names: One name per class.
        normalize: Show each row as fractions of that class's images.
        title: Optional title (e.g. the run name and its accuracy).
        path: Optional PNG path to save to.
        sort: Order the classes (rows and columns alike) by their accuracy, best first, so
            the hard classes gather at the bottom right.
        annotate_top: Outline the `annotate_top` most frequent mistakes in red and name them
            beside the matrix (`resnet_lab.analysis.most_confused`); `0` marks none.

    Returns:
        The `LabFigure`.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    names = list(class_names)
    if sort:
        recall = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
        order = np.argsort(-recall, kind="stable")
        counts, names = counts[np.ix_(order, order)], [names[i] for i in order]
    matrix = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    n = len(names)
    fig = LabFigure(figsize=(0.38 * n + 2.2, 0.38 * n + 1.4))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(n), names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
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
    if annotate_top:
        _mark_confused(ax, counts, names, annotate_top)
    return finish(fig, path)


def _mark_confused(ax, counts, names, top):
    """Red outlines on the `top` largest off-diagonal cells and a legend naming them."""
    from matplotlib.patches import Rectangle

    from resnet_lab.analysis import most_confused  # imports Keras: only when asked for

    lines = []
    for rank, (true, predicted, count) in enumerate(most_confused(counts, names, top), 1):
        i, j = names.index(true), names.index(predicted)
        ax.add_patch(
            Rectangle(
                (j - 0.5, i - 0.5),
                1,
                1,
                fill=False,
                edgecolor="red",
                lw=1.8,
                gid=f"confused {true} -> {predicted}",
            )
        )
        ax.annotate(
            str(rank),
            (j + 0.5, i - 0.5),
            color="red",
            fontsize=7,
            ha="right",
            va="bottom",
            fontweight="bold",
        )
        lines.append(f"{rank}. {true} → {predicted}: {count}")
    if lines:
        ax.text(
            1.25,
            1.0,
            "most confused (true → predicted: images)\n" + "\n".join(lines),
            transform=ax.transAxes,
            va="top",
            fontsize=8,
            color="firebrick",
        )


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
        The `LabFigure`.
    """
    n = min(n, len(images))
    rows = -(-n // cols)
    fig = LabFigure(figsize=(1.6 * cols, 1.8 * rows))
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
    return finish(fig, path)


def plot_gradient_norms(
    norms, title="Gradient norm per layer at initialisation", path=None, *, sizes=None, ylabel=None
):
    """Per-layer gradient norms against depth, one line per network, log scale.

    A kernel's gradient norm grows with its size (a 3x3x256x256 kernel has 590k entries, the
    first 3x3x3x16 only 432), so raw norms mix depth with width. Given `sizes`, each norm is
    divided by the square root of its kernel's parameter count: the root-mean-square gradient
    of one parameter, comparable across layers of any width.

    Args:
        norms: Mapping of network name to a sequence of gradient norms, input side first.
        title: Figure title.
        path: Optional PNG path to save to.
        sizes: Optional number of kernel parameters per layer, in the order of the norms:
            one sequence shared by every network, or a mapping of network name to sequence.
        ylabel: Y-axis label; by default it says whether the norms are per parameter.

    Returns:
        The `LabFigure`.

    Raises:
        ValueError: If a network's `sizes` and norms differ in length.
    """
    fig = LabFigure(figsize=(7, 3.6))
    ax = fig.subplots()
    for i, (name, values) in enumerate(norms.items()):
        values = np.asarray(values, dtype=np.float64)
        if sizes is not None:
            size = np.asarray(sizes[name] if isinstance(sizes, dict) else sizes, np.float64)
            if size.shape != values.shape:
                raise ValueError(
                    f"`sizes` must give one parameter count per norm of {name!r} "
                    f"({len(values)}). Received: sizes with {size.size} entries"
                )
            values = values / np.sqrt(size)
        style = "--" if name.startswith("plain") else "-"
        ax.plot(np.arange(1, len(values) + 1), values, style, color=f"C{i}", label=name)
    if ylabel is None:
        ylabel = "‖∂loss/∂kernel‖ / √(#params)" if sizes is not None else "‖∂loss/∂kernel‖"
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (input side → output side)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return finish(fig, path)


def _deepest_pair(names):
    """`("plain-D", "resnet-D")` for the largest depth D with both networks, or `None`."""
    depths = [
        int(name.split("-")[1])
        for name in names
        if name.startswith("plain-") and f"resnet-{name.split('-')[1]}" in names
    ]
    return (f"plain-{max(depths)}", f"resnet-{max(depths)}") if depths else None


def _error_curves(ax, histories, names, colors, results):
    """Running training error (thin dashed), validation error (bold) and, from `results`,
    the clean final training error (a marker at the last epoch) of each named run."""
    for name in names:
        history, color = histories[name], colors[name]
        train_error = 100 * (1 - np.asarray(history["accuracy"]))
        epochs = np.arange(1, len(train_error) + 1)
        ax.plot(epochs, train_error, "--", lw=1, color=color, label=f"{name} train (running)")
        if history.get("val_accuracy"):
            val_error = 100 * (1 - np.asarray(history["val_accuracy"]))
            ax.plot(epochs, val_error, "-", lw=2, color=color, label=f"{name} val")
        if results and results.get(name, {}).get("train_error") is not None:
            ax.plot(
                [epochs[-1]],
                [100 * results[name]["train_error"]],
                "o",
                ms=7,
                color=color,
                markeredgecolor="black",
                zorder=5,
                label=f"{name} train (clean, final)",
            )
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_degradation(histories, path=None, *, results=None):
    """Training and validation error of plain vs residual nets, as in He et al. 2015, Fig. 1/6.

    Thin dashed lines are the running training error Keras reports (augmented batches,
    BatchNorm in training mode, weights moving during the epoch), bold lines validation
    error; a large dot at the last epoch is the clean training error of the final weights
    (inference mode), the quantity of the paper's figures. Plain nets on the left, residual
    nets in the middle and, in a third panel, the deepest plain network beside the residual
    network of the same depth (plain-56 vs ResNet-56), all sharing the y axis.

    Args:
        histories: Mapping of network name (`"plain-20"`, `"resnet-56"`, ...) to a Keras-style
            history dict with `accuracy` and `val_accuracy`.
        path: Optional PNG path to save to.
        results: Optional mapping of network name to a results dict with `train_error`
            (`resnet_lab.analysis.degradation_experiment`'s `results`), for the dots.

    Returns:
        The `LabFigure`.
    """
    colors = {name: f"C{i}" for i, name in enumerate(histories)}
    pair = _deepest_pair(list(histories))
    panels = [
        (f"{family} networks", [n for n in histories if n.startswith(family)])
        for family in ("plain", "resnet")
    ]
    if pair:
        panels.append((f"{pair[0]} vs {pair[1]}", list(pair)))
    fig = LabFigure(figsize=(5.2 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True)
    for ax, (title, names) in zip(axes, panels):
        _error_curves(ax, histories, names, colors, results)
        ax.set_title(title)
    axes[0].set_ylabel("error (%)")
    return finish(fig, path)


def plot_depth_sweep(sweep, path=None):
    """Gradient at the first convolution and activation scale at the last stage, by depth.

    Args:
        sweep: The dict of `resnet_lab.analysis.depth_sweep`: `depths`, and per family
            (`plain`, `residual`) lists `grad_first` and `act_last`.
        path: Optional PNG path to save to.

    Returns:
        The `LabFigure`: two panels, log y, plain dashed and residual solid.
    """
    fig = LabFigure(figsize=(10, 3.6), layout="constrained")
    panels = (
        ("grad_first", "‖∂loss/∂kernel‖ at the first convolution"),
        ("act_last", "std of the last stage's output"),
    )
    for ax, (key, ylabel) in zip(fig.subplots(1, 2), panels):
        for family, style, color in (("plain", "--o", "C3"), ("residual", "-o", "C0")):
            ax.plot(sweep["depths"], sweep[family][key], style, color=color, label=family)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sweep["depths"], [str(d) for d in sweep["depths"]])
        ax.minorticks_off()
        ax.set_xlabel("depth (layers)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("At initialisation, one batch, BatchNorm in training mode", fontsize=10)
    return finish(fig, path)


def plot_block_responses(responses, path=None):
    """Std of each residual branch relative to its block's input, block by block (Fig. 7).

    He et al. 2015, Fig. 7 plots the standard deviation of the residual functions'
    responses per layer: small for residual nets, smaller still in deeper ones.

    Args:
        responses: Mapping of network name to `resnet_lab.analysis.block_responses`' list.
        path: Optional PNG path to save to.

    Returns:
        The `LabFigure`; one line per network, stage boundaries of the first one dotted.
    """
    fig = LabFigure(figsize=(7, 3.4), layout="constrained")
    ax = fig.subplots()
    for i, (name, blocks) in enumerate(responses.items()):
        ratios = [block["ratio"] for block in blocks]
        ax.plot(np.arange(1, len(ratios) + 1), ratios, "-o", ms=3, color=f"C{i}", label=name)
        if i == 0:
            stages = [block["stage"] for block in blocks]
            for k in range(1, len(stages)):
                if stages[k] != stages[k - 1]:
                    ax.axvline(k + 0.5, ls=":", color="gray")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("residual block (input side → output side)")
    ax.set_ylabel("std(branch) / std(block input)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish(fig, path)


def plot_landscapes(grids, path=None, levels=None):
    """Loss-landscape contours side by side, same axes and levels (Li et al. 2018, Fig. 5).

    Args:
        grids: Mapping of network name to a `resnet_lab.landscape.loss_landscape` dict.
        path: Optional PNG path to save to.
        levels: Contour levels shared by every panel; by default 15 log-spaced levels from
            the lowest to the highest loss over all grids (a landscape's centre is low and
            its edges can be orders of magnitude higher).

    Returns:
        The `LabFigure`; each panel marks the weights themselves (alpha = beta = 0).
    """
    from matplotlib.colors import LogNorm

    losses = np.concatenate([np.ravel(grid["losses"]) for grid in grids.values()])
    losses = losses[np.isfinite(losses)]  # a diverged corner must not hide the rest
    if levels is None:
        low, high = max(float(np.min(losses)), 1e-6), float(np.max(losses))
        levels = np.geomspace(low, high * (1 + 1e-9) if high > low else low * 2, 15)
    fig = LabFigure(figsize=(4.2 * len(grids) + 1, 4), layout="constrained")
    axes = fig.subplots(1, len(grids), sharex=True, sharey=True, squeeze=False)[0]
    for ax, (name, grid) in zip(axes, grids.items()):
        contours = ax.contour(
            grid["alphas"],
            grid["betas"],
            np.asarray(grid["losses"]).T,
            levels=levels,
            norm=LogNorm(levels[0], levels[-1]),
            cmap="viridis",
        )
        ax.plot([0], [0], "*", color="red", ms=10, label="trained weights")
        ax.set_title(f"{name} (centre loss {grid['center_loss']:.3g})", fontsize=10)
        ax.set_xlabel("α (direction 1)")
        ax.set_aspect("equal")
    axes[0].set_ylabel("β (direction 2)")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.colorbar(contours, ax=list(axes), label="loss (log scale)", format="%.3g")
    return finish(fig, path)


def plot_comparison(results, path=None):
    """Bar chart of train / validation / test accuracy for several runs.

    Args:
        results: Mapping of run name to a results dict with `train_accuracy`,
            `val_accuracy` and `test_accuracy` (fractions; missing ones are skipped).
        path: Optional PNG path to save to.

    Returns:
        The `LabFigure`.
    """
    keys = ("train_accuracy", "val_accuracy", "test_accuracy")
    names = list(results)
    fig = LabFigure(figsize=(2.2 * len(names) + 2, 4))
    ax = fig.subplots()
    width = 0.8 / len(keys)
    for k, key in enumerate(keys):
        values = [100 * (results[n].get(key) or 0) for n in names]
        bars = ax.bar(np.arange(len(names)) + (k - 1) * width, values, width, label=key[:-9])
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, ncols=len(keys), loc="lower right", bbox_to_anchor=(1, 1), frameon=False)
    ax.grid(alpha=0.3, axis="y")
    return finish(fig, path)


def _as_image(image):
    """An image as uint8 for `imshow` (the lab keeps pixels on the 0..255 scale)."""
    return np.clip(np.asarray(image, dtype=np.float64), 0, 255).astype(np.uint8)


def _gallery(n, cols, cell=(1.5, 1.65)):
    """A figure with a grid of at least `n` image panels, axes off; returns `(fig, axes)`."""
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig = LabFigure(figsize=(cell[0] * cols, cell[1] * rows), layout="constrained")
    fig.png_dpi = PHOTO_DPI
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    return fig, axes


def plot_class_examples(images, labels, class_names, path=None, *, cols=6):
    """One image per class with its name: what the network must tell apart.

    Args:
        images: Array `(N, H, W, 3)`, uint8 or float in 0..255.
        labels: Integer class per image.
        class_names: One name per class; the first image of each class is shown.
        path: Optional PNG path to save to.
        cols: Images per row.

    Returns:
        The `LabFigure`.
    """
    labels = np.asarray(labels)
    fig, axes = _gallery(len(class_names), cols)
    for c, name in enumerate(class_names):
        found = np.flatnonzero(labels == c)
        if found.size:
            axes[c].imshow(_as_image(images[found[0]]))
        axes[c].set_title(name if found.size else f"{name}\n(no image)", fontsize=9)
    return finish(fig, path)


def plot_augmented(image, augment, n=8, seed=None, path=None, *, cols=9):
    """One image and `n` random augmentations of it, as the network sees them in training.

    Args:
        image: One image `(H, W, 3)`, uint8 or float in 0..255.
        augment: A callable taking a float32 batch `(1, H, W, 3)` and `training=True`, e.g.
            `resnet_lab.augmentation(seed=0)`; called once per augmented version.
        n: Number of augmented versions.
        seed: If not `None`, `keras.utils.set_random_seed(seed)` is called first, so that
            unseeded augmentation layers draw the same pictures every run. This reseeds
            Python, NumPy and the backend globally; a seeded `augment` does not need it.
        path: Optional PNG path to save to.
        cols: Panels per row (the original counts as one).

    Returns:
        The `LabFigure`.
    """
    if seed is not None:
        import keras  # Only here: the other plots do not need a backend.

        keras.utils.set_random_seed(seed)
    batch = np.asarray(image, dtype=np.float32)[None]
    fig, axes = _gallery(n + 1, cols)
    axes[0].imshow(_as_image(image))
    axes[0].set_title("original", fontsize=9, fontweight="bold")
    for i in range(1, n + 1):
        axes[i].imshow(_as_image(np.asarray(augment(batch, training=True))[0]))
        axes[i].set_title(f"augmented {i}", fontsize=9)
    return finish(fig, path)


def plot_mixed(images, targets, class_names, n=8, path=None, *, cols=8):
    """A training batch after CutMix or mixup, each image titled with its soft label.

    Args:
        images: Array `(N, H, W, 3)` in 0..255, as the network sees them.
        targets: Probability vectors `(N, classes)`, e.g. from `resnet_lab.data.cutmix`.
        class_names: One name per class.
        n: How many images to show.
        path: Optional PNG path to save to.
        cols: Images per row.

    Returns:
        The `LabFigure`; each title lists the classes with weight >= 5%, largest first.
    """
    targets = np.asarray(targets, dtype=np.float64)
    n = min(n, len(images))
    fig, axes = _gallery(n, cols, cell=(1.6, 1.9))
    for i in range(n):
        axes[i].imshow(_as_image(images[i]))
        order = [c for c in np.argsort(-targets[i]) if targets[i, c] >= 0.05]
        axes[i].set_title(
            "\n".join(f"{targets[i, c]:.0%} {class_names[c]}" for c in order), fontsize=8
        )
    return finish(fig, path)


def plot_schedule(steps, learning_rates, warmup_steps=None, path=None, *, xlabel="step"):
    """The learning-rate schedule: linear warm-up, then cosine decay (Goyal et al. 2017).

    Args:
        steps: Step (or epoch) of each value.
        learning_rates: Learning rate at each step, e.g. `[float(schedule(s)) for s in steps]`.
        warmup_steps: Optional end of the warm-up, marked with a dotted line.
        path: Optional PNG path to save to.
        xlabel: X-axis label (`"step"` or `"epoch"`).

    Returns:
        The `LabFigure`.
    """
    learning_rates = np.asarray(learning_rates, dtype=np.float64)
    fig = LabFigure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    ax.plot(steps, learning_rates, lw=2)
    if warmup_steps:
        ax.axvline(warmup_steps, ls=":", color="gray")
        ax.annotate(
            " end of warm-up",
            (warmup_steps, 0.08),
            xycoords=("data", "axes fraction"),
            fontsize=8,
            color="gray",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("learning rate")
    ax.set_ylim(bottom=0)
    ax.set_title("Learning-rate schedule: warm-up, then cosine decay")
    ax.grid(alpha=0.3)
    return finish(fig, path)


def plot_misclassified(images, labels, predictions, class_names, n=16, path=None, *, cols=8):
    """A gallery of misclassified images, each titled "true / predicted".

    Args:
        images: Array `(N, H, W, 3)`, uint8 or float in 0..255.
        labels: True class per image.
        predictions: Predicted class per image.
        class_names: One name per class.
        n: At most this many mistakes are shown, spread over the true classes: the first
            mistake of every class, then the second of every class, and so on (the first `n`
            in file order would often all be one class).
        path: Optional PNG path to save to.
        cols: Images per row.

    Returns:
        The `LabFigure`.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    wrong = np.flatnonzero(labels != predictions)
    rank = np.zeros(len(wrong), int)  # how many earlier mistakes share the true class
    for j, i in enumerate(wrong):
        rank[j] = np.sum(labels[wrong[:j]] == labels[i])
    shown = wrong[np.lexsort((labels[wrong], rank))][:n]
    fig, axes = _gallery(max(len(shown), 1), cols)
    for ax, i in zip(axes, shown):
        ax.imshow(_as_image(images[i]))
        ax.set_title(
            f"{class_names[labels[i]]} /\n{class_names[predictions[i]]}",
            fontsize=8,
            color="firebrick",
        )
    if not len(shown):
        axes[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    fig.suptitle(f"Misclassified: {len(wrong)} of {len(labels)} (true / predicted)", fontsize=10)
    return finish(fig, path)


def plot_per_class_accuracy(per_class, class_names, path=None, *, sort=True):
    """Per-class accuracy of several models side by side, one bar per model and class.

    Args:
        per_class: Mapping of model name to one accuracy (fraction) per class, e.g.
            `{"scratch": [...], "transfer": [...]}`.
        class_names: One name per class.
        path: Optional PNG path to save to.
        sort: Order the classes by their mean accuracy over the models, best first, so the
            hardest classes sit at the right end.

    Returns:
        The `LabFigure`.

    Raises:
        ValueError: If a model's accuracies are not one per class.
    """
    n, k = len(class_names), max(len(per_class), 1)
    accuracies = {}
    for name, values in per_class.items():
        accuracies[name] = np.asarray(values, dtype=np.float64)
        if accuracies[name].shape != (n,):
            raise ValueError(
                f"`per_class[{name!r}]` must hold one accuracy per class ({n}). "
                f"Received: per_class[{name!r}] with shape {accuracies[name].shape}"
            )
    order = np.arange(n)
    if sort and accuracies:
        order = np.argsort(-np.mean(list(accuracies.values()), axis=0), kind="stable")
    fig = LabFigure(figsize=(max(6.0, 0.16 * n * (k + 1) + 1), 3.4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / k
    for j, (name, values) in enumerate(accuracies.items()):
        ax.bar(np.arange(n) + (j - (k - 1) / 2) * width, 100 * values[order], width, label=name)
    ax.set_xticks(range(n), [class_names[i] for i in order], rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy per class")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncols=k, loc="lower right", bbox_to_anchor=(1, 1), frameon=False)
    return finish(fig, path)


def plot_fine_tuning(history, fine_tune_start_epoch=None, path=None):
    """Head training then fine-tuning as one curve, with a marker where fine-tuning starts.

    Args:
        history: A Keras-style history dict. Either the transfer results' format (`accuracy`,
            `val_accuracy`, `loss`, `val_loss` of the head phase and `fine_tune_accuracy`,
            `fine_tune_val_accuracy`, ... of the fine-tuning phase, concatenated here) or
            one already-concatenated history.
        fine_tune_start_epoch: Number of epochs before fine-tuning started; by default the
            length of the head phase.
        path: Optional PNG path to save to.

    Returns:
        The `LabFigure`.
    """
    curves = {
        key: list(values) + list(history.get(f"fine_tune_{key}", []))
        for key, values in history.items()
        if not key.startswith("fine_tune_")
    }
    if fine_tune_start_epoch is None:
        fine_tune_start_epoch = len(history.get("accuracy", history.get("loss", [])))
    fig = LabFigure(figsize=(10, 3.4), layout="constrained")
    for ax, metric in zip(fig.subplots(1, 2), ("accuracy", "loss")):
        for key, style, label in ((metric, "-", "train"), (f"val_{metric}", "--", "val")):
            if curves.get(key):
                ax.plot(np.arange(1, len(curves[key]) + 1), curves[key], style, label=label)
        ax.axvline(fine_tune_start_epoch + 0.5, color="gray", ls=":")
        ax.text(
            fine_tune_start_epoch + 0.5,
            0.02,
            " fine-tuning →",
            color="gray",
            fontsize=8,
            transform=ax.get_xaxis_transform(),
        )
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Head training, then fine-tuning", fontsize=11)
    return finish(fig, path)


def plot_gradcam(images, heatmaps, titles=None, path=None, *, alpha=0.45):
    """Images (top row) and their Grad-CAM heatmaps laid over them (bottom row).

    Each heatmap is stretched over its image (bilinear, by `imshow`'s `extent`), so a 7x7 map
    from a network's last stage covers the whole picture (Selvaraju et al. 2017).

    Args:
        images: Array `(N, H, W, 3)`, uint8 or float in 0..255.
        heatmaps: `N` 2-D arrays in [0, 1], any size.
        titles: Optional title per image (e.g. "true / predicted").
        path: Optional PNG path to save to.
        alpha: Opacity of the heatmap (jet colour map).

    Returns:
        The `LabFigure`.

    Raises:
        ValueError: If the counts differ or a heatmap is not 2-D.
    """
    if len(images) != len(heatmaps):
        raise ValueError(
            "`heatmaps` must hold one map per image. "
            f"Received: {len(images)} images, {len(heatmaps)} heatmaps"
        )
    n = len(images)
    fig = LabFigure(figsize=(1.8 * n, 3.9), layout="constrained")
    fig.png_dpi = PHOTO_DPI
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        heatmap = np.asarray(heatmaps[i], dtype=np.float64)
        if heatmap.ndim != 2:
            raise ValueError(
                f"`heatmaps` must be 2-D. Received: heatmaps[{i}].shape={heatmap.shape}"
            )
        image = _as_image(images[i])
        height, width = image.shape[:2]
        axes[0, i].imshow(image)
        axes[1, i].imshow(image)
        axes[1, i].imshow(
            heatmap,
            cmap="jet",
            alpha=alpha,
            vmin=0,
            vmax=1,
            interpolation="bilinear",
            extent=(-0.5, width - 0.5, height - 0.5, -0.5),
        )
        if titles is not None:
            axes[0, i].set_title(titles[i], fontsize=8)
        for ax in axes[:, i]:
            ax.axis("off")
    return finish(fig, path)
