"""Compile and fit with defaults that suit small data on a CPU; the from-scratch recipe.

Settings are frozen dataclasses (`resnet_lab.settings`): `FitSettings` says how a classifier
is fitted, `ScratchRecipe` adds the from-scratch network, and `SCRATCH_RECIPE` is the measured
recipe; `SCRATCH_RECIPE.override(epochs=5)` changes a field (unknown names fail). A run is a
composition of named phases that `resnet_lab.transfer` uses too: datasets, build and compile
in the strategy's scope (`strategy_scope`), fit (`fit_timed`), measure, results
(`run_results`) and save (`save_run`). Every run returns a plain `dict` (history, accuracies,
per-class accuracy, confusion matrix, wall time, settings) that `resnet_lab.results` writes as
JSON, so a notebook, the CLI and the benchmarks report the same numbers in the same shape.

Two classic ways to get ~4% validation accuracy from scratch on these flowers, both avoided
here: `fit(validation_split=0.2)` on a class-ordered list (the last 20% are 3.4 whole classes
the model never trains on), and Keras' default BatchNorm momentum (0.99), whose moving
statistics need hundreds of steps to match the data while 680 images at batch 32 give 21 steps
an epoch. Splits here are stratified (`resnet_lab.data.split_indices`), the from-scratch
networks use momentum 0.9, and accuracies are measured in inference mode on clean images.
"""

import contextlib
import dataclasses
import time
from pathlib import Path

import keras

from resnet_lab import evaluation, hardware
from resnet_lab.checks import check_choice, check_positive_int
from resnet_lab.data.pipeline import AUTO_AUGMENTS
from resnet_lab.nn import models
from resnet_lab.results import atomic_path, history_dict, save_results
from resnet_lab.settings import Settings

OPTIMIZERS = ("sgd", "adamw")
LOSSES = ("crossentropy", "cosine", "cosine+crossentropy")


@dataclasses.dataclass(frozen=True)
class FitSettings(Settings):
    """How `train_classifier` fits a classifier: optimizer, schedule, regularisers, execution.

    Attributes:
        epochs: Training epochs.
        batch_size: Global batch size (split across replicas by a strategy).
        optimizer: `"sgd"` or `"adamw"` (see `make_optimizer`).
        learning_rate: Peak learning rate, reached after warm-up.
        weight_decay: Decoupled weight decay on kernels.
        warmup_epochs: Epochs of linear warm-up.
        augment: Random flip, rotation and zoom on training batches.
        auto_augment: With `augment`, an automatic policy after them: `"none"`,
            `"randaugment"` or `"trivialaugment"` (`resnet_lab.data.auto_augmentation`).
        loss: `"crossentropy"`, `"cosine"` or `"cosine+crossentropy"` (`make_loss`).
        label_smoothing: Label smoothing weight (0 disables it; see `compile_model`).
        mixup: mixup's Beta parameter alpha (0 disables it; see `resnet_lab.data.mixup`).
        cutmix: CutMix's Beta parameter alpha (0 disables it; see `resnet_lab.data.cutmix`);
            with `mixup` too, both apply to every batch, mixup first.
        ema: Momentum of an exponential moving average of the weights, or `None` (see
            `make_optimizer`); the measured model holds the averages.
        jit_compile: XLA compilation of the train step (measured slower on a 2-core CPU).
        steps_per_execution: Training steps per `tf.function` call (Keras' option): fewer
            Python round trips per epoch, the same arithmetic.

    Raises:
        ValueError: If a count is not a positive integer or the optimizer is unknown.
    """

    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    augment: bool = True
    auto_augment: str = "none"
    loss: str = "crossentropy"
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    ema: float | None = None
    jit_compile: bool = False
    steps_per_execution: int = 1

    def __post_init__(self):
        for name in ("epochs", "batch_size", "steps_per_execution"):
            check_positive_int(name, getattr(self, name))
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, LOSSES)
        check_choice("auto_augment", self.auto_augment, AUTO_AUGMENTS)

    @property
    def one_hot(self):
        """Whether labels must be probability vectors (label smoothing, mixup, CutMix or
        a cosine loss)."""
        cosine = self.loss != "crossentropy"
        return bool(self.label_smoothing or self.mixup or self.cutmix or cosine)

    def steps_per_epoch(self, train_images):
        """Optimizer steps in an epoch over `train_images` images (the last partial batch
        is dropped, as `resnet_lab.data.make_datasets` does)."""
        return train_images // self.batch_size

    def learning_rate_schedule(self, steps_per_epoch):
        """This run's warm-up then cosine schedule (`learning_rate_schedule`)."""
        return learning_rate_schedule(
            self.learning_rate, self.epochs, steps_per_epoch, self.warmup_epochs
        )

    def make_optimizer(self, steps_per_epoch):
        """This run's optimizer (`make_optimizer`) for `steps_per_epoch` steps an epoch."""
        return make_optimizer(
            self.optimizer,
            self.learning_rate,
            self.weight_decay,
            self.epochs,
            steps_per_epoch,
            self.warmup_epochs,
            self.ema,
        )

    def compile(self, model, steps_per_epoch):
        """Compile `model` with this run's optimizer, loss and execution options."""
        return compile_model(
            model,
            self.make_optimizer(steps_per_epoch),
            jit_compile=self.jit_compile,
            steps_per_execution=self.steps_per_execution,
            one_hot=self.one_hot,
            label_smoothing=self.label_smoothing,
            loss=self.loss,
        )


@dataclasses.dataclass(frozen=True)
class ScratchRecipe(FitSettings):
    """The from-scratch network and how it is fitted: `FitSettings` plus the network.

    `SCRATCH_RECIPE` is the measured recipe; change fields with `SCRATCH_RECIPE.override(...)`
    (unknown names fail). Results store the fit fields at the top of `settings` and the
    network fields under `settings["recipe"]`.

    Attributes:
        image_size: Square input size the network is built for (the images must match).
        stages: `(filters, blocks)` per stage (`resnet_lab.nn.models.build_resnet`).
        stem_filters: Filters of the 3x3 stem convolution.
        stem_stride: `1`, or `2` to halve the resolution in the stem.
        dtype_policy: `"auto"` (bfloat16 arithmetic where it is native, else float32;
            `resnet_lab.hardware.resolve_dtype_policy`) or a Keras dtype policy.
        batch_norm: `"fused"` (TensorFlow's fused kernel) or `"keras"`
            (`resnet_lab.nn.models.scratch_model`).
        dropout: Dropout rate before the classifier.
    """

    # Regularisers, each measured on validation (benchmarks/README.md, "Recipe").
    epochs: int = 100
    label_smoothing: float = 0.1
    cutmix: float = 1.0
    # Network: the seed network's widths doubled (32, 64, 128) behind a stride-2 stem, at
    # 96 px. The stem stride buys the wider stages: about the same FLOPs per pixel as the
    # 16-32-64 network at full resolution, four times the parameters, and wide convolutions
    # run nearer the machine's matmul rate.
    image_size: int = 96
    stages: tuple = ((32, 2), (64, 2), (128, 2))
    stem_filters: int = 32
    stem_stride: int = 2
    # "auto": bfloat16 arithmetic with float32 weights where bfloat16 is native (AVX-512 BF16
    # or AMX CPUs, Ampere+ GPUs; ~1.4x the images/s of float32 here, item 8), else float32.
    dtype_policy: str = "auto"
    # TensorFlow's fused BatchNorm kernel (resnet_lab.nn.layers.FusedBatchNormalization):
    # bfloat16 in and out, no casts; Keras 3's BatchNorm cost a third of the bfloat16 step.
    batch_norm: str = "fused"
    dropout: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("image_size", self.image_size)
        check_choice("dtype_policy", self.dtype_policy, hardware.DTYPE_POLICIES)
        check_choice("batch_norm", self.batch_norm, models.BATCH_NORMS)
        # JSON (`--recipe`) gives lists: keep the field a hashable tuple of tuples.
        object.__setattr__(self, "stages", tuple(tuple(stage) for stage in self.stages))

    @classmethod
    def network_fields(cls):
        """The fields that describe the network rather than the fit."""
        fit = set(FitSettings.field_names())
        return tuple(name for name in cls.field_names() if name not in fit)

    @property
    def min_image_size(self):
        """The smallest square input the network accepts: its total stride (the stem's, then
        2 per stage after the first), so that the last stage keeps a pixel."""
        return self.stem_stride * 2 ** (len(self.stages) - 1)

    def build_model(self, num_classes, name="scratch_resnet"):
        """The recipe's network (`resnet_lab.nn.models.scratch_model`), uncompiled."""
        return models.scratch_model(
            image_size=self.image_size,
            num_classes=num_classes,
            stages=self.stages,
            stem_filters=self.stem_filters,
            dropout=self.dropout,
            name=name,
            stem_stride=self.stem_stride,
            dtype_policy=self.dtype_policy,
            batch_norm=self.batch_norm,
        )


# The from-scratch recipe, chosen on the validation split of the real flowers with this 2-core
# CPU (benchmarks/README.md, "Recipe": the ablation, and item 8 for the speed of each network).
# `python -m resnet_lab train --model scratch` runs it; README gives its mean over three seeds.
SCRATCH_RECIPE = ScratchRecipe()


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
    check_choice("optimizer", name, OPTIMIZERS)
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
        optimizer = keras.optimizers.SGD(
            schedule, momentum=0.9, nesterov=True, weight_decay=decay, **averaging
        )
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay, **averaging)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


@keras.saving.register_keras_serializable(package="resnet_lab")
class CosineLoss(keras.losses.Loss):
    """Barz & Denzler's cosine loss for softmax outputs, plus an optional cross-entropy.

    "Deep Learning on Small Datasets without Pre-Training using Cosine Loss" (Barz &
    Denzler 2020, arXiv:1901.09054) trains with `1 - cos(f(x), y)`: the angle between the
    network's output and the one-hot target, blind to the output's length, so that the
    network cannot lower the loss by growing its logits (what cross-entropy rewards and
    what overfits a few hundred images). They report +3.8 points on Flowers-102 from
    scratch, and add `0.1` cross-entropy to speed up learning (Sec. 3.2).

    The lab's models end in a softmax, so the output compared here is the logits
    recovered from the probabilities, `log p` centred to zero mean over the classes (the
    logits up to the constant that softmax ignores: a linear function of the features, as
    the paper's embedding is), and the target is centred the same way, so that a perfect
    prediction has cosine 1. The model's outputs stay probabilities, so evaluation, flip
    TTA and ensembles treat it like any other model.

    Args:
        crossentropy: Weight of an added categorical cross-entropy (0: the cosine loss only).
        name: Loss name.
    """

    def __init__(self, crossentropy=0.0, name="cosine_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.crossentropy = float(crossentropy)

    def call(self, y_true, y_pred):
        ops = keras.ops
        y_true = ops.cast(y_true, y_pred.dtype)
        # Probabilities below 1e-30 only come from logits 69 below the largest: their
        # gradient through the cosine is already nil.
        logits = ops.log(ops.maximum(y_pred, 1e-30))
        logits = logits - ops.mean(logits, axis=-1, keepdims=True)
        target = y_true - ops.mean(y_true, axis=-1, keepdims=True)
        cosine = ops.sum(logits * target, axis=-1) / (
            ops.norm(logits, axis=-1) * ops.norm(target, axis=-1) + 1e-12
        )
        loss = 1.0 - cosine
        if self.crossentropy:
            loss = loss + self.crossentropy * keras.losses.categorical_crossentropy(y_true, y_pred)
        return loss

    def get_config(self):
        return {**super().get_config(), "crossentropy": self.crossentropy}


def make_loss(name="crossentropy", one_hot=False, label_smoothing=0.0):
    """The training loss `name` for integer (or, with `one_hot`, probability-vector) labels.

    Args:
        name: `"crossentropy"` (label smoothing as given), `"cosine"` (`CosineLoss`) or
            `"cosine+crossentropy"` (`CosineLoss(crossentropy=0.1)`, the paper's pairing).
        one_hot: Labels are probability vectors; the cosine losses need them.
        label_smoothing: Cross-entropy's label smoothing (the cosine losses ignore it).

    Raises:
        ValueError: If `name` is unknown, or a cosine loss is asked for integer labels.
    """
    check_choice("loss", name, LOSSES)
    if name == "crossentropy":
        if not one_hot:
            return "sparse_categorical_crossentropy"
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    if not one_hot:
        raise ValueError(
            f"A cosine loss compares the output with one-hot labels: pass one_hot=True. "
            f"Received: loss={name!r}, one_hot=False"
        )
    return CosineLoss(crossentropy=0.1 if name == "cosine+crossentropy" else 0.0)


def compile_model(
    model,
    optimizer,
    jit_compile=False,
    steps_per_execution=1,
    one_hot=False,
    label_smoothing=0.0,
    loss="crossentropy",
):
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
        loss: One of `LOSSES` (`make_loss`); the cosine losses need `one_hot`.

    Returns:
        The compiled model.
    """
    model.compile(
        optimizer=optimizer,
        loss=make_loss(loss, one_hot, label_smoothing),
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
            line = (
                f"{self.name} epoch {done}/{self._epochs}: {metrics} "
                f"({time.perf_counter() - self._start:.0f} s)"
            )
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
    with atomic_path(path) as partial:
        model.save(partial)
    return Path(path)


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


def strategy_scope(strategy):
    """Where to build and compile a model: `strategy.scope()`, or a null context without one.

    Phase of every run (`train_classifier`, `resnet_lab.transfer.train_transfer`): variables
    created inside are mirrored by the strategy.
    """
    if strategy is None:
        return contextlib.nullcontext()
    _reduce_each_tensor(strategy)
    return strategy.scope()


def fit_timed(model, train, validation, epochs, verbose="auto", name="fit", **options):
    """Phase of every run: `model.fit` with the lab's progress display, timed.

    Args:
        model: A compiled model.
        train: The training dataset (it shuffles itself, seeded: `fit` does not shuffle).
        validation: Validation data, as `fit`'s `validation_data`.
        epochs: Epochs.
        verbose: As `fit_verbosity`.
        name: Run name on the progress bar and lines.
        **options: More `fit` arguments (e.g. `validation_batch_size`).

    Returns:
        `(history, seconds)`: the history as `results.history_dict` and the fit's wall time.
    """
    keras_verbose, callbacks = fit_verbosity(verbose, name)
    start = time.perf_counter()
    history = model.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        verbose=keras_verbose,
        callbacks=callbacks,
        shuffle=False,
        **options,
    )
    return history_dict(history), time.perf_counter() - start


def split_sizes(splits):
    """`{split: number of images}`, as results' settings record them."""
    return {name: int(len(index)) for name, index in splits.items()}


def run_results(name, weights, measured, model, history, wall_time, settings, **extra):
    """Phase of every run: the results dict every run returns and `save_run` writes.

    Args:
        name: Run name.
        weights: How the weights started (e.g. `transfer.weights_label(...)`).
        measured: `evaluation.evaluate_splits` output (or the same shape).
        model: The trained model (for its parameter count).
        history: The history as `results.history_dict`.
        wall_time: Training seconds.
        settings: The run's settings, JSON-ready.
        **extra: More fields of the run (e.g. `flip_tta_accuracy`).
    """
    return {
        "name": name,
        "weights": weights,
        **evaluation.split_metrics(measured),
        **extra,
        "wall_time_s": round(wall_time, 2),
        "params": int(model.count_params()),
        "history": history,
        "settings": settings,
    }


def save_run(model, results, out_dir):
    """Phase of every run: `model.keras` and `results.json` into `out_dir` (if not `None`),
    each written atomically."""
    if out_dir is not None:
        save_model(model, Path(out_dir) / "model.keras")
        save_results(results, Path(out_dir) / "results.json")


def classifier_datasets(images, labels, splits, fit, seed):
    """Phase of `train_classifier`: seeded batches, one-hot labels and mixup/CutMix as `fit`
    asks (`resnet_lab.data.make_datasets`)."""
    from resnet_lab import data as data_lib

    datasets = data_lib.make_datasets(
        images,
        labels,
        splits,
        batch_size=fit.batch_size,
        augment=fit.augment,
        seed=seed,
        auto_augment=fit.auto_augment,
    )
    if fit.one_hot:
        num_classes = int(labels.max()) + 1
        for split in ("train", "val"):
            datasets[split] = data_lib.one_hot_labels(datasets[split], num_classes)
        if fit.mixup:
            datasets["train"] = data_lib.mixup(datasets["train"], fit.mixup, seed)
        if fit.cutmix:
            datasets["train"] = data_lib.cutmix(datasets["train"], fit.cutmix, seed)
    return datasets


def flip_tta_accuracy(model, images, labels, splits):
    """Validation and test accuracy with each prediction averaged with its mirror's."""
    return {
        split: evaluation.evaluate(
            model, images[splits[split]], labels[splits[split]], flip_tta=True
        )["accuracy"]
        for split in ("val", "test")
    }


def train_classifier(
    build_model,
    images,
    labels,
    splits,
    fit=FitSettings(),
    *,
    strategy=None,
    seed=0,
    verbose="auto",
    name="model",
    out_dir=None,
    extra_settings=None,
):
    """Train a classifier on the flowers splits and measure it on all three.

    The phases: datasets (`classifier_datasets`), build and compile in the strategy's scope
    (`strategy_scope`), fit (`fit_timed`), measure (`evaluation.evaluate_splits`, flip TTA),
    save (`save_run`).

    Args:
        build_model: Callable returning an uncompiled `keras.Model` that takes images in
            0..255; called inside `strategy.scope()` when a strategy is given.
        images: uint8 array `(N, H, W, 3)`.
        labels: Integer labels `(N,)`.
        splits: Dict of index arrays `train`, `val`, `test` (`data.split_indices`).
        fit: `FitSettings` (a `ScratchRecipe` is one).
        strategy: Optional `tf.distribute.Strategy` (e.g. `MirroredStrategy` for several
            GPUs, `MultiWorkerMirroredStrategy` across machines).
        seed: Seed for weights, shuffling and augmentation.
        verbose: `"auto"` or 1 (a progress bar and a line every 10 epochs), `"summary"`
            (the lines only), 0 (silent) or 2 (Keras' line per epoch); see `fit_verbosity`.
        name: Run name stored in the results.
        out_dir: If given, `results.json` and the trained model `model.keras` (loadable with
            `keras.saving.load_model` once `resnet_lab` is imported, which registers its
            layers and losses) are written there.
        extra_settings: Dict merged into `results["settings"]` (e.g. the model's recipe).

    Returns:
        `(model, results)`: the trained model and a JSON-ready dict with `name`,
        `history`, `train_accuracy` / `val_accuracy` / `test_accuracy` (inference mode,
        clean images), `per_class_accuracy`, `confusion_matrix` (test split),
        `wall_time_s` (fit only), `weights`, `settings` (the `FitSettings` fields, `seed`,
        `image_size`, `split_sizes`, `replicas`) and `flip_tta_accuracy` (validation and
        test accuracy averaging each image's prediction with its mirror's, reported apart
        from the plain scores).
    """
    set_seed(seed)
    datasets = classifier_datasets(images, labels, splits, fit, seed)
    with strategy_scope(strategy):
        model = fit.compile(build_model(), fit.steps_per_epoch(len(splits["train"])))
    history, wall_time = fit_timed(
        model, datasets["train"], datasets["val"], fit.epochs, verbose, name
    )
    measured = evaluation.evaluate_splits(model, images, labels, splits)
    settings = {
        **fit.as_json(FitSettings.field_names()),
        "seed": seed,
        "image_size": list(images.shape[1:3]),
        "split_sizes": split_sizes(splits),
        "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
        **(extra_settings or {}),
    }
    results = run_results(
        name,
        "random init (trained from scratch)",
        measured,
        model,
        history,
        wall_time,
        settings,
        flip_tta_accuracy=flip_tta_accuracy(model, images, labels, splits),
    )
    save_run(model, results, out_dir)
    return model, results


def train_scratch(images, labels, splits, recipe=SCRATCH_RECIPE, **options):
    """Train the from-scratch ResNet of `recipe` and measure it (`train_classifier`).

    Args:
        images: uint8 array `(N, S, S, 3)` at the recipe's `image_size`.
        labels: Integer labels.
        splits: Dict of index arrays `train`, `val`, `test`.
        recipe: A `ScratchRecipe`, e.g. `SCRATCH_RECIPE.override(epochs=5)`.
        **options: Keyword arguments of `train_classifier` after `fit` (`strategy`,
            `verbose`, `out_dir`, `seed`, `name`).

    Returns:
        `(model, results)` as from `train_classifier`; `results["settings"]["recipe"]` holds
        the network fields and `dtype_policy_used` what `"auto"` became on this machine.

    Raises:
        TypeError: If `recipe` is not a `ScratchRecipe`.
        ValueError: If the images are not at the recipe's size.
    """
    if not isinstance(recipe, ScratchRecipe):
        raise TypeError(
            "`recipe` must be a `ScratchRecipe`, e.g. "
            "`training.SCRATCH_RECIPE.override(epochs=5)`. "
            f"Received: recipe={recipe!r}"
        )
    size = recipe.image_size
    if images.shape[1:3] != (size, size):
        raise ValueError(
            f"Images must be {size}x{size} for this recipe; load them with "
            f"`load_flowers17(image_size=({size}, {size}))`. Received: images.shape={images.shape}"
        )
    num_classes = int(labels.max()) + 1
    options.setdefault("name", "scratch")
    extra = {
        "recipe": recipe.as_json(recipe.network_fields()),
        "dtype_policy_used": hardware.resolve_dtype_policy(recipe.dtype_policy),
    }
    return train_classifier(
        lambda: recipe.build_model(num_classes),
        images,
        labels,
        splits,
        recipe,
        extra_settings=extra,
        **options,
    )
