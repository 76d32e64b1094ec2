"""The from-scratch recipe search: candidates scored on validation over several split seeds.

    python -m benchmarks.recipe_search --epochs 30 --seeds 0 1            # the proxy ranking
    python -m benchmarks.recipe_search --epochs 100 --seeds 0 1 --candidates recipe ...

Each candidate is `training.SCRATCH_RECIPE` with a few fields changed (`CANDIDATES`), trained
on the train split of each seed's split (`data.split_indices(labels, seed)`) and measured on
that split's validation images only: the search never evaluates a test split, so the test
split stays unread until the chosen recipe's three seeded runs (`python -m resnet_lab train
--model scratch --seed N`). A candidate's score is the mean over seeds with every seed's value;
two candidates whose means differ by less than the seeds' spread are not told apart.

An ensemble candidate trains `ensemble` members for `epochs / ensemble` epochs each (so about
one model's wall time) and averages their probabilities; its cost is the whole candidate's time.

Results go to one JSON file, rewritten atomically after every run, and a finished run (same
candidate, seed and epochs) is not run again: a search interrupted goes on where it stopped.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from resnet_lab import data as data_lib
from resnet_lab import evaluation, hardware, training
from resnet_lab.results import atomic_write

RECIPE = training.SCRATCH_RECIPE
DEFAULT_OUT = Path("benchmarks/out/recipe_search.json")

# name -> changes to `SCRATCH_RECIPE` (`ensemble`: members, not a recipe field). The levers of
# issue 19: automatic augmentation (alone and with the recipe's CutMix), the cosine loss, a
# learning-rate x weight-decay grid, larger images, longer schedules, ensembles.
CANDIDATES = {
    "recipe": {},
    "trivialaugment": {"auto_augment": "trivialaugment"},
    "randaugment": {"auto_augment": "randaugment"},
    "cosine + 0.1 CE": {"loss": "cosine+crossentropy", "label_smoothing": 0.0},
    "cosine loss": {"loss": "cosine", "label_smoothing": 0.0},
    "2x epochs": {"epochs_factor": 2},
    "128 px": {"image_size": 128},
    "ensemble of 2": {"ensemble": 2},
    "trivialaugment, no cutmix": {"auto_augment": "trivialaugment", "cutmix": 0.0},
    **{
        f"lr {lr:g}, wd {wd:g}": {"learning_rate": lr, "weight_decay": wd}
        for lr in (0.05, 0.1, 0.2)
        for wd in (2.5e-4, 5e-4, 1e-3)
        if (lr, wd) != (RECIPE.learning_rate, RECIPE.weight_decay)
    },
    "112 px": {"image_size": 112},
    "ensemble of 3": {"ensemble": 3},
    "randaugment, no cutmix": {"auto_augment": "randaugment", "cutmix": 0.0},
}
NOT_RECIPE_FIELDS = ("ensemble", "epochs_factor")


def candidate_recipe(changes, epochs):
    """`(recipe, members)` of a candidate at `epochs` (each member gets `epochs / members`)."""
    members = int(changes.get("ensemble", 1))
    factor = changes.get("epochs_factor", 1)
    fields = {k: v for k, v in changes.items() if k not in NOT_RECIPE_FIELDS}
    member_epochs = max(1, round(epochs * factor / members))
    return RECIPE.override(fields, epochs=member_epochs), members


def ensemble_accuracy(probabilities, labels):
    """Accuracy of the mean of several models' probabilities (`(models, N, classes)`)."""
    mean = np.mean(np.asarray(probabilities, np.float64), axis=0)
    return float(np.mean(np.argmax(mean, axis=-1) == np.asarray(labels)))


def run_candidate(changes, epochs, seed, images, labels, verbose=0):
    """Train one candidate on split `seed` and measure it on that split's validation images.

    Returns:
        A dict: `val_accuracy` (the ensemble's, for an ensemble), `member_val_accuracy`,
        `train_accuracy` (first member, clean images), `wall_time_s` (every member's build,
        fit and evaluation), `epochs` per member and `members`.
    """
    recipe, members = candidate_recipe(changes, epochs)
    splits = data_lib.split_indices(labels, seed=seed)
    start = time.perf_counter()
    probabilities, member_acc, train_acc = [], [], None
    for member in range(members):
        member_seed = seed if member == 0 else 1000 * member + seed
        training.set_seed(member_seed)
        datasets = training.classifier_datasets(images, labels, splits, recipe, member_seed)
        model = recipe.compile(
            recipe.build_model(data_lib.NUM_CLASSES),
            recipe.steps_per_epoch(len(splits["train"])),
        )
        # No validation during fit: the search reads validation once, at the end.
        training.fit_timed(model, datasets["train"], None, recipe.epochs, verbose, "search")
        val = images[splits["val"]]
        probs = evaluation.predict(model, val)
        probabilities.append(probs)
        member_acc.append(ensemble_accuracy([probs], labels[splits["val"]]))
        if member == 0:
            train_acc = evaluation.evaluate(
                model, images[splits["train"]], labels[splits["train"]]
            )["accuracy"]
    return {
        "val_accuracy": ensemble_accuracy(probabilities, labels[splits["val"]]),
        "member_val_accuracy": member_acc,
        "train_accuracy": train_acc,
        "wall_time_s": round(time.perf_counter() - start, 1),
        "epochs": recipe.epochs,
        "members": members,
    }


def summarize(runs, epochs):
    """Rows per candidate at `epochs`: mean validation accuracy, every seed's, spread, time."""
    rows = {}
    for run in runs:
        if run["proxy_epochs"] != epochs:
            continue
        rows.setdefault(run["candidate"], []).append(run)
    table = []
    for name, found in rows.items():
        accs = [r["val_accuracy"] for r in sorted(found, key=lambda r: r["seed"])]
        table.append(
            {
                "candidate": name,
                "seeds": [r["seed"] for r in sorted(found, key=lambda r: r["seed"])],
                "val_accuracy": accs,
                "mean": statistics.fmean(accs),
                "spread": max(accs) - min(accs),
                "wall_time_s": statistics.fmean(r["wall_time_s"] for r in found),
            }
        )
    return sorted(table, key=lambda row: -row["mean"])


def verdict(row, base):
    """`"better"`, `"worse"` or `"no difference"`: a difference of means smaller than the larger
    of the two candidates' spreads over seeds is no difference."""
    difference = row["mean"] - base["mean"]
    if abs(difference) <= max(row["spread"], base["spread"]):
        return "no difference"
    return "better" if difference > 0 else "worse"


def paired_differences(row, base):
    """`row`'s validation accuracy minus `base`'s on each split seed both were trained on (the
    two share that split's images, so this difference is free of which images it drew)."""
    theirs = dict(zip(base["seeds"], base["val_accuracy"]))
    return [a - theirs[s] for s, a in zip(row["seeds"], row["val_accuracy"]) if s in theirs]


def markdown_table(rows, base_name="recipe"):
    """The ablation as a markdown table: every seed's validation accuracy, the mean, the
    spread, the difference from `base_name`'s row (of the means, and seed by seed), the
    verdict and the cost."""
    base = next(row for row in rows if row["candidate"] == base_name)
    lines = [
        "| candidate | val per seed | mean | spread | vs recipe | vs recipe per seed | verdict "
        "| time per run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        seeds = " / ".join(f"{a:.1%}" for a in row["val_accuracy"])
        paired = " / ".join(f"{d * 100:+.1f}" for d in paired_differences(row, base))
        cost = row["wall_time_s"] / base["wall_time_s"]
        lines.append(
            f"| {row['candidate']} | {seeds} | {row['mean']:.1%} | {row['spread'] * 100:.1f} | "
            f"{(row['mean'] - base['mean']) * 100:+.1f} | {paired} | {verdict(row, base)} | "
            f"{row['wall_time_s']:.0f} s ({cost:.2f}x) |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recipe_search", description=__doc__)
    parser.add_argument("--epochs", type=int, default=30, help="the recipe's epochs (proxy)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--candidates", nargs="+", default=None, choices=sorted(CANDIDATES))
    parser.add_argument("--data", default=None, help="the flowers (as `resnet_lab fetch`)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--table", action="store_true", help="print the ablation table of --out; train nothing"
    )
    args = parser.parse_args(argv)
    if args.table:
        runs = json.loads(args.out.read_text())["runs"]
        rows = summarize(runs, args.epochs)
        if not any(row["candidate"] == "recipe" for row in rows):
            found = sorted({r["proxy_epochs"] for r in runs if r["candidate"] == "recipe"})
            parser.error(
                f"--table: {args.out} has no recipe run at --epochs {args.epochs} to compare "
                f"with; it has the recipe at --epochs {found}. Received: --epochs {args.epochs}"
            )
        print(markdown_table(rows))
        return
    done = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    done["machine"] = {"cpu": hardware.cpu_model(), "cores": hardware.usable_cores()}
    cache = {}
    for name in args.candidates or CANDIDATES:
        for seed in args.seeds:
            key = (name, seed, args.epochs)
            if any((r["candidate"], r["seed"], r["proxy_epochs"]) == key for r in done["runs"]):
                continue
            recipe, _ = candidate_recipe(CANDIDATES[name], args.epochs)
            size = recipe.image_size
            if size not in cache:
                cache[size] = data_lib.load_flowers17(args.data, image_size=(size, size))
            images, labels = cache[size]
            result = run_candidate(CANDIDATES[name], args.epochs, seed, images, labels)
            run = {"candidate": name, "seed": seed, "proxy_epochs": args.epochs, **result}
            run["changes"] = CANDIDATES[name]
            done["runs"].append(run)
            print(json.dumps(run), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(args.out, lambda file: json.dump(done, file, indent=1))
    for row in summarize(done["runs"], args.epochs):
        print(
            f"{row['candidate']:28s} {row['mean']:.3f} "
            f"({', '.join(f'{a:.3f}' for a in row['val_accuracy'])}) "
            f"spread {row['spread']:.3f}  {row['wall_time_s']:.0f} s"
        )


if __name__ == "__main__":
    main()
