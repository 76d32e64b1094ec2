"""ResNet-50 transfer learning on the lab's own network: frozen backbone, cached features,
fine-tuning.

The backbone is `resnet_lab.resnet50(weights=..., include_top=False, pooling="avg")`, the
network built from this package's blocks, holding keras.applications' ImageNet weights
(downloaded by `resnet_lab.nn.porting.imagenet_weights_path`, ported by
`resnet_lab.nn.porting.port_keras_weights`: each conv bias folded into its BatchNorm). Its
BatchNorm layers are `FrozenBatchNormalization`: always in inference mode, whatever
`trainable` or `training` say (see `resnet_lab.nn.layers` for why a flag is not enough in Keras 3).

The recipe follows the keras.io transfer-learning guide: preprocessing inside the model,
`backbone.trainable = False`, recompiling after every change of `trainable`, and fine-tuning
at a low learning rate. The fast path computes the frozen backbone's pooled features once and
trains only the head on them: a frozen backbone gives the same features every epoch, so running
it again is wasted work. Cached features rule out augmentation: the head sees each training
image exactly as it is, every epoch (augmentation returns in fine-tuning, which runs on
images). The head trained on cached features is the very `Dropout` + `Dense` pair inside the
full model, so the full model is ready to predict or to fine-tune afterwards.
"""

import dataclasses
import time

import keras
import numpy as np

from resnet_lab import training
from resnet_lab.checks import check_positive_int, is_count
from resnet_lab.evaluation import evaluate, evaluate_splits, predict
from resnet_lab.nn import models
from resnet_lab.nn.layers import CaffePreprocess, freeze_batchnorm
from resnet_lab.settings import Settings

FEATURE_LAYER = "backbone_pool"
BACKBONE = "resnet50"
# ResNet-50's total stride: stem 2, pool 2, then 2 in each of conv3..conv5, so the last stage
# keeps a pixel from 32x32 on.
MIN_IMAGE_SIZE = 32


@dataclasses.dataclass(frozen=True)
class TransferSettings(Settings):
    """How `train_transfer` trains: the backbone's weights, the head phase, fine-tuning.

    Attributes:
        weights: Backbone weights (see `build_transfer_model`); `None` is recorded as "NOT
            transfer learning" in the results.
        image_size: Square image size (the images must match), at least `MIN_IMAGE_SIZE`.
        head_epochs: Epochs for the head on the frozen backbone.
        head_learning_rate: Adam learning rate for the head.
        dropout: Dropout before the classifier.
        batch_size: Batch size.
        fine_tune_epochs: Epochs of fine-tuning (0 skips it).
        fine_tune_learning_rate: Adam learning rate for fine-tuning, ~100x lower than the
            head's so that the ImageNet features are adjusted rather than overwritten by the
            large gradients of a fresh head (keras.io transfer guide).
        fine_tune_stages: Backbone stages to unfreeze for fine-tuning (`unfreeze_top`).
        cache_features: Run the backbone once and train the head on cached features (fast
            path); `False` runs the frozen backbone every epoch (the slow path, for
            comparison). Both see the same batches in the same order.

    Raises:
        ValueError: If an epoch count, the batch size or the image size is out of range (the
            fine-tuning epochs may be 0).
    """

    weights: str | None = "imagenet"
    image_size: int = 224
    head_epochs: int = 30
    head_learning_rate: float = 1e-3
    dropout: float = 0.2
    batch_size: int = 32
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 1e-5
    fine_tune_stages: tuple = ("conv5",)
    cache_features: bool = True

    def __post_init__(self):
        check_positive_int("head_epochs", self.head_epochs)
        check_positive_int("batch_size", self.batch_size)
        if not is_count(self.fine_tune_epochs):
            raise ValueError(
                "`fine_tune_epochs` must be an integer >= 0. "
                f"Received: fine_tune_epochs={self.fine_tune_epochs!r}"
            )
        if not check_positive_int("image_size", self.image_size) >= MIN_IMAGE_SIZE:
            raise ValueError(
                f"`image_size` must be >= {MIN_IMAGE_SIZE} (ResNet-50's total "
                f"stride). Received: image_size={self.image_size}"
            )
        object.__setattr__(self, "fine_tune_stages", tuple(self.fine_tune_stages))


def weights_label(weights):
    """How results describe the backbone's weights; random init is never called transfer."""
    if weights is None:
        return "none: random init, NOT transfer learning"
    if weights == "imagenet":
        return "imagenet"
    return f"file: {weights}"


def build_transfer_model(
    num_classes,
    weights="imagenet",
    input_shape=(224, 224, 3),
    dropout=0.2,
    augment=False,
):
    """ResNet-50 transfer model: preprocessing, frozen backbone, dropout, dense softmax.

    The backbone's BatchNorm layers are `FrozenBatchNormalization`, so they use their ImageNet
    statistics however the backbone is later unfrozen (whole, by stage, by layer) and whatever
    `training` flag reaches them. Writing `backbone(x, training=False)` alone would not do it
    in Keras 3: a nested model runs in the outer call's mode (`resnet_lab.nn.layers`).

    The backbone is `resnet_lab.resnet50(weights, include_top=False, pooling="avg")`: with
    `weights="imagenet"` keras.applications' file comes once through Keras' cache
    (`resnet_lab.nn.porting.imagenet_weights_path`) and is ported into the lab's network
    (outputs equal keras.applications' within 1e-4, tested).

    Args:
        num_classes: Number of classes.
        weights: Backbone weights: `"imagenet"`, `None` (random initialisation: not transfer
            learning, allowed only when asked for), or the path of a local weights file in
            keras.applications' format (the `_notop.h5`).
        input_shape: Image shape, at least `MIN_IMAGE_SIZE` square; images are 0..255 RGB.
        dropout: Dropout rate before the classifier.
        augment: Put `resnet_lab.data.augmentation()` in the model (active in training
            only); useful for fine-tuning on raw images.

    Returns:
        A `keras.Model` named `resnet50_transfer`; layers `image`, `preprocess`, `resnet50`
        (frozen; its layers keep the builder's names, `conv5_block3_out` ...),
        `backbone_pool` (identity on the pooled features, for feature caching),
        `head_dropout`, `predictions`.

    Raises:
        resnet_lab.nn.porting.WeightsUnavailableError: If ImageNet weights cannot be
            downloaded (offline); the message says which file to place where.
        ValueError: If `weights` is not `"imagenet"`, `None` or an existing file.
    """
    from resnet_lab import data as data_lib

    backbone = models.resnet50(
        include_top=False, weights=weights, input_shape=input_shape, pooling="avg", name=BACKBONE
    )
    backbone = freeze_batchnorm(backbone)
    backbone.trainable = False
    inputs = keras.Input(input_shape, name="image")
    x = data_lib.augmentation()(inputs) if augment else inputs
    x = CaffePreprocess(name="preprocess")(x)
    x = backbone(x, training=False)
    x = keras.layers.Identity(name=FEATURE_LAYER)(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="resnet50_transfer")


def feature_extractor(model):
    """The part of a transfer model that maps images to the pooled backbone features."""
    return keras.Model(model.input, model.get_layer(FEATURE_LAYER).output, name="features")


def extract_features(model, images, batch_size=32, verbose=0):
    """Run the frozen backbone once over `images`; return float32 features `(N, 2048)`."""
    return predict(feature_extractor(model), images, batch_size, verbose=verbose)


def head_model(model):
    """A model from cached features to class probabilities sharing the transfer head's layers."""
    features = keras.Input(model.get_layer(FEATURE_LAYER).output.shape[1:], name="features")
    x = model.get_layer("head_dropout")(features)
    return keras.Model(features, model.get_layer("predictions")(x), name="head")


def unfreeze_top(model, stages=("conv5",)):
    """Make the backbone's top stage(s) trainable, BatchNorm affine parameters excluded.

    Only convolutions train, as the keras.io guide fine-tunes; the BatchNorm statistics stay
    frozen in any case (`FrozenBatchNormalization`), this also keeps their gamma and beta.

    Args:
        model: A model from `build_transfer_model`.
        stages: Name prefixes of the backbone stages to unfreeze (`conv5` is the last).

    Returns:
        The number of trainable weights in the backbone afterwards. Recompile the model
        before training: changing `trainable` takes effect on `compile`.
    """
    backbone = model.get_layer(BACKBONE)
    backbone.trainable = True
    for layer in backbone.layers:
        unfreeze = layer.name.startswith(tuple(f"{s}_" for s in stages))
        layer.trainable = unfreeze and not isinstance(layer, keras.layers.BatchNormalization)
    return len(backbone.trainable_weights)


def _feature_batches(features, labels, batch_size, seed):
    """The cached head's training batches: the same shuffle and batching as the image path.

    `resnet_lab.data.make_datasets` shuffles the training split with `seed`, reshuffles every
    epoch and drops the last incomplete batch; the features go through the same
    `shuffled_batches`, so with equal seeds both heads see the same images in the same batches.
    """
    import tensorflow as tf

    from resnet_lab import data as data_lib

    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).cache()
    return data_lib.shuffled_batches(dataset, len(labels), batch_size, seed)


def _cached_features(model, images, splits, batch_size):
    """The frozen backbone's features of the training and validation images, in one pass.

    The test images wait for the evaluation, as they do on the uncached path. One predict
    call for both splits: every call with a new last-batch size retraces the whole backbone
    (seconds for ResNet-50), so two calls cost an extra trace.

    Returns:
        `(extractor, features, seconds)`: the feature model (built once: one trace of the
        backbone), `{"train": ..., "val": ...}` and the time the pass took.
    """
    start = time.perf_counter()
    extractor = feature_extractor(model)
    train, val = splits["train"], splits["val"]
    both = predict(extractor, images[np.concatenate([train, val])], batch_size)
    features = {"train": both[: len(train)], "val": both[len(train) :]}
    return extractor, features, time.perf_counter() - start


def _fit_head_on_features(model, features, labels, splits, settings, strategy, seed, verbose):
    """Head phase on cached features: `(head, history, seconds)`."""
    with training.strategy_scope(strategy):
        head = head_model(model)
        training.compile_model(head, keras.optimizers.Adam(settings.head_learning_rate))
    batches = _feature_batches(
        features["train"], labels[splits["train"]], settings.batch_size, seed
    )
    history, seconds = training.fit_timed(
        head,
        batches,
        (features["val"], labels[splits["val"]]),
        settings.head_epochs,
        verbose,
        "head",
        validation_batch_size=settings.batch_size,
    )
    return head, history, seconds


def _fit_on_images(
    model,
    images,
    labels,
    splits,
    *,
    epochs,
    learning_rate,
    augment,
    batch_size,
    strategy,
    seed,
    verbose,
    name,
):
    """A phase on images (the uncached head, or fine-tuning): compile with Adam, fit.

    Returns:
        `(history, seconds)` as `training.fit_timed`.
    """
    from resnet_lab import data as data_lib

    datasets = data_lib.make_datasets(
        images, labels, splits, batch_size=batch_size, augment=augment, seed=seed
    )
    with training.strategy_scope(strategy):
        training.compile_model(model, keras.optimizers.Adam(learning_rate))
    return training.fit_timed(model, datasets["train"], datasets["val"], epochs, verbose, name)


def _head_phase(model, images, labels, splits, settings, on_images):
    """The head on the frozen backbone, on cached features or on the images.

    Returns:
        `(head, extractor, features, feature_time, history, seconds)`; `head` and
        `extractor` are `None` and `features` empty on the uncached path. `seconds`
        includes the feature pass.
    """
    if not settings.cache_features:
        history, seconds = _fit_on_images(
            model,
            images,
            labels,
            splits,
            epochs=settings.head_epochs,
            learning_rate=settings.head_learning_rate,
            augment=False,
            name="head",
            **on_images,
        )
        return None, None, {}, 0.0, history, seconds
    extractor, features, feature_time = _cached_features(model, images, splits, settings.batch_size)
    head, history, seconds = _fit_head_on_features(
        model,
        features,
        labels,
        splits,
        settings,
        on_images["strategy"],
        on_images["seed"],
        on_images["verbose"],
    )
    return head, extractor, features, feature_time, history, seconds + feature_time


def _measure(model, head, extractor, features, images, labels, splits, batch_size):
    """Every split measured; on the cached features when the backbone is unchanged.

    With `head` (cached features, no fine-tuning) the cached features give exactly the full
    model's predictions (tested) without another pass over the images.
    """
    if head is None:
        return evaluate_splits(model, images, labels, splits)
    for split in set(splits) - set(features):
        features[split] = predict(extractor, images[splits[split]], batch_size)
    return {
        split: evaluate(head, features[split], labels[index]) for split, index in splits.items()
    }


def _check_images(images, settings):
    size = settings.image_size
    if images.shape[1:3] != (size, size):
        raise ValueError(
            f"Images must be {size}x{size} for these settings (`image_size`); load them with "
            f"`load_flowers17(image_size=({size}, {size}))`. Received: images.shape={images.shape}"
        )


def train_transfer(
    images,
    labels,
    splits,
    settings=TransferSettings(),
    *,
    strategy=None,
    seed=0,
    verbose="auto",
    out_dir=None,
):
    """Transfer learning on the flowers splits: head on frozen features, then fine-tuning.

    The phases of `training.train_classifier` (build in the strategy's scope, fit, measure,
    save), twice. Head phase: Adam at `head_learning_rate` on the frozen backbone's features,
    without augmentation on either path (cached features are fixed per image, and the
    uncached path matches it so that the two are the same computation). Fine-tuning phase:
    the top `fine_tune_stages` unfrozen (BatchNorm frozen), augmentation on, Adam at
    `fine_tune_learning_rate`.

    Args:
        images: uint8 array `(N, S, S, 3)` at `settings.image_size`.
        labels: Integer labels `(N,)`.
        splits: Dict of index arrays `train`, `val`, `test`.
        settings: `TransferSettings`, e.g. `TransferSettings(weights=None, head_epochs=5)`.
        strategy: Optional `tf.distribute.Strategy`.
        seed: Seed for the head's initialisation and shuffling.
        verbose: As `resnet_lab.training.train_classifier`.
        out_dir: If given, `results.json` and `model.keras` are written there.

    Returns:
        `(model, results)`: the full transfer model and a JSON-ready results dict as
        `training.train_classifier`'s, plus `head_wall_time_s` (features included),
        `feature_time_s`, `fine_tune_wall_time_s` and `head_val_accuracy` (validation
        accuracy after the head phase, before fine-tuning).

    Raises:
        ValueError: If the images are not at `settings.image_size`.
    """
    _check_images(images, settings)
    training.set_seed(seed)
    with training.strategy_scope(strategy):
        model = build_transfer_model(
            int(labels.max()) + 1, settings.weights, images.shape[1:], settings.dropout
        )
    on_images = {
        "batch_size": settings.batch_size,
        "strategy": strategy,
        "seed": seed,
        "verbose": verbose,
    }
    head, extractor, features, feature_time, head_history, head_time = _head_phase(
        model, images, labels, splits, settings, on_images
    )
    fine_history, fine_time = {}, None
    if settings.fine_tune_epochs:
        with training.strategy_scope(strategy):
            unfreeze_top(model, settings.fine_tune_stages)
        fine_history, fine_time = _fit_on_images(
            model,
            images,
            labels,
            splits,
            epochs=settings.fine_tune_epochs,
            learning_rate=settings.fine_tune_learning_rate,
            augment=True,
            name="fine-tune",
            **on_images,
        )
        head = None  # the backbone changed: cached features no longer hold
    measured = _measure(
        model, head, extractor, features, images, labels, splits, settings.batch_size
    )
    results = training.run_results(
        "transfer",
        weights_label(settings.weights),
        measured,
        model,
        {**head_history, **{f"fine_tune_{k}": v for k, v in fine_history.items()}},
        head_time + (fine_time or 0.0),
        _settings_json(settings, images, splits, seed),
        head_val_accuracy=head_history["val_accuracy"][-1],
        feature_time_s=round(feature_time, 2),
        head_wall_time_s=round(head_time, 2),
        fine_tune_wall_time_s=None if fine_time is None else round(fine_time, 2),
    )
    training.save_run(model, results, out_dir)
    return model, results


def _settings_json(settings, images, splits, seed):
    """Results' `settings`: the `TransferSettings` fields and what the run adds to them."""
    return {
        "backbone": "resnet_lab.resnet50 (ImageNet weights ported from keras.applications)",
        **settings.as_json(),
        "weights": None if settings.weights is None else str(settings.weights),
        "image_size": list(images.shape[1:3]),
        "head_augmentation": False,
        "seed": seed,
        "split_sizes": training.split_sizes(splits),
    }
