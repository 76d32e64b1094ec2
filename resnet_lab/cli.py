"""`python -m resnet_lab`: the lab's experiments, headless, writing JSON and PNG results.

    python -m resnet_lab fetch [--data SOURCE] [--cache DIR]
    python -m resnet_lab train --model scratch|transfer --out DIR [--epochs N] [--batch-size N]
    python -m resnet_lab predict MODEL IMAGE [IMAGE ...] [--top 3]
    python -m resnet_lab degradation --out DIR [--depths 20 56] [--epochs N]
    python -m resnet_lab gradients --out DIR [--depths 20 56] [--batch 64]
    python -m resnet_lab compare RUN_DIR [RUN_DIR ...] --out DIR

`--data` takes what `resnet_lab.load_flowers17` takes (URL, Google Drive id or link, local
archive or folder) and defaults to the same: `$RESNET_LAB_DATA`, else the official archive.
`train` writes `model.keras` and `results.json` into `--out`; `predict` classifies your own
photos with such a model. Every numeric argument is checked before any work starts: a bad
one exits with status 2 and a message naming the flag, the allowed values and what was given.
"""

import argparse
import inspect
import sys
from pathlib import Path

from resnet_lab.quiet import import_keras_quietly

import_keras_quietly()  # before anything below imports TensorFlow

from resnet_lab import analysis, plots, results, training, transfer  # noqa: E402
from resnet_lab import data as data_lib  # noqa: E402
from resnet_lab.nn import models  # noqa: E402

# The library's defaults, shown in the help; an unset flag leaves them in force.
TRANSFER_SETTINGS = transfer.TransferSettings()
DEGRADATION_EPOCHS = inspect.signature(analysis.degradation_experiment).parameters["epochs"].default
PREDICT_DEFAULT_SIZE = 224  # for a model that accepts any image size
SEED_MAX = 2**32 - 1  # NumPy's seed range, which `keras.utils.set_random_seed` passes on


# ---------------------------------------------------------------------------------------------
# Argument types: argparse prefixes their messages with `argument --flag:`
# ---------------------------------------------------------------------------------------------


def int_in_range(low, high=None, why=""):
    """An argparse `type` accepting integers in `low..high` (`high=None`: no upper bound).

    The error says the allowed range, `why` (e.g. " (the network's total stride)") and the
    text received; argparse names the flag and exits with status 2.
    """

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            allowed = f">= {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}{why}. Received: {text}")
        return value

    parse.__name__ = "integer"  # what argparse would call the type in its own messages
    return parse


def cifar_depth(text):
    """An argparse `type` for CIFAR network depths: `models.check_cifar_depth`'s rule and message.

    argparse shows an `ArgumentTypeError`'s message after the flag; a bare `ValueError` would
    become "invalid cifar_depth value", so the library's message is passed on as one.
    """
    try:
        value = int(text)
    except ValueError:
        value = text  # not an integer: the library's check says so, quoting it
    try:
        return models.check_cifar_depth(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_data_args(parser):
    parser.add_argument(
        "--data",
        default=None,
        metavar="SOURCE",
        help="URL, Google Drive id/link, local .tgz or extracted folder "
        "(default: $RESNET_LAB_DATA, else the official archive)",
    )
    parser.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="folder for the downloaded archive, its extraction and the decoded "
        "images, keyed by source (default: $RESNET_LAB_CACHE, else data/ "
        "in a clone of the repository, else ~/.cache/resnet_lab, or "
        "$XDG_CACHE_HOME/resnet_lab when that is set)",
    )
    parser.add_argument(
        "--seed",
        type=int_in_range(0, SEED_MAX),
        default=0,
        help="seed for splits, weights and training (default: 0)",
    )


def _add_experiment_args(parser):
    parser.add_argument("--out", required=True, help="output folder (JSON, PNG plots)")
    parser.add_argument(
        "--depths",
        type=cifar_depth,
        nargs="+",
        default=[20, 56],
        help="CIFAR network depths, each 6n+2 (default: 20 56)",
    )


def recipe_json(text):
    """`--recipe`: a JSON object of `ScratchRecipe` fields; `SCRATCH_RECIPE` with them changed.

    The recipe checks the names and values itself (`Settings.override`); its message is
    the flag's.
    """
    import json

    try:
        changes = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"must be a JSON object ({error}). Received: {text}"
        ) from None
    if not isinstance(changes, dict):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object such as '{{\"cutmix\": 0}}'. Received: {text}"
        )
    try:
        return training.SCRATCH_RECIPE.override(changes)
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def train_settings(args):
    """The run's `ScratchRecipe` or `TransferSettings`: the library's defaults (and
    `--recipe`), changed only by the flags that were given."""
    given = {"epochs": args.epochs, "image_size": args.image_size, "batch_size": args.batch_size}
    if args.model == "scratch":
        base = args.recipe or training.SCRATCH_RECIPE
    else:
        base = TRANSFER_SETTINGS
        given = {
            "head_epochs": given.pop("epochs"),
            **given,
            "fine_tune_epochs": args.fine_tune_epochs,
            "weights": args.weights,
        }
    changes = {name: value for name, value in given.items() if value is not None}
    if changes.get("weights") == "none":
        changes["weights"] = None  # random init, said explicitly
    return base.override(changes)


def _image_size_arg(parser, default, help):
    stride = models.CIFAR_TOTAL_STRIDE
    parser.add_argument(
        "--image-size",
        default=default,
        help=help,
        type=int_in_range(
            stride, why=f" (the CIFAR networks downsample by a total stride of {stride})"
        ),
    )


# ---------------------------------------------------------------------------------------------
# Checks that need more than one argument: run before any work, exit 2 like argparse's own
# ---------------------------------------------------------------------------------------------


def check_train(args):
    """The message for `train` arguments that do not fit together, or `None`."""
    if args.model == "scratch":
        for flag, value in (
            ("--weights", args.weights),
            ("--fine-tune-epochs", args.fine_tune_epochs),
        ):
            if value is not None:
                return f"argument {flag}: applies to --model transfer only. Received: {value}"
    elif args.recipe is not None:
        default = training.SCRATCH_RECIPE.as_json()
        changed = {k: v for k, v in args.recipe.as_json().items() if v != default[k]}
        return f"argument --recipe: applies to --model scratch only. Received: {changed}"
    minimum, network = {
        "scratch": (
            (args.recipe or training.SCRATCH_RECIPE).min_image_size,
            "the from-scratch network",
        ),
        "transfer": (transfer.MIN_IMAGE_SIZE, "ResNet-50"),
    }[args.model]
    if args.image_size is not None and args.image_size < minimum:
        return (
            f"argument --image-size: must be >= {minimum} for --model {args.model} "
            f"({network} downsamples by a total stride of {minimum}). "
            f"Received: {args.image_size}"
        )
    return None


def check_degradation(args):
    """The message for `degradation` arguments that do not fit together, or `None`."""
    if args.dataset == "flowers17" and args.train_per_class is not None:
        return (
            "argument --train-per-class: applies to --dataset cifar10 only. "
            f"Received: {args.train_per_class}"
        )
    if args.dataset == "cifar10" and args.image_size not in (None, 32):
        return f"argument --image-size: CIFAR-10 images are 32x32. Received: {args.image_size}"
    return None


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def _load(args, image_size):
    images, labels = data_lib.load_flowers17(
        args.data, cache_dir=args.cache, image_size=(image_size, image_size)
    )
    return images, labels, data_lib.split_indices(labels, seed=args.seed)


def _verbose():
    """A progress bar and a line every 10 epochs on a terminal; in a log, the lines only."""
    return 1 if sys.stdout.isatty() else "summary"


def _save_run_plots(run, out):
    plots.plot_history({run["name"]: run["history"]}, path=out / "curves.png")
    title = f"{run['name']}: test accuracy {100 * run['test_accuracy']:.1f}%"
    names = (
        data_lib.CLASS_NAMES
        if len(run["confusion_matrix"]) == len(data_lib.CLASS_NAMES)
        else [f"class {i}" for i in range(len(run["confusion_matrix"]))]
    )
    plots.plot_confusion_matrix(
        run["confusion_matrix"], names, title=title, path=out / "confusion_matrix.png"
    )


def _fold(value):
    """`1,232x`, `35x`, `3.4x`: a max/min ratio as people read it."""
    return f"{value:,.0f}x" if value >= 10 else f"{value:.1f}x"


def _plot_gradients(measured, when, out, stem):
    """`stem.png` (raw norms) and `stem_per_parameter.png` (norm / sqrt(kernel size))."""
    plots.plot_gradient_norms(
        {name: d["norm"] for name, d in measured.items()},
        title=f"Gradient norm per layer {when} (raw)",
        path=out / f"{stem}.png",
    )
    fig = plots.plot_gradient_norms(
        {name: d["per_parameter"] for name, d in measured.items()},
        title=f"Gradient norm per layer {when}, per parameter",
    )
    fig.axes[0].set_ylabel("‖∂loss/∂kernel‖ / √(#params)")
    plots.save_figure(fig, out / f"{stem}_per_parameter.png")


def cmd_fetch(args):
    path = data_lib.fetch_flowers17(args.data, cache_dir=args.cache)
    print(f"Flowers 17 ready at {path}")


def cmd_train(args):
    out = Path(args.out)
    settings = train_settings(args)
    images, labels, splits = _load(args, settings.image_size)
    train = training.train_scratch if args.model == "scratch" else transfer.train_transfer
    _, run = train(
        images, labels, splits, settings, seed=args.seed, verbose=_verbose(), out_dir=out
    )
    _save_run_plots(run, out)
    print(
        f"{run['name']} ({run['weights']}): train {run['train_accuracy']:.3f}, "
        f"val {run['val_accuracy']:.3f}, test {run['test_accuracy']:.3f}, "
        f"{run['wall_time_s']:.0f} s.\n"
        f"Wrote {out / 'results.json'}, plots, and the trained model {out / 'model.keras'}\n"
        f"Classify your own photos with it: python -m resnet_lab predict {out} IMAGE ..."
    )


def _model_path(model):
    path = Path(model)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise ValueError(
            f"no model at {path}: give a model.keras file or a run folder holding "
            f"one (written by `train --out DIR`). Received: MODEL={model}"
        )
    return path


def cmd_predict(args):
    import zipfile

    import keras

    from resnet_lab import evaluation

    path = _model_path(args.model)
    try:
        # `resnet_lab` is imported (this module is part of it), so its layers are registered.
        model = keras.saving.load_model(path)
    except (ValueError, TypeError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a Keras model this lab can load ({error})") from error
    height = model.input_shape[1] or PREDICT_DEFAULT_SIZE
    width = model.input_shape[2] or PREDICT_DEFAULT_SIZE
    classes = evaluation.num_outputs(model)
    names = data_lib.CLASS_NAMES if classes == len(data_lib.CLASS_NAMES) else None
    # Decoded exactly as the flowers were for training (`data.read_image`): upright by the
    # EXIF orientation, 8-bit RGB, scaled to cover the model's input, center-cropped. A file
    # that is not an image raises one ValueError naming it, which `main` prints as one line.
    ranked = evaluation.classify_files(model, args.images, names, top=args.top)
    print(
        f"{path}: {classes} classes; each image scaled to cover {height}x{width} and center-cropped"
    )
    for image, top in ranked:
        print(f"{image}:")
        for rank, (name, probability) in enumerate(top, start=1):
            print(f"  {rank}. {name:<12} {100 * probability:5.1f}%")


def cmd_degradation(args):
    out = Path(args.out)
    if args.dataset == "cifar10":
        images, labels, splits = data_lib.load_cifar10(args.train_per_class, seed=args.seed)
    else:
        images, labels, splits = _load(args, args.image_size or 32)
    # An unset --epochs leaves the library's budget in force.
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    result = analysis.degradation_experiment(
        images, labels, splits, depths=args.depths, seed=args.seed, verbose=_verbose(), **epochs
    )
    results.save_results(result, out / "degradation.json")
    # The dots: each network's clean training error (inference mode), the paper's quantity.
    plots.plot_degradation(
        result["histories"], results=result["results"], path=out / "degradation.png"
    )
    _plot_gradients(result["gradients_init"], "at initialisation", out, "gradients_init")
    _plot_gradients(result["gradients_trained"], "after training", out, "gradients_trained")
    for name, res in result["results"].items():
        print(
            f"{name}:\n"
            f"  training error (clean images, inference mode):                "
            f"{100 * res['train_error']:5.1f}%\n"
            f"  last-epoch running training error (augmented, training mode): "
            f"{100 * res['running_train_error']:5.1f}%\n"
            f"  validation accuracy:                                          "
            f"{100 * res['val_accuracy']:5.1f}%"
        )
    print(f"Wrote {out}/degradation.json and plots")


def cmd_gradients(args):
    out = Path(args.out)
    images, labels, splits = _load(args, args.image_size)
    builders = {}
    for depth in args.depths:
        builders.update(analysis.cifar_pair(depth, int(labels.max()) + 1, args.image_size))
    batch, measured = analysis.gradient_flow(
        builders, images, labels, splits["train"], batch_size=args.batch, seed=args.seed
    )
    print(
        f"Gradient norms at initialisation on {len(batch)} training images drawn evenly "
        f"from the classes (raw: L2 norm per kernel; per parameter: that norm / "
        f"sqrt(kernel size))"
    )
    for name, norms in measured.items():
        print(
            f"{name:>10}: gradient norm spread over layers (max/min): "
            f"{_fold(norms['spread'])} raw, {_fold(norms['spread_per_parameter'])} per "
            f"parameter"
        )
    settings = {
        "depths": args.depths,
        "image_size": args.image_size,
        "batch": args.batch,
        "seed": args.seed,
    }
    results.save_results(
        {"gradients": measured, "gradient_batch": batch, "settings": settings},
        out / "gradients.json",
    )
    _plot_gradients(measured, "at initialisation", out, "gradients")
    # The same batch, by depth: first-conv gradient and last-stage activation scale.
    sweep = analysis.depth_sweep(
        args.depths,
        images[batch],
        labels[batch],
        image_size=args.image_size,
        num_classes=int(labels.max()) + 1,
        seed=args.seed,
    )
    print(
        f"{'depth':>6} {'grad conv1 plain':>17} {'residual':>10} "
        f"{'act std plain':>14} {'residual':>10} {'s':>6}"
    )
    for i, depth in enumerate(sweep["depths"]):
        plain, residual = sweep["plain"], sweep["residual"]
        print(
            f"{depth:>6} {plain['grad_first'][i]:>17.3g} {residual['grad_first'][i]:>10.3g} "
            f"{plain['act_last'][i]:>14.3g} {residual['act_last'][i]:>10.3g} "
            f"{sweep['seconds'][i]:>6.1f}"
        )
    results.save_results(
        {**sweep, "gradient_batch": batch, "settings": settings}, out / "depth_sweep.json"
    )
    plots.plot_depth_sweep(sweep, path=out / "depth_sweep.png")
    print(
        f"Wrote {out}/gradients.json, gradients.png, gradients_per_parameter.png, "
        f"depth_sweep.json and depth_sweep.png"
    )


def cmd_compare(args):
    out = Path(args.out)
    runs = {}
    for run in args.runs:
        try:
            measured = results.load_results(run)
        except FileNotFoundError as error:
            raise ValueError(str(error)) from None
        label = f"{measured['name']} ({measured['weights'].split(':')[0]})"
        if label in runs:  # two runs of one recipe: tell them apart by folder
            label = f"{label} {run}"
        runs[label] = measured
    width = max(40, *(len(name) for name in runs))
    print(f"{'run':<{width}} {'train':>7} {'val':>7} {'test':>7} {'time s':>8}")
    for name, r in runs.items():
        print(
            f"{name:<{width}} {r['train_accuracy']:>7.3f} {r['val_accuracy']:>7.3f} "
            f"{r['test_accuracy']:>7.3f} {r['wall_time_s']:>8.0f}"
        )
    plots.plot_comparison(runs, path=out / "comparison.png")
    plots.plot_history({n: r["history"] for n, r in runs.items()}, path=out / "curves.png")
    results.save_results(
        {n: {k: v for k, v in r.items() if k != "history"} for n, r in runs.items()},
        out / "comparison.json",
    )
    print(f"Wrote {out}/comparison.json, comparison.png, curves.png")


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


def _add_train_parser(sub):
    """`train`: its flags' defaults are the library's (`SCRATCH_RECIPE`, `TransferSettings`)."""
    recipe, settings = training.SCRATCH_RECIPE, TRANSFER_SETTINGS
    p = sub.add_parser(
        "train",
        help="train the from-scratch or transfer model; write model.keras, results.json and plots",
    )
    p.add_argument("--model", choices=("scratch", "transfer"), required=True)
    p.add_argument(
        "--out", required=True, help="output folder (model.keras, results.json, PNG plots)"
    )
    p.add_argument(
        "--epochs",
        type=int_in_range(1),
        default=None,
        help=f"epochs, >= 1 (scratch: the recipe's {recipe.epochs}; transfer: head "
        f"epochs, {settings.head_epochs})",
    )
    p.add_argument(
        "--batch-size",
        type=int_in_range(1),
        default=None,
        help=f"batch size, >= 1 and at most the training split (default: scratch "
        f"{recipe.batch_size}, transfer {settings.batch_size})",
    )
    p.add_argument(
        "--image-size",
        type=int_in_range(1),
        default=None,
        help=f"square image size (scratch: the recipe's {recipe.image_size}, >= "
        f"{recipe.min_image_size}; transfer: {settings.image_size}, >= "
        f"{transfer.MIN_IMAGE_SIZE})",
    )
    p.add_argument(
        "--recipe",
        type=recipe_json,
        default=None,
        metavar="JSON",
        help="scratch only: ScratchRecipe fields to change, as a JSON object, e.g. "
        '\'{"cutmix": 0, "mixup": 0.2}\' (--epochs, --image-size and '
        "--batch-size win over it)",
    )
    p.add_argument(
        "--weights",
        default=None,
        help=f"transfer only: {settings.weights!r} (default), a local weights .h5 "
        "file, or 'none' (random init: explicitly NOT transfer learning)",
    )
    p.add_argument(
        "--fine-tune-epochs",
        type=int_in_range(0),
        default=None,
        help="transfer only: epochs of fine-tuning the top stage after the head, "
        f">= 0 (default: {settings.fine_tune_epochs})",
    )
    _add_data_args(p)
    p.set_defaults(func=cmd_train, check=check_train)


def _add_predict_parser(sub):
    """`predict`: a model (file or run folder) and images."""
    p = sub.add_parser("predict", help="top classes of your own images with a trained model")
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a model.keras file, or a run folder holding one (`train --out DIR`)",
    )
    p.add_argument(
        "images",
        metavar="IMAGE",
        nargs="+",
        help="image files in any format and size Pillow reads (JPEG, PNG, GIF, "
        "WebP, TIFF, ...); each is turned upright by its EXIF orientation, "
        "made 8-bit RGB (transparency on white), scaled to cover the model's "
        "input size and center-cropped",
    )
    p.add_argument(
        "--top",
        type=int_in_range(1),
        default=3,
        help="classes to show per image, >= 1 (default: 3)",
    )
    p.set_defaults(func=cmd_predict)


def _add_degradation_parser(sub):
    """`degradation`: an unset `--epochs` leaves `analysis.degradation_experiment`'s default."""
    p = sub.add_parser("degradation", help="plain vs residual nets, same budget (He et al. Fig. 6)")
    _add_experiment_args(p)
    _image_size_arg(
        p,
        None,
        f"flowers17 only: square image size, >= {models.CIFAR_TOTAL_STRIDE} (default: 32, CIFAR's)",
    )
    p.add_argument(
        "--epochs",
        type=int_in_range(1),
        default=None,
        help=f"training epochs per network, >= 1 (default: the library's {DEGRADATION_EPOCHS})",
    )
    p.add_argument(
        "--dataset",
        choices=("flowers17", "cifar10"),
        default="flowers17",
        help="cifar10: the paper's setting, via keras.datasets (needs internet once)",
    )
    p.add_argument(
        "--train-per-class",
        type=int_in_range(1, 4500),
        default=None,
        help="cifar10 only: training images per class, 1 to 4,500 (default: all "
        "4,500; 500 more are held out for validation)",
    )
    _add_data_args(p)
    p.set_defaults(func=cmd_degradation, check=check_degradation)


def build_parser():
    """The argument parser, one sub-command per experiment."""
    summary, _, details = __doc__.partition("\n")
    parser = argparse.ArgumentParser(
        prog="python -m resnet_lab",
        description=summary,
        epilog=details.strip("\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fetch", help="download, verify and cache the flowers data")
    _add_data_args(p)
    p.set_defaults(func=cmd_fetch)

    _add_train_parser(sub)

    _add_predict_parser(sub)
    _add_degradation_parser(sub)

    p = sub.add_parser(
        "gradients",
        help="per-layer gradient norms at init, plain vs residual, "
        "raw and per parameter; first-conv gradient and "
        "last-stage activation scale by depth",
    )
    _add_experiment_args(p)
    _image_size_arg(p, 32, f"square image size, >= {models.CIFAR_TOTAL_STRIDE} (default: 32)")
    p.add_argument(
        "--batch",
        type=int_in_range(1),
        default=64,
        help="training images in the gradient batch, drawn evenly from the classes, "
        ">= 1 (default: 64)",
    )
    _add_data_args(p)
    p.set_defaults(func=cmd_gradients)

    p = sub.add_parser("compare", help="table and plots of several runs' results.json")
    p.add_argument("runs", nargs="+", help="run folders (or results.json files)")
    p.add_argument("--out", required=True, help="output folder (comparison JSON and plots)")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv=None):
    """Entry point: parse `argv` and run the sub-command; errors exit 2 with a message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = args.check(args) if getattr(args, "check", None) else None
    if problem:
        parser.exit(2, f"{parser.prog} {args.command}: error: {problem}\n")
    try:
        args.func(args)
    except (ValueError, RuntimeError) as error:
        parser.exit(2, f"error: {error}\n")
    return 0
