"""Importing resnet_lab changes no process state; hiding TensorFlow's start-up lines is a call."""

from helpers import run_python

# A line TensorFlow's C++ side prints on start-up on every CPU machine seen here (oneDNN, CPU
# feature guard or CUDA probing), whatever TF_CPP_MIN_LOG_LEVEL says.
STARTUP = ("oneDNN", "cpu_feature_guard", "cuda", "cuInit")


def startup_lines(stderr):
    return [line for line in stderr.splitlines() if any(word in line for word in STARTUP)]


def test_importing_the_package_leaves_the_environment_and_stderr_alone():
    code = """
        import os
        import keras  # TensorFlow sets variables of its own on import: the baseline
        before = dict(os.environ)
        import resnet_lab
        from resnet_lab import basic_block, resnet50
        import tensorflow as tf
        tf.config.list_physical_devices()
        print(dict(os.environ) == before)
        os.write(2, b"stderr still works\\n")
    """
    done = run_python(code=code, env={"TF_CPP_MIN_LOG_LEVEL": None})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True"]  # the library set no variable
    assert startup_lines(done.stderr), "a plain import should show TensorFlow's own lines"
    assert "stderr still works" in done.stderr


def test_import_keras_quietly_hides_the_startup_lines_and_restores_stderr():
    code = """
        import os
        from resnet_lab.quiet import import_keras_quietly
        keras = import_keras_quietly()
        import tensorflow as tf
        tf.config.list_physical_devices()
        print(os.environ["TF_CPP_MIN_LOG_LEVEL"], keras.backend.backend())
        os.write(2, b"stderr still works\\n")
    """
    done = run_python(code=code, env={"TF_CPP_MIN_LOG_LEVEL": None})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["3", "tensorflow"]
    assert startup_lines(done.stderr) == []
    assert "stderr still works" in done.stderr
