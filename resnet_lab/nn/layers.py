"""The lab's two custom layers, registered so that saved models load after `import resnet_lab`.

`FrozenBatchNormalization` keeps a pretrained backbone's BatchNorm in inference mode whatever
`trainable` and `training` say; `CaffePreprocess` is keras.applications' ResNet-50
`preprocess_input` as a layer. Both use only `keras.ops`, so they run on any Keras backend.
"""

import keras

# Caffe-style preprocessing expected by the ImageNet ResNet-50 weights (He et al. released
# Caffe models): RGB -> BGR, then subtract the ImageNet mean per channel, no scaling.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="resnet_lab")
class FrozenBatchNormalization(keras.layers.BatchNormalization):
    """BatchNorm that always normalises with its moving statistics and never updates them.

    Why a layer and not a flag: in Keras 3 a nested model called as `inner(x,
    training=False)` inside a functional model runs in the *outer* call's mode, so during
    `fit` a BatchNorm layer whose `trainable` is `True` uses batch statistics and updates its
    moving mean and variance, whatever the call site says. Fine-tuning a whole backbone the
    usual way (`model.get_layer("resnet50").trainable = True`) then re-estimates ImageNet
    statistics from 32-image batches of flowers. torchvision's and detectron2's
    `FrozenBatchNorm2d` exist for the same reason (Wu & He 2018, "Group Normalization",
    arXiv:1803.08494, Sec. 2, on BatchNorm with small batches; the keras.io transfer-learning
    guide keeps BatchNorm in inference mode when fine-tuning).

    Unlike torchvision's, `gamma` and `beta` follow `trainable`: in inference mode they are an
    affine map per channel, harmless to fine-tune. The moving statistics are never touched.
    Loads and saves like `BatchNormalization` (same weights, same config).
    """

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=False, mask=mask)


@keras.saving.register_keras_serializable(package="resnet_lab")
class CaffePreprocess(keras.layers.Layer):
    """`keras.applications.resnet50.preprocess_input` as a layer: RGB 0..255 -> BGR - mean.

    Inside the model, so callers pass plain 0..255 images and their arrays are never modified
    (`preprocess_input` itself modifies float arrays in place).
    """

    def call(self, inputs):
        bgr = keras.ops.flip(keras.ops.cast(inputs, self.compute_dtype), axis=-1)
        return bgr - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=self.compute_dtype)


def freeze_batchnorm(model):
    """A copy of `model` whose BatchNormalization layers are `FrozenBatchNormalization`.

    Weights (including the moving statistics) are copied; every other layer is cloned as is,
    so layer names and the graph stay the same.

    Args:
        model: A functional or sequential `keras.Model`.

    Returns:
        A new `keras.Model` with the same name, layers, names and weights.
    """

    def clone(layer):
        config = layer.get_config()
        if type(layer) is keras.layers.BatchNormalization:
            return FrozenBatchNormalization.from_config(config)
        return layer.__class__.from_config(config)

    frozen = keras.models.clone_model(model, clone_function=clone)
    frozen.set_weights(model.get_weights())
    return frozen
