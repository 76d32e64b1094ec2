"""Transfer model on the lab's own ResNet-50: structure, BatchNorm that stays frozen however the
backbone is unfrozen, feature caching, ImageNet weights through Keras' download (offline)."""

import hashlib

import keras
import numpy as np
import pytest
from h5_weights import save_legacy_h5

import resnet_lab
from resnet_lab import evaluation, transfer
from resnet_lab.data.synthetic import flowers_like
from resnet_lab.nn import porting
from resnet_lab.nn.layers import CaffePreprocess, FrozenBatchNormalization

SIZE = 32


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return transfer.build_transfer_model(17, weights=None, input_shape=(SIZE, SIZE, 3))


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3)).astype(np.uint8)


def backbone_batchnorms(model):
    layers = model.get_layer("resnet50").layers
    return [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]


def bn_statistics(model):
    return [
        np.array(v)
        for bn in backbone_batchnorms(model)
        for v in (bn.moving_mean, bn.moving_variance)
    ]


def fresh_copy(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def one_fit_step(model, batch):
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.fit(
        batch.astype("float32"), np.arange(len(batch)), batch_size=len(batch), epochs=1, verbose=0
    )


def test_structure_and_trainable_head(model):
    names = [layer.name for layer in model.layers]
    assert names == [
        "image",
        "preprocess",
        "resnet50",
        "backbone_pool",
        "head_dropout",
        "predictions",
    ]
    assert model.get_layer("resnet50").trainable is False
    # Only the head trains: 2048 x 17 kernel + 17 biases.
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 2048 * 17 + 17


def test_backbone_is_the_labs_resnet50_with_frozen_batchnorm(model):
    backbone = model.get_layer("resnet50")
    reference = resnet_lab.resnet50(include_top=False, pooling="avg", input_shape=(SIZE, SIZE, 3))
    assert [layer.name for layer in backbone.layers] == [layer.name for layer in reference.layers]
    convs = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and not any(layer.use_bias for layer in convs)
    bns = backbone_batchnorms(model)
    assert len(bns) == 53 and all(type(bn) is FrozenBatchNormalization for bn in bns)
    assert "conv5_block3_out" in [layer.name for layer in backbone.layers]  # for Grad-CAM


def test_preprocessing_matches_keras_and_leaves_input_alone(batch):
    original = batch.copy()
    ours = CaffePreprocess()(batch.astype("float32"))
    expected = keras.applications.resnet50.preprocess_input(batch.astype("float32"))
    np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-4)
    np.testing.assert_array_equal(batch, original)


def test_keras_runs_a_nested_model_in_the_outer_calls_mode():
    """The Keras 3 behaviour that `FrozenBatchNormalization` exists for. If this test fails,
    Keras changed: `inner(x, training=False)` would then be enough on its own."""
    inner = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, inner(inputs, training=False))
    outer(np.full((8, 4), 5.0, "float32"), training=True)
    assert np.all(np.array(inner.layers[0].moving_mean) > 0), "the moving mean did not move"


@pytest.mark.parametrize("unfreeze", ["whole backbone", "every layer", "lab: unfreeze_top"])
def test_fit_with_the_backbone_unfrozen_leaves_batchnorm_statistics_alone(model, batch, unfreeze):
    clone = fresh_copy(model)
    backbone = clone.get_layer("resnet50")
    if unfreeze == "whole backbone":
        backbone.trainable = True  # the usual user's way
    elif unfreeze == "every layer":
        backbone.trainable = True
        for layer in backbone.layers:
            layer.trainable = True
    else:
        transfer.unfreeze_top(clone)
    if unfreeze == "every layer":
        assert all(bn.trainable for bn in backbone_batchnorms(clone))
    before = bn_statistics(clone)
    kernel = np.array(backbone.get_layer("conv5_block3_3_conv").kernel)
    one_fit_step(clone, batch)
    for old, new in zip(before, bn_statistics(clone)):
        np.testing.assert_array_equal(old, new)
    # The step did train the unfrozen convolutions.
    assert not np.array_equal(kernel, np.array(backbone.get_layer("conv5_block3_3_conv").kernel))


def test_plain_batchnorm_would_move(model, batch):
    """The same fit step on a backbone with ordinary BatchNorm moves the statistics: the test
    above can fail."""
    clone = fresh_copy(model)
    backbone = clone.get_layer("resnet50")
    plain = keras.models.clone_model(
        backbone,
        clone_function=lambda layer: (
            keras.layers.BatchNormalization.from_config(layer.get_config())
            if isinstance(layer, FrozenBatchNormalization)
            else layer.__class__.from_config(layer.get_config())
        ),
    )
    plain.set_weights(backbone.get_weights())
    inputs = keras.Input((SIZE, SIZE, 3))
    x = CaffePreprocess()(inputs)
    x = plain(x, training=False)
    outer = keras.Model(inputs, keras.layers.Dense(17, activation="softmax")(x))
    plain.trainable = True
    for layer in plain.layers:
        layer.trainable = True
    before = [
        np.array(bn.moving_mean)
        for bn in plain.layers
        if isinstance(bn, keras.layers.BatchNormalization)
    ]
    one_fit_step(outer, batch)
    after = [
        np.array(bn.moving_mean)
        for bn in plain.layers
        if isinstance(bn, keras.layers.BatchNormalization)
    ]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_unfreeze_top_trains_only_conv5_convolutions(model):
    clone = fresh_copy(model)
    transfer.unfreeze_top(clone)
    backbone = clone.get_layer("resnet50")
    trainable = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert trainable and all(name.startswith("conv5_") for name in trainable)
    assert "conv5_block3_3_conv" in trainable and "conv4_block6_3_conv" not in trainable
    assert not any(bn.trainable for bn in backbone_batchnorms(clone))


def test_saved_transfer_model_loads_with_frozen_batchnorm(model, batch, tmp_path):
    path = tmp_path / "transfer.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert all(type(bn) is FrozenBatchNormalization for bn in backbone_batchnorms(loaded))
    np.testing.assert_allclose(
        evaluation.predict(loaded, batch), evaluation.predict(model, batch), atol=1e-6
    )


def test_cached_features_feed_the_same_head(model, batch):
    """Feature caching is exact: head(cached features) == full model(images)."""
    features = transfer.extract_features(model, batch)
    assert features.shape == (4, 2048) and features.dtype == np.float32
    via_cache = transfer.head_model(model).predict(features, verbose=0)
    direct = evaluation.predict(model, batch)
    np.testing.assert_allclose(via_cache, direct, atol=1e-5)


@pytest.fixture(scope="module")
def head_runs():
    images, labels, splits = flowers_like(SIZE)
    small = {k: v[::8] for k, v in splits.items()}  # 85 / 51 / 51 images
    runs = {}
    for cache in (True, False):
        settings = transfer.TransferSettings(
            weights=None,
            image_size=SIZE,
            head_epochs=2,
            dropout=0.0,
            batch_size=16,
            cache_features=cache,
        )
        model, results = transfer.train_transfer(images, labels, small, settings, verbose=0)
        runs[cache] = (model, results)
    return runs


def test_cached_and_uncached_heads_train_the_same(head_runs):
    """Same batches, same order, same head: the two paths give the same head weights."""
    (cached, cached_results), (uncached, uncached_results) = head_runs[True], head_runs[False]
    for a, b in zip(
        cached.get_layer("predictions").get_weights(),
        uncached.get_layer("predictions").get_weights(),
    ):
        np.testing.assert_allclose(a, b, atol=2e-4)
    np.testing.assert_allclose(
        cached_results["history"]["loss"], uncached_results["history"]["loss"], rtol=1e-3
    )
    assert cached_results["settings"]["head_augmentation"] is False
    # The settings are the object's own fields, and what the run adds.
    settings = cached_results["settings"]
    assert set(transfer.TransferSettings.field_names()) <= set(settings)
    assert (
        settings["cache_features"],
        settings["head_epochs"],
        settings["image_size"],
        settings["fine_tune_stages"],
    ) == (True, 2, [SIZE, SIZE], ["conv5"])


def test_train_transfer_without_weights_says_so(head_runs, tmp_path):
    _, results = head_runs[True]
    assert "NOT transfer learning" in results["weights"]
    assert results["settings"]["backbone"].startswith("resnet_lab.resnet50")
    assert 0.0 <= results["head_val_accuracy"] <= 1.0


def test_bad_weights_value():
    with pytest.raises(ValueError, match="Received: weights='imagenet21k'"):
        transfer.build_transfer_model(17, weights="imagenet21k")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"head_epochs": 0}, "Received: head_epochs=0"),
        ({"fine_tune_epochs": -1}, "Received: fine_tune_epochs=-1"),
        ({"batch_size": True}, "Received: batch_size=True"),
        ({"image_size": 31}, "must be >= 32 .*Received: image_size=31"),
        ({"head_epoch": 3}, r"Unknown TransferSettings fields \['head_epoch'\]; allowed: "),
    ],
)
def test_transfer_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        transfer.TransferSettings(weights=None).override(kwargs)


def test_train_transfer_rejects_images_of_another_size():
    images, labels, splits = flowers_like(SIZE)
    with pytest.raises(ValueError, match=r"Images must be 224x224 .*Received: images.shape="):
        transfer.train_transfer(images, labels, splits, transfer.TransferSettings(weights=None))


# The file `weights="imagenet"` downloads for the backbone: ResNet-50 without its top.
WEIGHTS_FILE = porting.weights_file("resnet50", include_top=False)
WEIGHTS_MD5 = porting.WEIGHTS_HASHES["resnet50"][1]


def _point_keras_at(monkeypatch, tmp_path, url, md5=WEIGHTS_MD5):
    import keras.src.backend.config as config

    (tmp_path / "keras_home").mkdir(exist_ok=True)  # get_file falls back to /tmp if absent
    monkeypatch.setattr(porting, "WEIGHTS_URL", f"{url}/")
    monkeypatch.setitem(porting.WEIGHTS_HASHES, "resnet50", (md5, md5))
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def test_offline_weights_error_names_file_and_place(tmp_path, monkeypatch, serve):
    empty = tmp_path / "www"
    empty.mkdir()
    with serve(empty) as served:
        _point_keras_at(monkeypatch, tmp_path, served.url)
        with pytest.raises(porting.WeightsUnavailableError) as info:
            transfer.build_transfer_model(17, "imagenet", (SIZE, SIZE, 3))
    assert served.requests == [f"/{WEIGHTS_FILE}"]
    message = str(info.value)
    assert WEIGHTS_FILE in message and WEIGHTS_MD5 in message
    assert str(tmp_path / "keras_home" / "models") in message
    assert "weights=None" in message


@pytest.mark.slow
def test_imagenet_weights_come_through_keras_download_into_the_labs_network(
    tmp_path, monkeypatch, serve
):
    """The real `weights="imagenet"` path (Keras' get_file, md5 check, cache, port into the
    lab's ResNet-50), served from 127.0.0.1 with a random weights file in keras.applications'
    layout: the lab's backbone gives keras.applications' features within 1e-4."""
    keras.utils.set_random_seed(1)
    source = keras.applications.ResNet50(
        include_top=False, weights=None, pooling="avg", input_shape=(SIZE, SIZE, 3)
    )
    rng = np.random.default_rng(1)
    for layer in source.layers:  # non-trivial BN statistics and conv biases to fold
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
        elif isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(rng.normal(0, 0.5, layer.bias.shape))
    www = tmp_path / "www"
    www.mkdir()
    save_legacy_h5(source, www / WEIGHTS_FILE)
    md5 = hashlib.md5((www / WEIGHTS_FILE).read_bytes()).hexdigest()
    with serve(www) as served:
        _point_keras_at(monkeypatch, tmp_path, served.url, md5)
        model = transfer.build_transfer_model(17, "imagenet", (SIZE, SIZE, 3))
        assert served.requests == [f"/{WEIGHTS_FILE}"]
        transfer.build_transfer_model(17, "imagenet", (SIZE, SIZE, 3))  # now from the cache
        assert len(served.requests) == 1
    assert (tmp_path / "keras_home" / "models" / WEIGHTS_FILE).is_file()
    backbone = model.get_layer(transfer.BACKBONE)
    assert all(type(bn) is FrozenBatchNormalization for bn in backbone_batchnorms(model))
    x = keras.applications.resnet50.preprocess_input(
        rng.uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    )
    expected = np.asarray(source(x, training=False))
    assert np.std(expected) > 0.1
    np.testing.assert_allclose(
        np.asarray(backbone(x, training=False)), expected, atol=1e-4, rtol=1e-4
    )
