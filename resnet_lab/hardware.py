"""What this machine computes natively: the one place the lab reads the CPU and GPU.

The models (`dtype_policy="auto"`), training and the benchmarks all ask here, so a machine
without bfloat16 gets float32 everywhere, never an emulated bfloat16 that runs slower.
"""

import os
import platform

from resnet_lab.checks import check_choice

CPUINFO = "/proc/cpuinfo"
DTYPE_POLICIES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# CPU flags (Linux names) of native bfloat16 arithmetic: AVX-512 BF16 and Intel AMX.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def _cpuinfo_field(name, cpuinfo=CPUINFO):
    try:
        with open(cpuinfo) as file:
            for line in file:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo=CPUINFO):
    """The CPU's feature flags from `/proc/cpuinfo` (an empty set where it cannot be read)."""
    return set((_cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_model(cpuinfo=CPUINFO):
    """The CPU's model name from `/proc/cpuinfo` (`platform.processor()` elsewhere)."""
    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or "unknown"


def usable_cores():
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def gpu_compute_capability():
    """`(major, minor)` of the first GPU TensorFlow sees, or `None` (no GPU, or another
    Keras backend: TensorFlow is not imported for it)."""
    import keras  # noqa: PLC0415

    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf  # noqa: PLC0415

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return tuple(details.get("compute_capability", (0, 0)))


def bfloat16_native(cpuinfo=CPUINFO):
    """Whether bfloat16 arithmetic is native here: a GPU of compute capability 8.0 or more
    (Ampere on) when there is one, else a CPU with AVX-512 BF16 or AMX."""
    capability = gpu_compute_capability()
    if capability is not None:
        return capability >= (8, 0)
    return bool(cpu_flags(cpuinfo) & BF16_FLAGS)


def resolve_dtype_policy(policy="auto", cpuinfo=CPUINFO):
    """The Keras dtype policy `"auto"` stands for on this machine; other policies as given.

    `"auto"` is `"mixed_bfloat16"` where bfloat16 arithmetic is native (`bfloat16_native`),
    else `"float32"`: elsewhere oneDNN or XLA would emulate bfloat16, slower than float32.

    Raises:
        ValueError: If `policy` is not one of `DTYPE_POLICIES`.
    """
    check_choice("dtype_policy", policy, DTYPE_POLICIES)
    if policy != "auto":
        return policy
    return "mixed_bfloat16" if bfloat16_native(cpuinfo) else "float32"
