"""The ResNet family from one set of blocks: exact counts against torchvision, timm and
keras.applications, the V2 port, keras.applications' calling convention, comparable costs."""

import hashlib

import keras
import numpy as np
import pytest
from h5_weights import randomize, save_legacy_h5

from resnet_lab.nn import blocks, costs, models, porting


def counts(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return trainable, sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)


_built = {}


def built(name):
    """Each large model is built once per session: the count and the cost tests share it."""
    if name not in _built:
        _built[name] = getattr(models, name)()
    return _built[name]


# torchvision's `num_params` (weights tables) and "GFLOPS" (= conv + dense multiply-adds of the
# v1.5 networks, to the two published decimals).
TORCHVISION = [
    "resnext50_32x4d",
    "wide_resnet50_2",
    pytest.param("resnext101_32x8d", marks=pytest.mark.slow),
    pytest.param("resnext101_64x4d", marks=pytest.mark.slow),
    pytest.param("wide_resnet101_2", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_counts_and_gflops(name):
    model = built(name)
    expected = {
        "resnext50_32x4d": 25_028_904,
        "resnext101_32x8d": 88_791_336,
        "resnext101_64x4d": 83_455_272,
        "wide_resnet50_2": 68_883_240,
        "wide_resnet101_2": 126_886_696,
    }[name]
    assert counts(model)[0] == expected == costs.PUBLISHED[name]["params"]
    assert round(costs.multiply_adds(model) / 1e9, 2) == costs.PUBLISHED[name]["gflops"]
    assert model.name == name and model.output_shape == (None, 1000)


def test_torchvision_resnet50_gflops_is_the_v15_stride():
    # 4.09 (torchvision) vs 3.86 (the paper's v1): where the bottleneck strides, not BN/ReLU.
    assert round(costs.multiply_adds(models.resnet50(stride_at="v1.5")) / 1e9, 2) == 4.09
    assert round(costs.multiply_adds(models.resnet50()) / 1e9, 2) == 3.86


def test_resnext_block_is_grouped_and_counted_per_group():
    model = built("resnext50_32x4d")
    conv = model.get_layer("conv2_block1_2_conv")
    # Xie et al. 2017, Table 1: conv2 of ResNeXt-50 (32x4d) is 128 channels in 32 groups.
    assert (conv.filters, conv.groups, tuple(conv.kernel.shape)) == (128, 32, (3, 3, 4, 128))
    assert conv.strides == (1, 1) and model.get_layer("conv3_block1_2_conv").strides == (2, 2)
    alone = keras.Model(conv.input, conv.output)
    assert costs.multiply_adds(alone) == 56 * 56 * 128 * (128 // 32) * 3 * 3
    assert built("wide_resnet50_2").get_layer("conv2_block1_2_conv").filters == 128


def test_resnet50d_count_is_timms_arithmetic():
    model = models.resnet50d()
    # timm `resnet50d` = ResNet-50 (torchvision's 25,557,032) with the 7x7x3x64 stem conv and
    # its BN (9,408 + 128) replaced by 3x3 convs 3->32, 32->32, 32->64 with their BNs; the
    # avg-pool shortcuts keep a 1x1 conv of the same shape, so they add nothing.
    deep_stem = (3 * 3 * 3 * 32 + 2 * 32) + (3 * 3 * 32 * 32 + 2 * 32) + (3 * 3 * 32 * 64 + 2 * 64)
    expected = 25_557_032 - (7 * 7 * 3 * 64 + 2 * 64) + deep_stem
    assert counts(model)[0] == expected == 25_576_264 == costs.PUBLISHED["resnet50d"]["params"]
    names = [layer.name for layer in model.layers]
    assert names[1:10] == [
        "conv1_1_conv",
        "conv1_1_bn",
        "conv1_1_relu",
        "conv1_2_conv",
        "conv1_2_bn",
        "conv1_2_relu",
        "conv1_3_conv",
        "conv1_3_bn",
        "conv1_3_relu",
    ]
    assert model.get_layer("conv1_1_conv").strides == (2, 2)
    # Stride 2: 2x2/2 average pool, then a stride-1 1x1 conv; stride 1 (conv2): no pool.
    assert isinstance(model.get_layer("conv3_block1_0_pool"), keras.layers.AveragePooling2D)
    assert model.get_layer("conv3_block1_0_conv").strides == (1, 1)
    assert "conv2_block1_0_pool" not in names and "conv2_block1_0_conv" in names
    assert model.get_layer("conv5_block3_out").output.shape == (None, 7, 7, 2048)


def test_avgpool_shortcut_averages_odd_borders_without_padding():
    inputs = keras.Input((5, 5, 4))
    x = blocks.basic_block(inputs, 8, stride=2, shortcut="avgpool", name="b")
    model = keras.Model(inputs, x)
    pool = keras.Model(inputs, model.get_layer("b_0_pool").output)
    image = np.arange(25, dtype="float32").reshape(1, 5, 5, 1).repeat(4, -1)
    out = np.asarray(pool(image))[0, :, :, 0]
    assert out.shape == (3, 3)
    assert out[0, 0] == np.mean([0, 1, 5, 6]) and out[2, 2] == 24.0  # the corner alone
    assert model.output_shape == (None, 3, 3, 8)


@pytest.mark.parametrize(
    "groups, width_per_group, width", [(1, 64, 64), (32, 4, 128), (32, 8, 256), (1, 128, 128)]
)
def test_bottleneck_width_is_torchvisions_rule(groups, width_per_group, width):
    assert blocks.bottleneck_width(64, groups, width_per_group) == width


def test_grouped_bottleneck_runs_forward_and_backward():
    """TF 2.21 on CPU runs grouped Conv2D forward and backward (gradients are finite)."""
    import tensorflow as tf

    inputs = keras.Input((8, 8, 16))
    model = keras.Model(
        inputs, blocks.bottleneck_block(inputs, 8, stride=2, groups=4, width_per_group=16, name="b")
    )
    assert model.output_shape == (None, 4, 4, 32)
    assert model.get_layer("b_2_conv").groups == 4
    x = tf.random.normal((2, 8, 8, 16), seed=0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True) ** 2)
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"groups": 0}, r"Received: groups=0"),
        ({"width_per_group": 1}, r"Received: filters=4, width_per_group=1"),
    ],
)
def test_bad_group_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        blocks.bottleneck_block(keras.Input((8, 8, 16)), 4, **kwargs)
    with pytest.raises(ValueError, match=r"bottleneck options.*Received: block='basic'"):
        models.resnet18(groups=32)


# keras.applications' ResNetV2, built live (weights=None) and compared.
V2 = [50, pytest.param(101, marks=pytest.mark.slow), pytest.param(152, marks=pytest.mark.slow)]


def keras_names(model):
    # keras leaves the strided shortcuts' 1x1 max pools unnamed (`max_pooling2d_3`).
    return [layer.name for layer in model.layers[1:]]


@pytest.mark.parametrize("depth", V2)
def test_v2_counts_and_names_equal_keras_applications(depth):
    theirs = getattr(keras.applications, f"ResNet{depth}V2")(weights=None)
    ours = getattr(models, f"resnet{depth}v2")()
    assert counts(ours) == counts(theirs)
    names = [layer.name for layer in ours.layers[1:]]
    pools = [(a, b) for a, b in zip(keras_names(theirs), names) if a != b]
    assert len(names) == len(keras_names(theirs))
    assert all(a.startswith("max_pooling2d") and b.endswith("_0_pool") for a, b in pools)
    assert [b for _, b in pools] == [
        f"conv{s}_block{n}_0_pool" for s, n in zip((2, 3, 4), models.IMAGENET_STAGES[depth][1])
    ]
    # Where keras' V2 strides: the last block of conv2..conv4, on the 3x3.
    last = models.IMAGENET_STAGES[depth][1][0]
    assert ours.get_layer(f"conv2_block{last}_2_conv").strides == (2, 2)
    assert ours.get_layer("conv2_block1_2_conv").strides == (1, 1)


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(7).uniform(-1.0, 1.0, (2, 64, 64, 3)).astype("float32")


@pytest.fixture(scope="module")
def source50v2():
    return randomize(
        keras.applications.ResNet50V2(
            weights=None, include_top=False, input_shape=(None, None, 3), pooling="avg"
        ),
        seed=3,
    )


def test_port_resnet50v2_agrees_within_1e4(source50v2, batch):
    target = models.resnet50v2(include_top=False, pooling="avg")
    porting.port_keras_weights(source50v2, target)
    expected = np.asarray(source50v2(batch, training=False))
    assert np.std(expected) > 0.1
    assert porting.max_output_difference(source50v2, target, batch) < 1e-4
    np.testing.assert_array_equal(
        target.get_layer("conv2_block1_3_conv").bias.numpy(),
        source50v2.get_layer("conv2_block1_3_conv").bias.numpy(),
    )


def test_port_resnet50v2_with_top_from_a_weights_file(batch, tmp_path):
    source = randomize(
        keras.applications.ResNet50V2(
            weights=None, input_shape=(64, 64, 3), classes=5, classifier_activation=None
        ),
        seed=4,
    )
    path = tmp_path / "v2.weights.h5"
    source.save_weights(path)
    target = models.resnet50v2(
        weights=str(path), input_shape=(64, 64, 3), classes=5, classifier_activation=None
    )
    assert porting.max_output_difference(source, target, batch) < 1e-4


def test_keras_applications_style_call_works_unchanged():
    model = models.resnet50(
        weights=None, include_top=False, pooling="avg", input_shape=(160, 160, 3)
    )
    assert model.input_shape == (None, 160, 160, 3) and model.output_shape == (None, 2048)
    inputs = keras.Input((96, 96, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    net = models.resnet50v2(include_top=False, input_tensor=x, pooling="max")
    assert net.inputs[0] is inputs and net.output_shape == (None, 2048)
    assert models.resnet18(classes=3, classifier_activation=None).output_shape == (None, 3)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: models.resnet50(weights="imagenet", classes=10), r"`classes` should be 1000"),
        (
            lambda: models.resnet50v2(weights="imagenet", input_shape=(160, 160, 3)),
            r"should be \(224, 224, 3\). Received: input_shape=\(160, 160, 3\)",
        ),
        (lambda: models.resnet50(weights="imagenet_1k"), r"Received: weights='imagenet_1k'"),
        (lambda: models.resnext50_32x4d(weights="imagenet"), r"Received: weights='imagenet'"),
        (lambda: models.resnet50(weights="imagenet", preact=True), r"Received: weights='imagenet'"),
        (
            lambda: models.resnet18(input_tensor=keras.Input((64, 64, 3)), input_shape=(32, 32, 3)),
            r"disagree. Received: input_shape=\(32, 32, 3\)",
        ),
        (lambda: models.resnet18(input_tensor=np.zeros((1, 64, 64, 3))), r"Keras tensor"),
        (lambda: models.resnet50v2(include_top=False, input_shape=(16, 16, 3)), r"at least 32"),
        (lambda: models.resnet18(classes=0), r"Received: classes=0"),
        (lambda: models.resnet_v2(34), r"50, 101, 152. Received: depth=34"),
        (lambda: models.resnet18(stem="tiered"), r"Received: stem='tiered'"),
        (lambda: models.resnet18(shortcut="identity"), r"Received: shortcut='identity'"),
    ],
)
def test_keras_applications_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_pretrained_classifier_activation_must_be_softmax_or_none(tmp_path):
    path = tmp_path / "any.weights.h5"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"Received: classifier_activation='relu'"):
        models.resnet18(weights=str(path), classifier_activation="relu")


def _point_keras_at(monkeypatch, tmp_path, url, name, md5):
    import keras.src.backend.config as config

    (tmp_path / "keras_home").mkdir(exist_ok=True)  # get_file falls back to /tmp if absent
    monkeypatch.setattr(porting, "WEIGHTS_URL", f"{url}/")
    monkeypatch.setitem(porting.WEIGHTS_HASHES, name, (md5, md5))
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def test_imagenet_weights_come_through_keras_get_file(
    source50v2, batch, tmp_path, monkeypatch, serve
):
    """`weights="imagenet"`: keras.applications' file name, get_file's md5 check and cache,
    then the port; served from 127.0.0.1 with random weights in the ImageNet files' layout."""
    www = tmp_path / "www"
    www.mkdir()
    file = porting.weights_file("resnet50v2", include_top=False)
    save_legacy_h5(source50v2, www / file)
    md5 = hashlib.md5((www / file).read_bytes()).hexdigest()
    with serve(www) as served:
        _point_keras_at(monkeypatch, tmp_path, served.url, "resnet50v2", md5)
        target = models.resnet50v2(weights="imagenet", include_top=False, pooling="avg")
        assert served.requests == [f"/{file}"]
        models.resnet50v2(weights="imagenet", include_top=False, pooling="avg")
        assert len(served.requests) == 1, "the second build reads Keras' cache"
    assert porting.max_output_difference(source50v2, target, batch) < 1e-4


def test_offline_imagenet_error_names_file_place_and_md5(tmp_path, monkeypatch, serve):
    www = tmp_path / "www"
    www.mkdir()
    with serve(www) as served:
        _point_keras_at(monkeypatch, tmp_path, served.url, "resnet50", "0" * 32)
        with pytest.raises(porting.WeightsUnavailableError) as info:
            models.resnet50(weights="imagenet", include_top=False)
    message = str(info.value)
    assert porting.weights_file("resnet50", False) in message and "0" * 32 in message
    assert str(tmp_path / "keras_home" / "models") in message and "weights=None" in message


def test_inference_speed_is_images_per_second():
    model = models.cifar_resnet(8, input_shape=(16, 16, 3))
    speed = costs.inference_speed(model, batch_size=4, repeats=2)
    assert isinstance(speed, float) and speed > 0
    any_size = models.build_resnet(stages=((8, 1),), stem_filters=8)
    assert costs.inference_speed(any_size, batch_size=2, repeats=1, image_size=16) > 0
    with pytest.raises(ValueError, match=r"Received: image_size=None"):
        costs.inference_speed(any_size)
    with pytest.raises(ValueError, match=r"Received: repeats=0"):
        costs.inference_speed(model, repeats=0)


def test_published_table_names_its_sources():
    assert {"resnet50", "resnext50_32x4d", "resnet50d", "resnet50v2", "vgg16"} <= set(
        costs.PUBLISHED
    )
    assert all(row["source"] and row["params"] > 0 for row in costs.PUBLISHED.values())
