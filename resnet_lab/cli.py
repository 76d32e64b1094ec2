"""`python -m resnet_lab`: the lab's experiments, headless, writing JSON and PNG results.

    python -m resnet_lab fetch [--data SOURCE]
    python -m resnet_lab train --model scratch|transfer [--data SOURCE] --out DIR
    python -m resnet_lab degradation --out DIR [--depths 20 56] [--epochs 20]
    python -m resnet_lab gradients --out DIR [--depths 20 56]
    python -m resnet_lab compare RUN_DIR [RUN_DIR ...] --out DIR

`--data` takes what `resnet_lab.load_flowers17` takes (URL, Google Drive id or link, local
archive or folder) and defaults to the same: `$RESNET_LAB_DATA`, else the official archive.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from resnet_lab import data as data_lib  # noqa: E402
from resnet_lab import plots, training  # noqa: E402


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer. Received: {text}")
    return value


def _add_data_args(parser):
    parser.add_argument("--data", default=None, metavar="SOURCE",
                        help="URL, Google Drive id/link, local .tgz or extracted folder "
                             "(default: $RESNET_LAB_DATA, else the official archive)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="cache folder (default: $RESNET_LAB_CACHE, else ./data)")
    parser.add_argument("--seed", type=int, default=0, help="seed for splits and training")


def _add_experiment_args(parser):
    parser.add_argument("--out", required=True, help="output folder (JSON, PNG plots)")
    parser.add_argument("--depths", type=_positive_int, nargs="+", default=[20, 56],
                        help="network depths, each 6n+2")
    parser.add_argument("--image-size", type=_positive_int, default=32)


def _load(args, image_size):
    images, labels = data_lib.load_flowers17(
        args.data, cache_dir=args.cache, image_size=(image_size, image_size)
    )
    return images, labels, data_lib.split_indices(labels, seed=args.seed)


def _verbose():
    return 1 if sys.stdout.isatty() else 2


def _save_run_plots(results, out):
    plots.plot_history({results["name"]: results["history"]}, path=out / "curves.png")
    title = f"{results['name']}: test accuracy {100 * results['test_accuracy']:.1f}%"
    plots.plot_confusion_matrix(results["confusion_matrix"], data_lib.CLASS_NAMES,
                                title=title, path=out / "confusion_matrix.png")


def cmd_fetch(args):
    path = data_lib.fetch_flowers17(args.data, cache_dir=args.cache)
    print(f"Flowers 17 ready at {path}")


def cmd_train(args):
    out = Path(args.out)
    if args.model == "scratch":
        recipe = {}
        if args.epochs:
            recipe["epochs"] = args.epochs
        if args.image_size:
            recipe["image_size"] = args.image_size
        size = recipe.get("image_size", training.SCRATCH_RECIPE["image_size"])
        images, labels, splits = _load(args, size)
        _, results = training.train_scratch(images, labels, splits, recipe, seed=args.seed,
                                            verbose=_verbose(), out_dir=out)
    else:
        from resnet_lab import transfer

        weights = None if args.weights == "none" else args.weights
        images, labels, splits = _load(args, args.image_size or 224)
        _, results = transfer.train_transfer(
            images, labels, splits, weights=weights, head_epochs=args.epochs or 30,
            fine_tune_epochs=args.fine_tune_epochs, seed=args.seed, verbose=_verbose(),
            out_dir=out,
        )
    _save_run_plots(results, out)
    print(
        f"{results['name']} ({results['weights']}): train {results['train_accuracy']:.3f}, "
        f"val {results['val_accuracy']:.3f}, test {results['test_accuracy']:.3f}, "
        f"{results['wall_time_s']:.0f} s. Wrote {out / 'results.json'}"
    )


def cmd_degradation(args):
    from resnet_lab import analysis

    out = Path(args.out)
    if args.dataset == "cifar10":
        images, labels, splits = analysis.load_cifar10(args.train_per_class, seed=args.seed)
    else:
        images, labels, splits = _load(args, args.image_size)
    result = analysis.degradation_experiment(
        images, labels, splits, depths=args.depths, epochs=args.epochs, seed=args.seed,
        verbose=_verbose(),
    )
    training.save_results(result, out / "degradation.json")
    plots.plot_degradation(result["histories"], path=out / "degradation.png")
    plots.plot_gradient_norms(result["gradients_init"], path=out / "gradients_init.png")
    plots.plot_gradient_norms(result["gradients_trained"], title="Gradient norm per layer "
                              "after training", path=out / "gradients_trained.png")
    for name, res in result["results"].items():
        print(f"{name:>10}: final train error {100 * res['final_train_error']:.1f}%, "
              f"val accuracy {100 * res['val_accuracy']:.1f}%")
    print(f"Wrote {out}/degradation.json and plots")


def cmd_gradients(args):
    from resnet_lab import analysis

    out = Path(args.out)
    images, labels, splits = _load(args, args.image_size)
    batch = splits["train"][: args.batch]
    norms = {}
    for depth in args.depths:
        for name, build in analysis.cifar_pair(depth, int(labels.max()) + 1,
                                               args.image_size).items():
            training.set_seed(args.seed)
            _, norms[name] = analysis.conv_gradient_norms(build(), images[batch], labels[batch])
            print(f"{name:>10}: gradient norm spread over layers (max/min) "
                  f"{norms[name].max() / norms[name].min():,.1f}x")
    training.save_results({k: v.tolist() for k, v in norms.items()}, out / "gradients.json")
    plots.plot_gradient_norms(norms, path=out / "gradients.png")
    print(f"Wrote {out}/gradients.json and gradients.png")


def cmd_compare(args):
    out = Path(args.out)
    runs = {}
    for run in args.runs:
        path = Path(run) / "results.json" if Path(run).is_dir() else Path(run)
        if not path.is_file():
            raise SystemExit(f"error: no results.json at {path}; run `train --out DIR` first.")
        results = json.loads(path.read_text())
        runs[f"{results['name']} ({results['weights'].split(':')[0]})"] = results
    print(f"{'run':<40} {'train':>7} {'val':>7} {'test':>7} {'time s':>8}")
    for name, r in runs.items():
        print(f"{name:<40} {r['train_accuracy']:>7.3f} {r['val_accuracy']:>7.3f} "
              f"{r['test_accuracy']:>7.3f} {r['wall_time_s']:>8.0f}")
    plots.plot_comparison(runs, path=out / "comparison.png")
    plots.plot_history({n: r["history"] for n, r in runs.items()}, path=out / "curves.png")
    training.save_results({n: {k: v for k, v in r.items() if k != "history"}
                           for n, r in runs.items()}, out / "comparison.json")
    print(f"Wrote {out}/comparison.json, comparison.png, curves.png")


def build_parser():
    """The argument parser, one sub-command per experiment."""
    parser = argparse.ArgumentParser(prog="python -m resnet_lab", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fetch", help="download, verify and cache the flowers data")
    _add_data_args(p)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("train", help="train the from-scratch or transfer model, write results")
    p.add_argument("--model", choices=("scratch", "transfer"), required=True)
    p.add_argument("--out", required=True, help="output folder (results.json, PNG plots)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs (scratch: recipe's; transfer: head epochs, default 30)")
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="square image size (scratch: recipe's; transfer: 224)")
    p.add_argument("--weights", default="imagenet",
                   help="transfer only: 'imagenet', a local weights .h5 file, or 'none' "
                        "(random init: explicitly NOT transfer learning)")
    p.add_argument("--fine-tune-epochs", type=int, default=0,
                   help="transfer only: epochs of fine-tuning the top stage after the head")
    _add_data_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("degradation", help="plain vs residual nets, same budget (He et al. Fig. 6)")
    _add_experiment_args(p)
    p.add_argument("--epochs", type=_positive_int, default=15)
    p.add_argument("--dataset", choices=("flowers17", "cifar10"), default="flowers17",
                   help="cifar10: the paper's setting, via keras.datasets (needs internet once)")
    p.add_argument("--train-per-class", type=_positive_int, default=None,
                   help="cifar10 only: training images per class (default: all 4,500)")
    _add_data_args(p)
    p.set_defaults(func=cmd_degradation)

    p = sub.add_parser("gradients", help="per-layer gradient norms at init, plain vs residual")
    _add_experiment_args(p)
    p.add_argument("--batch", type=_positive_int, default=64)
    _add_data_args(p)
    p.set_defaults(func=cmd_gradients)

    p = sub.add_parser("compare", help="table and plots of several runs' results.json")
    p.add_argument("runs", nargs="+", help="run folders (or results.json files)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv=None):
    """Entry point: parse `argv` and run the sub-command; errors exit with a message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, RuntimeError) as error:
        parser.exit(2, f"error: {error}\n")
    return 0
