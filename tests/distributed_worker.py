"""One process of the multi-worker test: train the tiny network, write what it saw as JSON.

Run as `python tests/distributed_worker.py MODE OUT_DIR`, where MODE is

- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy`, cluster and task from
  `TF_CONFIG` (one replica per worker process);
- `mirrored`: one process, `MirroredStrategy` over two logical CPUs (two replicas, the same
  per-replica batches and BatchNorm statistics as two workers);
- `one_worker`: one process, no strategy.

Every mode trains through the lab's own entry point, `resnet_lab.training.train_scratch`, on
half of `synthetic.flowers_like(16)` with the same seed and global batch size, writes
`results.json` there (`out_dir=OUT_DIR`) and `report.json` beside it. Augmentation is off:
with it, two identical one-worker runs differ in the fourth digit of the loss, without it
they agree to the last bit, so two runs can be compared exactly.
"""

import hashlib
import os
import sys
import traceback
from pathlib import Path

# Changes to `SCRATCH_RECIPE` (applied after the strategy exists: importing the lab imports
# TensorFlow). 340 training images (half of flowers_like's) / 32 = 10 steps an epoch.
RECIPE_CHANGES = {
    "image_size": 16,
    "stages": ((8, 1),),
    "stem_filters": 8,
    "epochs": 2,
    "batch_size": 32,
    "augment": False,
}
MODES = ("multi_worker", "mirrored", "one_worker")


def make_strategy(mode):
    """The strategy for `mode` (`None` for `one_worker`); call before TensorFlow runs ops."""
    import tensorflow as tf

    if mode == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("mode 'multi_worker' needs TF_CONFIG. Received: TF_CONFIG unset")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    if mode == "one_worker":
        return None
    raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")


def first_batch_labels(strategy, images, labels, splits, batch_size):
    """Labels of the first training batch this process's replicas get, in replica order.

    A fresh copy of the pipeline `train_classifier` feeds to `fit`, distributed as Keras
    distributes it (`experimental_distribute_dataset`).
    """
    from resnet_lab import data

    datasets = data.make_datasets(images, labels, splits, batch_size, augment=False)
    train = datasets["train"]
    if strategy is None:
        return next(iter(train))[1].numpy().tolist()
    batch = next(iter(strategy.experimental_distribute_dataset(train)))
    return [int(y) for part in strategy.experimental_local_results(batch[1]) for y in part]


def main(mode, out_dir):
    """Train in `mode`, then write `OUT_DIR/report.json` (see the module docstring)."""
    strategy = make_strategy(mode)  # before anything else touches TensorFlow's devices

    import numpy as np

    from resnet_lab import results, training
    from resnet_lab.data.synthetic import flowers_like

    recipe = training.SCRATCH_RECIPE.override(RECIPE_CHANGES)
    images, labels, splits = flowers_like(recipe.image_size)
    splits = {name: index[::2] for name, index in splits.items()}  # half of each: faster
    model, run = training.train_scratch(
        images, labels, splits, recipe, strategy=strategy, verbose=0, out_dir=out_dir
    )
    resolver = getattr(strategy, "cluster_resolver", None)
    trainable = hashlib.sha256()
    for weight in model.trainable_weights:
        trainable.update(np.asarray(weight).tobytes())
    report = {
        "mode": mode,
        "task_id": resolver.task_id if resolver else 0,
        "cluster_workers": len(resolver.cluster_spec().as_dict()["worker"]) if resolver else 1,
        "num_replicas_in_sync": strategy.num_replicas_in_sync if strategy else 1,
        "loss": run["history"]["loss"],
        "trainable_sha256": trainable.hexdigest(),
        "first_batch_labels": first_batch_labels(
            strategy, images, labels, splits, recipe.batch_size
        ),
    }
    results.save_results(report, Path(out_dir) / "report.json")


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])
    except BaseException:
        # Exit at once: a failed worker's TensorFlow shutdown waits ~30 s for its peer.
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
