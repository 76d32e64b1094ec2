"""Blocks and builders are backend-agnostic; importing them loads Keras and nothing heavy."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run(script, **env):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env={**ENV, **env},
        timeout=300,
        cwd=TESTS,
    )


def test_importing_the_blocks_loads_no_data_download_or_plot_code():
    script = """
        import sys
        import keras  # what Keras itself loads is Keras' business, not ours
        baseline = set(sys.modules)
        import resnet_lab.nn.blocks
        from resnet_lab import basic_block, resnet50
        added = set(sys.modules) - baseline
        heavy = ("gdown", "PIL", "tqdm", "h5py", "matplotlib", "resnet_lab.data",
                 "resnet_lab.data.download", "resnet_lab.training", "resnet_lab.plots",
                 "resnet_lab.transfer", "tensorflow.python.data")
        print(sorted(m for m in added if m.split(".")[0] in heavy or m.startswith(heavy)))
        import resnet_lab
        resnet_lab.load_flowers17  # a lazy name loads its module on first use
        print("resnet_lab.data" in sys.modules)
    """
    out = run(script)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[-2] == "[]", f"importing the blocks loaded {lines[-2]}"
    assert lines[-1] == "True"


def test_blocks_and_resnet18_run_on_the_jax_backend():
    pytest.importorskip("jax", reason="jax is not installed (pip install 'jax[cpu]')")
    script = """
        import keras, numpy as np
        assert keras.backend.backend() == "jax", keras.backend.backend()
        import sys
        from resnet_lab import basic_block, bottleneck_block, resnet18, build_resnet
        for block, filters, out in ((basic_block, 32, 32), (bottleneck_block, 8, 32)):
            for shortcut in ("projection", "identity", "none"):
                for stride in (1, 2):
                    x = keras.Input((8, 8, 16))
                    y = block(x, filters, stride=stride, shortcut=shortcut)
                    model = keras.Model(x, y)
                    result = model(np.random.rand(2, 8, 8, 16).astype("float32"))
                    assert tuple(result.shape) == (2, 8 // stride, 8 // stride, out), result.shape
        model = resnet18(input_shape=(64, 64, 3), classes=5)
        probs = np.asarray(model(np.random.rand(2, 64, 64, 3).astype("float32"), training=False))
        assert probs.shape == (2, 5) and np.allclose(probs.sum(-1), 1, atol=1e-5)
        print("tensorflow" in sys.modules, type(model.layers[2].kernel.value).__module__)
    """
    out = run(script, KERAS_BACKEND="jax")
    assert out.returncode == 0, out.stderr[-3000:]
    tf_loaded, kernel_module = out.stdout.split()[-2:]
    assert kernel_module.startswith("jax"), kernel_module
