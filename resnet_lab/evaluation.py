"""Measure a trained classifier: predictions, accuracy per split and per class, confusion.

Every accuracy the lab reports comes from here: inference mode (`model.predict`), clean
images (no augmentation), all images of the split (no dropped last batch).
"""

import numpy as np

from resnet_lab.checks import check_positive_int


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts `matrix[true, predicted]` as a `(num_classes, num_classes)` int array.

    Raises:
        ValueError: If a label or prediction is outside `0 .. num_classes - 1`.
    """
    check_positive_int("num_classes", num_classes)
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    for argument, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"`{argument}` holds classes outside 0..{num_classes - 1}: pass the model's "
                f"class count. Received: num_classes={num_classes}, {argument} in "
                f"{values.min()}..{values.max()}"
            )
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def predict(model, images, batch_size=64, verbose=0, flip_tta=False):
    """Class probabilities for uint8 or float images in 0..255, batch by batch.

    Images are cast to float32 one batch at a time, so a uint8 array is never copied whole.
    With `flip_tta`, each image's probabilities are averaged with its horizontal mirror's
    (test-time augmentation; the training augmentation flips too, so both views are familiar).
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    dataset = dataset.map(lambda x: tf.cast(x, tf.float32)).prefetch(tf.data.AUTOTUNE)
    probabilities = model.predict(dataset, verbose=verbose)
    if flip_tta:
        mirrored = dataset.map(lambda x: tf.reverse(x, axis=[2]))
        probabilities = (probabilities + model.predict(mirrored, verbose=verbose)) / 2
    return probabilities


def num_outputs(model):
    """The class count of a classifier: the size of its output's last axis."""
    return int(model.output_shape[-1])


def evaluate(model, images, labels, num_classes=None, batch_size=64, flip_tta=False):
    """Accuracy, per-class accuracy and confusion matrix in inference mode.

    Args:
        model: A trained classifier taking images in 0..255 (or any inputs it accepts,
            e.g. cached features for a head).
        images: Array `(N, ...)` of model inputs.
        labels: Integer labels `(N,)`.
        num_classes: Number of classes; `None` takes the model's output size, so a CIFAR-10
            run gets a 10x10 matrix and a 100-class model a 100x100 one.
        batch_size: Prediction batch size.
        flip_tta: Average each prediction with the mirrored image's (see `predict`).

    Returns:
        A dict with `accuracy` (float), `per_class_accuracy` (list of floats),
        `confusion_matrix` (nested list of ints) and `predictions` (NumPy int array).
    """
    if num_classes is None:
        num_classes = num_outputs(model)
    labels = np.asarray(labels)
    predictions = predict(model, images, batch_size, flip_tta=flip_tta).argmax(axis=-1)
    matrix = confusion_matrix(labels, predictions, num_classes)
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "per_class_accuracy": [float(a) for a in per_class],
        "confusion_matrix": matrix.tolist(),
        "predictions": predictions,
    }


def evaluate_splits(model, images, labels, splits, num_classes=None, batch_size=64):
    """`evaluate` on every split: `{split: evaluate(...)}` for the index arrays in `splits`."""
    return {
        split: evaluate(model, images[index], labels[index], num_classes, batch_size)
        for split, index in splits.items()
    }


def split_metrics(measured):
    """Results fields from `evaluate` outputs per split: three accuracies, and the test
    split's per-class accuracy, confusion matrix and predictions."""
    return {
        "train_accuracy": measured["train"]["accuracy"],
        "val_accuracy": measured["val"]["accuracy"],
        "test_accuracy": measured["test"]["accuracy"],
        "per_class_accuracy": measured["test"]["per_class_accuracy"],
        "confusion_matrix": measured["test"]["confusion_matrix"],
        "test_predictions": measured["test"]["predictions"],
    }


def classify_files(model, paths, class_names=None, top=3):
    """Top-`top` classes of a classifier for image files of any size and format.

    Each file is decoded as the training images were (`resnet_lab.data.read_image`: upright
    by its EXIF orientation, 8-bit RGB by the meaning of its mode, transparency on white,
    scaled to cover the model's input size, center-cropped; 224x224 when the model takes any
    size), then classified in one batch. Every file is decoded before any is classified, so
    a bad file fails fast.

    Args:
        model: A classifier taking images in 0..255, e.g. a `model.keras` the lab saved.
        paths: Image file paths.
        class_names: One name per class (`resnet_lab.data.CLASS_NAMES` for the flowers);
            `None` names them `class 0`, `class 1`, ...
        top: How many classes to return per file.

    Returns:
        A list of `(path, [(class name, probability), ...])`, best class first.

    Raises:
        ValueError: If a file is missing, a folder, not an image Pillow reads or past its
            decompression-bomb limit (the message names the file), or `class_names` does not
            match the model's outputs.
    """
    from resnet_lab.data import read_image

    check_positive_int("top", top)
    classes = num_outputs(model)
    if class_names is None:
        class_names = [f"class {c}" for c in range(classes)]
    if len(class_names) != classes:
        raise ValueError(
            f"`class_names` must name the model's {classes} classes. "
            f"Received: {len(class_names)} names"
        )
    height, width = model.input_shape[1:3]
    size = (height or 224, width or 224)
    images = np.stack([read_image(path, size) for path in paths])
    probabilities = predict(model, images)
    results = []
    for path, probs in zip(paths, probabilities):
        best = np.argsort(-probs, kind="stable")[:top]
        results.append((str(path), [(class_names[c], float(probs[c])) for c in best]))
    return results
