"""Item 3: the input pipeline, from JPEGs to augmented batches, must outrun the model.

Decoding: `load_flowers17` into a fresh cache folder (cold: extract and verify the archive,
then decode and resize all 1,360 JPEGs and save the `.npy`), then again (cached: read the
`.npy`). Feeding: one epoch of `make_datasets(..., augment=True)["train"]` (after a first
epoch that fills `Dataset.cache()`) against the images/s a training step of the from-scratch
model consumes, with tf.data autotuning on (as shipped) and off (item 4 times autotuning).
Both are measured alone on the same cores, so the ratio says what share of the CPU the
pipeline would take from training: at 5x, about a sixth.
"""

import shutil
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf

from benchmarks.harness import interleaved, log, table
from benchmarks.train_step import RECIPE, scratch_train_function
from resnet_lab import data as data_lib

TARGET = 5.0  # pipeline images/s over the model's images/s


def decode(source, cache_root, sizes, cached_repeats=3):
    """Cold and cached `load_flowers17` at each size: `(results, {size: images}, labels)`."""
    results, arrays, labels = {}, {}, None
    for size in sizes:
        cache = tempfile.mkdtemp(prefix=f"cold-{size}-", dir=cache_root)
        try:
            log(f"3/7 pipeline: extract + verify the archive into a fresh cache ({size}x{size})")
            start = time.perf_counter()
            data_lib.fetch_flowers17(source, cache_dir=cache, progress=False)
            extract = time.perf_counter() - start
            log(f"3/7 pipeline: decode + resize 1,360 JPEGs to {size}x{size}")
            start = time.perf_counter()
            images, labels = data_lib.load_flowers17(source, cache, (size, size), progress=False)
            decode_s = time.perf_counter() - start
            cached = []
            for _ in range(cached_repeats):
                start = time.perf_counter()
                again, _ = data_lib.load_flowers17(source, cache, (size, size), progress=False)
                cached.append(time.perf_counter() - start)
            if not np.array_equal(again, images):
                raise AssertionError(f"cached {size}x{size} images differ from the decoded ones")
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        cold = extract + decode_s
        cached_s = statistics.median(cached)
        results[str(size)] = {
            "extract_verify_s": round(extract, 3),
            "decode_resize_s": round(decode_s, 3),
            "cold_total_s": round(cold, 3),
            "cold_images_per_s": round(len(images) / cold, 1),
            "decode_images_per_s": round(len(images) / decode_s, 1),
            "cached_s": round(cached_s, 4),
            "cached_times_s": [round(t, 4) for t in cached],
            "ratio_cold_over_cached": round(cold / cached_s, 1),
            "cache_bytes": int(images.nbytes),
            "cache_mib": round(images.nbytes / 2**20, 2),
            "dtype": str(images.dtype),
            "is_uint8": bool(images.dtype == np.uint8),
        }
        arrays[size] = images
    return results, arrays, labels


def feeding(images, labels, batch_size=32, repeats=3, model_images=128, seed=0):
    """Training-pipeline images/s against the from-scratch model's training images/s."""
    splits = data_lib.split_indices(labels, seed=seed)
    train = data_lib.make_datasets(
        images, labels, splits, batch_size=batch_size, augment=True, seed=seed
    )["train"]
    per_epoch = (len(splits["train"]) // batch_size) * batch_size

    def epoch():
        count = 0
        for x, _ in train:
            count += int(x.shape[0])
        if count != per_epoch:
            raise AssertionError(f"an epoch yielded {count} images, expected {per_epoch}")

    # `make_datasets` ships with tf.data autotuning off (item 4); time it switched on too.
    options = tf.data.Options()
    options.autotune.enabled = True
    tuned = train.with_options(options)

    def epoch_tuned():
        count = sum(int(x.shape[0]) for x, _ in tuned)
        if count != per_epoch:
            raise AssertionError(f"an epoch yielded {count} images, expected {per_epoch}")

    model_step, model_images = scratch_train_function(
        batch_size=batch_size, image_size=images.shape[1], images_per_call=model_images
    )
    timed = interleaved(
        {"pipeline": epoch, "pipeline_autotune_on": epoch_tuned, "model": model_step},
        repeats,
        what="3/7 pipeline vs model",
    )
    pipeline = per_epoch / timed["pipeline"]["median_s"]
    tuned_speed = per_epoch / timed["pipeline_autotune_on"]["median_s"]
    model = model_images / timed["model"]["median_s"]
    split_bytes = sum(len(i) for i in splits.values()) * int(np.prod(images.shape[1:]))
    return {
        "settings": {
            "image_size": int(images.shape[1]),
            "batch_size": batch_size,
            "augment": True,
            "images_per_epoch": per_epoch,
            "repeats": repeats,
            "model": "SCRATCH_RECIPE.build_model(): Keras' train "
            "function on an in-memory batch (the model alone)",
            "recipe_image_size": RECIPE.image_size,
            "target_ratio": TARGET,
        },
        "pipeline_images_per_s": round(pipeline, 1),
        "model_images_per_s": round(model, 1),
        "ratio_pipeline_over_model": round(pipeline / model, 3),
        "target_met": bool(pipeline / model >= TARGET),
        # As shipped autotuning is off (item 4 times both); with it on, for comparison.
        "pipeline_autotune_on_images_per_s": round(tuned_speed, 1),
        "ratio_pipeline_autotune_on_over_model": round(tuned_speed / model, 3),
        "tf_data_cache_bytes": int(split_bytes),
        "tf_data_cache_dtype": "uint8 (Dataset.cache() precedes the float32 cast)",
        "timings": timed,
    }


def run(source, cache_root, sizes=(64, 224), repeats=3, model_images=128):
    """Item 3. Returns `(results, {size: images}, labels)`; later items reuse the arrays."""
    decoded, arrays, labels = decode(source, cache_root, sizes)
    size = RECIPE.image_size
    if size not in arrays:
        arrays[size] = data_lib.load_flowers17(source, cache_root, (size, size), progress=False)[0]
    fed = feeding(arrays[size], labels, repeats=repeats, model_images=model_images)
    table(
        "3a. Decoding the 1,360 real JPEGs (cold: fresh cache folder; cached: the .npy)",
        (
            "size",
            "extract+verify s",
            "decode s",
            "cold img/s",
            "cached s",
            "cold/cached",
            "cache MiB",
            "uint8",
        ),
        [
            (
                f"{s}x{s}",
                r["extract_verify_s"],
                r["decode_resize_s"],
                r["cold_images_per_s"],
                r["cached_s"],
                r["ratio_cold_over_cached"],
                r["cache_mib"],
                r["is_uint8"],
            )
            for s, r in decoded.items()
        ],
    )
    table(
        f"3b. Training pipeline (augment=True) vs from-scratch model, {size}x{size}, batch 32",
        ("pipeline", "img/s", "model img/s", "pipeline/model", "target", "met"),
        [
            (
                "as shipped (autotune off)",
                fed["pipeline_images_per_s"],
                fed["model_images_per_s"],
                fed["ratio_pipeline_over_model"],
                f">= {TARGET:g}",
                "yes" if fed["target_met"] else "NO",
            ),
            (
                "autotune on",
                fed["pipeline_autotune_on_images_per_s"],
                fed["model_images_per_s"],
                fed["ratio_pipeline_autotune_on_over_model"],
                f">= {TARGET:g}",
                "yes" if fed["ratio_pipeline_autotune_on_over_model"] >= TARGET else "NO",
            ),
        ],
    )
    return {"decode": decoded, "feeding": fed}, arrays, labels


def summary(result):
    """Item 3's headline: how far the pipeline outruns the model."""
    fed = result["feeding"]
    return [
        f"pipeline/model = {fed['ratio_pipeline_over_model']:.1f} (target >= "
        f"{fed['settings']['target_ratio']:g}: {'met' if fed['target_met'] else 'NOT met'})"
    ]
