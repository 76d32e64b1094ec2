"""Plain helpers that tests call (fixtures live in `conftest.py`)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_python(*args, code=None, env=None, cwd=ROOT, timeout=600):
    """Run `python ARGS...` (or `python -c CODE`) in a fresh process, TensorFlow quiet.

    Args:
        *args: Arguments after the interpreter, e.g. `"-m", "resnet_lab", "train"`.
        code: A script to run with `-c` instead (dedented first).
        env: Variables added to the environment; a value of `None` removes the variable.
        cwd: Working folder (the repository root by default).
        timeout: Seconds before the process is killed and the test fails.

    Returns:
        The `subprocess.CompletedProcess`, with text `stdout` and `stderr`.
    """
    command = [sys.executable, *map(str, args)]
    if code is not None:
        command += ["-c", textwrap.dedent(code)]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    environment = {name: value for name, value in environment.items() if value is not None}
    return subprocess.run(
        command, capture_output=True, text=True, env=environment, cwd=cwd, timeout=timeout
    )


def fixed_classifier(probabilities, image_size=8):
    """A model that gives every image the same known `probabilities` (a softmax of biases).

    Args:
        probabilities: One probability per class; their count is the model's class count.
        image_size: Square input size, or `None` for any size.
    """
    import keras  # noqa: PLC0415

    probabilities = np.asarray(probabilities, "float32")
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(
        len(probabilities),
        activation="softmax",
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(np.log(probabilities)),
    )
    return keras.Model(inputs, dense(x))
