"""Item 7: which GPUs TensorFlow sees; the other items run where TensorFlow places them."""

import tensorflow as tf


def run():
    """What TensorFlow detects, said as it is (nothing is timed here)."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        result = {
            "measured": False,
            "gpus_visible": 0,
            "reason": "not measured: TensorFlow sees no GPU on this machine",
        }
    else:
        names = [
            tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus
        ]
        result = {
            "measured": False,
            "gpus_visible": len(gpus),
            "gpu_names": names,
            "reason": f"TensorFlow sees {len(gpus)} GPU(s) ({', '.join(names)}); the "
            "other items ran with TensorFlow's default placement, no separate "
            "GPU item",
        }
    print(f"\n7. GPU: {result['reason']}\n", flush=True)
    return result


def summary(result):
    """Item 7's line."""
    return [f"GPU: {result['reason']}"]
