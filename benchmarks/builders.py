"""Item 1: our ResNet-50 costs nothing next to keras.applications' ResNet-50.

Both networks are the same graph except that ours has no conv bias before BatchNorm (26,560
fewer parameters), so at the same input size, batch and precision ours should be at least as
fast. Inference runs `model(x, training=False)` inside a `tf.function`; a training step is
`model.train_on_batch` after compiling with plain SGD (momentum 0.9), float32 throughout.
"""

import keras
import numpy as np
import tensorflow as tf

import resnet_lab
from benchmarks.harness import interleaved, log, paired_speed_ratio, table

TARGET = 0.97  # ours / keras images per second, both for inference and for a training step


def build_pair(image_size):
    """`{"ours": resnet_lab.resnet50(), "keras": keras.applications.ResNet50(weights=None)}`."""
    shape = (image_size, image_size, 3)
    keras.utils.set_random_seed(0)
    ours = resnet_lab.resnet50(input_shape=shape)
    keras.utils.set_random_seed(0)
    theirs = keras.applications.ResNet50(weights=None, input_shape=shape)
    return {"ours": ours, "keras": theirs}


def run(
    image_size=224,
    batch_size=32,
    repeats=5,
    train_batch_size=None,
    train_repeats=5,
    companions=None,
):
    """Measure inference and training-step images/s of both models, interleaved.

    Args:
        companions: optional dict `name -> callable` timed in the same rounds as the models
            in both phases (item 5's reference matmul), so that they see the same load.

    Returns:
        JSON-ready dict with the settings, per-model images/s, ratios ours/keras and whether
        the target (`TARGET`) is met. `_models` holds the built models and `_companions` the
        companions' timings per phase, for item 5 (both dropped before writing JSON).
    """
    log(f"1/7 builders: building ResNet-50 twice at {image_size}x{image_size}")
    models = build_pair(image_size)
    train_batch_size = train_batch_size or batch_size
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 1, (batch_size, image_size, image_size, 3)), tf.float32)
    x_train = (
        x[:train_batch_size]
        if train_batch_size <= batch_size
        else tf.constant(
            rng.uniform(0, 1, (train_batch_size, image_size, image_size, 3)), tf.float32
        )
    )
    y = rng.integers(0, 1000, train_batch_size).astype(np.int32)

    def infer(model):
        forward = tf.function(lambda images: model(images, training=False))
        return lambda: forward(x).numpy()

    def train(model):
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss="sparse_categorical_crossentropy",
        )
        return lambda: float(np.asarray(model.train_on_batch(x_train, y)).ravel()[0])

    companions = companions or {}
    inference = interleaved(
        {**{k: infer(m) for k, m in models.items()}, **companions},
        repeats,
        what="1/7 builders inference",
    )
    training = interleaved(
        {**{k: train(m) for k, m in models.items()}, **companions},
        train_repeats,
        what="1/7 builders train step",
    )
    extra = {
        name: {"inference": inference.pop(name), "train_step": training.pop(name)}
        for name in companions
    }

    results = {
        "settings": {
            "image_size": image_size,
            "batch_size": batch_size,
            "train_batch_size": train_batch_size,
            "dtype": "float32",
            "inference": "tf.function(model(x, training=False))",
            "train_step": "model.train_on_batch after compile(SGD(0.01, momentum=0.9))",
            "repeats": repeats,
            "train_repeats": train_repeats,
            "target_ratio": TARGET,
        },
        "params": {k: int(m.count_params()) for k, m in models.items()},
    }
    rows = []
    for phase, timed, batch in (
        ("inference", inference, batch_size),
        ("train_step", training, train_batch_size),
    ):
        speeds = {k: batch / v["median_s"] for k, v in timed.items()}
        ratio = paired_speed_ratio(timed, "ours", "keras")
        results[phase] = {
            "ours_images_per_s": round(speeds["ours"], 3),
            "keras_images_per_s": round(speeds["keras"], 3),
            # Median of the per-round ratios (see harness.paired_speed_ratio): the target
            # is judged on it. The ratio of the two medians is kept for reference.
            "ratio_ours_over_keras": round(ratio, 4),
            "ratio_of_medians": round(speeds["ours"] / speeds["keras"], 4),
            "target_met": bool(ratio >= TARGET),
            "timings": timed,
        }
        rows.append(
            (
                phase,
                batch,
                speeds["ours"],
                speeds["keras"],
                ratio,
                f">= {TARGET}",
                "yes" if ratio >= TARGET else "NO",
            )
        )
    table(
        f"1. Builders: ResNet-50, {image_size}x{image_size}, float32 (median of "
        f"{repeats} / {train_repeats} interleaved calls)",
        ("phase", "batch", "ours img/s", "keras img/s", "ours/keras (paired)", "target", "met"),
        rows,
    )
    results["_models"] = models
    results["_companions"] = extra
    return results


def summary(result):
    """Item 1's headline: ours against keras.applications in both phases."""
    return [
        f"builders {phase}: ours/keras = {result[phase]['ratio_ours_over_keras']:.3f} "
        f"(target >= {result['settings']['target_ratio']}: "
        f"{'met' if result[phase]['target_met'] else 'NOT met'})"
        for phase in ("inference", "train_step")
    ]
