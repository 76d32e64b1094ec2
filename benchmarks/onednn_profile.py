"""Where the recipe's bfloat16 training step spends its time: oneDNN's verbose log, per primitive.

    python -m benchmarks.onednn_profile                 # Keras' BatchNorm, then the fused one
    python -m benchmarks.onednn_profile --steps 20

Each BatchNorm runs in its own process with `ONEDNN_VERBOSE=1` (oneDNN reads it at start):
the recipe's step (`train_step.scratch_train_function`, batch 32, the recipe's policy) is
warmed up, then `--steps` steps are timed while oneDNN logs every primitive it executes with
its data type and milliseconds. The table gives, per step, the whole step's time and the
time in each oneDNN primitive; what the log does not cover ran in TensorFlow's own kernels
(Eigen), e.g. Keras 3's unfused BatchNorm statistics and its casts. Logging slows the step
itself, so compare the rows with each other, not with item 8's images/s.
"""

import argparse
import collections
import os
import subprocess
import sys
import time

from benchmarks.harness import ROOT

MARK = "-- timed steps --"


def child(batch_norm, steps):
    """Run in the logging process: warm up, print `MARK`, time `steps` steps."""
    from benchmarks import train_step

    call, _ = train_step.scratch_train_function(
        network={"batch_norm": batch_norm}, images_per_call=32
    )
    for _ in range(3):
        call()
    print(MARK, flush=True)
    start = time.perf_counter()
    for _ in range(steps):
        call()
    print(f"STEP_MS {(time.perf_counter() - start) / steps * 1000:.2f}", flush=True)


def parse(log, steps):
    """`(step_ms, {(primitive, dtype): ms per step})` from a child's output after `MARK`."""
    timed = log.split(MARK, 1)[1].splitlines()
    spent = collections.defaultdict(float)
    step_ms = None
    for line in timed:
        if line.startswith("STEP_MS"):
            step_ms = float(line.split()[1])
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or "exec" not in fields:
            continue
        try:
            ms = float(fields[-1])
        except ValueError:
            continue
        primitive = fields[fields.index("exec") + 2]
        dtype = "bf16" if "bf16" in line else "f32"
        spent[(primitive, dtype)] += ms / steps
    return step_ms, dict(spent)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onednn_profile")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.steps)
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    for batch_norm in ("keras", "fused"):
        command = [sys.executable, "-m", "benchmarks.onednn_profile", "--child", batch_norm]
        command += ["--steps", str(args.steps)]
        out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        step_ms, spent = parse(out.stdout, args.steps)
        print(f"\nBatchNorm {batch_norm}: {step_ms:.0f} ms per step (logging on), of it in oneDNN:")
        for (primitive, dtype), ms in sorted(spent.items(), key=lambda item: -item[1]):
            print(f"  {primitive:22s} {dtype:5s} {ms:7.1f} ms")
        print(f"  {'outside oneDNN':28s} {step_ms - sum(spent.values()):7.1f} ms")


if __name__ == "__main__":
    main()
