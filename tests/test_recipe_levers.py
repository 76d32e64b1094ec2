"""The levers of the from-scratch recipe search: fused BatchNorm, automatic augmentation, the
cosine loss, ensembles and the search itself (issue 19), each on tiny data."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import recipe_search
from resnet_lab import data as data_lib
from resnet_lab import evaluation, training
from resnet_lab.data.synthetic import flowers_like
from resnet_lab.nn import models
from resnet_lab.nn.layers import FusedBatchNormalization

TINY = training.SCRATCH_RECIPE.override(
    image_size=16, stages=((8, 1), (16, 1)), stem_filters=8, epochs=1, learning_rate=0.05
)


def _pair(policy, **kwargs):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        keras_bn = keras.layers.BatchNormalization(**kwargs)
        fused = FusedBatchNormalization(**kwargs)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    return keras_bn, fused


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_batchnorm_computes_what_keras_batchnorm_computes(policy):
    x = tf.constant(np.random.default_rng(0).normal(2, 3, (8, 6, 6, 5)).astype("float32"))
    weights = tf.constant(np.random.default_rng(1).normal(size=x.shape).astype("float32"))
    keras_bn, fused = _pair(policy, momentum=0.9, epsilon=1e-3)
    for layer in (keras_bn, fused):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 1.5, 5))
        layer.beta.assign(np.linspace(-1, 1, 5))
    grads = []
    for layer in (keras_bn, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
        grads.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
        assert y.dtype == ("bfloat16" if policy == "mixed_bfloat16" else "float32")
    tolerance = 2e-2 if policy == "mixed_bfloat16" else 1e-5
    for a, b in zip(*grads):
        np.testing.assert_allclose(np.float32(a), np.float32(b), rtol=tolerance, atol=tolerance)
    # The moving statistics move as Keras moves them (the biased batch variance).
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(
            getattr(fused, name).numpy(), getattr(keras_bn, name).numpy(), rtol=1e-5
        )
    assert not np.allclose(fused.moving_mean.numpy(), 0)
    # Inference mode normalises with them.
    np.testing.assert_allclose(
        np.float32(fused(x, training=False)),
        np.float32(keras_bn(x, training=False)),
        rtol=tolerance,
        atol=tolerance,
    )


def test_fused_batchnorm_falls_back_to_keras_where_the_kernel_does_not_apply():
    x = np.random.default_rng(0).normal(size=(4, 6, 3)).astype("float32")  # 3-D
    keras_bn, fused = _pair("float32")
    np.testing.assert_allclose(fused(x, training=True), keras_bn(x, training=True), atol=1e-5)
    channels_first = FusedBatchNormalization(axis=1)
    assert not channels_first._fusable(tf.zeros((2, 3, 4, 4)), None)


def test_scratch_model_with_fused_batchnorm_is_the_same_function_and_reloads(tmp_path):
    kwargs = dict(image_size=16, stages=((8, 1), (16, 1)), stem_filters=8)
    plain = models.scratch_model(**kwargs, batch_norm="keras")
    fused = models.scratch_model(**kwargs, batch_norm="fused")
    bns = [
        layer for layer in fused.layers[-1].layers if "BatchNormalization" in type(layer).__name__
    ]
    assert bns and all(type(layer) is FusedBatchNormalization for layer in bns)
    names = [layer.name for layer in plain.layers[-1].layers]
    assert [layer.name for layer in fused.layers[-1].layers] == names
    fused.set_weights(plain.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    for training_mode in (False, True):
        np.testing.assert_allclose(
            fused(x, training=training_mode), plain(x, training=training_mode), atol=1e-5
        )
    path = tmp_path / "fused.keras"
    fused.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[-1].get_layer(bns[0].name)) is FusedBatchNormalization
    np.testing.assert_allclose(loaded(x), fused(x), atol=1e-6)
    with pytest.raises(ValueError, match="Received: batch_norm='group'"):
        models.scratch_model(**kwargs, batch_norm="group")
    with pytest.raises(ValueError, match="Received: batch_norm='group'"):
        TINY.override(batch_norm="group")


@pytest.mark.parametrize("kind, ops", [("randaugment", 2), ("trivialaugment", 1)])
def test_auto_augmentation_changes_images_within_range_and_repeats_with_its_seed(kind, ops):
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)).astype("float32")
    layer = data_lib.auto_augmentation(kind, seed=3)
    assert layer.num_ops == ops
    out = np.asarray(layer(images, training=True))
    again = np.asarray(data_lib.auto_augmentation(kind, seed=3)(images, training=True))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, images)
    np.testing.assert_array_equal(out, again)
    np.testing.assert_array_equal(layer(images, training=False), images)
    assert data_lib.auto_augmentation("none") is None
    with pytest.raises(ValueError, match="Received: auto_augment='autoaugment'"):
        data_lib.auto_augmentation("autoaugment")


def test_auto_augmentation_runs_in_the_training_pipeline():
    images, labels, splits = flowers_like(16)
    plain = data_lib.make_datasets(images, labels, splits, seed=0)["train"]
    strong = data_lib.make_datasets(images, labels, splits, seed=0, auto_augment="trivialaugment")[
        "train"
    ]
    augmenters = [layer.name for layer in data_lib.augmentation(0, "trivialaugment").layers]
    assert augmenters[-1] == "trivialaugment"
    (x, y), (x2, y2) = next(iter(plain)), next(iter(strong))
    np.testing.assert_array_equal(y, y2)  # same shuffle: only the pixels differ
    assert x2.shape == x.shape and not np.allclose(x2, x)


def test_cosine_loss_is_blind_to_the_logits_scale_and_zero_at_the_target():
    loss = training.CosineLoss()
    target = np.eye(4, dtype="float32")[[0, 2]]
    logits = np.array([[2.0, 0.5, -1.0, 0.0], [0.0, 1.0, 3.0, -2.0]], "float32")

    def value(scale, the_loss=loss):
        return keras.ops.convert_to_numpy(the_loss(target, keras.ops.softmax(scale * logits)))

    assert value(1.0) == pytest.approx(value(3.0), rel=1e-4)
    perfect = keras.ops.softmax(5.0 * (target - target.mean(-1, keepdims=True)))
    assert float(loss(target, perfect)) == pytest.approx(0.0, abs=1e-5)
    # With 0.1 cross-entropy the scale matters again, by exactly 0.1 x the cross-entropy.
    mixed = training.CosineLoss(crossentropy=0.1)
    ce = keras.ops.convert_to_numpy(
        keras.losses.categorical_crossentropy(target, keras.ops.softmax(logits))
    ).mean()
    assert value(1.0, mixed) == pytest.approx(value(1.0) + 0.1 * ce, rel=1e-4)
    # Serialisable: a saved model's compile config names it.
    restored = keras.losses.deserialize(keras.losses.serialize(mixed))
    assert isinstance(restored, training.CosineLoss) and restored.crossentropy == 0.1


def test_make_loss_picks_the_loss_and_rejects_integer_labels_for_cosine():
    assert training.make_loss() == "sparse_categorical_crossentropy"
    assert isinstance(training.make_loss("cosine", one_hot=True), training.CosineLoss)
    assert training.make_loss("cosine+crossentropy", one_hot=True).crossentropy == 0.1
    with pytest.raises(ValueError, match="one_hot=True. Received: loss='cosine'"):
        training.make_loss("cosine")
    with pytest.raises(ValueError, match="Received: loss='hinge'"):
        TINY.override(loss="hinge")
    assert TINY.override(loss="cosine", cutmix=0.0, label_smoothing=0.0).one_hot


def test_cosine_loss_trains_a_tiny_scratch_model():
    images, labels, splits = flowers_like(16)
    recipe = TINY.override(loss="cosine+crossentropy", label_smoothing=0.0, epochs=4)
    model, results = training.train_scratch(images, labels, splits, recipe, verbose=0)
    assert isinstance(model.loss, training.CosineLoss)
    assert results["val_accuracy"] > 0.5  # colour classes; chance is 1/17


def test_ensemble_accuracy_averages_probabilities():
    labels = np.array([0, 1])
    confident_wrong = np.array([[0.1, 0.9], [0.2, 0.8]])
    mildly_right = np.array([[0.9, 0.1], [0.45, 0.55]])
    assert recipe_search.ensemble_accuracy([confident_wrong], labels) == 0.5
    assert recipe_search.ensemble_accuracy([confident_wrong, mildly_right], labels) == 1.0


def test_candidates_are_recipes_and_ensembles_split_the_epochs():
    for name, changes in recipe_search.CANDIDATES.items():
        recipe, members = recipe_search.candidate_recipe(changes, 30)
        assert isinstance(recipe, training.ScratchRecipe), name
        assert recipe.epochs * members == 30 * changes.get("epochs_factor", 1), name
    assert recipe_search.candidate_recipe({"ensemble": 3}, 30)[0].epochs == 10
    grid = [name for name in recipe_search.CANDIDATES if name.startswith("lr ")]
    assert len(grid) == 8  # a 3 x 3 grid around the recipe's own point ("recipe")


def test_search_reads_validation_only(monkeypatch):
    images, labels, _ = flowers_like(16)
    splits = data_lib.split_indices(labels, seed=1)
    marked = images.copy()
    marked[splits["test"]] = 7  # no flowers_like image is uniform grey 7
    seen = []
    predict = evaluation.predict

    def spy(model, batch, *args, **kwargs):
        seen.append(np.asarray(batch))
        return predict(model, batch, *args, **kwargs)

    monkeypatch.setattr(evaluation, "predict", spy)
    monkeypatch.setattr(recipe_search, "RECIPE", TINY)
    result = recipe_search.run_candidate({"ensemble": 2}, 2, 1, marked, labels)
    assert result["members"] == 2 and len(result["member_val_accuracy"]) == 2
    assert result["epochs"] == 1 and 0 <= result["val_accuracy"] <= 1
    assert seen and not any(
        np.all(batch.reshape(len(batch), -1) == 7, axis=1).any() for batch in seen
    )


def test_summary_and_verdict_tell_a_difference_from_the_seeds_spread():
    runs = [
        {"candidate": c, "seed": s, "proxy_epochs": 5, "val_accuracy": a, "wall_time_s": t}
        for c, s, a, t in [
            ("recipe", 0, 0.60, 10),
            ("recipe", 1, 0.64, 10),
            ("close", 0, 0.62, 20),
            ("close", 1, 0.65, 20),
            ("far", 0, 0.75, 10),
            ("far", 1, 0.74, 10),
            ("other length", 0, 0.99, 10),
        ]
    ]
    runs[-1]["proxy_epochs"] = 6  # another schedule's run is not in this one's table
    rows = recipe_search.summarize(runs, 5)
    assert [row["candidate"] for row in rows] == ["far", "close", "recipe"]
    base = rows[-1]
    assert base["mean"] == pytest.approx(0.62) and base["spread"] == pytest.approx(0.04)
    assert recipe_search.verdict(rows[1], base) == "no difference"  # +1.5 < 4 points
    assert recipe_search.verdict(rows[0], base) == "better"
    table = recipe_search.markdown_table(rows)
    assert (
        "| close | 62.0% / 65.0% | 63.5% | 3.0 | +1.5 | +2.0 / +1.0 | no difference "
        "| 20 s (2.00x) |" in table
    )
    assert recipe_search.paired_differences(rows[0], base) == pytest.approx([0.15, 0.10])
    one_seed = {"candidate": "one", "seeds": [1], "val_accuracy": [0.70]}
    assert recipe_search.paired_differences(one_seed, base) == pytest.approx([0.06])


def test_search_table_at_epochs_without_a_recipe_run_names_the_epochs_it_has(tmp_path, capsys):
    runs = [{"candidate": "recipe", "seed": 0, "proxy_epochs": 25, "val_accuracy": 0.6}]
    path = tmp_path / "search.json"
    path.write_text(json.dumps({"runs": [{**runs[0], "wall_time_s": 1.0}]}))
    with pytest.raises(SystemExit) as exit_info:
        recipe_search.main(["--table", "--epochs", "30", "--out", str(path)])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "no recipe run at --epochs 30" in message and "[25]" in message
    recipe_search.main(["--table", "--epochs", "25", "--out", str(path)])
    assert "| recipe | 60.0% |" in capsys.readouterr().out


def test_onednn_profile_sums_each_primitive_per_step():
    from benchmarks import onednn_profile

    log = "\n".join(
        [
            "onednn_verbose,primitive,exec,cpu,convolution,jit,forward,src_bf16::blocked,,9.0",
            onednn_profile.MARK,
            "onednn_verbose,primitive,exec,cpu,convolution,brg,forward,src_bf16::blocked,,3.0",
            "onednn_verbose,primitive,exec,cpu,convolution,brg,backward,src_bf16::blocked,,5.0",
            "onednn_verbose,primitive,exec,cpu,batch_normalization,jit,forward,data_f32,,2.0",
            "onednn_verbose,info,cpu,isa:Intel AVX-512",
            "STEP_MS 12.5",
        ]
    )
    step_ms, spent = onednn_profile.parse(log, steps=2)
    assert step_ms == 12.5  # the warm-up line before the mark is not counted
    assert spent == {("convolution", "bf16"): 4.0, ("batch_normalization", "f32"): 1.0}
