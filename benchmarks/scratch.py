"""Item 8: measure first: what one training step of each candidate from-scratch network costs.

For every candidate network of the recipe search (issue 11) and every dtype policy, the
images/s of Keras' train function on an in-memory batch (as item 4 times it:
`train_step.scratch_train_function`), the network's FLOPs per image (`costs.forward_flops`,
training = 3x), the GFLOP/s that makes, and its fraction of the float32 matmul rate timed in
the same interleaved rounds (`limit.matmul_function`). A bfloat16 matmul is timed too, so the
table shows how much of bfloat16's headroom each network uses.

`mixed_bfloat16` is Keras' mixed precision: float32 weights, bfloat16 arithmetic. On CPUs with
AVX-512 BF16 (`avx512_bf16` in /proc/cpuinfo) oneDNN runs the convolutions in bfloat16; on
others it emulates them, and the table shows that as a slowdown rather than a gain.
"""

import tensorflow as tf

from benchmarks.harness import interleaved, log, table
from benchmarks.train_step import RECIPE, scratch_train_function
from resnet_lab import hardware
from resnet_lab.nn import costs

# Candidate networks: (name, `ScratchRecipe` network fields, image size). The seed network of round
# one; the same widths doubled behind a stride-2 stem (about its cost at 64 px, four times the
# parameters); that wider network at 96 and 128 px; and the seed network's widths doubled at
# full resolution (four times the cost).
CANDIDATES = {
    "seed 16-32-64 @64": (
        {"stages": ((16, 2), (32, 2), (64, 2)), "stem_filters": 16, "stem_stride": 1},
        64,
    ),
    "wide s2 32-64-128 @64": (
        {"stages": ((32, 2), (64, 2), (128, 2)), "stem_filters": 32, "stem_stride": 2},
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
    "wide s1 32-64-128 @64": (
        {"stages": ((32, 2), (64, 2), (128, 2)), "stem_filters": 32, "stem_stride": 1},
        64,
    ),
}
POLICIES = ("float32", "mixed_bfloat16")


def run(
    candidates=None, policies=POLICIES, batch_size=32, images_per_call=128, repeats=3, matmul_n=2048
):
    """Images/s, GFLOP/s and fraction of the float32 matmul rate per candidate and policy.

    Args:
        candidates: names of `CANDIDATES` (default: all).
        policies: Keras dtype policies to time each candidate in.
        batch_size: images per training step.
        images_per_call: images per timed call at 64 px (scaled by pixels, as in item 4).
        repeats: interleaved timed rounds.
        matmul_n: size of the reference matmuls.
    """
    from benchmarks.limit import matmul_function

    names = list(candidates or CANDIDATES)
    functions, counts, models = {}, {}, {}
    for name in names:
        network, size = CANDIDATES[name]
        for policy in policies:
            key = f"{name} {policy}"
            log(f"8/8 scratch speed: building {key}")
            call, count = scratch_train_function(
                batch_size=batch_size,
                image_size=size,
                images_per_call=images_per_call,
                dtype_policy=policy,
                network=network,
            )
            functions[key], counts[key], models[key] = call, count, (name, policy, call.model)
    matmul = {
        "matmul float32": matmul_function(matmul_n)[0],
        "matmul bfloat16": matmul_function(matmul_n, dtype=tf.bfloat16)[0],
    }
    timed = interleaved({**functions, **matmul}, repeats, what="8/8 scratch speed")
    flop = 2 * matmul_n**3 * 4
    peak = {k: flop / timed[k]["median_s"] / 1e9 for k in matmul}
    rows, entries = [], {}
    for key, (name, policy, model) in models.items():
        network, size = CANDIDATES[name]
        forward = costs.forward_flops(model)
        speed = counts[key] / timed[key]["median_s"]
        gflops = 3 * forward * speed / 1e9
        entries[key] = {
            "network": name,
            "dtype_policy": policy,
            "image_size": size,
            "params": int(model.count_params()),
            "forward_gflop_per_image": round(forward / 1e9, 4),
            "images_per_s": round(speed, 1),
            "train_gflops": round(gflops, 2),
            "fraction_of_float32_matmul": round(gflops / peak["matmul float32"], 4),
            "first_call_s": timed[key]["first_call_s"],
            "times_s": timed[key]["times_s"],
        }
        rows.append(
            (
                name,
                policy,
                f"{model.count_params():,}",
                forward / 1e9,
                speed,
                gflops,
                gflops / peak["matmul float32"],
            )
        )
    base = {
        name: entries[f"{name} float32"]["images_per_s"]
        for name in names
        if f"{name} float32" in entries
    }
    for entry in entries.values():
        if entry["network"] in base:
            entry["speedup_vs_float32"] = round(entry["images_per_s"] / base[entry["network"]], 3)
    table(
        f"8. One training step per candidate network (batch {batch_size}, Keras train "
        f"function on an in-memory batch); matmul {matmul_n}x{matmul_n} in the same rounds: "
        f"float32 {peak['matmul float32']:.0f} GFLOP/s, bfloat16 "
        f"{peak['matmul bfloat16']:.0f} GFLOP/s",
        ("network", "policy", "params", "fwd GFLOP", "img/s", "train GFLOP/s", "of f32 matmul"),
        rows,
    )
    return {
        "settings": {
            "batch_size": batch_size,
            "images_per_call_at_64px": images_per_call,
            "repeats": repeats,
            "matmul_n": matmul_n,
            "flop_count": "analytic conv + dense, 2 FLOPs per multiply-add; training = 3x forward",
            "measured": "Keras' train function on one in-memory batch "
            "(benchmarks.train_step.scratch_train_function)",
        },
        "matmul_gflops": {k.split()[1]: round(v, 1) for k, v in peak.items()},
        "matmul_timings": {k: timed[k] for k in matmul},
        "candidates": entries,
        "recipe": _recipe_row(entries),
    }


def _recipe_row(entries):
    """The row of the network and policy `training.SCRATCH_RECIPE` uses, if it was timed."""
    for name, (network, size) in CANDIDATES.items():
        same = RECIPE.override(network, image_size=size) == RECIPE
        key = f"{name} {hardware.resolve_dtype_policy(RECIPE.dtype_policy)}"
        if same and key in entries:
            return {"key": key, **entries[key]}
    return None


def summary(result):
    """Item 8's headline: the recipe's network, if it was among the candidates timed."""
    row = result.get("recipe")
    if not row:
        return []
    return [
        f"the recipe's network ({row['key']}): {row['images_per_s']:.0f} img/s, "
        f"{row['fraction_of_float32_matmul']:.0%} of the float32 matmul rate"
    ]
