"""Compile and fit with defaults that suit small data on a CPU; the from-scratch recipe.

Every run returns a plain `dict` (history, accuracies, per-class accuracy, confusion matrix,
wall time, settings) that `resnet_lab.results.save_results` writes as JSON, so a notebook, the
CLI and the benchmarks report the same numbers in the same shape. Measuring lives in
`resnet_lab.evaluation`, JSON in `resnet_lab.results`.

Two classic ways to get ~4% validation accuracy from scratch on these flowers, both avoided
here: `fit(validation_split=0.2)` on a class-ordered list (the last 20% are 3.4 whole classes
the model never trains on), and Keras' default BatchNorm momentum (0.99), whose moving
statistics need hundreds of steps to match the data while 680 images at batch 32 give 21 steps
an epoch. Splits here are stratified (`resnet_lab.data.split_indices`), the from-scratch
networks use momentum 0.9, and accuracies are measured in inference mode on clean images.
"""

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

import keras

from resnet_lab import evaluation, hardware
from resnet_lab.nn import models
from resnet_lab.checks import check_choice, check_positive_int
from resnet_lab.evaluation import (  # noqa: F401 (re-exported: older code imports them from here)
    confusion_matrix,
    evaluate,
    evaluate_splits,
    predict,
    split_metrics,
)
from resnet_lab.nn.models import rescaled  # noqa: F401 (re-exported)
from resnet_lab.results import history_dict, save_results  # noqa: F401 (re-exported)

# The from-scratch recipe, chosen on the validation split of the real flowers with this 2-core
# CPU (benchmarks/README.md, "Recipe": the ablation, and item 8 for the speed of each network).
# `python -m resnet_lab train --model scratch` runs it; README gives its mean over three seeds.
SCRATCH_RECIPE = {
    # Network: the seed network's widths doubled (32, 64, 128) behind a stride-2 stem, at
    # 96 px. The stem stride buys the wider stages: about the same FLOPs per pixel as the
    # 16-32-64 network at full resolution, four times the parameters, and wide convolutions
    # run nearer the machine's matmul rate.
    "image_size": 96,
    "stages": ((32, 2), (64, 2), (128, 2)),
    "stem_filters": 32,
    "stem_stride": 2,
    # "auto": bfloat16 arithmetic with float32 weights where bfloat16 is native (AVX-512 BF16
    # or AMX CPUs, Ampere+ GPUs; ~1.4x the images/s of float32 here, item 8), else float32.
    "dtype_policy": "auto",
    "epochs": 100,
    "batch_size": 32,
    "steps_per_execution": 1,
    "optimizer": "sgd",
    "learning_rate": 0.1,
    "weight_decay": 5e-4,
    "warmup_epochs": 2,
    "dropout": 0.0,
    # Regularisers, each measured on validation (see `train_classifier`).
    "label_smoothing": 0.1,
    "mixup": 0.0,
    "cutmix": 1.0,
    "ema": None,
}


def set_seed(seed):
    """Seed Python, NumPy and TensorFlow (`keras.utils.set_random_seed`)."""
    keras.utils.set_random_seed(int(seed))


def learning_rate_schedule(learning_rate=0.1, epochs=30, steps_per_epoch=20, warmup_epochs=2):
    """Linear warm-up from 0 to `learning_rate`, then cosine decay to 0 (Goyal et al. 2017;
    Loshchilov & Hutter 2017), as a Keras schedule of the optimizer step.

    Returns:
        A `keras.optimizers.schedules.CosineDecay`; call it on a step or an array of steps.
    """
    total = max(1, int(epochs * steps_per_epoch))
    warmup = min(int(warmup_epochs * steps_per_epoch), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else learning_rate,
        decay_steps=total - warmup,
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(
    name="sgd",
    learning_rate=0.1,
    weight_decay=5e-4,
    epochs=30,
    steps_per_epoch=20,
    warmup_epochs=2,
    ema=None,
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
        ema: `None`, or the momentum of an exponential moving average of the weights (e.g.
            `0.99`), Keras' `use_ema`: `fit` swaps the averages in when it ends (Polyak &
            Juditsky 1992; the averaged weights generalise better at the end of a run).

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
    schedule = learning_rate_schedule(learning_rate, epochs, steps_per_epoch, warmup_epochs)
    if ema is not None and not 0.0 < ema < 1.0:
        raise ValueError(f"`ema` must be None or in (0, 1). Received: ema={ema!r}")
    decay = weight_decay or None
    averaging = {"use_ema": ema is not None, "ema_momentum": ema or 0.99}
    if name == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=decay,
                                         **averaging)
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay, **averaging)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def compile_model(model, optimizer, jit_compile=False, steps_per_execution=1, one_hot=False,
                  label_smoothing=0.0):
    """Compile `model` for integer (or one-hot) labels with accuracy; return it.

    Args:
        model: A `keras.Model` ending in a softmax.
        optimizer: From `make_optimizer`, or any Keras optimizer.
        jit_compile: XLA compilation; measured slower on our 2-core CPU (see benchmarks).
        steps_per_execution: Batches per `tf.function` call.
        one_hot: Labels are probability vectors (for label smoothing or mixup).
        label_smoothing: With `one_hot`, the weight moved from the true class to a uniform
            distribution (Szegedy et al. 2016, "Rethinking the Inception Architecture",
            arXiv:1512.00567, Sec. 7).

    Returns:
        The compiled model.
    """
    loss = "sparse_categorical_crossentropy"
    if one_hot:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=["accuracy"],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


class Progress(keras.callbacks.Callback):
    """One progress bar per training run and a summary line every `every` epochs and the last.

    A notebook cell that trains for 100 epochs then shows a bar and about ten lines instead of
    Keras' line (or bar) per epoch.

    Args:
        every: Print a summary line every `every` epochs (and after the last); 0 prints none.
        bar: Show a progress bar over epochs (`resnet_lab.progress.ProgressBar`: a line
            updated in place in Jupyter, which a saved notebook keeps in its final state;
            `tqdm` elsewhere).
        name: Run name shown on the bar and the lines.
    """

    def __init__(self, every=10, bar=True, name="fit"):
        super().__init__()
        self.every, self.bar, self.name = every, bar, name
        self._bar = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()
        self._epochs = self.params.get("epochs") or 0
        if self.bar:
            from resnet_lab.progress import ProgressBar

            self._bar = ProgressBar(self._epochs, self.name, "epochs")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = {k: v for k, v in logs.items() if k in ("loss", "accuracy", "val_accuracy")}
        if self._bar is not None:
            self._bar.update(1, {k: f"{v:.3f}" for k, v in shown.items()})
        done = epoch + 1
        if self.every and (done % self.every == 0 or done == self._epochs):
            metrics = ", ".join(f"{k} {v:.3f}" for k, v in shown.items())
            line = (f"{self.name} epoch {done}/{self._epochs}: {metrics} "
                    f"({time.perf_counter() - self._start:.0f} s)")
            if self._bar is not None:
                self._bar.write(line)
            else:
                print(line, flush=True)

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()


def fit_verbosity(verbose, name="fit", every=10):
    """`(keras_verbose, callbacks)` for the lab's `verbose` setting.

    `"auto"` or `1`: `Progress` (one bar and a line every `every` epochs); `0`: silent;
    `2`: Keras' line per epoch (logs, CI); `"summary"`: only the summary lines, no bar.
    """
    check_choice("verbose", verbose, ("auto", 0, 1, 2, "summary"))
    if verbose in ("auto", 1):
        return 0, [Progress(every, bar=True, name=name)]
    if verbose == "summary":
        return 0, [Progress(every, bar=False, name=name)]
    return verbose, []


def save_model(model, path):
    """Save `model` as a `.keras` file atomically: a failed save leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".save-", dir=path.parent) as tmp:
        partial = Path(tmp) / path.name
        model.save(partial)
        os.replace(partial, path)
    return path


def scratch_model(
    image_size=SCRATCH_RECIPE["image_size"],
    num_classes=17,
    stages=SCRATCH_RECIPE["stages"],
    stem_filters=SCRATCH_RECIPE["stem_filters"],
    dropout=SCRATCH_RECIPE["dropout"],
    name="scratch_resnet",
    stem_stride=SCRATCH_RECIPE["stem_stride"],
    dtype_policy=SCRATCH_RECIPE["dtype_policy"],
):
    """`resnet_lab.nn.models.scratch_model` with `SCRATCH_RECIPE`'s defaults."""
    return models.scratch_model(image_size, num_classes, stages, stem_filters, dropout, name,
                                stem_stride, dtype_policy)


def _reduce_each_tensor(strategy):
    """Let a `MultiWorkerMirroredStrategy` reduce what Keras 3's `fit` hands it.

    Before the first step `fit` calls `strategy.reduce("MEAN", batch)` on the whole
    `(images, labels)` batch, and after every step `strategy.reduce("MEAN", metric, axis=0)`
    on each scalar metric. `MirroredStrategy` accepts both; `MultiWorkerMirroredStrategy`
    with two or more workers rejects both (Keras 3.15.1, TensorFlow 2.21: "Attempt to convert
    a value (PerReplica...) to a Tensor", then "Invalid reduction dimension 0 for input with
    0 dimensions"), so `fit` fails before its first step (keras-team/keras#20585). Reducing
    each tensor of the structure on its own, and a scalar over replicas only, is what Keras
    asks for. Other strategies are left as they are.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    reduce = strategy.reduce
    if getattr(reduce, "reduces_each_tensor", False):
        return

    def reduce_each(reduce_op, value, axis=None):
        def one(v):
            rank = strategy.experimental_local_results(v)[0].shape.rank
            return reduce(reduce_op, v, axis=axis if rank else None)

        return tf.nest.map_structure(one, value)

    reduce_each.reduces_each_tensor = True
    strategy.reduce = reduce_each


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
    label_smoothing=0.0,
    mixup=0.0,
    cutmix=0.0,
    ema=None,
    jit_compile=False,
    steps_per_execution=1,
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
        label_smoothing: Label smoothing weight (0 disables it; see `compile_model`).
        mixup: mixup's Beta parameter alpha (0 disables it; see `resnet_lab.data.mixup`).
        cutmix: CutMix's Beta parameter alpha (0 disables it; see `resnet_lab.data.cutmix`);
            with `mixup` too, both apply to every batch, mixup first.
        ema: Momentum of an exponential moving average of the weights, or `None` (see
            `make_optimizer`); the measured model holds the averages.
        jit_compile: XLA compilation of the train step.
        steps_per_execution: Training steps per `tf.function` call (Keras' option): fewer
            Python round trips per epoch, the same arithmetic.
        strategy: Optional `tf.distribute.Strategy` (e.g. `MirroredStrategy` for several
            GPUs, `MultiWorkerMirroredStrategy` across machines).
        seed: Seed for weights, shuffling and augmentation.
        verbose: `"auto"` or 1 (a progress bar and a line every 10 epochs), `"summary"`
            (the lines only), 0 (silent) or 2 (Keras' line per epoch); see `fit_verbosity`.
        name: Run name stored in the results.
        out_dir: If given, `results.json` and the trained model `model.keras` (loadable with
            `keras.saving.load_model`, no custom objects) are written there.
        extra_settings: Dict merged into `results["settings"]` (e.g. the model's recipe).

    Returns:
        `(model, results)`: the trained model and a JSON-ready dict with `name`,
        `history`, `train_accuracy` / `val_accuracy` / `test_accuracy` (inference mode,
        clean images), `per_class_accuracy`, `confusion_matrix` (test split),
        `wall_time_s` (fit only), `weights` and `settings`, and `flip_tta_accuracy`
        (validation and test accuracy averaging each image's prediction with its mirror's,
        reported apart from the plain scores).
    """
    from resnet_lab import data as data_lib

    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    keras_verbose, callbacks = fit_verbosity(verbose, name)
    set_seed(seed)
    datasets = data_lib.make_datasets(
        images, labels, splits, batch_size=batch_size, augment=augment, seed=seed
    )
    num_classes = int(labels.max()) + 1
    one_hot = bool(label_smoothing or mixup or cutmix)
    if one_hot:
        for split in ("train", "val"):
            datasets[split] = data_lib.one_hot_labels(datasets[split], num_classes)
        if mixup:
            datasets["train"] = data_lib.mixup(datasets["train"], mixup, seed)
        if cutmix:
            datasets["train"] = data_lib.cutmix(datasets["train"], cutmix, seed)
    steps_per_epoch = len(splits["train"]) // batch_size
    if strategy is not None:
        _reduce_each_tensor(strategy)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        model = build_model()
        opt = make_optimizer(
            optimizer, learning_rate, weight_decay, epochs, steps_per_epoch, warmup_epochs, ema
        )
        compile_model(model, opt, jit_compile=jit_compile, one_hot=one_hot,
                      label_smoothing=label_smoothing, steps_per_execution=steps_per_execution)
    start = time.perf_counter()
    history = model.fit(
        datasets["train"], validation_data=datasets["val"], epochs=epochs,
        verbose=keras_verbose, callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, seeded
    )
    wall_time = time.perf_counter() - start
    measured = evaluate_splits(model, images, labels, splits)
    flip_tta = {split: evaluation.evaluate(model, images[splits[split]], labels[splits[split]],
                                           flip_tta=True)["accuracy"] for split in ("val", "test")}
    settings = {
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "weight_decay": weight_decay,
        "warmup_epochs": warmup_epochs,
        "augment": augment,
        "label_smoothing": label_smoothing,
        "mixup": mixup,
        "cutmix": cutmix,
        "ema": ema,
        "jit_compile": jit_compile,
        "steps_per_execution": steps_per_execution,
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
        "flip_tta_accuracy": flip_tta,
        "wall_time_s": round(wall_time, 2),
        "params": int(model.count_params()),
        "history": history_dict(history),
        "settings": settings,
    }
    if out_dir is not None:
        save_model(model, Path(out_dir) / "model.keras")
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
                             recipe["stem_filters"], recipe["dropout"],
                             stem_stride=recipe["stem_stride"],
                             dtype_policy=recipe["dtype_policy"])

    fit_keys = ("epochs", "batch_size", "optimizer", "learning_rate", "weight_decay",
                "warmup_epochs", "label_smoothing", "mixup", "cutmix", "ema",
                "steps_per_execution")
    kwargs.setdefault("name", "scratch")
    extra = {"recipe": {k: v for k, v in recipe.items() if k not in fit_keys},
             "dtype_policy_used": hardware.resolve_dtype_policy(recipe["dtype_policy"])}
    return train_classifier(
        build, images, labels, splits, **{k: recipe[k] for k in fit_keys},
        extra_settings=extra, **kwargs,
    )
