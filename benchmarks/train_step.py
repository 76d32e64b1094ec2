"""The from-scratch model's training step, timed the same way by items 3, 4 and 8.

Apart from `harness` because it imports TensorFlow and the lab: `harness` stays light enough
for `end_to_end`'s measuring parent, whose resident set a child would inherit until `exec`.
"""

import json

import numpy as np
import tensorflow as tf

from resnet_lab import data as data_lib
from resnet_lab import hardware, training

RECIPE = training.SCRATCH_RECIPE
# Training images of the standard split (`data.split_indices` on the whole data set): what
# sets the recipe's steps per epoch, hence its schedule.
TRAIN_IMAGES = len(
    data_lib.split_indices(np.repeat(np.arange(data_lib.NUM_CLASSES), data_lib.IMAGES_PER_CLASS))[
        "train"
    ]
)


_BUILT = {}  # one compiled model per setting, shared by items 3, 4 and 8 of a run


def clear_built():
    """Let go of every model `scratch_train_function` built (and its iterator)."""
    _BUILT.clear()


def scratch_train_function(
    batch_size=RECIPE.batch_size,
    image_size=RECIPE.image_size,
    jit_compile=False,
    steps_per_execution=1,
    images_per_call=128,
    seed=0,
    dtype_policy=None,
    network=None,
):
    """The from-scratch model compiled with `SCRATCH_RECIPE`'s optimizer, and a timed call.

    Shared by items 3, 4 and 8 (and item 4's thread workers).

    Built once per setting and process (compiling costs seconds); `call.model` is the model.

    The call runs Keras' own train function (what `model.fit` runs per execution) on one
    persistent iterator, so every call does the same work. A fresh iterator per call, as
    `model.fit` makes per epoch, would add tf.data's start-up and teardown: `autotune`
    measures that separately.

    Args:
        images_per_call: images per call at the current image size; scaled by the pixel
            count for other sizes, rounded to whole batches and whole executions of
            `steps_per_execution` steps.
        dtype_policy: `None` (what the recipe's policy resolves to here) or a Keras policy.
        network: `None` (the recipe's network), or a dict of `ScratchRecipe` network fields
            (`stages`, `stem_filters`, `stem_stride`) for another candidate.

    Returns:
        `(call, images)`: `call()` trains on `images` images and returns when it is done.
    """
    dtype_policy = dtype_policy or hardware.resolve_dtype_policy(RECIPE.dtype_policy)
    key = (
        batch_size,
        image_size,
        jit_compile,
        steps_per_execution,
        images_per_call,
        seed,
        dtype_policy,
        json.dumps(network, sort_keys=True),
    )
    if key in _BUILT:
        return _BUILT[key]
    recipe = RECIPE.override(
        network, batch_size=batch_size, image_size=image_size, dtype_policy=dtype_policy
    )
    training.set_seed(seed)
    # "mixed_bfloat16" computes in bfloat16 (AVX-512 BF16 where the CPU has it), keeps float32
    # weights; the policy is set for this model only.
    model = recipe.build_model(data_lib.NUM_CLASSES)
    # About the same compute per call whatever the size: cost grows with the pixel count.
    scaled = images_per_call * (RECIPE.image_size / image_size) ** 2
    steps = max(1, round(scaled / batch_size))
    steps = max(steps_per_execution, steps - steps % steps_per_execution)
    optimizer = recipe.make_optimizer(recipe.steps_per_epoch(TRAIN_IMAGES))
    training.compile_model(
        model, optimizer, jit_compile=jit_compile, steps_per_execution=steps_per_execution
    )
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.integers(0, 256, (batch_size, image_size, image_size, 3)), tf.float32)
    y = tf.constant(rng.integers(0, data_lib.NUM_CLASSES, batch_size), tf.int32)
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    model.make_train_function()
    train_function = model.train_function
    executions = steps // steps_per_execution

    def call():
        for _ in range(executions):
            logs = train_function(iterator)
        return float(logs["loss"])

    call.model = model
    _BUILT[key] = call, steps * batch_size
    return _BUILT[key]
