"""The recipe's training step under a few policies and BatchNorms, in this process's environment.

    python -m benchmarks.step_variants                                   # 4 variants
    TF_NUM_INTEROP_THREADS=1 python -m benchmarks.step_variants mixed_bfloat16:fused
    TF_SET_ONEDNN_FPMATH_MODE=BF16 python -m benchmarks.step_variants float32:fused float32:keras
    python -m benchmarks.step_variants --jit mixed_bfloat16:fused        # XLA

For settings TensorFlow reads once at start (threads, oneDNN's math mode, oneDNN on/off) each
setting is its own process, so compare a run with the default one run just before or after it.
Variants are `POLICY:BATCH_NORM`; each is the recipe's step (`train_step.scratch_train_function`,
batch 32 at the recipe's size), warmed up twice, then timed in 5 interleaved rounds
(`harness.interleaved`); prints the images/s of each variant's median step as JSON.
"""

import argparse
import json

from benchmarks import train_step
from benchmarks.harness import interleaved

DEFAULT = ("float32:keras", "float32:fused", "mixed_bfloat16:keras", "mixed_bfloat16:fused")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.step_variants")
    parser.add_argument("variants", nargs="*", default=list(DEFAULT))
    parser.add_argument("--jit", action="store_true", help="jit_compile=True (XLA)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    calls = {}
    for variant in args.variants:
        policy, batch_norm = variant.split(":")
        calls[variant] = train_step.scratch_train_function(
            dtype_policy=policy, network={"batch_norm": batch_norm}, jit_compile=args.jit
        )
    timed = interleaved(
        {variant: call for variant, (call, _) in calls.items()},
        repeats=args.rounds,
        warmup=2,
        what="step",
    )
    speeds = {v: round(calls[v][1] / t["median_s"], 1) for v, t in timed.items()}
    print(json.dumps(speeds))


if __name__ == "__main__":
    main()
