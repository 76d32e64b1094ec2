"""`python -m resnet_lab` end to end on the tiny archive, offline."""

import inspect
import json
import re

import numpy as np
import pytest
from helpers import fixed_classifier, run_python
from PIL import Image

from resnet_lab import analysis, cli, plots, training, transfer

COMMANDS = ["fetch", "train", "predict", "degradation", "gradients", "compare"]
# One ranked line of `predict`: "  1. Sunflower     87.3%".
RANKED = re.compile(r"^  (\d+)\. (.+?)\s+(\d+\.\d)%$")


def main(*args):
    return cli.main([str(a) for a in args])


def exit_code(args):
    with pytest.raises(SystemExit) as info:
        main(*args)
    return info.value.code


def ranked_lines(stdout):
    """`{image: [(rank, class name, percent), ...]}` from `predict`'s output."""
    found, image = {}, None
    for line in stdout.splitlines():
        match = RANKED.match(line)
        if match:
            found[image].append((int(match[1]), match[2], float(match[3])))
        elif line.endswith(":") and not line.startswith(" "):
            image = line[:-1]
            found[image] = []
    return found


def write_photos(folder):
    """A PNG (RGBA, 40x30) and a JPEG (RGB, 23x57): other sizes and modes than the data's."""
    rng = np.random.default_rng(0)
    png, jpeg = folder / "photo.png", folder / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (30, 40, 4), dtype=np.uint8), "RGBA").save(png)
    Image.fromarray(rng.integers(0, 256, (57, 23, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    return png, jpeg


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained 8x8 from-scratch model saved as `model.keras`, in a run folder."""
    from resnet_lab import scratch_model

    folder = tmp_path_factory.mktemp("run")
    training.save_model(scratch_model(image_size=8, num_classes=17), folder / "model.keras")
    return folder


def test_entry_point_help():
    out = run_python("-m", "resnet_lab", "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: python -m resnet_lab" in out.stdout
    for command in COMMANDS:
        assert command in out.stdout
    assert "python -m resnet_lab predict MODEL IMAGE [IMAGE ...] [--top 3]" in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_for_each_command(command, capsys):
    assert exit_code([command, "--help"]) == 0
    assert f"usage: python -m resnet_lab {command}" in capsys.readouterr().out


def test_cache_help_says_where_the_cache_is(capsys):
    assert exit_code(["fetch", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in (
        "$RESNET_LAB_CACHE",
        "data/ in a clone of the repository",
        "~/.cache/resnet_lab",
    ):
        assert default in text


TRAIN = ["train", "--model", "scratch", "--out", "x"]
MIN_SIZE = training.SCRATCH_RECIPE.min_image_size
TRANSFER = ["train", "--model", "transfer", "--out", "x"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "resnet", "--out", "x"], "invalid choice: 'resnet'"),
        (["train", "--model", "scratch"], "required: --out"),
        # One per numeric argument: the flag, the allowed range and what was received.
        ([*TRAIN, "--epochs", "0"], "argument --epochs: must be an integer >= 1. Received: 0"),
        (
            [*TRAIN, "--epochs", "True"],
            "argument --epochs: must be an integer >= 1. Received: True",
        ),
        (
            [*TRANSFER, "--fine-tune-epochs", "-1"],
            "argument --fine-tune-epochs: must be an integer >= 0. Received: -1",
        ),
        (
            [*TRAIN, "--batch-size", "0"],
            "argument --batch-size: must be an integer >= 1. Received: 0",
        ),
        (
            [*TRAIN, "--image-size", "0"],
            "argument --image-size: must be an integer >= 1. Received: 0",
        ),
        (
            [*TRAIN, "--recipe", '{"cutmx": 0}'],
            "argument --recipe: Unknown ScratchRecipe fields ['cutmx']; allowed: ['augment', "
            "'auto_augment', 'batch_norm', 'batch_size', 'cutmix',",
        ),
        (
            [*TRAIN, "--recipe", '{"epochs": 0}'],
            "argument --recipe: `epochs` must be a positive integer. Received: epochs=0",
        ),
        ([*TRAIN, "--recipe", "[1]"], "argument --recipe: must be a JSON object such as"),
        (
            [*TRAIN, "--recipe", "{cutmix: 0}"],
            "argument --recipe: must be a JSON object (Expecting",
        ),
        (
            [*TRANSFER, "--recipe", "{}"],
            "argument --recipe: applies to --model scratch only. Received: {}",
        ),
        (
            [*TRAIN, "--image-size", str(MIN_SIZE - 1)],
            f"argument --image-size: must be >= {MIN_SIZE} for --model scratch (the "
            f"from-scratch network downsamples by a total stride of {MIN_SIZE}). "
            f"Received: {MIN_SIZE - 1}",
        ),
        # The minimum is the network's that will be built: --recipe's stages and stem stride.
        (
            [
                *TRAIN,
                "--recipe",
                '{"stages": [[8, 1], [8, 1], [8, 1], [8, 1]]}',
                "--image-size",
                "15",
            ],
            "argument --image-size: must be >= 16 for --model scratch",
        ),
        (
            [*TRANSFER, "--image-size", "31"],
            "argument --image-size: must be >= 32 for --model transfer (ResNet-50 downsamples by a "
            "total stride of 32). Received: 31",
        ),
        (
            [*TRAIN, "--seed", "-1"],
            "argument --seed: must be an integer from 0 to 4294967295. Received: -1",
        ),
        (
            [*TRAIN, "--fine-tune-epochs", "2"],
            "argument --fine-tune-epochs: applies to --model transfer only. Received: 2",
        ),
        ([*TRAIN, "--weights", "none"], "argument --weights: applies to --model transfer only."),
        # The depth rule and its message are the library's (`models.check_cifar_depth`).
        (
            ["degradation", "--out", "x", "--depths", "20", "21"],
            "argument --depths: `depth` must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, ...; the "
            "paper uses 20, 32, 44, 56, 110). Received: depth=21",
        ),
        (["degradation", "--out", "x", "--depths", "2"], "must be 6n+2 with n >= 1"),
        (
            ["gradients", "--out", "x", "--depths", "twenty"],
            "argument --depths: `depth` must be 6n+2 with n >= 1",
        ),
        (
            ["degradation", "--out", "x", "--epochs", "-3"],
            "argument --epochs: must be an integer >= 1. Received: -3",
        ),
        (
            ["degradation", "--out", "x", "--image-size", "3"],
            "argument --image-size: must be an integer >= 4 (the CIFAR networks downsample by a "
            "total stride of 4). Received: 3",
        ),
        (
            ["degradation", "--out", "x", "--dataset", "cifar10", "--train-per-class", "0"],
            "argument --train-per-class: must be an integer from 1 to 4500. Received: 0",
        ),
        (
            ["degradation", "--out", "x", "--train-per-class", "10"],
            "argument --train-per-class: applies to --dataset cifar10 only. Received: 10",
        ),
        (
            ["gradients", "--out", "x", "--batch", "0"],
            "argument --batch: must be an integer >= 1. Received: 0",
        ),
        (
            ["gradients", "--out", "x", "--image-size", "2"],
            "argument --image-size: must be an integer >= 4",
        ),
        (["gradients", "--out", "x", "--seed", "1.5"], "argument --seed: must be an integer"),
        (
            ["predict", "model.keras", "a.jpg", "--top", "0"],
            "argument --top: must be an integer >= 1. Received: 0",
        ),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message, capsys):
    assert exit_code(args) == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_missing_data_source_is_a_clear_error(tmp_path, capsys):
    assert exit_code(["fetch", "--data", tmp_path / "nowhere.tgz", "--cache", tmp_path]) == 2
    assert "nowhere.tgz" in capsys.readouterr().err


def parsed(*args):
    """The `train` settings `python -m resnet_lab ARGS` would run with."""
    return cli.train_settings(cli.build_parser().parse_args([str(a) for a in args]))


def test_unset_train_flags_leave_the_librarys_defaults():
    assert parsed(*TRAIN) == training.SCRATCH_RECIPE
    assert parsed(*TRANSFER) == transfer.TransferSettings()


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            [*TRAIN, "--epochs", "7", "--recipe", '{"epochs": 3, "cutmix": 0}'],
            training.SCRATCH_RECIPE.override(epochs=7, cutmix=0),
        ),  # the flag wins over --recipe
        (
            [*TRAIN, "--image-size", "64", "--batch-size", "16"],
            training.SCRATCH_RECIPE.override(image_size=64, batch_size=16),
        ),
        (
            [*TRANSFER, "--epochs", "3", "--fine-tune-epochs", "2", "--weights", "none"],
            transfer.TransferSettings(head_epochs=3, fine_tune_epochs=2, weights=None),
        ),
        ([*TRANSFER, "--image-size", "64"], transfer.TransferSettings(image_size=64)),
    ],
)
def test_given_train_flags_change_only_their_fields(args, expected):
    assert parsed(*args) == expected


@pytest.mark.parametrize(
    "image_size, num_classes",
    [
        (8, 17),  # the flowers' names
        (None, 5),  # any image size (224 is used), "class N" names
    ],
)
def test_predict_prints_the_top_classes_in_order(tmp_path, capsys, image_size, num_classes):
    from resnet_lab import data

    probabilities = np.random.default_rng(1).permutation(np.arange(1, num_classes + 1))
    probabilities = probabilities / probabilities.sum()
    training.save_model(fixed_classifier(probabilities, image_size), tmp_path / "model.keras")
    png, jpeg = write_photos(tmp_path)
    assert main("predict", tmp_path / "model.keras", png, jpeg, "--top", "4") == 0
    out = capsys.readouterr().out
    assert f"cover {image_size or 224}x{image_size or 224}" in out
    names = data.CLASS_NAMES if num_classes == 17 else [f"class {i}" for i in range(num_classes)]
    best = np.argsort(-probabilities)[:4]
    expected = [
        (rank, names[c], round(100 * probabilities[c], 1)) for rank, c in enumerate(best, start=1)
    ]
    assert ranked_lines(out) == {str(png): expected, str(jpeg): expected}


def not_an_image(folder, kind):
    """A path that is no image, of one `kind`, and the words its error must hold."""
    path = (
        folder
        / {
            "text": "notes.txt",
            "empty": "empty.jpg",
            "truncated": "half.jpg",
            "folder": "album",
            "missing": "gone.jpg",
        }[kind]
    )
    if kind == "text":
        path.write_text("not a picture")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        whole = folder / "photo.jpg"  # from write_photos
        path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    elif kind == "folder":
        path.mkdir()
    return path, {
        "text": "is not an image Pillow can read (",
        "empty": "is empty (0 bytes)",
        "truncated": "is not an image Pillow can read (image file is truncated",
        "folder": "is a folder, not an image file",
        "missing": "No file at",
    }[kind]


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "folder", "missing"])
def test_predict_names_the_one_file_that_is_not_an_image(kind, tiny_model, tmp_path, capsys):
    png, jpeg = write_photos(tmp_path)
    bad, words = not_an_image(tmp_path, kind)
    assert exit_code(["predict", tiny_model, png, bad, jpeg]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {bad} {words}") or captured.err.startswith(
        f"error: {words} {bad}"
    )
    assert captured.err.count("\n") == 1 and str(png) not in captured.err


def test_predict_on_a_text_file_prints_one_line_and_no_traceback(tiny_model, tmp_path):
    png, _ = write_photos(tmp_path)
    bad, words = not_an_image(tmp_path, "text")
    result = run_python("-m", "resnet_lab", "predict", tiny_model, png, bad)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: {bad} {words}") and "Traceback" not in result.stderr


@pytest.mark.parametrize("model", ["nowhere", "empty_run"])
def test_predict_without_a_model_is_a_clear_error(model, tmp_path, capsys):
    (tmp_path / "empty_run").mkdir()
    png, _ = write_photos(tmp_path)
    assert exit_code(["predict", tmp_path / model, png]) == 2
    assert f"error: no model at {tmp_path / model}" in capsys.readouterr().err


def test_predict_rejects_a_model_file_that_is_not_a_model(tmp_path, capsys):
    (tmp_path / "model.keras").write_text("{}")
    png, _ = write_photos(tmp_path)
    assert exit_code(["predict", tmp_path, png]) == 2
    assert "is not a Keras model this lab can load" in capsys.readouterr().err


def test_gradients_stratified_batch_both_spreads(tmp_path, tiny_archive, capsys):
    out = tmp_path / "out"
    assert (
        main(
            "gradients",
            "--out",
            out,
            "--depths",
            "8",
            "--image-size",
            "8",
            "--batch",
            "34",
            "--data",
            tiny_archive,
            "--cache",
            tmp_path / "cache",
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    for name in ("plain-8", "resnet-8"):
        line = next(line for line in lines if line.strip().startswith(f"{name}:"))
        assert re.search(r"\(max/min\): [\d,.]+x raw, [\d,.]+x per parameter$", line), line
    saved = json.loads((out / "gradients.json").read_text())
    labels = np.array(saved["gradient_batch"]) // 80  # the fixture's labels
    assert len(saved["gradient_batch"]) == 34 and np.bincount(labels).min() == 2  # 17 x 2
    for name in ("plain-8", "resnet-8"):
        norms = saved["gradients"][name]
        assert len(norms["norm"]) == len(norms["per_parameter"]) == len(norms["layers"])
        assert norms["spread"] == pytest.approx(max(norms["norm"]) / min(norms["norm"]))
    assert (out / "gradients.png").is_file() and (out / "gradients_per_parameter.png").is_file()


def test_gradients_writes_the_depth_sweep(tmp_path, tiny_archive, capsys):
    out = tmp_path / "out"
    assert (
        main(
            "gradients",
            "--out",
            out,
            "--depths",
            "8",
            "14",
            "--image-size",
            "8",
            "--batch",
            "17",
            "--data",
            tiny_archive,
            "--cache",
            tmp_path / "cache",
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    sweep = json.loads((out / "depth_sweep.json").read_text())
    assert sweep["depths"] == [8, 14] and len(sweep["seconds"]) == 2
    saved = json.loads((out / "gradients.json").read_text())
    assert sweep["gradient_batch"] == saved["gradient_batch"]  # one batch for both
    for i, depth in enumerate((8, 14)):
        for family, name in (("plain", "plain"), ("residual", "resnet")):
            # The first convolution's gradient is the first of the per-layer norms.
            assert sweep[family]["grad_first"][i] == pytest.approx(
                saved["gradients"][f"{name}-{depth}"]["norm"][0], rel=1e-4
            )
            assert sweep[family]["act_last"][i] > 0
        row = next(line.split() for line in lines if line.split()[:1] == [str(depth)])
        assert float(row[1]) == pytest.approx(sweep["plain"]["grad_first"][i], rel=1e-2)
    assert (out / "depth_sweep.png").read_bytes()[:4] == b"\x89PNG"


class Stop(Exception):
    """Raised by a stand-in experiment once it has seen its arguments."""


@pytest.mark.parametrize("flags, expected", [([], "unset"), (["--epochs", "3"], 3)])
def test_unset_degradation_epochs_leave_the_librarys_default(
    flags, expected, tmp_path, tiny_archive, monkeypatch
):
    seen = {}

    def experiment(images, labels, splits, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(analysis, "degradation_experiment", experiment)
    with pytest.raises(Stop):
        main("degradation", "--out", tmp_path / "out", "--depths", "8", "--image-size", "8",
             "--data", tiny_archive, "--cache", tmp_path / "cache", *flags)  # fmt: skip
    assert seen.get("epochs", "unset") == expected


def test_degradation_help_shows_the_librarys_epochs(capsys):
    library = inspect.signature(analysis.degradation_experiment).parameters["epochs"].default
    assert exit_code(["degradation", "--help"]) == 0
    assert f"(default: the library's {library})" in " ".join(capsys.readouterr().out.split())


def test_degradation_names_both_training_errors(tmp_path, tiny_archive, capsys, monkeypatch):
    plotted = {}
    plot_degradation = plots.plot_degradation

    def spy(histories, path=None, *, results=None):
        plotted.update(histories=histories, results=results)
        return plot_degradation(histories, path, results=results)

    monkeypatch.setattr(plots, "plot_degradation", spy)
    out = tmp_path / "out"
    assert (
        main(
            "degradation",
            "--out",
            out,
            "--depths",
            "8",
            "--epochs",
            "1",
            "--image-size",
            "8",
            "--data",
            tiny_archive,
            "--cache",
            tmp_path / "cache",
        )
        == 0
    )
    text = capsys.readouterr().out
    saved = json.loads((out / "degradation.json").read_text())
    for name, res in saved["results"].items():
        block = text[text.index(f"{name}:\n") :]
        assert re.search(
            r"training error \(clean images, inference mode\): +"
            f"{100 * res['train_error']:5.1f}%",
            block,
        )
        assert re.search(
            r"last-epoch running training error \(augmented, training mode\): +"
            f"{100 * res['running_train_error']:5.1f}%",
            block,
        )
        assert re.search(f"validation accuracy: +{100 * res['val_accuracy']:5.1f}%", block)
    for png in ("degradation", "gradients_init", "gradients_trained_per_parameter"):
        assert (out / f"{png}.png").is_file()
    # The figure gets the clean training errors for its dots, not the curves alone.
    assert plotted["results"] is not None
    assert {name: r["train_error"] for name, r in plotted["results"].items()} == {
        name: r["train_error"] for name, r in saved["results"].items()
    }


def test_train_scratch_and_transfer_then_predict_and_compare(tmp_path, tiny_archive):
    env = {"RESNET_LAB_DATA": str(tiny_archive), "RESNET_LAB_CACHE": str(tmp_path / "cache")}

    def run(*args):
        return run_python("-m", "resnet_lab", *args, env=env, timeout=400)

    out = run(
        "train",
        "--model",
        "scratch",
        "--epochs",
        "1",
        "--image-size",
        "16",
        "--recipe",
        '{"cutmix": 0, "label_smoothing": 0.2, "epochs": 5}',
        "--out",
        tmp_path / "scratch",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "scratch" / "results.json").read_text())
    # --recipe reaches the run; --epochs wins over the recipe's epochs.
    assert results["settings"]["cutmix"] == 0 and results["settings"]["label_smoothing"] == 0.2
    assert results["settings"]["epochs"] == 1
    for key in (
        "test_accuracy",
        "val_accuracy",
        "train_accuracy",
        "wall_time_s",
        "weights",
        "settings",
    ):
        assert key in results
    assert results["settings"]["image_size"] == [16, 16]
    assert (tmp_path / "scratch" / "curves.png").is_file()
    assert (tmp_path / "scratch" / "confusion_matrix.png").is_file()
    assert f"trained model {tmp_path / 'scratch' / 'model.keras'}" in out.stdout
    assert "epoch 1/1" in out.stdout  # not a tty: the summary line, no progress bar

    png, jpeg = write_photos(tmp_path)
    out = run("predict", tmp_path / "scratch", png, jpeg)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "cover 16x16" in out.stdout
    found = ranked_lines(out.stdout)
    assert set(found) == {str(png), str(jpeg)}
    for lines in found.values():
        percents = [p for _, _, p in lines]
        assert len(lines) == 3 and percents == sorted(percents, reverse=True)
        assert sum(percents) <= 100.2

    out = run(
        "train",
        "--model",
        "transfer",
        "--weights",
        "none",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--data",
        tiny_archive,
        "--out",
        tmp_path / "transfer",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "transfer" / "results.json").read_text())
    assert "NOT transfer learning" in results["weights"]
    assert "NOT transfer learning" in out.stdout

    out = run("compare", tmp_path / "scratch", tmp_path / "transfer", "--out", tmp_path / "cmp")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "scratch" in out.stdout and (tmp_path / "cmp" / "comparison.png").is_file()
