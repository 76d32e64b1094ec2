"""Item 5: how close ResNet-50 gets to the fp32 matrix-multiply rate of this machine.

FLOPs are counted analytically from the layer shapes by `resnet_lab.nn.costs.forward_flops`: a
convolution does `H_out * W_out * C_out * (C_in / groups) * k_h * k_w` multiply-adds per image,
a dense layer `inputs * units`, and one multiply-add is 2 FLOPs. BatchNorm, ReLU, additions and
pooling are left out (under 1% of ResNet-50's work). A training step costs about 3x
inference: the forward pass, then gradients with respect to activations and to weights, each
about as costly. The reference is what `tf.linalg.matmul` of two float32 `N x N` matrices
reaches in the same process, timed in the same interleaved rounds as the model (item 1), a
practical ceiling for convolutions lowered to matrix products.
"""

import numpy as np
import tensorflow as tf

from benchmarks.harness import log, table
from resnet_lab.nn import costs


def matmul_function(n=2048, count=4, dtype=tf.float32):
    """A call doing `count` `n x n` matmuls in `dtype` (float32 unless asked), and its FLOPs.

    Several products per call make one call last about as long as a model call, so that a
    burst of load from another process cannot halve the reference on its own.
    """
    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((n, n)), dtype)
    b = tf.constant(rng.standard_normal((n, n)), dtype)

    @tf.function
    def products():
        # Each sum forces its whole product; it costs n^2 adds next to 2 n^3 FLOPs.
        return tf.add_n(
            [
                tf.reduce_sum(tf.cast(tf.linalg.matmul(a + float(i), b), tf.float32))
                for i in range(count)
            ]
        )

    return (lambda: products().numpy()), 2 * n**3 * count


def run(builders, n=2048, count=4):
    """Achieved GFLOP/s of item 1's ResNet-50 runs as a fraction of the matmul rate.

    Args:
        builders: item 1's results, run with `companions={"matmul": matmul_function(...)[0]}`
            so that the matmul was timed in the same rounds as each phase.
        n: matrix size of the reference matmul.
        count: matmuls per timed call.
    """
    log(f"5/7 machine limit: ResNet-50 against float32 matmul {n}x{n} (timed in item 1)")
    flops = costs.forward_flops(builders["_models"]["ours"])
    matmul_flops = 2 * n**3 * count
    size = builders["settings"]["image_size"]
    timings = builders["_companions"]["matmul"]
    results = {
        "settings": {
            "matmul_n": n,
            "matmuls_per_call": count,
            "image_size": size,
            "flop_count": "analytic, conv + dense, 2 FLOPs per multiply-add; "
            "training = 3x inference",
            "timing": "the matmul call is timed in the same interleaved rounds as "
            "item 1's inference and training calls",
        },
        "resnet50_forward_gflop_per_image": round(flops / 1e9, 4),
    }
    rows = []
    for phase, factor in (("inference", 1), ("train_step", 3)):
        peak = matmul_flops / timings[phase]["median_s"] / 1e9
        speed = builders[phase]["ours_images_per_s"]
        achieved = factor * flops * speed / 1e9
        results[phase] = {
            "images_per_s": speed,
            "gflops": round(achieved, 3),
            "matmul_gflops": round(peak, 2),
            "fraction_of_matmul": round(achieved / peak, 4),
            "matmul_timings": timings[phase],
        }
        rows.append(
            (
                phase,
                f"{speed:.3g} img/s",
                f"{factor * flops / 1e9:.3g} per img",
                achieved,
                peak,
                achieved / peak,
            )
        )
    results["matmul_gflops"] = max(results[p]["matmul_gflops"] for p in ("inference", "train_step"))
    table(
        f"5. Distance to the machine's limit: ResNet-50 ({size}x{size}, ours, item 1) vs "
        f"float32 matmul {n}x{n} timed in the same rounds",
        ("phase", "rate", "GFLOP", "GFLOP/s", "matmul GFLOP/s", "fraction"),
        rows,
    )
    return results


def summary(result):
    """Item 5's headline: the fraction of the matmul rate in both phases."""
    return [
        f"ResNet-50 reaches {result['inference']['fraction_of_matmul']:.0%} (inference) and "
        f"{result['train_step']['fraction_of_matmul']:.0%} (training) of the float32 matmul "
        f"rate ({result['inference']['matmul_gflops']:.0f} and "
        f"{result['train_step']['matmul_gflops']:.0f} GFLOP/s in the same rounds)"
    ]
