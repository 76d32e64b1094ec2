"""One thread setting of item 4, in its own process: `python -m benchmarks.thread_worker`.

TensorFlow fixes its thread pools when it first runs an op, so the setting is applied right
after importing TensorFlow and before anything else (Keras and resnet_lab included). The
worker builds and warms up the from-scratch model at the current defaults, prints
`READY {json}` (images per call, first call in seconds, the effective setting), then serves
its parent: each `run` line on stdin times one call and answers `TIME seconds`; `quit` (or
the end of stdin) ends it. Several workers, one per setting, can so be timed in turn, A, B,
A, B, ..., each already warm.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402


def main(argv=None):
    """Apply the thread setting, warm up, then time one call per `run` line on stdin."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--intra", type=int, default=0, help="intra-op threads (0: TF picks)")
    parser.add_argument("--inter", type=int, default=0, help="inter-op threads (0: TF picks)")
    parser.add_argument("--images", type=int, default=128, help="images per timed call")
    args = parser.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter)

    from benchmarks.defaults import CURRENT
    from benchmarks.train_step import scratch_train_function

    call, images = scratch_train_function(images_per_call=args.images, **CURRENT)
    start = time.perf_counter()
    call()  # compiles
    first = time.perf_counter() - start
    effective = [
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    ]
    print(
        "READY "
        + json.dumps({"images": images, "first_call_s": round(first, 3), "effective": effective}),
        flush=True,
    )
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        if line.strip() == "run":
            start = time.perf_counter()
            call()
            print(f"TIME {time.perf_counter() - start:.6f}", flush=True)
    # A normal interpreter exit can hang for a minute tearing down TensorFlow with a live
    # tf.data iterator; there is nothing left to save.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
