"""Item 4: choose the from-scratch model's CPU defaults by measurement.

Every setting is timed the same way: Keras' train function (what `model.fit` runs for each
execution of `steps_per_execution` steps) over `images_per_call` images of one in-memory batch
(random pixels: the arithmetic does not depend on them), so only the model, the optimizer
step and the execution loop are measured, never the input pipeline (item 3). One dimension
changes at a time from `CURRENT`, the code's defaults. All in-process settings are built
first and then timed interleaved; thread settings must be fixed before TensorFlow runs
anything, so each runs in its own worker process (`python -m benchmarks.thread_worker`);
the workers start together and are then timed in turn like the rest.

One more setting is timed on the real pipeline, because it only shows there: tf.data
autotuning (`autotune`), one `model.fit` epoch over `make_datasets(...)["train"]`.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

from benchmarks.harness import ROOT, interleaved, log, table
from benchmarks.train_step import RECIPE, clear_built, scratch_train_function
from resnet_lab import data as data_lib
from resnet_lab import hardware, training

CURRENT = {
    "jit_compile": RECIPE.jit_compile,
    "dtype_policy": hardware.resolve_dtype_policy(RECIPE.dtype_policy),
    "batch_size": RECIPE.batch_size,
    "steps_per_execution": RECIPE.steps_per_execution,
    "image_size": RECIPE.image_size,
}
# A setting replaces the current default only when it is this much faster (and its repeats
# do not overlap the current one's, see `_choose`): smaller gaps are within the noise of a
# shared 2-core machine.
NOISE = 0.05
THREADS = (("default", 0, 0), ("intra=1", 1, 0), ("intra=2", 2, 0), ("inter=1", 0, 1))


def autotune(images, labels, model, per_class=(40, 20, 20), repeats=3, seed=0):
    """One `model.fit` epoch over the real training pipeline, tf.data autotuning on and off.

    `make_datasets` asks for `AUTOTUNE` parallelism and prefetching; with autotuning off
    (`tf.data.Options().autotune.enabled = False`) tf.data uses fixed defaults instead.
    `model.fit` makes a fresh iterator every epoch, so whatever autotuning costs at an
    iterator's start and end is paid once per epoch. Both pipelines train the same compiled
    `model` in turn (the same train function: the pipelines differ only in their options).
    """
    splits = data_lib.split_indices(labels, seed=seed, per_class=per_class)
    train = data_lib.make_datasets(images, labels, splits, batch_size=32, seed=seed)["train"]
    # `make_datasets` ships with autotuning off; "on" switches it back on for the comparison.
    on, off = tf.data.Options(), tf.data.Options()
    on.autotune.enabled, off.autotune.enabled = True, False
    pipelines = {"off": train.with_options(off), "on": train.with_options(on)}
    per_epoch = (len(splits["train"]) // 32) * 32
    functions = {
        name: (lambda d=dataset: model.fit(d, epochs=1, verbose=0, shuffle=False))
        for name, dataset in pipelines.items()
    }
    timed = interleaved(functions, repeats, what="4/7 defaults tf.data autotune")
    # Epoch times here can be bimodal (some epochs stall), and training pays the sum of its
    # epochs: judge by the mean epoch, not the median.
    entries = {
        name: {
            "images_per_s": round(per_epoch / float(np.mean(t["times_s"])), 1),
            "epoch_s": round(float(np.mean(t["times_s"])), 3),
            "median_epoch_s": round(t["median_s"], 3),
            "first_call_s": t["first_call_s"],
            "times_s": t["times_s"],
            "speeds": [round(per_epoch / v, 2) for v in t["times_s"]],
        }
        for name, t in timed.items()
    }
    for entry in entries.values():
        entry["ratio_vs_current"] = round(entry["images_per_s"] / entries["off"]["images_per_s"], 4)
    result = _choose(entries, "off", separated=False)
    result["settings"] = {
        "images_per_epoch": per_epoch,
        "repeats": repeats,
        "image_size": int(images.shape[1]),
        "augment": True,
        "statistic": "mean epoch time",
        "measured": "model.fit(make_datasets(...)['train'], epochs=1)",
    }
    return result


def fit_epochs(images, labels, values=(1, 4), repeats=4, per_class=(40, 20, 20), seed=0):
    """Whole `model.fit` epochs of the recipe (its real pipeline, CutMix and validation
    included) for each `steps_per_execution` value, interleaved.

    The in-memory timing above measures the train function alone; this is what a user waits
    for. Returns `{value: {"epoch_s", "times_s", "images_per_s"}}` and the ratio to the first.
    """
    splits = data_lib.split_indices(labels, seed=seed, per_class=per_class)
    batch_size = min(RECIPE.batch_size, len(splits["train"]))
    recipe = RECIPE.override(batch_size=batch_size, image_size=int(images.shape[1]))
    # The recipe's own pipeline: augmentation, one-hot labels, CutMix.
    datasets = training.classifier_datasets(images, labels, splits, recipe, seed)
    train, val = datasets["train"], datasets["val"]
    functions = {}
    for value in values:
        training.set_seed(seed)
        run = recipe.override(steps_per_execution=value)
        model = run.compile(
            run.build_model(data_lib.NUM_CLASSES), run.steps_per_epoch(len(splits["train"]))
        )
        functions[f"steps_per_execution={value}"] = lambda m=model: m.fit(
            train, validation_data=val, epochs=1, verbose=0, shuffle=False
        )
    timed = interleaved(functions, repeats, what="4/7 defaults fit epochs")
    per_epoch = (len(splits["train"]) // batch_size) * batch_size
    first = float(np.mean(timed[next(iter(timed))]["times_s"]))
    results = {
        name: {
            "epoch_s": round(float(np.mean(t["times_s"])), 3),
            "times_s": t["times_s"],
            "images_per_s": round(per_epoch / float(np.mean(t["times_s"])), 1),
            "speedup": round(first / float(np.mean(t["times_s"])), 3),
        }
        for name, t in timed.items()
    }
    table(
        f"4. whole fit epochs of the recipe ({per_epoch} training images with CutMix, "
        f"validation included, {images.shape[1]}x{images.shape[2]})",
        ("setting", "mean epoch s", "epochs s", "img/s", "speed-up"),
        [
            (
                n,
                r["epoch_s"],
                " ".join(f"{t:.3g}" for t in r["times_s"]),
                r["images_per_s"],
                r["speedup"],
            )
            for n, r in results.items()
        ],
    )
    return results


def _dimensions(xla, batch_sizes, steps_per_execution, image_sizes, dtype_policies):
    """Each dimension's values, the current default always among them (and first)."""
    asked = {
        "jit_compile": xla,
        "dtype_policy": dtype_policies,
        "batch_size": batch_sizes,
        "steps_per_execution": steps_per_execution,
        "image_size": image_sizes,
    }
    return {k: tuple(dict.fromkeys((CURRENT[k], *v))) for k, v in asked.items()}


def _key(config):
    return ",".join(f"{k}={v}" for k, v in config.items())


def threads(images_per_call, repeats, settings=THREADS):
    """Time each thread setting in its own warm worker process, interleaved.

    All workers start together (import, build and compile are not timed), then are asked
    for one timed call each in turn, `repeats` rounds. Workers wait on stdin between calls.
    """
    workers, errors = {}, {}
    log(
        f"4/7 defaults: starting {len(settings)} thread workers "
        f"({', '.join(n for n, _, _ in settings)})"
    )
    for name, intra, inter in settings:
        errors[name] = tempfile.TemporaryFile("w+")
        workers[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.thread_worker",
                "--intra",
                str(intra),
                "--inter",
                str(inter),
                "--images",
                str(images_per_call),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors[name],
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )

    def answer(name, tag):
        for line in workers[name].stdout:
            if line.startswith(tag + " "):
                return line[len(tag) + 1 :]
        errors[name].seek(0)
        raise RuntimeError(f"thread worker {name} ended early:\n{errors[name].read()[-3000:]}")

    try:
        ready = {name: json.loads(answer(name, "READY")) for name in workers}
        times = {name: [] for name in workers}
        for repeat in range(repeats):
            for name, worker in workers.items():
                worker.stdin.write("run\n")
                worker.stdin.flush()
                times[name].append(round(float(answer(name, "TIME")), 5))
            log(
                f"4/7 defaults threads repeat {repeat + 1}/{repeats}: "
                + ", ".join(f"{n} {t[-1]:.3g} s" for n, t in times.items())
            )
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                try:
                    worker.stdin.write("quit\n")
                    worker.stdin.close()
                except OSError:
                    pass
        for name, worker in workers.items():
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            errors[name].close()
    out = {}
    for name, intra, inter in settings:
        images = ready[name]["images"]
        out[name] = {
            "intra_op": intra,
            "inter_op": inter,
            "effective": ready[name]["effective"],
            "images_per_s": round(images / float(np.median(times[name])), 1),
            "first_call_s": ready[name]["first_call_s"],
            "times_s": times[name],
            "speeds": [round(images / t, 2) for t in times[name]],
        }
    return out


def run(
    images=None,
    labels=None,
    xla=(False, True),
    batch_sizes=(16, 32, 64, 128),
    steps_per_execution=(1, 4, 8),
    image_sizes=(48, 64, 96, 128),
    dtype_policies=("float32", "mixed_bfloat16"),
    images_per_call=128,
    repeats=3,
    thread_settings=THREADS,
    thread_repeats=3,
    autotune_per_class=(40, 20, 20),
    autotune_repeats=5,
):
    """Item 4: images/s per setting, the fastest per dimension and the recommended defaults.

    Args:
        images, labels: the real flowers at the recipe's size, for the autotune comparison
            (skipped when `None`).
    """
    dimensions = _dimensions(xla, batch_sizes, steps_per_execution, image_sizes, dtype_policies)
    configs = {}
    for dimension, values in dimensions.items():
        for value in values:
            config = {**CURRENT, dimension: value}
            configs.setdefault(_key(config), config)
    functions, counts = {}, {}
    for key, config in configs.items():
        log(f"4/7 defaults: building {key}")
        functions[key], counts[key] = scratch_train_function(
            images_per_call=images_per_call, **config
        )
    timed = interleaved(functions, repeats, what="4/7 defaults")
    speed = {key: counts[key] / t["median_s"] for key, t in timed.items()}

    results = {
        "settings": {
            "current_defaults": CURRENT,
            "images_per_call": images_per_call,
            "images_per_call_note": "at the current image size; scaled by pixels for other sizes",
            "repeats": repeats,
            "noise_threshold": NOISE,
            "model": "SCRATCH_RECIPE.build_model() + its optimizer; "
            "Keras' train function on an in-memory batch",
        }
    }
    base = speed[_key(CURRENT)]
    for dimension, values in dimensions.items():
        rows, entries = [], {}
        for value in values:
            key = _key({**CURRENT, dimension: value})
            entries[str(value)] = {
                "images_per_s": round(speed[key], 1),
                "ratio_vs_current": round(speed[key] / base, 4),
                "first_call_s": timed[key]["first_call_s"],
                "times_s": timed[key]["times_s"],
                "speeds": [round(counts[key] / t, 2) for t in timed[key]["times_s"]],
            }
        results[dimension] = _choose(entries, CURRENT[dimension])
        for value, entry in entries.items():
            rows.append(
                (
                    value,
                    entry["images_per_s"],
                    entry["ratio_vs_current"],
                    entry["first_call_s"],
                    "fastest" if value == str(results[dimension]["fastest"]) else "",
                )
            )
        table(
            f"4. {dimension} (others at the current defaults {CURRENT})",
            (dimension, "img/s", "vs current", "first call s (compiles)", ""),
            rows,
        )

    if thread_settings:
        thread_results = threads(images_per_call, thread_repeats, thread_settings)
        entries = {
            name: {
                **r,
                "ratio_vs_current": round(
                    r["images_per_s"] / thread_results["default"]["images_per_s"], 4
                ),
            }
            for name, r in thread_results.items()
        }
        results["threads"] = _choose(entries, "default")
        results["threads"]["settings"] = {
            "repeats": thread_repeats,
            "note": "one warm worker process per setting "
            "(python -m benchmarks.thread_worker), timed in turn",
        }
        table(
            "4. threads (each in its own process; 0 = TensorFlow's choice)",
            ("setting", "intra", "inter", "effective intra/inter", "img/s", "vs default", ""),
            [
                (
                    n,
                    r["intra_op"],
                    r["inter_op"],
                    "/".join(map(str, r["effective"])),
                    r["images_per_s"],
                    r["ratio_vs_current"],
                    "fastest" if n == results["threads"]["fastest"] else "",
                )
                for n, r in entries.items()
            ],
        )
    else:
        results["threads"] = {
            "measured": False,
            "reason": "no thread settings asked for (--quick skips the subprocesses)",
        }
    if images is not None:
        baseline = functions[_key(CURRENT)].model
        # Let the other settings' models and iterators go before timing whole epochs.
        functions.clear()
        clear_built()
        results["tf_data_autotune"] = autotune(
            images, labels, baseline, autotune_per_class, autotune_repeats
        )
        results["fit_steps_per_execution"] = fit_epochs(
            images,
            labels,
            values=tuple(dict.fromkeys((CURRENT["steps_per_execution"], 4))),
            repeats=autotune_repeats,
            per_class=autotune_per_class,
        )
        a = results["tf_data_autotune"]
        table(
            f"4. tf.data autotune: one model.fit epoch of the real training pipeline "
            f"({a['settings']['images_per_epoch']} images, {images.shape[1]}x"
            f"{images.shape[1]}, augment=True)",
            ("autotune", "mean epoch s", "median epoch s", "img/s", "vs current", "epochs s", ""),
            [
                (
                    n,
                    r["epoch_s"],
                    r["median_epoch_s"],
                    r["images_per_s"],
                    r["ratio_vs_current"],
                    " ".join(f"{t:.3g}" for t in r["times_s"]),
                    "fastest" if n == str(a["fastest"]) else "",
                )
                for n, r in a["values"].items()
            ],
        )
    else:
        results["tf_data_autotune"] = {"measured": False, "reason": "no images given"}
    results["recommended"] = recommend(results)
    print(f"recommended defaults: {results['recommended']['line']}\n", flush=True)
    return results


def _choose(entries, current, separated=True):
    """The fastest value, and the one to use: the current unless the fastest clearly wins.

    Clearly: faster by more than `NOISE` and, with `separated`, even its slowest repeat
    beats the current value's fastest one (on a shared machine a 5% gap in the medians of
    three repeats can be noise; non-overlapping repeats are harder to fake).
    """
    current = str(current)
    fastest = max(entries, key=lambda v: entries[v]["images_per_s"])
    gain = entries[fastest]["images_per_s"] / entries[current]["images_per_s"]
    apart = min(entries[fastest]["speeds"]) > max(entries[current]["speeds"])
    chosen = fastest if gain > 1 + NOISE and (apart or not separated) else current
    return {
        "values": entries,
        "current": current,
        "fastest": _parse(fastest),
        "fastest_speedup_vs_current": round(gain, 4),
        "fastest_repeats_separated": bool(apart),
        "by_speed": _parse(chosen),
    }


def _parse(text):
    for convert in (int, {"True": True, "False": False}.__getitem__):
        try:
            return convert(text)
        except (ValueError, KeyError):
            pass
    return text


def recommend(results):
    """Defaults from the measurements: a change only when it beats the noise threshold.

    Batch size and image size also change what is learned (steps per epoch, detail seen), so
    for them speed only nominates a candidate; the line says so.
    """
    pick = {d: results[d]["by_speed"] for d in ("jit_compile", "steps_per_execution")}
    measured = results["threads"].get("values")
    pick["threads"] = results["threads"]["by_speed"] if measured else "default"
    threads = measured[str(pick["threads"])] if measured else {"intra_op": 0, "inter_op": 0}
    batch, size = results["batch_size"], results["image_size"]
    line = (
        f"jit_compile={pick['jit_compile']}, "
        f"steps_per_execution={pick['steps_per_execution']}, "
        f"threads: intra_op={threads['intra_op']} inter_op={threads['inter_op']} "
        f"({pick['threads']}{'' if measured else ', not measured'}); "
        f"batch_size={batch['by_speed']} by speed "
        f"(fastest {batch['fastest']}, x{batch['fastest_speedup_vs_current']:.2f} vs "
        f"{batch['current']}; a larger batch means fewer steps per epoch: re-check "
        f"accuracy before changing); image_size: fastest {size['fastest']} "
        f"(x{size['fastest_speedup_vs_current']:.2f} vs {size['current']}), cost grows with "
        f"pixels: choose it by accuracy, not speed; dtype policy: fastest "
        f"{results['dtype_policy']['fastest']} "
        f"(x{results['dtype_policy']['fastest_speedup_vs_current']:.2f} vs "
        f"{results['dtype_policy']['current']}: check accuracy before changing)"
    )
    if results.get("fit_steps_per_execution"):
        fit = results["fit_steps_per_execution"]
        line += "; whole fit epochs: " + ", ".join(
            f"{k} x{v['speedup']:.2f}" for k, v in fit.items()
        )
    if results["tf_data_autotune"].get("values"):
        a = results["tf_data_autotune"]
        line += (
            f"; tf.data autotune {a['by_speed']} (epoch x"
            f"{a['values']['on']['ratio_vs_current']:.2f} with it on)"
        )
    return {
        "jit_compile": pick["jit_compile"],
        "tf_data_autotune": results["tf_data_autotune"].get("by_speed"),
        "steps_per_execution": pick["steps_per_execution"],
        "intra_op_parallelism_threads": threads["intra_op"],
        "inter_op_parallelism_threads": threads["inter_op"],
        "batch_size_by_speed": batch["by_speed"],
        "image_size_fastest": size["fastest"],
        "dtype_policy_fastest": results["dtype_policy"]["fastest"],
        "line": line,
    }


def summary(result):
    """Item 4's headline: the recommended defaults."""
    return [f"recommended defaults: {result['recommended']['line']}"]
