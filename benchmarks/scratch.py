"""Item 8: measure first: what one training step of each candidate from-scratch network costs.

Every timed row is a candidate network x dtype policy x BatchNorm (`batch_norm`: `"keras"`,
Keras' `BatchNormalization`; `"fused"`, `resnet_lab.nn.layers.FusedBatchNormalization`,
TensorFlow's fused kernel, the recipe's). A row gives the images/s of Keras' train function on
an in-memory batch (as item 4 times it: `train_step.scratch_train_function`), the network's
FLOPs per image (`costs.forward_flops`, training = 3x), the GFLOP/s that makes, and its
fraction of the matmul rate of the dtype the policy computes in (`compute_dtype`: float32 for
`float32`, bfloat16 for `mixed_bfloat16`, float16 for `mixed_float16`), timed in the same
interleaved rounds (`limit.matmul_function`). A bfloat16 step measured against the float32
matmul would credit it with headroom the machine does not have; that fraction is kept as a
second column, one yardstick for every row.

`mixed_bfloat16` is Keras' mixed precision: float32 weights, bfloat16 arithmetic. On CPUs with
AVX-512 BF16 (`avx512_bf16` in /proc/cpuinfo) oneDNN runs the convolutions in bfloat16; on
others it emulates them, and the table shows that as a slowdown rather than a gain.
"""

import keras
import tensorflow as tf

from benchmarks.harness import interleaved, log, table
from benchmarks.train_step import RECIPE, scratch_train_function
from resnet_lab import hardware
from resnet_lab.nn import costs

# Candidate networks: (name, `ScratchRecipe` network fields, image size). The seed network of
# round one, and the recipe's network (its widths doubled behind a stride-2 stem) at 96 and
# 128 px. Each is timed with both BatchNorms (`BATCH_NORMS`), so two networks of the first
# measurement (the wide one at 64 px, and at full resolution) made way for the second axis.
CANDIDATES = {
    "seed 16-32-64 @64": (
        {"stages": ((16, 2), (32, 2), (64, 2)), "stem_filters": 16, "stem_stride": 1},
        64,
    ),
    "wide s2 32-64-128 @96": (
        {"stages": ((32, 2), (64, 2), (128, 2)), "stem_filters": 32, "stem_stride": 2},
        96,
    ),
    "wide s2 32-64-128 @128": (
        {"stages": ((32, 2), (64, 2), (128, 2)), "stem_filters": 32, "stem_stride": 2},
        128,
    ),
}
POLICIES = ("float32", "mixed_bfloat16")
BATCH_NORMS = ("keras", "fused")


def compute_dtype(policy):
    """The dtype a Keras dtype policy computes in (`"mixed_bfloat16"` -> `"bfloat16"`)."""
    return keras.DTypePolicy(hardware.resolve_dtype_policy(policy)).compute_dtype


def own_matmul_fraction(train_gflops, policy, matmul_gflops):
    """`train_gflops` as a fraction of the matmul rate of the dtype `policy` computes in.

    Args:
        train_gflops: achieved training GFLOP/s of a row.
        policy: the row's Keras dtype policy.
        matmul_gflops: dict `dtype name -> matmul GFLOP/s` timed in the same rounds.

    Returns:
        `(dtype, fraction)`: the limit's dtype and the fraction of its rate.

    Raises:
        ValueError: If no matmul was timed in the policy's compute dtype.
    """
    dtype = compute_dtype(policy)
    if dtype not in matmul_gflops:
        raise ValueError(
            f"No {dtype} matmul timed for dtype_policy={policy!r}; timed: "
            f"{sorted(matmul_gflops)}. Received: matmul_gflops={matmul_gflops!r}"
        )
    return dtype, train_gflops / matmul_gflops[dtype]


def run(
    candidates=None,
    policies=POLICIES,
    batch_norms=BATCH_NORMS,
    batch_size=32,
    images_per_call=128,
    repeats=3,
    matmul_n=2048,
):
    """Images/s, GFLOP/s and fraction of the own-dtype matmul rate per candidate row.

    Args:
        candidates: names of `CANDIDATES` (default: all).
        policies: Keras dtype policies to time each candidate in.
        batch_norms: `batch_norm` values to time each candidate and policy with.
        batch_size: images per training step.
        images_per_call: images per timed call at the recipe's image size (scaled by pixels,
            as in item 4).
        repeats: interleaved timed rounds.
        matmul_n: size of the reference matmuls.
    """
    from benchmarks.limit import matmul_function

    names = list(candidates or CANDIDATES)
    functions, counts, models = {}, {}, {}
    for name in names:
        network, size = CANDIDATES[name]
        for policy in policies:
            for batch_norm in batch_norms:
                key = f"{name} {policy} {batch_norm}"
                log(f"8 scratch speed: building {key}")
                call, count = scratch_train_function(
                    batch_size=batch_size,
                    image_size=size,
                    images_per_call=images_per_call,
                    dtype_policy=policy,
                    network={**network, "batch_norm": batch_norm},
                )
                functions[key], counts[key] = call, count
                models[key] = (name, policy, batch_norm, call.model)
    # float32 always (the common yardstick), and every dtype a timed policy computes in.
    dtypes = dict.fromkeys(["float32", *(compute_dtype(p) for p in policies)])
    matmul = {f"matmul {d}": matmul_function(matmul_n, dtype=tf.as_dtype(d))[0] for d in dtypes}
    timed = interleaved({**functions, **matmul}, repeats, what="8 scratch speed")
    flop = 2 * matmul_n**3 * 4
    peak = {d: flop / timed[f"matmul {d}"]["median_s"] / 1e9 for d in dtypes}
    rows, entries = [], {}
    for key, (name, policy, batch_norm, model) in models.items():
        network, size = CANDIDATES[name]
        forward = costs.forward_flops(model)
        speed = counts[key] / timed[key]["median_s"]
        gflops = 3 * forward * speed / 1e9
        dtype, own = own_matmul_fraction(gflops, policy, peak)
        entries[key] = {
            "network": name,
            "dtype_policy": policy,
            "batch_norm": batch_norm,
            "image_size": size,
            "params": int(model.count_params()),
            "forward_gflop_per_image": round(forward / 1e9, 4),
            "images_per_s": round(speed, 1),
            "train_gflops": round(gflops, 2),
            "matmul_dtype": dtype,
            "fraction_of_own_dtype_matmul": round(own, 4),
            "fraction_of_float32_matmul": round(gflops / peak["float32"], 4),
            "first_call_s": timed[key]["first_call_s"],
            "times_s": timed[key]["times_s"],
        }
        rows.append(
            (
                name,
                policy,
                batch_norm,
                f"{model.count_params():,}",
                forward / 1e9,
                speed,
                gflops,
                f"{own:.0%} ({dtype})",
                f"{gflops / peak['float32']:.0%}",
            )
        )
    for entry in entries.values():
        # Speed-ups within a network: against float32 with the same BatchNorm, and against
        # Keras' BatchNorm with the same policy.
        for field, other in (
            ("speedup_vs_float32", {"dtype_policy": "float32"}),
            ("speedup_vs_keras_batch_norm", {"batch_norm": "keras"}),
        ):
            base = next(
                (e for e in entries.values() if _same_but(e, entry, other)),
                None,
            )
            if base is not None:
                entry[field] = round(entry["images_per_s"] / base["images_per_s"], 3)
    rates = ", ".join(f"{d} {v:.0f} GFLOP/s" for d, v in peak.items())
    table(
        f"8. One training step per candidate network (batch {batch_size}, Keras train "
        f"function on an in-memory batch); matmul {matmul_n}x{matmul_n} in the same rounds: "
        f"{rates}. Fraction of the matmul rate of the dtype each row computes in",
        (
            "network",
            "policy",
            "BatchNorm",
            "params",
            "fwd GFLOP",
            "img/s",
            "train GFLOP/s",
            "of own-dtype matmul",
            "of f32 matmul",
        ),
        rows,
    )
    return {
        "settings": {
            "batch_size": batch_size,
            "images_per_call_at_recipe_size": images_per_call,
            "repeats": repeats,
            "matmul_n": matmul_n,
            "flop_count": "analytic conv + dense, 2 FLOPs per multiply-add; training = 3x forward",
            "measured": "Keras' train function on one in-memory batch "
            "(benchmarks.train_step.scratch_train_function)",
            "limit": "the matmul of the dtype the row's policy computes in "
            "(fraction_of_own_dtype_matmul); fraction_of_float32_matmul for comparison",
        },
        "matmul_gflops": {d: round(v, 1) for d, v in peak.items()},
        "matmul_timings": {k: timed[k] for k in matmul},
        "candidates": entries,
        "recipe": _recipe_row(entries),
    }


def _same_but(entry, other, changes):
    """Whether `entry` is `other`'s row with the fields in `changes` set to those values."""
    fields = ("network", "dtype_policy", "batch_norm")
    return all(entry[f] == changes.get(f, other[f]) for f in fields)


def _recipe_row(entries):
    """The row of the network, policy and BatchNorm `training.SCRATCH_RECIPE` uses, if timed."""
    policy = hardware.resolve_dtype_policy(RECIPE.dtype_policy)
    for key, entry in entries.items():
        network, size = CANDIDATES[entry["network"]]
        same = RECIPE.override(network, image_size=size, batch_norm=entry["batch_norm"]) == RECIPE
        if same and entry["dtype_policy"] == policy:
            return {"key": key, **entry}
    return None


def summary(result):
    """Item 8's headline: the recipe's row, if it was among those timed."""
    row = result.get("recipe")
    if not row:
        return []
    return [
        f"the recipe's network ({row['key']}): {row['images_per_s']:.0f} img/s, "
        f"{row['fraction_of_own_dtype_matmul']:.0%} of the {row['matmul_dtype']} matmul rate "
        f"(the dtype it computes in; {row['fraction_of_float32_matmul']:.0%} of float32's)"
    ]
