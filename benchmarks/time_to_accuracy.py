"""Accuracy against time: the from-scratch recipe's test accuracy within 5, 10 and 15 minutes.

    python -m benchmarks.time_to_accuracy                      # seeds 0 1 2, budgets 5 10 15
    python -m benchmarks.time_to_accuracy --seeds 0 --budgets 5 10
    python -m benchmarks.time_to_accuracy --replot              # redraw the plot from the JSON

Every run is the real command a user types, `python -m resnet_lab train --model scratch
--seed S [--epochs E] --out DIR`, in its own process; its wall time is the whole command's
(start-up, loading, building, training, evaluating every split, saving), taken from outside
(`benchmarks.end_to_end.measure`, which also records the peak memory).

1. The recipe as shipped (`SCRATCH_RECIPE`) runs once per seed: the mean and standard
   deviation of train, validation and test accuracy and of the wall time over the seeds are
   the README's from-scratch result. The test split is read once per finished run, never to
   choose anything.
2. From the first seed's run the benchmark takes the fixed cost of a command (its wall time
   minus its training time) and the time of one epoch, and for every budget picks the most
   epochs whose projected command fits in `SAFETY` of it. The schedule (warm-up, cosine
   decay) stretches to the epochs, so a shorter budget is a shorter run, not a run cut
   short. A budget whose epochs come within `REUSE` of the recipe's reuses the recipe's run.
   The other budgets run on seed 0, so on another machine (a GPU) the same command puts its
   points on the same axes.

Writes `OUT/time_to_accuracy.json`, `OUT/time_to_accuracy.png` (seed 0's runs along the time
axis: every budget's and the recipe's; the seeds' mean and spread as one point) and prints
both tables.
"""

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

from benchmarks.end_to_end import measure
from benchmarks.harness import ROOT, default_data, log, machine, table
from resnet_lab.results import save_results
from resnet_lab.training import SCRATCH_RECIPE as RECIPE

OUT = ROOT / "benchmarks" / "out"
BUDGETS_MIN = (5, 10, 15)
SEEDS = (0, 1, 2)
SAFETY = 0.95  # plan each budgeted run to end by 95% of its budget: timings on a shared CPU vary
REUSE = 0.10  # a budget within 10% of the recipe's epochs is the recipe's run


def run_command(seed, out, data, cache, epochs=None, image_size=None):
    """Run `python -m resnet_lab train --model scratch` once; its results and wall time."""
    command = [
        sys.executable,
        "-m",
        "resnet_lab",
        "train",
        "--model",
        "scratch",
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--data",
        str(data),
    ]
    if cache:
        command += ["--cache", str(cache)]
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    if image_size is not None:
        command += ["--image-size", str(image_size)]
    measured = measure(command, log_path=Path(out) / "log.txt")
    if measured["returncode"] != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed (exit {measured['returncode']}); see {measured['log']}"
        )
    results = json.loads((Path(out) / "results.json").read_text())
    return {
        "seed": seed,
        "epochs": results["settings"]["epochs"],
        "command_wall_s": measured["wall_s"],
        "fit_wall_s": results["wall_time_s"],
        "peak_rss_mib": measured["peak_rss_mib"],
        "train_accuracy": results["train_accuracy"],
        "val_accuracy": results["val_accuracy"],
        "test_accuracy": results["test_accuracy"],
        "flip_tta_accuracy": results["flip_tta_accuracy"],
        "command": " ".join(["python", *command[1:]]),
    }


def epochs_for(budget_s, overhead_s, epoch_s):
    """The most epochs whose projected command time fits `SAFETY` of `budget_s` (at least 1)."""
    return max(1, math.floor((SAFETY * budget_s - overhead_s) / epoch_s))


def mean_std(runs, key):
    values = [r[key] for r in runs]
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def curve(budgets, seeds):
    """The seed-0 runs along the time axis: every budget's run and the recipe's seed-0 run."""
    runs = [b["run"] for b in budgets]
    runs += [r for r in seeds if r["seed"] == 0 and r not in runs]
    return sorted(runs, key=lambda r: r["command_wall_s"])


def plot(budgets, seeds, path):
    """Test (and validation) accuracy against whole-command minutes; the seeds as a spread."""
    from resnet_lab.plots import LabFigure, save_figure

    fig = LabFigure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    points = curve(budgets, seeds)
    recipe_epochs = seeds[0]["epochs"] if seeds else None
    minutes = [r["command_wall_s"] / 60 for r in points]
    ax.plot(minutes, [100 * r["test_accuracy"] for r in points], "o-", label="test, seed 0")
    ax.plot(
        minutes,
        [100 * r["val_accuracy"] for r in points],
        "s--",
        alpha=0.6,
        label="validation, seed 0",
    )
    for r, m in zip(points, minutes):
        recipe = " (recipe)" if r["epochs"] == recipe_epochs else ""
        ax.annotate(
            f"{r['epochs']} ep{recipe}",
            (m, 100 * r["test_accuracy"]),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=8,
        )
    if len(seeds) > 1:
        ax.errorbar(
            [statistics.fmean(r["command_wall_s"] for r in seeds) / 60],
            [100 * statistics.fmean(r["test_accuracy"] for r in seeds)],
            yerr=[100 * statistics.stdev(r["test_accuracy"] for r in seeds)],
            xerr=[statistics.stdev(r["command_wall_s"] for r in seeds) / 60],
            fmt="D",
            color="black",
            capsize=4,
            label=f"recipe, test, mean ± std of {len(seeds)} seeds",
        )
    for b in budgets:
        ax.axvline(b["budget_min"], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("minutes for the whole command (2 CPU cores unless noted)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("From-scratch recipe: accuracy within a time budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)
    return fig


def replot(out):
    """Redraw `out/time_to_accuracy.png` from a finished run's JSON (for instance after a
    change to `plot`); exits 2 with a message when there is no finished run."""
    path = out / "time_to_accuracy.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if "total_wall_s" not in results:
        print(
            f"--replot: no finished run in {path}; run the benchmark first. Received: --out {out}",
            file=sys.stderr,
        )
        return 2
    plot(results["budgets"], results["seeds"], out / "time_to_accuracy.png")
    log(f"redrew {out / 'time_to_accuracy.png'} from {path}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.time_to_accuracy",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 1)[1],
    )
    parser.add_argument("--data", default=default_data(), help="the flowers archive")
    parser.add_argument("--out", default=str(OUT), help="output folder (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--budgets", type=float, nargs="+", default=list(BUDGETS_MIN), metavar="MINUTES"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="override the recipe's epochs in the seed runs (smoke tests only: "
        "the measured runs use the recipe)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="override the recipe's image size in every run (smoke tests only)",
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="redraw OUT/time_to_accuracy.png from OUT/time_to_accuracy.json, training nothing",
    )
    args = parser.parse_args(argv)
    if args.replot:
        return replot(Path(args.out))
    if not Path(args.data).exists():
        parser.error(f"--data: no such archive: {args.data}")
    if any(b <= 0 for b in args.budgets):
        parser.error(f"--budgets must be positive minutes. Received: {args.budgets}")
    out = Path(args.out)
    cache = out / "cache"
    # What the seed runs train: the recipe, with the smoke-test overrides (checked here).
    recipe = RECIPE.override(
        {k: v for k, v in (("epochs", args.epochs), ("image_size", args.image_size)) if v}
    )
    results = {
        "machine": machine(),
        "command": " ".join(
            ["python", "-m", "benchmarks.time_to_accuracy", *(argv or sys.argv[1:])]
        ),
        "recipe": recipe.as_json(),
        "safety": SAFETY,
        "reuse_within": REUSE,
        "overrides": {"epochs": args.epochs, "image_size": args.image_size},
    }
    path = out / "time_to_accuracy.json"
    started = time.perf_counter()

    seeds = []
    for seed in args.seeds:
        log(f"recipe, seed {seed}: python -m resnet_lab train --model scratch --seed {seed}")
        seeds.append(
            run_command(
                seed,
                out / "time_to_accuracy" / f"recipe-seed{seed}",
                args.data,
                cache,
                args.epochs,
                args.image_size,
            )
        )
        r = seeds[-1]
        log(
            f"  {r['epochs']} epochs, command {r['command_wall_s']:.0f} s (fit "
            f"{r['fit_wall_s']:.0f} s): train {r['train_accuracy']:.3f}, val "
            f"{r['val_accuracy']:.3f}, test {r['test_accuracy']:.3f}"
        )
        results["seeds"] = seeds
        save_results(results, path)
    results["summary"] = {
        key: mean_std(seeds, key)
        for key in (
            "train_accuracy",
            "val_accuracy",
            "test_accuracy",
            "command_wall_s",
            "fit_wall_s",
        )
    }

    first = seeds[0]
    overhead = first["command_wall_s"] - first["fit_wall_s"]
    epoch_s = first["fit_wall_s"] / first["epochs"]
    results["calibration"] = {
        "from_seed": first["seed"],
        "overhead_s": overhead,
        "epoch_s": epoch_s,
    }
    budgets = []
    for minutes in sorted(args.budgets):
        epochs = epochs_for(60 * minutes, overhead, epoch_s)
        if abs(epochs - first["epochs"]) <= REUSE * first["epochs"] and first["seed"] == 0:
            run, reused = first, True
        else:
            log(f"budget {minutes:g} min: {epochs} epochs, seed 0")
            run, reused = (
                run_command(
                    0,
                    out / "time_to_accuracy" / f"budget-{minutes:g}min",
                    args.data,
                    cache,
                    epochs,
                    args.image_size,
                ),
                False,
            )
        budgets.append(
            {
                "budget_min": minutes,
                "planned_epochs": epochs,
                "reuses_recipe_run": reused,
                "run": run,
                "within_budget": run["command_wall_s"] <= 60 * minutes,
            }
        )
        results["budgets"] = budgets
        save_results(results, path)
    results["total_wall_s"] = round(time.perf_counter() - started, 1)
    save_results(results, path)
    plot(budgets, seeds, out / "time_to_accuracy.png")

    s = results["summary"]
    table(
        f"Recipe over seeds {', '.join(map(str, args.seeds))} "
        f"(python -m resnet_lab train --model scratch --seed S)",
        ("seed", "epochs", "train", "val", "test", "test flip-TTA", "fit s", "command s"),
        [
            (
                r["seed"],
                r["epochs"],
                r["train_accuracy"],
                r["val_accuracy"],
                r["test_accuracy"],
                r["flip_tta_accuracy"]["test"],
                r["fit_wall_s"],
                r["command_wall_s"],
            )
            for r in seeds
        ]
        + [
            (
                "mean ± std",
                "",
                *(
                    f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}"
                    for k in ("train_accuracy", "val_accuracy", "test_accuracy")
                ),
                "",
                f"{s['fit_wall_s']['mean']:.0f} ± {s['fit_wall_s']['std']:.0f}",
                f"{s['command_wall_s']['mean']:.0f} ± {s['command_wall_s']['std']:.0f}",
            )
        ],
    )
    table(
        f"Test accuracy within a budget (seed 0; epochs planned from seed "
        f"{first['seed']}'s run: {overhead:.0f} s fixed + {epoch_s:.2f} s per epoch)",
        ("budget min", "epochs", "command s", "within", "val", "test", "test flip-TTA", ""),
        [
            (
                b["budget_min"],
                b["run"]["epochs"],
                b["run"]["command_wall_s"],
                b["within_budget"],
                b["run"]["val_accuracy"],
                b["run"]["test_accuracy"],
                b["run"]["flip_tta_accuracy"]["test"],
                "recipe run" if b["reuses_recipe_run"] else "",
            )
            for b in budgets
        ],
    )
    log(f"done in {results['total_wall_s']:.0f} s; wrote {path} and {out / 'time_to_accuracy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
