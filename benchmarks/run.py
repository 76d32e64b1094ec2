"""Benchmarks of resnet_lab, side by side in one run: `python -m benchmarks.run`.

    python -m benchmarks.run            # everything but the opt-in full runs (< 15 min, 2 cores)
    python -m benchmarks.run --quick    # the same items, tiny settings (~1-2 min; tests use it)
    python -m benchmarks.run --full     # also the full CLI training runs (10+ min more)
    python -m benchmarks.run --only builders limit

Prints a table per item and writes `benchmarks/out/results.json` (after every item, so an
interrupted run keeps what it measured). Items, in the order they run (`ITEMS`; each item's
module is `benchmarks.NAME`):

    pipeline    3. decoding the real JPEGs; the training pipeline against the model's demand
    builders    1. resnet_lab.resnet50() against keras.applications.ResNet50: images/s
    limit       5. achieved GFLOP/s of ResNet-50 against a float32 matmul
    transfer    2. cached features against the frozen backbone every epoch
    defaults    4. XLA, batch size, steps_per_execution, threads, image size of the scratch model
    scratch     8. every candidate from-scratch network x float32 / bfloat16 x Keras / fused
                   BatchNorm: images/s, FLOPs, fraction of the matmul rate of its own dtype
    end_to_end  6. the smoke notebook (and with --full the CLI runs): wall time, peak memory
    gpu         7. which GPUs TensorFlow sees (the items above run where TensorFlow places them)
    family      9. the ResNet family's builders: parameters, multiply-adds, inference images/s
    peer       10. the recipe's step against a PyTorch peer (if an interpreter imports torch:
                   this one or $RESNET_LAB_TORCH_PYTHON), float32 and bfloat16: images/s, ratio

The recipe's accuracy against time (seeds 0, 1, 2 and 5/10/15-minute budgets, ~50 minutes)
is its own command: `python -m benchmarks.time_to_accuracy`.
"""

import argparse
import dataclasses
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path

from resnet_lab.quiet import import_keras_quietly

import_keras_quietly()  # before the items import TensorFlow

from benchmarks import (  # noqa: E402
    builders,
    defaults,
    end_to_end,
    gpu,
    limit,
    peer,
    pipeline,
    scratch,
    transfer,
)
from benchmarks.harness import ROOT, default_data, elapsed, log, machine  # noqa: E402
from benchmarks.train_step import RECIPE  # noqa: E402
from resnet_lab.results import save_results  # noqa: E402

OUT = ROOT / "benchmarks" / "out"


@dataclasses.dataclass
class Context:
    """What the items of one run share: the arguments, the loaded images, item 1's models."""

    args: argparse.Namespace
    out: Path
    items: tuple
    settings: dict
    arrays: dict = dataclasses.field(default_factory=dict)
    labels: object = None
    builders: dict | None = None  # item 1's run, for item 5

    def images_at(self, size):
        """The real flowers at `size` x `size` (loaded once per run; sets `labels`)."""
        from resnet_lab.data import load_flowers17

        if size not in self.arrays:
            self.arrays[size], self.labels = load_flowers17(
                self.args.data,
                cache_dir=self.out / "cache",
                image_size=(size, size),
                progress=False,
            )
        return self.arrays[size]


@dataclasses.dataclass(frozen=True)
class Item:
    """One benchmark item: its number, name (its module and `--only` value), the key of its
    section in results.json, `run(context, settings) -> section` and `summary(section) ->
    lines`."""

    number: int
    name: str
    key: str
    run: Callable
    summary: Callable


def _pipeline(context, settings):
    result, decoded, context.labels = pipeline.run(
        context.args.data, context.out / "cache", **settings
    )
    context.arrays.update(decoded)  # later items reuse the decoded images
    return result


def _builders(context, settings, with_matmul=None):
    """Item 1; with item 5 in the run, its reference matmul is timed in the same rounds."""
    with_matmul = "limit" in context.items if with_matmul is None else with_matmul
    companions = (
        {"matmul": limit.matmul_function(**context.settings["limit"])[0]} if with_matmul else {}
    )
    context.builders = builders.run(**settings, companions=companions)
    return {k: v for k, v in context.builders.items() if not k.startswith("_")}


def _limit(context, settings):
    if context.builders is None:  # `--only limit`: time item 1's models for it
        _builders(context, context.settings["builders"], with_matmul=True)
    built, context.builders = context.builders, None
    return limit.run(built, **settings)


def _transfer(context, settings):
    settings = dict(settings)
    images = context.images_at(settings.pop("image_size"))
    return transfer.run(images, context.labels, **settings)


def _defaults(context, settings):
    return defaults.run(context.images_at(RECIPE.image_size), context.labels, **settings)


def _end_to_end(context, settings):
    return end_to_end.run(
        context.args.data, context.out, quick=context.args.quick, full=context.args.full
    )


def _items():
    items = [
        Item(3, "pipeline", "input_pipeline", _pipeline, pipeline.summary),
        Item(1, "builders", "builders", _builders, builders.summary),
        Item(5, "limit", "machine_limit", _limit, limit.summary),
        Item(2, "transfer", "transfer", _transfer, transfer.summary),
        Item(4, "defaults", "cpu_defaults", _defaults, defaults.summary),
        Item(8, "scratch", "scratch_speed", lambda c, s: scratch.run(**s), scratch.summary),
        Item(6, "end_to_end", "end_to_end", _end_to_end, end_to_end.summary),
        Item(7, "gpu", "gpu", lambda c, s: gpu.run(), gpu.summary),
    ]
    if importlib.util.find_spec("benchmarks.family") is not None:
        from benchmarks import family

        items.append(Item(9, "family", "family", lambda c, s: family.run(**s), family.summary))
    items.append(Item(10, "peer", "torch_peer", lambda c, s: peer.run(**s), peer.summary))
    return tuple(items)


ITEMS = _items()
NAMES = tuple(item.name for item in ITEMS)

# Settings per mode and item name. The default mode fits 15 minutes on 2 shared cores; quick
# exists to exercise every code path in about a minute and its numbers mean little.
MODES = {
    "default": {
        # Training steps at batch 16: five repeats of both models fit the budget, three at
        # batch 32 did too but left the median at the mercy of one noisy call.
        "builders": {
            "image_size": 224,
            "batch_size": 32,
            "repeats": 5,
            "train_batch_size": 16,
            "train_repeats": 5,
        },
        "limit": {"n": 2048, "count": 4},
        "transfer": {
            "image_size": 224,
            "per_class": (8, 4, 4),
            "head_epochs": 5,
            "fine_tune_epochs": 1,
        },
        "pipeline": {"sizes": (64, 96, 224), "repeats": 3, "model_images": 128},
        "defaults": {
            "images_per_call": 128,
            "repeats": 3,
            "thread_repeats": 3,
            "autotune_repeats": 5,
        },
        "scratch": {"images_per_call": 96, "repeats": 3},
        "peer": {"rounds": 3, "repeats": 3},
    },
    "quick": {
        "builders": {"image_size": 32, "batch_size": 2, "repeats": 1, "train_repeats": 1},
        "limit": {"n": 512, "count": 1},
        "transfer": {
            "image_size": 32,
            "per_class": (2, 1, 1),
            "head_epochs": 1,
            "fine_tune_epochs": 0,
        },
        "pipeline": {"sizes": (32, 64), "repeats": 1, "model_images": 64},
        "defaults": {
            "xla": (False,),
            "batch_sizes": (32,),
            "steps_per_execution": (1,),
            "dtype_policies": ("float32",),
            "image_sizes": (64,),
            "images_per_call": 64,
            "repeats": 1,
            "thread_settings": (),
            "autotune_per_class": (4, 1, 1),
            "autotune_repeats": 1,
        },
        "scratch": {
            "candidates": ("seed 16-32-64 @64",),
            "policies": ("float32",),
            "batch_norms": ("fused",),
            "images_per_call": 32,
            "repeats": 1,
            "matmul_n": 256,
        },
        "family": {"image_size": 32, "batch_size": 2, "repeats": 1, "names": ("resnet18",)},
        "peer": {"rounds": 1, "repeats": 1, "warmup": 1, "images_per_call": 32},
    },
}


def parse_args(argv=None):
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 1)[1],
    )
    parser.add_argument(
        "--data",
        default=default_data(),
        help="the flowers archive (default: $RESNET_LAB_DATA, else ../shared/data/17flowers.tgz)",
    )
    parser.add_argument("--out", default=str(OUT), help="output folder (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, ~1-2 minutes")
    parser.add_argument(
        "--full",
        action="store_true",
        help="also time the full CLI training runs (10+ minutes more)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=NAMES,
        metavar="ITEM",
        help=f"run only these items ({', '.join(NAMES)})",
    )
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        parser.error(f"--data: no such archive: {args.data} (set RESNET_LAB_DATA or pass --data)")
    return args


def main(argv=None):
    """Run the selected items in one process, print their tables, write results.json."""
    args = parse_args(argv)
    mode = "quick" if args.quick else "default"
    selected = tuple(item for item in ITEMS if item.name in (args.only or NAMES))
    out = Path(args.out)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    import tensorflow as tf

    # Keras' retracing warnings would bury the tables; the tracing cost is in the timings.
    tf.get_logger().setLevel("ERROR")
    names = tuple(item.name for item in selected)
    log(
        f"resnet_lab benchmarks, mode {mode}{' + full' if args.full else ''}, items "
        f"{', '.join(names)}; data {args.data}; GPUs visible: "
        f"{len(tf.config.list_physical_devices('GPU'))}"
    )
    results = {
        "machine": machine(),
        "command": " ".join(
            [
                Path(sys.executable).name,
                "-m",
                "benchmarks.run",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "mode": mode,
        "full": args.full,
        "data": str(args.data),
        "started_unix": round(time.time()),
        "items": list(names),
    }
    path = out / "results.json"
    context = Context(args, out, names, MODES[mode])
    for item in selected:
        results[item.key] = item.run(context, MODES[mode].get(item.name, {}))
        results["total_wall_s"] = round(elapsed(), 1)
        save_results(results, path)
    summary(results)
    log(f"done in {elapsed():.0f} s; wrote {path}")
    return 0


def summary(results):
    """The headline of every item in `results`, in item order, one line each."""
    lines = [
        f"{item.number}. {line}"
        for item in sorted(ITEMS, key=lambda i: i.number)
        if item.key in results
        for line in item.summary(results[item.key])
    ]
    m = results["machine"]
    print(
        f"\nSummary ({m['cpu_model']}, {m['usable_cores']} cores, TF {m['tensorflow']}, "
        f"Keras {m['keras']}; total {elapsed():.0f} s)"
    )
    for line in lines:
        print("  " + line)


if __name__ == "__main__":
    sys.exit(main())
