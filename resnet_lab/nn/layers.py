"""The lab's custom layers, registered so that saved models load after `import resnet_lab`.

`FrozenBatchNormalization` keeps a pretrained backbone's BatchNorm in inference mode whatever
`trainable` and `training` say; `CaffePreprocess` is keras.applications' ResNet-50
`preprocess_input` as a layer. Both use only `keras.ops`, so they run on any Keras backend.
`FusedBatchNormalization` is the one exception: on TensorFlow it calls TensorFlow's fused
kernel (the from-scratch recipe's speed, `benchmarks/README.md` item 8), and Keras' own
BatchNorm on any other backend.
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


def replace_batchnorm(model, layer_class):
    """A copy of `model` whose `BatchNormalization` layers are `layer_class` layers.

    Weights (including the moving statistics) are copied; every other layer is cloned as is,
    so layer names and the graph stay the same.

    Args:
        model: A functional or sequential `keras.Model`.
        layer_class: A `BatchNormalization` subclass with the same config and weights
            (`FrozenBatchNormalization`, `FusedBatchNormalization`).

    Returns:
        A new `keras.Model` with the same name, layers, names and weights.
    """

    def clone(layer):
        config = layer.get_config()
        if type(layer) is keras.layers.BatchNormalization:
            return layer_class.from_config(config)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def freeze_batchnorm(model):
    """A copy of `model` whose BatchNormalization layers are `FrozenBatchNormalization`
    (`replace_batchnorm`): same name, layers, names and weights."""
    return replace_batchnorm(model, FrozenBatchNormalization)


# What TensorFlow's fused kernel accepts: 4-D NHWC inputs in these dtypes (float32 statistics).
_FUSED_DTYPES = ("float32", "bfloat16", "float16")


@keras.saving.register_keras_serializable(package="resnet_lab")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """BatchNorm through TensorFlow's fused kernel, in the input's dtype: Keras 2's fast path.

    Keras 3's `BatchNormalization` computes moments and the normalisation as separate ops,
    and under a mixed policy casts bfloat16 inputs to float32 and the result back: on a
    2-core AVX-512 BF16 CPU that costs about a third of the from-scratch recipe's bfloat16
    training step (`benchmarks/README.md`, item 8). TensorFlow's `FusedBatchNormV3` (which
    oneDNN implements for bfloat16) takes the bfloat16 activations with float32 scale,
    offset and statistics, and returns bfloat16: one op forward, one backward, no casts.

    The same layer otherwise: same weights, config, momentum and epsilon, the moving
    statistics updated as Keras updates them (with the biased batch variance, as Keras does;
    the kernel returns the unbiased one, rescaled here by `(n - 1) / n`), and Keras' own
    path wherever the kernel does not apply (another backend, inputs that are not 4-D with
    channels last, a mask, renorm or synchronised statistics). Ioffe & Szegedy 2015 define
    the transform (arXiv:1502.03167, Algorithm 1).
    """

    def _fusable(self, inputs, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # the fused kernel is TensorFlow's; _fusable checked the backend

        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones((channels,), tf.float32)
        offset = self.beta if self.center else tf.zeros((channels,), tf.float32)
        batch_statistics = bool(training and self.trainable)
        # Training: the kernel computes the batch's statistics (and wants empty ones given);
        # inference: it normalises with the moving ones.
        empty = tf.constant([], tf.float32)
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=tf.convert_to_tensor(scale, tf.float32),
            offset=tf.convert_to_tensor(offset, tf.float32),
            mean=empty if batch_statistics else tf.convert_to_tensor(self.moving_mean),
            variance=empty if batch_statistics else tf.convert_to_tensor(self.moving_variance),
            # The kernel's own floor on epsilon (tf.nn.fused_batch_norm raises smaller ones).
            epsilon=max(self.epsilon, 1.001e-5),
            exponential_avg_factor=1.0,
            data_format="NHWC",
            is_training=batch_statistics,
        )
        if batch_statistics:
            count = tf.cast(tf.size(inputs) // channels, tf.float32)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1 - self.momentum)
            )
        return keras.ops.cast(outputs, self.compute_dtype)
