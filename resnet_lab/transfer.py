"""ResNet-50 transfer learning: frozen backbone, cached features, optional fine-tuning.

The recipe follows the keras.io transfer-learning guide: preprocessing inside the model,
`base.trainable = False`, the base called with `training=False` so its BatchNorm layers stay in
inference mode (also after unfreezing), recompiling after every change of `trainable`, and
fine-tuning at a low learning rate.

The fast path computes the frozen backbone's pooled features once and trains only the head on
them: a frozen backbone gives the same features every epoch, so running it again is wasted work
(the reference tutorial did so five times). The head trained on cached features is the very
`Dropout` + `Dense` pair inside the full model, so the full model is ready to predict or to
fine-tune afterwards.
"""

import contextlib
import os
import tempfile
import time
from pathlib import Path

import keras

from resnet_lab import data as data_lib
from resnet_lab import training

# keras.applications' ResNet-50 weights without the classifier (what `include_top=False`
# downloads), as named and hashed in keras/src/applications/resnet.py.
WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_MD5 = "4d473c1dd8becc155b73f8504c6f6626"
WEIGHTS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/resnet/{WEIGHTS_FILE}"

# Caffe-style preprocessing expected by keras.applications' ResNet-50 (He et al. released
# Caffe models): RGB -> BGR, then subtract the ImageNet mean per channel, no scaling.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
FEATURE_LAYER = "backbone_pool"


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be downloaded or found in Keras' cache."""


@keras.saving.register_keras_serializable(package="resnet_lab")
class CaffePreprocess(keras.layers.Layer):
    """`keras.applications.resnet50.preprocess_input` as a layer: RGB 0..255 -> BGR - mean.

    Inside the model, so callers pass plain 0..255 images and their arrays are never modified.
    """

    def call(self, inputs):
        bgr = keras.ops.flip(keras.ops.cast(inputs, self.compute_dtype), axis=-1)
        return bgr - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=self.compute_dtype)


def keras_cache_path():
    """Where Keras keeps the downloaded weights file.

    `$KERAS_HOME/models/` (default `~/.keras/models/`), or `/tmp/.keras/models/` when that
    folder is missing or not writable, as `keras.utils.get_file` decides.
    """
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    if not os.access(home, os.W_OK):
        home = os.path.join(tempfile.gettempdir(), ".keras")
    return Path(home) / "models" / WEIGHTS_FILE


def build_backbone(weights="imagenet", input_shape=(224, 224, 3)):
    """keras.applications ResNet-50 without its classifier, globally average pooled.

    Args:
        weights: `"imagenet"` (downloaded once through Keras' own cache), `None` (random
            initialisation: not transfer learning, allowed only when asked for), or a path
            to a local weights file in keras.applications' format (the `_notop.h5`).
        input_shape: Input shape, at least 32x32.

    Returns:
        A `keras.Model` named `resnet50` mapping preprocessed images to 2048 features.

    Raises:
        WeightsUnavailableError: If ImageNet weights cannot be downloaded (offline); the
            message says which file to place where, with its md5.
        ValueError: If `weights` is not `"imagenet"`, `None` or an existing file.
    """
    if weights not in ("imagenet", None) and not Path(str(weights)).is_file():
        raise ValueError(
            "`weights` must be 'imagenet', None (random init, not transfer learning) or the "
            f"path of an existing weights file. Received: weights={weights!r}"
        )
    try:
        return keras.applications.ResNet50(
            include_top=False, weights=weights, input_shape=input_shape, pooling="avg"
        )
    except Exception as error:  # Keras raises a bare Exception on a failed download.
        if weights != "imagenet" or "fetch failure" not in str(error).lower():
            raise
        raise WeightsUnavailableError(
            f"Could not download the ImageNet weights for ResNet-50 ({error}).\n"
            f"Offline? Download {WEIGHTS_URL} on a machine with internet and place it at\n"
            f"  {keras_cache_path()}\n"
            f"(md5 {WEIGHTS_MD5}; Keras' cache folder is $KERAS_HOME/models, default "
            "~/.keras/models), or pass its path as `weights=`. To run without ImageNet "
            "weights say so explicitly with `weights=None`: results are then NOT transfer "
            "learning."
        ) from error


def weights_label(weights):
    """How results describe the backbone's weights; random init is never called transfer."""
    if weights is None:
        return "none: random init, NOT transfer learning"
    if weights == "imagenet":
        return "imagenet"
    return f"file: {weights}"


def build_transfer_model(
    num_classes=data_lib.NUM_CLASSES,
    weights="imagenet",
    input_shape=(224, 224, 3),
    dropout=0.2,
    augment=False,
):
    """ResNet-50 transfer model: preprocessing, frozen backbone, dropout, dense softmax.

    The backbone is called with `training=False`, so its BatchNorm layers use their ImageNet
    statistics even when some of its layers are later unfrozen (keras.io transfer-learning
    guide; training BatchNorm on 680 images would wreck the statistics).

    Args:
        num_classes: Number of classes.
        weights: Backbone weights, see `build_backbone`.
        input_shape: Image shape; images are 0..255 RGB.
        dropout: Dropout rate before the classifier.
        augment: Put `resnet_lab.data.augmentation()` in the model (active in training
            only); useful for fine-tuning on raw images.

    Returns:
        A `keras.Model` named `resnet50_transfer`; layers `preprocess`, `resnet50`
        (frozen), `backbone_pool` (identity on the pooled features, for feature caching),
        `head_dropout`, `predictions`.
    """
    backbone = build_backbone(weights, input_shape)
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


def extract_features(model, images, batch_size=32, verbose="auto"):
    """Run the frozen backbone once over `images`; return float32 features `(N, 2048)`."""
    return training.predict(feature_extractor(model), images, batch_size, verbose=verbose)


def head_model(model):
    """A model from cached features to class probabilities sharing the transfer head's layers."""
    features = keras.Input(model.get_layer(FEATURE_LAYER).output.shape[1:], name="features")
    x = model.get_layer("head_dropout")(features)
    return keras.Model(features, model.get_layer("predictions")(x), name="head")


def unfreeze_top(model, stages=("conv5",)):
    """Make the backbone's top stage(s) trainable, keeping every BatchNorm layer frozen.

    Args:
        model: A model from `build_transfer_model`.
        stages: Name prefixes of the backbone stages to unfreeze (`conv5` is the last).

    Returns:
        The number of trainable weights in the backbone afterwards. Recompile the model
        before training: changing `trainable` takes effect on `compile`.
    """
    backbone = model.get_layer("resnet50")
    backbone.trainable = True
    for layer in backbone.layers:
        unfreeze = layer.name.startswith(tuple(f"{s}_" for s in stages))
        layer.trainable = unfreeze and not isinstance(layer, keras.layers.BatchNormalization)
    return len(backbone.trainable_weights)


def train_transfer(
    images,
    labels,
    splits,
    *,
    weights="imagenet",
    head_epochs=30,
    head_learning_rate=1e-3,
    dropout=0.2,
    batch_size=32,
    fine_tune_epochs=0,
    fine_tune_learning_rate=1e-5,
    cache_features=True,
    strategy=None,
    seed=0,
    verbose="auto",
    out_dir=None,
):
    """Transfer learning on the flowers splits: head on frozen features, then fine-tuning.

    Args:
        images: uint8 array `(N, H, W, 3)` (224x224 for the standard setting).
        labels: Integer labels `(N,)`.
        splits: Dict of index arrays `train`, `val`, `test`.
        weights: Backbone weights (see `build_backbone`); `None` is recorded as
            "NOT transfer learning" in the results.
        head_epochs: Epochs for the head on the frozen backbone.
        head_learning_rate: Adam learning rate for the head.
        dropout: Dropout before the classifier.
        batch_size: Batch size.
        fine_tune_epochs: Epochs of fine-tuning the top stage (0 skips it).
        fine_tune_learning_rate: Learning rate for fine-tuning (low, so ImageNet features
            are adjusted, not destroyed).
        cache_features: Run the backbone once and train the head on cached features (fast
            path); `False` runs the frozen backbone every epoch (the slow path, for
            comparison).
        strategy: Optional `tf.distribute.Strategy`.
        seed: Seed for the head's initialisation and shuffling.
        verbose: Keras progress setting.
        out_dir: If given, `results.json` is written there.

    Returns:
        `(model, results)`: the full transfer model and a JSON-ready results dict as
        `training.train_classifier`'s, plus `head_wall_time_s`, `feature_time_s` and
        `fine_tune_wall_time_s`.
    """
    training.set_seed(seed)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        model = build_transfer_model(int(labels.max()) + 1, weights, images.shape[1:], dropout)
    train, val = splits["train"], splits["val"]
    start = time.perf_counter()
    feature_time = 0.0
    if cache_features:
        # One pass of the backbone over the images the head trains and validates on; the
        # test images wait for the evaluation, as they do on the uncached path.
        extractor = feature_extractor(model)  # built once: one trace of the backbone
        features = {s: training.predict(extractor, images[splits[s]], batch_size, verbose=verbose)
                    for s in ("train", "val")}
        feature_time = time.perf_counter() - start
        with scope:
            head = head_model(model)
            training.compile_model(head, keras.optimizers.Adam(head_learning_rate))
        history = head.fit(
            features["train"], labels[train], validation_data=(features["val"], labels[val]),
            epochs=head_epochs, batch_size=batch_size, verbose=verbose,
        )
    else:
        datasets = data_lib.make_datasets(images, labels, splits, batch_size=batch_size,
                                          augment=False, seed=seed)
        with scope:
            training.compile_model(model, keras.optimizers.Adam(head_learning_rate))
        history = model.fit(datasets["train"], validation_data=datasets["val"],
                            epochs=head_epochs, verbose=verbose, shuffle=False)
    head_time = time.perf_counter() - start
    histories = {"head": training.history_dict(history)}

    fine_time = None
    if fine_tune_epochs:
        with scope:
            unfreeze_top(model)
            training.compile_model(model, keras.optimizers.Adam(fine_tune_learning_rate))
        datasets = data_lib.make_datasets(images, labels, splits, batch_size=batch_size,
                                          augment=True, seed=seed)
        start = time.perf_counter()
        history = model.fit(datasets["train"], validation_data=datasets["val"],
                            epochs=fine_tune_epochs, verbose=verbose, shuffle=False)
        fine_time = time.perf_counter() - start
        histories["fine_tune"] = training.history_dict(history)

    if cache_features and not fine_tune_epochs:
        # The backbone is unchanged, so the cached features give exactly the full model's
        # predictions (tested) without another pass over the images.
        for s in set(splits) - set(features):
            features[s] = training.predict(extractor, images[splits[s]], batch_size)
        measured = {s: training.evaluate(head, features[s], labels[i])
                    for s, i in splits.items()}
    else:
        measured = {s: training.evaluate(model, images[i], labels[i])
                    for s, i in splits.items()}
    results = {
        "name": "transfer",
        "weights": weights_label(weights),
        **training.split_metrics(measured),
        "wall_time_s": round(head_time + (fine_time or 0.0), 2),
        "feature_time_s": round(feature_time, 2),
        "head_wall_time_s": round(head_time, 2),
        "fine_tune_wall_time_s": None if fine_time is None else round(fine_time, 2),
        "params": int(model.count_params()),
        "history": {**histories["head"], **{f"fine_tune_{k}": v for k, v in
                                             histories.get("fine_tune", {}).items()}},
        "settings": {
            "backbone": "keras.applications.ResNet50",
            "image_size": list(images.shape[1:3]),
            "head_epochs": head_epochs,
            "head_learning_rate": head_learning_rate,
            "dropout": dropout,
            "batch_size": batch_size,
            "fine_tune_epochs": fine_tune_epochs,
            "fine_tune_learning_rate": fine_tune_learning_rate,
            "cache_features": cache_features,
            "seed": seed,
            "split_sizes": {k: int(len(v)) for k, v in splits.items()},
        },
    }
    if out_dir is not None:
        training.save_results(results, Path(out_dir) / "results.json")
    return model, results
