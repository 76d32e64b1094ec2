"""Compile, fit and evaluate with defaults that suit small data on a CPU.

Every run returns a plain `dict` (history, accuracies, per-class accuracy, confusion matrix,
wall time, settings) that `save_results` writes as JSON, so a notebook, the CLI and the
benchmarks report the same numbers in the same shape.

Why the reference tutorial this lab replaces printed 74% training but 4% validation accuracy:
its validation split held whole classes the model never saw, and Keras' default BatchNorm
momentum (0.99) needs hundreds of steps before the moving statistics used at inference match
the data; 20 steps per epoch on 680 images never get there. Here splits are stratified
(`resnet_lab.data.split_indices`), the from-scratch networks use momentum 0.9, and accuracies
are measured in inference mode on clean (un-augmented) images for every split.
"""

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from resnet_lab import data as data_lib
from resnet_lab import models

# The from-scratch recipe, chosen by measurement on the real flowers data with this 2-core CPU
# (see README, "From scratch"): `python -m resnet_lab train --model scratch` runs it.
SCRATCH_RECIPE = {
    "image_size": 64,
    "stages": ((16, 2), (32, 2), (64, 2)),
    "stem_filters": 16,
    "epochs": 100,
    "batch_size": 32,
    "optimizer": "sgd",
    "learning_rate": 0.1,
    "weight_decay": 5e-4,
    "warmup_epochs": 2,
    "dropout": 0.0,
}


def set_seed(seed):
    """Seed Python, NumPy and TensorFlow (`keras.utils.set_random_seed`)."""
    keras.utils.set_random_seed(int(seed))


def make_optimizer(
    name="sgd",
    learning_rate=0.1,
    weight_decay=5e-4,
    epochs=30,
    steps_per_epoch=20,
    warmup_epochs=2,
):
    """An optimizer with linear warm-up then cosine decay, weight decay off BatchNorm.

    SGD with Nesterov momentum 0.9 is the ResNet paper's optimizer (He et al. 2015, Sec. 3.4);
    the cosine schedule and warm-up follow Goyal et al. 2017 and Loshchilov & Hutter 2017.
    Decoupled weight decay is applied to kernels only, not to BatchNorm's gamma and beta or
    to biases (a common refinement, He et al. 2019 "Bag of Tricks").

    Args:
        name: `"sgd"` or `"adamw"`.
        learning_rate: Peak learning rate, reached after warm-up.
        weight_decay: Decoupled weight decay coefficient (0 disables it).
        epochs: Total training epochs (sets the schedule's length).
        steps_per_epoch: Optimizer steps per epoch.
        warmup_epochs: Epochs of linear warm-up from 0 to `learning_rate`.

    Returns:
        A `keras.optimizers.Optimizer`.

    Raises:
        ValueError: If `name` is unknown or a number is out of range.
    """
    if name not in ("sgd", "adamw"):
        raise ValueError(f"`optimizer` must be 'sgd' or 'adamw'. Received: optimizer={name!r}")
    if learning_rate <= 0:
        raise ValueError(f"`learning_rate` must be > 0. Received: learning_rate={learning_rate}")
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1. Received: epochs={epochs}")
    total = max(1, int(epochs * steps_per_epoch))
    warmup = min(int(warmup_epochs * steps_per_epoch), total - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else learning_rate,
        decay_steps=total - warmup,
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    decay = weight_decay or None
    if name == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=decay)
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def compile_model(model, optimizer, jit_compile=False, steps_per_execution=1):
    """Compile `model` for integer labels with accuracy; return it.

    Args:
        model: A `keras.Model` ending in a softmax.
        optimizer: From `make_optimizer`, or any Keras optimizer.
        jit_compile: XLA compilation; measured slower on our 2-core CPU (see benchmarks).
        steps_per_execution: Batches per `tf.function` call.

    Returns:
        The compiled model.
    """
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts `matrix[true, predicted]` as a `(num_classes, num_classes)` int array."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def predict(model, images, batch_size=64, verbose=0):
    """Class probabilities for uint8 or float images in 0..255, batch by batch."""
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    dataset = dataset.map(lambda x: tf.cast(x, tf.float32)).prefetch(tf.data.AUTOTUNE)
    return model.predict(dataset, verbose=verbose)


def evaluate(model, images, labels, num_classes=data_lib.NUM_CLASSES, batch_size=64):
    """Accuracy, per-class accuracy and confusion matrix in inference mode.

    Args:
        model: A trained classifier taking images in 0..255.
        images: Array `(N, H, W, 3)`.
        labels: Integer labels `(N,)`.
        num_classes: Number of classes.
        batch_size: Prediction batch size.

    Returns:
        A dict with `accuracy` (float), `per_class_accuracy` (list of floats),
        `confusion_matrix` (nested list of ints) and `predictions` (NumPy int array).
    """
    labels = np.asarray(labels)
    predictions = predict(model, images, batch_size).argmax(axis=-1)
    matrix = confusion_matrix(labels, predictions, num_classes)
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "per_class_accuracy": [float(a) for a in per_class],
        "confusion_matrix": matrix.tolist(),
        "predictions": predictions,
    }


def split_metrics(measured):
    """Results fields from `evaluate` outputs per split: three accuracies, and the test
    split's per-class accuracy and confusion matrix."""
    return {
        "train_accuracy": measured["train"]["accuracy"],
        "val_accuracy": measured["val"]["accuracy"],
        "test_accuracy": measured["test"]["accuracy"],
        "per_class_accuracy": measured["test"]["per_class_accuracy"],
        "confusion_matrix": measured["test"]["confusion_matrix"],
    }


def history_dict(history):
    """A Keras `History` (or dict) as `{metric: [float, ...]}`, JSON-ready."""
    values = history.history if hasattr(history, "history") else history
    return {key: [float(v) for v in vals] for key, vals in values.items()}


def save_results(results, path):
    """Write `results` as JSON atomically (temp file, then rename); return the path.

    NumPy arrays and scalars are converted; a half-written file is never left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def default(obj):
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"Cannot write {type(obj).__name__} to JSON.")

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(results, f, indent=2, default=default)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def rescaled(net, name=None):
    """Wrap `net` so it takes pixels in 0..255: `Rescaling(1/255)` then `net`.

    The lab's pipelines keep images in 0..255 and leave model-specific preprocessing to the
    model, so one pipeline serves from-scratch and pretrained networks alike.

    Args:
        net: A `keras.Model` with a fixed input shape.
        name: Name of the wrapping model (default: `net.name`).

    Returns:
        A `keras.Model` with layers `image`, `rescale` and `net` (nested).
    """
    inputs = keras.Input(net.input_shape[1:], name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    return keras.Model(inputs, net(x), name=name or net.name)


def scratch_model(
    image_size=SCRATCH_RECIPE["image_size"],
    num_classes=data_lib.NUM_CLASSES,
    stages=SCRATCH_RECIPE["stages"],
    stem_filters=SCRATCH_RECIPE["stem_filters"],
    dropout=SCRATCH_RECIPE["dropout"],
    name="scratch_resnet",
):
    """The from-scratch classifier: `build_resnet` behind a 0..255 -> 0..1 rescaling.

    Args:
        image_size: Square input size in pixels (or `None` for any size).
        num_classes: Number of classes.
        stages: `(filters, blocks)` per stage, as in `resnet_lab.models.build_resnet`.
        stem_filters: Filters of the 3x3 stem convolution.
        dropout: Dropout rate before the classifier.
        name: Model name.

    Returns:
        A `keras.Model` taking float images in 0..255.
    """
    net = models.build_resnet(
        input_shape=(image_size, image_size, 3),
        num_classes=num_classes,
        stages=tuple(tuple(s) for s in stages),
        stem_filters=stem_filters,
        dropout=dropout,
    )
    return rescaled(net, name=name)


def train_classifier(
    build_model,
    images,
    labels,
    splits,
    *,
    epochs=30,
    batch_size=32,
    optimizer="sgd",
    learning_rate=0.1,
    weight_decay=5e-4,
    warmup_epochs=2,
    augment=True,
    jit_compile=False,
    strategy=None,
    seed=0,
    verbose="auto",
    name="model",
    out_dir=None,
    extra_settings=None,
):
    """Train a classifier on the flowers splits and measure it on all three.

    Args:
        build_model: Callable returning an uncompiled `keras.Model` that takes images in
            0..255; called inside `strategy.scope()` when a strategy is given.
        images: uint8 array `(N, H, W, 3)`.
        labels: Integer labels `(N,)`.
        splits: Dict of index arrays `train`, `val`, `test` (`data.split_indices`).
        epochs: Training epochs.
        batch_size: Global batch size (split across replicas by the strategy).
        optimizer: `"sgd"` or `"adamw"` (see `make_optimizer`).
        learning_rate: Peak learning rate.
        weight_decay: Decoupled weight decay on kernels.
        warmup_epochs: Linear warm-up epochs.
        augment: Random flip, rotation and zoom on training batches.
        jit_compile: XLA compilation of the train step.
        strategy: Optional `tf.distribute.Strategy` (e.g. `MirroredStrategy` for several
            GPUs, `MultiWorkerMirroredStrategy` across machines).
        seed: Seed for weights, shuffling and augmentation.
        verbose: Keras progress: `"auto"`, 0 (silent), 1 (progress bar) or 2 (a line per epoch).
        name: Run name stored in the results.
        out_dir: If given, `results.json` is written there.
        extra_settings: Dict merged into `results["settings"]` (e.g. the model's recipe).

    Returns:
        `(model, results)`: the trained model and a JSON-ready dict with `name`,
        `history`, `train_accuracy` / `val_accuracy` / `test_accuracy` (inference mode,
        clean images), `per_class_accuracy`, `confusion_matrix` (test split),
        `wall_time_s` (fit only), `weights` and `settings`.
    """
    set_seed(seed)
    datasets = data_lib.make_datasets(
        images, labels, splits, batch_size=batch_size, augment=augment, seed=seed
    )
    steps_per_epoch = len(splits["train"]) // batch_size
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        model = build_model()
        opt = make_optimizer(
            optimizer, learning_rate, weight_decay, epochs, steps_per_epoch, warmup_epochs
        )
        compile_model(model, opt, jit_compile=jit_compile)
    start = time.perf_counter()
    history = model.fit(
        datasets["train"], validation_data=datasets["val"], epochs=epochs, verbose=verbose,
        shuffle=False,  # the dataset shuffles itself, seeded
    )
    wall_time = time.perf_counter() - start
    measured = {
        split: evaluate(model, images[idx], labels[idx]) for split, idx in splits.items()
    }
    settings = {
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "weight_decay": weight_decay,
        "warmup_epochs": warmup_epochs,
        "augment": augment,
        "jit_compile": jit_compile,
        "seed": seed,
        "image_size": list(images.shape[1:3]),
        "split_sizes": {k: int(len(v)) for k, v in splits.items()},
        "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
        **(extra_settings or {}),
    }
    settings = json.loads(json.dumps(settings))  # tuples -> lists: as it will read back
    results = {
        "name": name,
        "weights": "random init (trained from scratch)",
        **split_metrics(measured),
        "wall_time_s": round(wall_time, 2),
        "params": int(model.count_params()),
        "history": history_dict(history),
        "settings": settings,
    }
    if out_dir is not None:
        save_results(results, Path(out_dir) / "results.json")
    return model, results


def train_scratch(images, labels, splits, recipe=None, **kwargs):
    """Train the from-scratch ResNet with `SCRATCH_RECIPE` (overridable) and measure it.

    Args:
        images: uint8 array `(N, S, S, 3)` at the recipe's `image_size`.
        labels: Integer labels.
        splits: Dict of index arrays `train`, `val`, `test`.
        recipe: Dict overriding keys of `SCRATCH_RECIPE`.
        **kwargs: Passed to `train_classifier` (`strategy`, `verbose`, `out_dir`, `seed`, ...).

    Returns:
        `(model, results)` as from `train_classifier`.

    Raises:
        ValueError: If the images are not at the recipe's size or a recipe key is unknown.
    """
    recipe = {**SCRATCH_RECIPE, **(recipe or {})}
    unknown = set(recipe) - set(SCRATCH_RECIPE)
    if unknown:
        raise ValueError(
            f"Unknown recipe keys {sorted(unknown)}; allowed: {sorted(SCRATCH_RECIPE)}. "
            f"Received: recipe={recipe}"
        )
    size = recipe["image_size"]
    if images.shape[1:3] != (size, size):
        raise ValueError(
            f"Images must be {size}x{size} for this recipe; load them with "
            f"`load_flowers17(image_size=({size}, {size}))`. Received: images.shape={images.shape}"
        )

    def build():
        return scratch_model(size, int(labels.max()) + 1, recipe["stages"],
                             recipe["stem_filters"], recipe["dropout"])

    fit_keys = ("epochs", "batch_size", "optimizer", "learning_rate", "weight_decay",
                "warmup_epochs")
    kwargs.setdefault("name", "scratch")
    extra = {"recipe": {k: v for k, v in recipe.items() if k not in fit_keys}}
    return train_classifier(
        build, images, labels, splits, **{k: recipe[k] for k in fit_keys},
        extra_settings=extra, **kwargs,
    )
