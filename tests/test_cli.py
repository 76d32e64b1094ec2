"""`python -m resnet_lab` end to end on the tiny archive, offline."""

import json
import os
import subprocess
import sys

import pytest

from flowers_fixture import tiny_archive  # noqa: F401
from resnet_lab import cli


def run(*args, env=None, cache=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    if cache is not None:
        env["RESNET_LAB_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "resnet_lab", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=400)


def test_entry_point_help():
    out = run("--help")
    assert out.returncode == 0, out.stderr
    assert "usage: python -m resnet_lab" in out.stdout
    for command in ("fetch", "train", "degradation", "gradients", "compare"):
        assert command in out.stdout


@pytest.mark.parametrize("command", ["train", "fetch", "degradation", "gradients", "compare"])
def test_help_for_each_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    assert f"usage: python -m resnet_lab {command}" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "resnet", "--out", "x"], "invalid choice: 'resnet'"),
    (["train", "--model", "scratch", "--epochs", "0", "--out", "x"], "Received: 0"),
    (["train", "--model", "scratch"], "required: --out"),
])
def test_bad_arguments_exit_2_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_missing_data_source_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["fetch", "--data", str(tmp_path / "nowhere.tgz"), "--cache", str(tmp_path)])
    assert info.value.code == 2 and "nowhere.tgz" in capsys.readouterr().err


def test_train_scratch_and_transfer_then_compare(tmp_path, tiny_archive):  # noqa: F811
    cache = tmp_path / "cache"
    env = {"RESNET_LAB_DATA": str(tiny_archive)}
    out = run("train", "--model", "scratch", "--epochs", "1", "--image-size", "16",
              "--out", tmp_path / "scratch", env=env, cache=cache)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "scratch" / "results.json").read_text())
    for key in ("test_accuracy", "val_accuracy", "train_accuracy", "wall_time_s", "weights",
                "settings"):
        assert key in results
    assert results["settings"]["image_size"] == [16, 16]
    assert (tmp_path / "scratch" / "curves.png").is_file()
    assert (tmp_path / "scratch" / "confusion_matrix.png").is_file()

    out = run("train", "--model", "transfer", "--weights", "none", "--epochs", "1",
              "--image-size", "32", "--data", tiny_archive, "--out", tmp_path / "transfer",
              cache=cache)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "transfer" / "results.json").read_text())
    assert "NOT transfer learning" in results["weights"]
    assert "NOT transfer learning" in out.stdout

    out = run("compare", tmp_path / "scratch", tmp_path / "transfer", "--out", tmp_path / "cmp")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "scratch" in out.stdout and (tmp_path / "cmp" / "comparison.png").is_file()
