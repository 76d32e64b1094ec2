"""Training helpers: optimizer, metrics, atomic results, a run that learns, distribution."""

import dataclasses
import json

import keras
import numpy as np
import pytest
from helpers import run_python

from resnet_lab import results as results_lib
from resnet_lab import training
from resnet_lab.data.synthetic import flowers_like

TINY = training.SCRATCH_RECIPE.override(
    image_size=16,
    stages=((8, 1), (16, 1)),
    stem_filters=8,
    epochs=3,
    batch_size=32,
    learning_rate=0.05,
)


def test_optimizer_warms_up_then_decays():
    opt = training.make_optimizer(
        "sgd", learning_rate=0.1, epochs=10, steps_per_epoch=10, warmup_epochs=2
    )
    lr = opt._learning_rate  # the schedule (`learning_rate` is its current value)
    assert float(lr(0)) == pytest.approx(0.0)
    assert float(lr(20)) == pytest.approx(0.1, rel=1e-3)
    assert float(lr(60)) < float(lr(30)) < 0.1
    assert float(lr(100)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_weight_decay_shrinks_kernels_only(name):
    """One step with zero gradients: only decoupled weight decay moves anything, and it must
    move the kernels and leave BatchNorm's gamma/beta and the biases alone (SGD is the
    recipe's optimizer, so its path is the one that matters)."""
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.Conv2D(2, 3),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    for variable in model.trainable_variables:
        variable.assign(np.ones(variable.shape, "float32"))
    opt = training.make_optimizer(
        name, learning_rate=0.1, weight_decay=0.5, epochs=10, steps_per_epoch=10, warmup_epochs=0
    )
    before = {v.path: np.array(v) for v in model.trainable_variables}
    opt.apply_gradients([(np.zeros(v.shape, "float32"), v) for v in model.trainable_variables])
    changed = {
        v.path.split("/")[-1]
        for v in model.trainable_variables
        if not np.allclose(np.array(v), before[v.path])
    }
    assert changed == {"kernel"}
    kernels = [v for v in model.trainable_variables if v.path.endswith("kernel")]
    assert len(kernels) == 2 and all(np.all(np.array(k) < 1.0) for k in kernels)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "rmsprop"}, "optimizer='rmsprop'"),
        ({"learning_rate": 0}, "learning_rate=0"),
        ({"epochs": 0}, "epochs=0"),
    ],
)
def test_optimizer_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.make_optimizer(**kwargs)


def test_save_results_is_atomic(tmp_path):
    path = results_lib.save_results({"a": np.float32(0.5), "b": np.arange(3)}, tmp_path / "r.json")
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2]}
    with pytest.raises(TypeError):
        results_lib.save_results({"a": object()}, tmp_path / "r.json")
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2]}  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temp left over


def test_atomic_writes_get_the_mode_a_plain_open_gives(tmp_path):
    """The temporary file is private (mkstemp); the written file must not stay that way."""
    import os

    mask = os.umask(0o022)
    try:
        path = results_lib.save_results({"a": 1}, tmp_path / "new.json")
        assert path.stat().st_mode & 0o777 == 0o644
        path.chmod(0o600)  # a file the user made private stays private when rewritten
        results_lib.save_results({"a": 2}, path)
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(mask)


def test_save_model_is_atomic(tmp_path):
    """A save that fails half-way leaves the previous model file and no partial file."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    path = training.save_model(model, tmp_path / "model.keras")
    before = path.read_bytes()

    class Unsaveable(keras.layers.Layer):
        def get_config(self):
            raise RuntimeError("cannot save")

    broken = keras.Sequential([keras.Input((2,)), Unsaveable()])
    with pytest.raises(RuntimeError, match="cannot save"):
        training.save_model(broken, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_scratch_run_learns_and_reports(tmp_path):
    images, labels, splits = flowers_like(16)
    model, results = training.train_scratch(
        images, labels, splits, TINY, verbose=0, out_dir=tmp_path
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["test_accuracy"] == results["test_accuracy"]
    assert len(results["history"]["accuracy"]) == TINY.epochs
    assert results["settings"]["split_sizes"] == {"train": 680, "val": 340, "test": 340}
    assert results["settings"]["recipe"]["stages"] == [[8, 1], [16, 1]]
    # The settings are the recipe's own fields, not a restated list: the fit fields at the
    # top, the network fields under "recipe", and what the run adds.
    fit = set(training.FitSettings.field_names())
    added = {"seed", "image_size", "split_sizes", "replicas", "recipe", "dtype_policy_used"}
    assert set(results["settings"]) == fit | added
    assert set(results["settings"]["recipe"]) == set(TINY.network_fields())
    assert {k: results["settings"][k] for k in fit} == TINY.as_json(sorted(fit))
    # Colour classes are easy: far above chance (1/17 = 5.9%) on every split.
    assert min(results[f"{s}_accuracy"] for s in ("train", "val", "test")) > 0.5
    matrix = np.array(results["confusion_matrix"])
    assert matrix.shape == (17, 17) and matrix.sum() == 340
    assert model.get_layer("rescale").scale == pytest.approx(1 / 255)
    # The trained model is saved and loads with Keras alone, predicting the same.
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    x = images[splits["test"][:8]].astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_progress_prints_a_line_every_n_epochs_and_the_last(capsys):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.zeros((8, 2), "float32"), np.zeros(8, "int32")
    verbose, callbacks = training.fit_verbosity("summary", name="demo", every=10)
    model.fit(x, y, epochs=25, verbose=verbose, callbacks=callbacks)
    lines = [s for s in capsys.readouterr().out.splitlines() if s.startswith("demo epoch")]
    assert [s.split()[2].rstrip(":") for s in lines] == ["10/25", "20/25", "25/25"]
    assert "accuracy" in lines[-1]
    with pytest.raises(ValueError, match="Received: verbose=3"):
        training.fit_verbosity(3)


def test_scratch_rejects_wrong_size_and_anything_but_a_recipe():
    images, labels, splits = flowers_like(16)
    with pytest.raises(ValueError, match="Received: images.shape=.*16, 16"):
        training.train_scratch(images, labels, splits, TINY.override(image_size=32))
    with pytest.raises(TypeError, match="must be a `ScratchRecipe`"):
        training.train_scratch(images, labels, splits, {"image_size": 16})


def test_recipe_is_frozen_and_overrides_are_checked():
    recipe = training.SCRATCH_RECIPE
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.epochs = 5
    changed = recipe.override({"cutmix": 0}, epochs=5)
    assert (changed.cutmix, changed.epochs, recipe.epochs) == (0, 5, 100)
    with pytest.raises(
        ValueError,
        match=r"Unknown ScratchRecipe fields \['lr'\]; allowed: "
        r"\['augment', 'auto_augment', 'batch_norm', 'batch_size', .*Received: lr=0.1",
    ):
        recipe.override(lr=0.1)
    with pytest.raises(ValueError, match="Received: epochs=0"):
        recipe.override(epochs=0)
    with pytest.raises(ValueError, match="Received: optimizer='rmsprop'"):
        training.FitSettings(optimizer="rmsprop")
    assert recipe.override(stages=[[8, 1]]).stages == ((8, 1),)  # JSON lists -> tuples
    # The total stride: the stem's, then one 2 per stage after the first.
    assert recipe.min_image_size == recipe.stem_stride * 2 ** (len(recipe.stages) - 1) == 8
    assert recipe.override(stem_stride=1, stages=((8, 1),)).min_image_size == 1


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    """A real `tf.distribute.MirroredStrategy` run, in a fresh process (devices are fixed at
    TensorFlow start-up)."""
    out = run_python(
        code=f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from resnet_lab import training
        from resnet_lab.data.synthetic import flowers_like
        images, labels, splits = flowers_like(16)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        recipe = training.SCRATCH_RECIPE.override(image_size=16, stages=((8, 1),),
                                                  stem_filters=8, epochs=2)
        _, results = training.train_scratch(images, labels, splits, recipe,
            strategy=strategy, verbose=0, out_dir={str(tmp_path)!r})
        print("REPLICAS", results["settings"]["replicas"], results["train_accuracy"])
    """,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(s for s in out.stdout.splitlines() if s.startswith("REPLICAS"))
    assert line.split()[1] == "2"
    assert float(line.split()[2]) > 1 / 17
    assert (tmp_path / "results.json").is_file()


def test_label_smoothing_loss_is_the_smoothed_cross_entropy():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    training.compile_model(model, keras.optimizers.SGD(0.0), one_hot=True, label_smoothing=0.3)
    x = np.array([[1.0, -1.0], [0.5, 2.0]], "float32")
    y = np.eye(3, dtype="float32")[[0, 2]]
    probs = model.predict(x, verbose=0)
    smoothed = y * 0.7 + 0.3 / 3
    expected = np.mean(-np.sum(smoothed * np.log(probs), axis=1))
    assert model.evaluate(x, y, verbose=0)[0] == pytest.approx(expected, rel=1e-4)


def test_ema_leaves_the_averaged_weights_in_the_model():
    """With `ema`, fit ends with the moving average of the weights swapped in: not the last
    iterate. Checked against the optimizer's own average, and against a run without it."""

    def run(ema):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
        opt = training.make_optimizer(
            "sgd",
            learning_rate=0.5,
            weight_decay=0,
            epochs=5,
            steps_per_epoch=4,
            warmup_epochs=0,
            ema=ema,
        )
        training.compile_model(model, opt)
        x = np.random.default_rng(0).normal(size=(32, 2)).astype("float32")
        model.fit(
            x, (x[:, 0] > 0).astype("int32"), batch_size=8, epochs=5, verbose=0, shuffle=False
        )
        return model, opt

    averaged, opt = run(0.9)
    last, _ = run(None)
    assert opt.use_ema
    np.testing.assert_allclose(
        np.array(averaged.layers[0].kernel),
        np.array(opt._model_variables_moving_average[0]),
        atol=1e-6,
    )
    assert not np.allclose(np.array(averaged.layers[0].kernel), np.array(last.layers[0].kernel))
    with pytest.raises(ValueError, match="Received: ema=1.5"):
        training.make_optimizer(ema=1.5)


def test_scratch_recipe_with_tricks_runs_and_reports_flip_tta(tmp_path):
    images, labels, splits = flowers_like(16)
    recipe = TINY.override(
        epochs=2, label_smoothing=0.1, mixup=0.2, ema=0.9, stages=((16, 1),), stem_filters=16
    )
    model, results = training.train_scratch(
        images, labels, splits, recipe, verbose=0, out_dir=tmp_path
    )
    assert results["settings"]["label_smoothing"] == 0.1 and results["settings"]["ema"] == 0.9
    assert set(results["flip_tta_accuracy"]) == {"val", "test"}
    assert 0 <= results["flip_tta_accuracy"]["test"] <= 1
    assert keras.saving.load_model(tmp_path / "model.keras").output_shape == (None, 17)


def test_one_seed_fixes_weights_batches_augmentation_and_cutmix():
    """What `--seed` reaches: the initial weights, the shuffled and augmented batches and the
    CutMix boxes and partners; another seed changes each of them."""
    from resnet_lab import data

    images, labels, splits = flowers_like(16)

    def draw(seed):
        training.set_seed(seed)
        model = TINY.override(stages=((16, 1),), stem_filters=16).build_model(17)
        batches = data.make_datasets(images, labels, splits, batch_size=32, seed=seed)["train"]
        mixed = data.cutmix(data.one_hot_labels(batches, 17), 1.0, seed)
        x, y = next(iter(mixed))
        return model.get_weights()[0], x.numpy(), y.numpy()

    first, again, other = draw(0), draw(0), draw(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first, other):
        assert not np.array_equal(a, b)
