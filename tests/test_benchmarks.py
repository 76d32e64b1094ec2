"""`python -m benchmarks.run --quick` runs every item and writes a complete results.json.

Timing belongs to the benchmarks, not to the tests: nothing here asserts a speed. What is
pinned: every section is there with numbers, every ratio is a positive number, targets are
recorded as booleans, what was not measured says why, and the measuring tools themselves
(FLOP count, peak memory of a child, thread settings) measure what they claim.
"""

import importlib.util
import json
import math
import sys

import pytest
from helpers import run_python

# The quick benchmark run is module-scoped: keep this file on one worker.
pytestmark = pytest.mark.xdist_group("benchmarks")

SECTIONS = (
    "machine",
    "builders",
    "transfer",
    "input_pipeline",
    "cpu_defaults",
    "scratch_speed",
    "machine_limit",
    "end_to_end",
    "gpu",
    "family",
)


def test_items_are_a_registry_of_numbered_modules():
    """Every item is a record: a unique number, a name that is its module's, a results
    section; both modes only set items that exist, and `--only` takes the names."""
    from benchmarks import run

    numbers = [item.number for item in run.ITEMS]
    assert sorted(numbers) == list(range(1, len(run.ITEMS) + 1))
    assert len({item.key for item in run.ITEMS}) == len(run.ITEMS)
    for item in run.ITEMS:
        assert importlib.util.find_spec(f"benchmarks.{item.name}") is not None, item.name
        assert callable(item.run) and callable(item.summary)
    for mode in run.MODES.values():
        assert set(mode) <= set(run.NAMES)
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "e2e"])  # the old name of item 6 is gone


def _leaves(tree, path=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _leaves(value, (*path, str(index)))
    else:
        yield path, tree


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def quick(tmp_path_factory, tiny_archive):
    out = tmp_path_factory.mktemp("benchmarks")
    done = run_python(
        "-m", "benchmarks.run", "--quick", "--data", tiny_archive, "--out", out, timeout=900
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads((out / "results.json").read_text()), done.stdout


@pytest.mark.slow
def test_quick_run_writes_every_section_with_numbers(quick):
    results, _ = quick
    assert results["mode"] == "quick"
    for section in SECTIONS:
        assert section in results, f"results.json lacks {section}"
        numbers = [v for _, v in _leaves(results[section]) if _is_number(v)]
        assert numbers, f"{section} has no numeric field"
    machine = results["machine"]
    assert machine["cpu_model"] and machine["usable_cores"] >= 1
    assert machine["tensorflow"] and machine["keras"]
    assert _is_number(results["total_wall_s"])


@pytest.mark.slow
def test_every_ratio_is_a_positive_number_and_targets_are_booleans(quick):
    results, _ = quick
    ratios = [(p, v) for p, v in _leaves(results) if any("ratio" in k for k in p[-1:])]
    assert len(ratios) >= 10
    for path, value in ratios:
        assert _is_number(value) and value > 0, f"{'/'.join(path)} = {value!r}"
    for key in ("inference", "train_step"):
        assert isinstance(results["builders"][key]["target_met"], bool)
        assert results["builders"][key]["ratio_ours_over_keras"] > 0
    assert isinstance(results["transfer"]["target_met"], bool)
    assert isinstance(results["input_pipeline"]["feeding"]["target_met"], bool)


@pytest.mark.slow
def test_quick_run_checks_and_records_what_it_claims(quick):
    results, stdout = quick
    assert results["transfer"]["feature_check"]["equal"]
    assert "NOT transfer learning" in results["transfer"]["cached"]["weights"]
    for decoded in results["input_pipeline"]["decode"].values():
        assert decoded["is_uint8"] and decoded["cache_bytes"] > 0
    assert results["cpu_defaults"]["recommended"]["line"]
    assert "recommended defaults:" in stdout
    for title in (
        "1. Builders",
        "2. Transfer",
        "3a. Decoding",
        "3b. Training pipeline",
        "4. batch_size",
        "5. Distance",
        "7. GPU",
        "8. One training step",
        "4. whole fit epochs",
    ):
        assert title in stdout
    e2e = results["end_to_end"]
    assert e2e["cli_fetch"]["returncode"] == 0 and e2e["cli_fetch"]["peak_rss_mib"] > 0
    for unmeasured in (e2e["notebook"], e2e["scratch_full"], e2e["transfer_full"], results["gpu"]):
        assert unmeasured["measured"] is False and unmeasured["reason"]
    peer = results["torch_peer"]
    assert peer["status"] == "measured" or (peer["measured"] is False and peer["reason"])
    # The reasons report what this machine has, detected the same way here.
    import tensorflow as tf

    from resnet_lab.nn import porting

    weights = porting.keras_cache_folder() / porting.weights_file("resnet50", include_top=False)
    expected = "ImageNet weights found" if weights.is_file() else "no ImageNet weights"
    assert (
        expected in e2e["transfer_full"]["reason"]
        and str(weights) in e2e["transfer_full"]["reason"]
    )
    gpus = tf.config.list_physical_devices("GPU")
    assert results["gpu"]["gpus_visible"] == len(gpus)
    assert ("sees no GPU" in results["gpu"]["reason"]) == (not gpus)


def test_peak_memory_is_the_childs_own_not_the_parents():
    from benchmarks.end_to_end import measure

    small = measure([sys.executable, "-c", "pass"])
    big = measure([sys.executable, "-c", "b = b'x' * (300 * 2**20)"])
    assert small["returncode"] == 0 and big["returncode"] == 0
    assert small["peak_rss_mib"] < 150
    assert big["peak_rss_mib"] > 300


@pytest.mark.slow
def test_thread_worker_applies_the_setting_before_tensorflow_runs():
    import subprocess

    from helpers import ROOT

    # The worker reads its commands on stdin, which `run_python` does not feed.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.thread_worker",
            "--intra",
            "1",
            "--inter",
            "1",
            "--images",
            "32",
        ],
        cwd=ROOT,
        input="run\nquit\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    ready = json.loads([s for s in lines if s.startswith("READY ")][0][len("READY ") :])
    assert ready["effective"] == [1, 1] and ready["images"] == 32
    times = [float(s.split()[1]) for s in lines if s.startswith("TIME ")]
    assert len(times) == 1 and times[0] > 0


@pytest.mark.slow
def test_scratch_speed_reports_flops_and_the_fraction_of_matmul(quick):
    results, _ = quick
    speed = results["scratch_speed"]
    assert speed["matmul_gflops"]["float32"] > 0
    (entry,) = speed["candidates"].values()
    from resnet_lab import training
    from resnet_lab.nn import costs

    # The FLOPs are the network's own, counted from its layers.
    network = training.SCRATCH_RECIPE.override(
        image_size=64,
        stages=((16, 2), (32, 2), (64, 2)),
        stem_filters=16,
        stem_stride=1,
        dtype_policy="float32",
        batch_norm=entry["batch_norm"],
    ).build_model(17)
    assert entry["forward_gflop_per_image"] == pytest.approx(
        costs.forward_flops(network) / 1e9, abs=1e-4
    )
    assert entry["params"] == network.count_params()
    expected = 3 * entry["forward_gflop_per_image"] * entry["images_per_s"]
    assert entry["train_gflops"] == pytest.approx(expected, rel=0.01)
    assert entry["dtype_policy"] == "float32" and entry["matmul_dtype"] == "float32"
    assert entry["fraction_of_own_dtype_matmul"] == pytest.approx(
        entry["train_gflops"] / speed["matmul_gflops"]["float32"], rel=0.01
    )


def test_scratch_fraction_is_of_the_matmul_the_policy_computes_in():
    """A bfloat16 step is measured against the bfloat16 matmul, not the float32 one."""
    from benchmarks import scratch
    from resnet_lab import hardware

    rates = {"float32": 200.0, "bfloat16": 400.0, "float16": 800.0}
    assert scratch.own_matmul_fraction(100.0, "float32", rates) == ("float32", 0.5)
    assert scratch.own_matmul_fraction(100.0, "mixed_bfloat16", rates) == ("bfloat16", 0.25)
    assert scratch.own_matmul_fraction(100.0, "mixed_float16", rates) == ("float16", 0.125)
    auto = hardware.resolve_dtype_policy("auto")
    assert scratch.own_matmul_fraction(100.0, "auto", rates) == scratch.own_matmul_fraction(
        100.0, auto, rates
    )
    with pytest.raises(ValueError, match="No bfloat16 matmul timed.*mixed_bfloat16"):
        scratch.own_matmul_fraction(100.0, "mixed_bfloat16", {"float32": 200.0})


def test_scratch_recipe_row_is_the_recipes_network_policy_and_batch_norm():
    from benchmarks import scratch
    from benchmarks.train_step import RECIPE
    from resnet_lab import hardware

    entries = {
        f"{name} {policy} {batch_norm}": {
            "network": name,
            "dtype_policy": policy,
            "batch_norm": batch_norm,
            "images_per_s": 100.0,
            "matmul_dtype": scratch.compute_dtype(policy),
            "fraction_of_own_dtype_matmul": 0.5,
            "fraction_of_float32_matmul": 0.75,
        }
        for name in scratch.CANDIDATES
        for policy in scratch.POLICIES
        for batch_norm in scratch.BATCH_NORMS
    }
    row = scratch._recipe_row(entries)
    policy = hardware.resolve_dtype_policy(RECIPE.dtype_policy)
    assert row is not None, "the recipe's network is not among the candidates"
    assert row["dtype_policy"] == policy and row["batch_norm"] == RECIPE.batch_norm
    assert row["key"] == f"{row['network']} {policy} {RECIPE.batch_norm}"
    (line,) = scratch.summary({"recipe": row})
    assert f"50% of the {scratch.compute_dtype(policy)} matmul rate" in line
    others = {k: e for k, e in entries.items() if e["batch_norm"] != RECIPE.batch_norm}
    assert scratch._recipe_row(others) is None


def test_peer_is_not_measured_without_an_interpreter_that_imports_torch(
    tmp_path, monkeypatch, capsys
):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is importable here")
    from benchmarks import peer

    monkeypatch.setenv(peer.TORCH_PYTHON, str(tmp_path / "no-such-python"))
    result = peer.run(lab_steps={"float32": (pytest.fail, 32)})  # must time nothing
    assert result["status"] == "not measured" and result["measured"] is False
    assert result["reason"].startswith("torch is not importable")
    assert "no-such-python" in result["reason"]
    assert "not measured" in capsys.readouterr().out
    assert "not measured" in peer.summary(result)[0]


def test_peer_alternates_with_the_lab_and_reports_medians_and_ratios(tmp_path):
    """A fake peer script stands in for PyTorch; the lab's steps are stand-ins too."""
    import time

    from benchmarks import peer

    fake = tmp_path / "fake_peer.py"
    fake.write_text(
        "import json, sys\n"
        "print('torch warming up')\n"
        "print(json.dumps({'torch': '0.fake', 'threads': 2, 'argv': sys.argv[1:],\n"
        "    'images_per_s': {'float32': 100.0, 'bfloat16': 200.0}}))\n"
    )
    calls = []

    def step(policy):
        def call():
            calls.append(policy)
            time.sleep(0.01)

        return call, 64

    steps = {p: step(p) for p in ("float32", "mixed_bfloat16")}
    result = peer.run(rounds=2, repeats=1, python=sys.executable, script=fake, lab_steps=steps)
    assert result["status"] == "measured" and result["peer"]["torch"] == "0.fake"
    assert calls.count("float32") == 3  # one warm-up, one timed call per round
    command = result["settings"]["peer_command"]
    assert command[command.index("--steps") + 1] == "2"  # 64 images at batch 32
    for dtype, policy, theirs in (
        ("float32", "float32", 100.0),
        ("bfloat16", "mixed_bfloat16", 200.0),
    ):
        row = result["by_dtype"][dtype]
        assert row["lab_dtype_policy"] == policy and row["peer_images_per_s"] == theirs
        assert len(row["lab_images_per_s_rounds"]) == 2
        assert row["ratio_lab_over_peer"] == pytest.approx(
            row["lab_images_per_s"] / theirs, rel=1e-2
        )
    assert "lab / PyTorch 0.fake: float32" in peer.summary(result)[0]
    # The ratio is of the medians over rounds, per compute dtype.
    peers = [{"images_per_s": {"float32": v, "bfloat16": 2 * v}} for v in (100.0, 120.0, 80.0)]
    compared = peer.compare({"float32": [90.0, 150.0, 120.0], "mixed_bfloat16": [300.0]}, peers)
    assert compared["float32"]["ratio_lab_over_peer"] == pytest.approx(1.2)
    assert compared["bfloat16"]["ratio_lab_over_peer"] == pytest.approx(1.5)
    # A failing peer is reported, not raised.
    broken = tmp_path / "broken_peer.py"
    broken.write_text("import sys\nsys.exit('no torch here')\n")
    failed = peer.run(rounds=1, repeats=1, python=sys.executable, script=broken, lab_steps=steps)
    assert failed["status"] == "not measured" and "no torch here" in failed["reason"]


@pytest.mark.slow
def test_time_to_accuracy_runs_the_cli_per_seed_and_budget(tmp_path, tiny_archive):
    """The accuracy-vs-time command end to end on the tiny archive (16 px, 1 epoch per seed
    run): it runs the real CLI, plans each budget's epochs from the first run, and writes the
    JSON, the plot and both tables."""
    from benchmarks import time_to_accuracy as tta
    from resnet_lab import training

    assert tta.epochs_for(600, 60, 10) == 51  # (0.95 * 600 - 60) / 10 = 51
    assert tta.epochs_for(60, 100, 10) == 1  # never less than one epoch
    done = run_python(
        "-m",
        "benchmarks.time_to_accuracy",
        "--data",
        tiny_archive,
        "--out",
        tmp_path,
        "--seeds",
        "0",
        "1",
        "--budgets",
        "0.4",
        "--epochs",
        "1",
        "--image-size",
        "16",
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads((tmp_path / "time_to_accuracy.json").read_text())
    assert results["recipe"]["epochs"] == 1 and results["recipe"]["image_size"] == 16
    assert results["recipe"]["stages"] == [list(s) for s in training.SCRATCH_RECIPE.stages]
    assert [r["seed"] for r in results["seeds"]] == [0, 1]
    for run in results["seeds"]:
        assert run["epochs"] == 1 and "--seed" in run["command"]
        assert 0 <= run["test_accuracy"] <= 1 and run["command_wall_s"] > run["fit_wall_s"] > 0
    summary = results["summary"]["test_accuracy"]
    assert summary["values"] == [r["test_accuracy"] for r in results["seeds"]]
    assert summary["mean"] == pytest.approx(sum(summary["values"]) / 2)
    (budget,) = results["budgets"]
    calibration = results["calibration"]
    assert budget["planned_epochs"] == tta.epochs_for(
        24, calibration["overhead_s"], calibration["epoch_s"]
    )
    assert budget["run"]["epochs"] == (
        1 if budget["reuses_recipe_run"] else budget["planned_epochs"]
    )
    assert isinstance(budget["within_budget"], bool)
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 1000
    assert "mean ± std" in done.stdout and "Test accuracy within a budget" in done.stdout
    (tmp_path / "time_to_accuracy.png").unlink()
    redrawn = run_python("-m", "benchmarks.time_to_accuracy", "--out", tmp_path, "--replot")
    assert redrawn.returncode == 0, redrawn.stderr[-4000:]
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 1000


def _run(epochs, wall, seed=0):
    return {"seed": seed, "epochs": epochs, "command_wall_s": wall, "test_accuracy": 0.5}


def test_time_to_accuracy_curve_puts_the_recipe_run_among_the_budgets(tmp_path):
    """The plot's curve is every budget's run plus the recipe's seed-0 run, once, by time;
    --replot without a finished run exits 2 and names the folder."""
    from benchmarks import time_to_accuracy as tta

    recipe, other = _run(100, 360), _run(100, 350, seed=1)
    short, long = _run(80, 290), _run(160, 580)
    budgets = [{"run": short}, {"run": long}]
    assert tta.curve(budgets, [recipe, other]) == [short, recipe, long]
    reused = [{"run": short}, {"run": recipe}]
    assert tta.curve(reused, [recipe, other]) == [short, recipe]
    assert tta.curve(budgets, [other]) == [short, long]
    assert tta.main(["--out", str(tmp_path), "--replot"]) == 2


@pytest.mark.slow
def test_step_variants_prints_images_per_second_for_each_variant(capsys):
    """`python -m benchmarks.step_variants` times each requested `POLICY:BATCH_NORM` step
    through `harness.interleaved` and prints one positive images/s per variant as JSON."""
    from benchmarks import step_variants

    step_variants.main(["--rounds", "1", "float32:fused", "float32:keras"])
    speeds = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(speeds) == ["float32:fused", "float32:keras"]
    assert all(v > 0 for v in speeds.values())
