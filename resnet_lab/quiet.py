"""Hide TensorFlow's C++ start-up lines: an explicit call, made by the notebook and the CLI.

TensorFlow 2.20+ prints `oneDNN custom operations are on ...` and `Could not find cuda
drivers ...` before its absl logging starts, and `failed call to cuInit` at its first device
query, so `TF_CPP_MIN_LOG_LEVEL` no longer hides them and a notebook shows them in its cells.
Importing `resnet_lab` changes no process state; calling `import_keras_quietly()` before
anything imports TensorFlow does.
"""

import os
import sys


def import_keras_quietly(level="3"):
    """Import Keras (and so TensorFlow, on its backend) with the C++ start-up lines hidden.

    Sets `TF_CPP_MIN_LOG_LEVEL` to `level` unless the user set it, then, while Keras imports,
    points the process's stderr (fd 2) at /dev/null when that level is 1 or more. Python
    errors still raise; once Keras is imported stderr is as it was. A no-op when TensorFlow
    is already imported.

    Args:
        level: TensorFlow's log level to set if unset: `"3"` hides everything but fatal
            messages, `"0"` shows all.

    Returns:
        The `keras` module.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(level))
    current = os.environ["TF_CPP_MIN_LOG_LEVEL"]
    if "tensorflow" in sys.modules or not current.isdigit() or int(current) < 1:
        import keras  # noqa: PLC0415

        return keras
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: PLC0415

        if keras.backend.backend() == "tensorflow":
            # The first device query prints `failed call to cuInit` on machines without CUDA.
            import tensorflow as tf  # noqa: PLC0415

            tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return keras
