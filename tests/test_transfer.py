"""Transfer model: structure, frozen BatchNorm, feature caching, weights download (offline)."""

import hashlib

import h5py
import keras
import numpy as np
import pytest

from flowers_fixture import serve
from resnet_lab import training, transfer
from synthetic import flowers_like

SIZE = 32


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return transfer.build_transfer_model(17, weights=None, input_shape=(SIZE, SIZE, 3))


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3)).astype(np.uint8)


def test_structure_and_trainable_head(model):
    names = [layer.name for layer in model.layers]
    assert names == ["image", "preprocess", "resnet50", "backbone_pool", "head_dropout",
                     "predictions"]
    assert model.get_layer("resnet50").trainable is False
    # Only the head trains: 2048 x 17 kernel + 17 biases.
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 2048 * 17 + 17


def test_preprocessing_matches_keras_and_leaves_input_alone(batch):
    original = batch.copy()
    ours = transfer.CaffePreprocess()(batch.astype("float32"))
    expected = keras.applications.resnet50.preprocess_input(batch.astype("float32"))
    np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-4)
    np.testing.assert_array_equal(batch, original)


def _features(model, x, training_flag):
    return np.asarray(transfer.feature_extractor(model)(x.astype("float32"),
                                                        training=training_flag))


def test_backbone_batchnorm_stays_in_inference_mode(model, batch):
    """Called with training=True, the frozen backbone still gives inference-mode features,
    before and after unfreezing the top stage."""
    np.testing.assert_allclose(_features(model, batch, True), _features(model, batch, False),
                               atol=1e-5)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    transfer.unfreeze_top(clone)
    backbone = clone.get_layer("resnet50")
    bn = [l for l in backbone.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bn and not any(l.trainable for l in bn)
    trainable = {l.name for l in backbone.layers if l.trainable and l.weights}
    assert trainable and all(name.startswith("conv5_") for name in trainable)
    assert "conv5_block3_3_conv" in trainable and "conv4_block6_3_conv" not in trainable
    np.testing.assert_allclose(_features(clone, batch, True), _features(clone, batch, False),
                               atol=1e-5)


def test_cached_features_feed_the_same_head(model, batch):
    """Feature caching is exact: head(cached features) == full model(images)."""
    features = transfer.extract_features(model, batch, verbose=0)
    assert features.shape == (4, 2048) and features.dtype == np.float32
    via_cache = transfer.head_model(model).predict(features, verbose=0)
    direct = training.predict(model, batch)
    np.testing.assert_allclose(via_cache, direct, atol=1e-5)


@pytest.mark.parametrize("cache_features", [True, False])
def test_train_transfer_without_weights_says_so(tmp_path, cache_features):
    images, labels, splits = flowers_like(SIZE)
    small = {k: v[::10] for k, v in splits.items()}
    model, results = transfer.train_transfer(
        images, labels, small, weights=None, head_epochs=1, cache_features=cache_features,
        verbose=0, out_dir=tmp_path,
    )
    assert "NOT transfer learning" in results["weights"]
    assert results["settings"]["cache_features"] is cache_features
    assert (tmp_path / "results.json").is_file()
    assert model.get_layer("resnet50").trainable is False


def test_bad_weights_value():
    with pytest.raises(ValueError, match="Received: weights='imagenet21k'"):
        transfer.build_backbone("imagenet21k")


def _point_keras_at(monkeypatch, tmp_path, url):
    import keras.src.applications.resnet as resnet_module
    import keras.src.backend.config as config

    (tmp_path / "keras_home").mkdir(exist_ok=True)  # get_file falls back to /tmp if absent
    monkeypatch.setattr(resnet_module, "BASE_WEIGHTS_PATH", url + "/")
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return resnet_module


def test_offline_weights_error_names_file_and_place(tmp_path, monkeypatch):
    empty = tmp_path / "www"
    empty.mkdir()
    with serve(empty) as served:
        _point_keras_at(monkeypatch, tmp_path, served.url)
        with pytest.raises(transfer.WeightsUnavailableError) as info:
            transfer.build_backbone("imagenet", (SIZE, SIZE, 3))
    message = str(info.value)
    assert transfer.WEIGHTS_FILE in message and transfer.WEIGHTS_MD5 in message
    assert str(tmp_path / "keras_home" / "models") in message
    assert "weights=None" in message


@pytest.mark.slow
def test_imagenet_weights_come_through_keras_download(tmp_path, monkeypatch):
    """The real `weights="imagenet"` path (Keras' get_file, md5 check, cache, load), served
    from 127.0.0.1 with a weights file this test writes in keras.applications' .h5 format."""
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(1)
    source = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg",
                                         input_shape=(SIZE, SIZE, 3))
    www = tmp_path / "www"
    www.mkdir()
    with h5py.File(www / transfer.WEIGHTS_FILE, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    md5 = hashlib.md5((www / transfer.WEIGHTS_FILE).read_bytes()).hexdigest()
    with serve(www) as served:
        resnet_module = _point_keras_at(monkeypatch, tmp_path, served.url)
        monkeypatch.setitem(resnet_module.WEIGHTS_HASHES, "resnet50", ("unused", md5))
        backbone = transfer.build_backbone("imagenet", (SIZE, SIZE, 3))
        assert len(served.requests) == 1
        transfer.build_backbone("imagenet", (SIZE, SIZE, 3))  # second time: from the cache
        assert len(served.requests) == 1
    assert (tmp_path / "keras_home" / "models" / transfer.WEIGHTS_FILE).is_file()
    for a, b in zip(source.get_weights(), backbone.get_weights()):
        np.testing.assert_array_equal(a, b)
