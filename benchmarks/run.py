"""Benchmarks of resnet_lab, side by side in one run: `python -m benchmarks.run`.

    python -m benchmarks.run            # everything but the opt-in full runs (< 15 min, 2 cores)
    python -m benchmarks.run --quick    # the same items, tiny settings (~1-2 min; tests use it)
    python -m benchmarks.run --full     # also the full CLI training runs (10+ min more)
    python -m benchmarks.run --only builders limit

Prints a table per item and writes `benchmarks/out/results.json` (after every item, so an
interrupted run keeps what it measured). Items, in the order they run:

    pipeline  3. decoding the real JPEGs; the training pipeline against the model's demand
    builders  1. resnet_lab.resnet50() against keras.applications.ResNet50: images/s
    limit     5. achieved GFLOP/s of ResNet-50 against a float32 matmul
    transfer  2. cached features against the frozen backbone every epoch
    defaults  4. XLA, batch size, steps_per_execution, threads, image size of the scratch model
    e2e       6. the smoke notebook (and with --full the CLI runs): wall time, peak memory
    gpu       7. which GPUs TensorFlow sees (the items above run where TensorFlow places them)
    scratch   8. every candidate from-scratch network, float32 and bfloat16: images/s, FLOPs,
                 fraction of the float32 matmul rate

The recipe's accuracy against time (seeds 0, 1, 2 and 5/10/15-minute budgets, ~50 minutes)
is its own command: `python -m benchmarks.time_to_accuracy`.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import ROOT, elapsed, log, machine  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
ITEMS = ("pipeline", "builders", "limit", "transfer", "defaults", "scratch", "e2e", "gpu")


def gpu_status(tf):
    """Item 7: what TensorFlow detects, said as it is."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return {"measured": False, "gpus_visible": 0,
                "reason": "not measured: TensorFlow sees no GPU on this machine"}
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
             for g in gpus]
    return {"measured": False, "gpus_visible": len(gpus), "gpu_names": names,
            "reason": f"TensorFlow sees {len(gpus)} GPU(s) ({', '.join(names)}); items 1-6 "
                      "ran with TensorFlow's default placement, no separate GPU item"}

# Settings per mode. The default mode fits 15 minutes on 2 shared cores; quick exists to
# exercise every code path in about a minute and its numbers mean little.
MODES = {
    "default": {
        # Training steps at batch 16: five repeats of both models fit the budget, three at
        # batch 32 did too but left the median at the mercy of one noisy call.
        "builders": {"image_size": 224, "batch_size": 32, "repeats": 5,
                     "train_batch_size": 16, "train_repeats": 5},
        "limit": {"n": 2048, "count": 4},
        "transfer": {"image_size": 224, "per_class": (8, 4, 4), "head_epochs": 5,
                     "fine_tune_epochs": 1},
        "pipeline": {"sizes": (64, 96, 224), "repeats": 3, "model_images": 128},
        "defaults": {"images_per_call": 128, "repeats": 3, "thread_repeats": 3,
                     "autotune_repeats": 5},
        "scratch": {"images_per_call": 96, "repeats": 3},
    },
    "quick": {
        "builders": {"image_size": 32, "batch_size": 2, "repeats": 1, "train_repeats": 1},
        "limit": {"n": 512, "count": 1},
        "transfer": {"image_size": 32, "per_class": (2, 1, 1), "head_epochs": 1,
                     "fine_tune_epochs": 0},
        "pipeline": {"sizes": (32, 64), "repeats": 1, "model_images": 64},
        "defaults": {"xla": (False,), "batch_sizes": (32,), "steps_per_execution": (1,),
                     "dtype_policies": ("float32",),
                     "image_sizes": (64,), "images_per_call": 64, "repeats": 1,
                     "thread_settings": (), "autotune_per_class": (4, 1, 1),
                     "autotune_repeats": 1},
        "scratch": {"candidates": ("seed 16-32-64 @64",), "policies": ("float32",),
                    "images_per_call": 32, "repeats": 1, "matmul_n": 256},
    },
}


def default_data():
    """`$RESNET_LAB_DATA`, else `../shared/data/17flowers.tgz` next to the repository."""
    return os.environ.get("RESNET_LAB_DATA") or str(ROOT.parent / "shared" / "data" /
                                                     "17flowers.tgz")


def parse_args(argv=None):
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 1)[1])
    parser.add_argument("--data", default=default_data(),
                        help="the flowers archive (default: $RESNET_LAB_DATA, else "
                             "../shared/data/17flowers.tgz)")
    parser.add_argument("--out", default=str(OUT), help="output folder (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, ~1-2 minutes")
    parser.add_argument("--full", action="store_true",
                        help="also time the full CLI training runs (10+ minutes more)")
    parser.add_argument("--only", nargs="+", choices=ITEMS, metavar="ITEM",
                        help=f"run only these items ({', '.join(ITEMS)})")
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        parser.error(f"--data: no such archive: {args.data} (set RESNET_LAB_DATA or pass "
                     f"--data)")
    return args


def _public(result):
    return {k: v for k, v in result.items() if not k.startswith("_")}


def main(argv=None):
    """Run the selected items in one process, print their tables, write results.json."""
    args = parse_args(argv)
    mode = "quick" if args.quick else "default"
    settings = MODES[mode]
    items = args.only or ITEMS
    out = Path(args.out)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    started = time.time()

    import tensorflow as tf

    # Keras' retracing warnings would bury the tables; the tracing cost is in the timings.
    tf.get_logger().setLevel("ERROR")
    from benchmarks import builders, defaults, end_to_end, limit, pipeline, scratch, transfer
    from resnet_lab import training
    from resnet_lab.data import load_flowers17

    log(f"resnet_lab benchmarks, mode {mode}{' + full' if args.full else ''}, items "
        f"{', '.join(items)}; data {args.data}; GPUs visible: "
        f"{len(tf.config.list_physical_devices('GPU'))}")
    results = {
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.run",
                             *(argv if argv is not None else sys.argv[1:])]),
        "mode": mode, "full": args.full, "data": str(args.data),
        "started_unix": round(started), "items": list(items),
    }
    path = out / "results.json"

    def save():
        results["total_wall_s"] = round(elapsed(), 1)
        training.save_results(results, path)

    arrays, labels = {}, None

    def images_at(size):
        nonlocal labels
        if size not in arrays:
            arrays[size], labels = load_flowers17(args.data, cache_dir=out / "cache",
                                                  image_size=(size, size), progress=False)
        return arrays[size]

    if "pipeline" in items:
        results["input_pipeline"], decoded, labels = pipeline.run(
            args.data, out / "cache", **settings["pipeline"])
        arrays.update(decoded)
        save()
    if "builders" in items or "limit" in items:
        matmul = {}
        if "limit" in items:
            matmul["matmul"] = limit.matmul_function(**settings["limit"])[0]
        built = builders.run(**settings["builders"], companions=matmul)
        if "builders" in items:
            results["builders"] = _public(built)
            save()
        if "limit" in items:
            results["machine_limit"] = limit.run(built, **settings["limit"])
            save()
        del built
    if "transfer" in items:
        t = dict(settings["transfer"])
        images = images_at(t.pop("image_size"))
        results["transfer"] = transfer.run(images, labels, **t)
        save()
    if "defaults" in items:
        size = training.SCRATCH_RECIPE["image_size"]
        results["cpu_defaults"] = defaults.run(images_at(size), labels, **settings["defaults"])
        save()
    if "scratch" in items:
        results["scratch_speed"] = scratch.run(**settings["scratch"])
        save()
    if "e2e" in items:
        results["end_to_end"] = end_to_end.run(args.data, out, quick=args.quick,
                                               full=args.full)
        save()
    if "gpu" in items:
        results["gpu"] = gpu_status(tf)
        print(f"\n7. GPU: {results['gpu']['reason']}\n")
    save()
    summary(results)
    log(f"done in {elapsed():.0f} s; wrote {path}")
    return 0


def summary(results):
    """The headline ratios, one line each."""
    lines = []
    if "builders" in results:
        b = results["builders"]
        for phase in ("inference", "train_step"):
            lines.append(f"1. builders {phase}: ours/keras = "
                         f"{b[phase]['ratio_ours_over_keras']:.3f} (target >= "
                         f"{b['settings']['target_ratio']}: "
                         f"{'met' if b[phase]['target_met'] else 'NOT met'})")
    if "transfer" in results:
        t = results["transfer"]
        lines.append(f"2. transfer: cached/uncached = {t['ratio_cached_over_uncached']:.3f} "
                     f"(target <= {t['settings']['target_ratio']}: "
                     f"{'met' if t['target_met'] else 'NOT met'})")
    if "input_pipeline" in results:
        f = results["input_pipeline"]["feeding"]
        lines.append(f"3. pipeline/model = {f['ratio_pipeline_over_model']:.1f} (target >= "
                     f"{f['settings']['target_ratio']:g}: "
                     f"{'met' if f['target_met'] else 'NOT met'})")
    if "cpu_defaults" in results:
        lines.append(f"4. recommended defaults: {results['cpu_defaults']['recommended']['line']}")
    if results.get("scratch_speed", {}).get("recipe"):
        r = results["scratch_speed"]["recipe"]
        lines.append(f"8. the recipe's network ({r['key']}): {r['images_per_s']:.0f} img/s, "
                     f"{r['fraction_of_float32_matmul']:.0%} of the float32 matmul rate")
    if "machine_limit" in results:
        m = results["machine_limit"]
        lines.append(f"5. ResNet-50 reaches {m['inference']['fraction_of_matmul']:.0%} "
                     f"(inference) and {m['train_step']['fraction_of_matmul']:.0%} (training) "
                     f"of the float32 matmul rate ({m['inference']['matmul_gflops']:.0f} and "
                     f"{m['train_step']['matmul_gflops']:.0f} GFLOP/s in the same rounds)")
    if "end_to_end" in results:
        for name, r in results["end_to_end"].items():
            if isinstance(r, dict) and "wall_s" in r:
                lines.append(f"6. {name}: {r['wall_s']:.0f} s, peak {r['peak_rss_mib']:.0f} MiB"
                             f" (exit {r['returncode']})")
    if "gpu" in results:
        lines.append(f"7. GPU: {results['gpu']['reason']}")
    m = results["machine"]
    print(f"\nSummary ({m['cpu_model']}, {m['usable_cores']} cores, TF {m['tensorflow']}, "
          f"Keras {m['keras']}; total {elapsed():.0f} s)")
    for line in lines:
        print("  " + line)


if __name__ == "__main__":
    sys.exit(main())
