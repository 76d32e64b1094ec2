"""Measuring: class counts from the model, confusion matrices, per-class accuracy."""

import keras
import numpy as np
import pytest
from helpers import fixed_classifier

from resnet_lab import evaluation


def constant_classifier(num_classes, predicted, size=8):
    """`fixed_classifier` that always predicts `predicted` (probability ~0.99)."""
    probabilities = np.full(num_classes, 0.01 / (num_classes - 1))
    probabilities[predicted] = 0.99
    return fixed_classifier(probabilities, size)


@pytest.mark.parametrize("num_classes", [10, 17, 30])
def test_evaluate_takes_the_class_count_from_the_model(num_classes):
    model = constant_classifier(num_classes, predicted=num_classes - 1)
    images = np.zeros((6, 8, 8, 3), "uint8")
    labels = np.array([0, 1, 2, 3, num_classes - 1, num_classes - 1])
    measured = evaluation.evaluate(model, images, labels)
    matrix = np.array(measured["confusion_matrix"])
    assert matrix.shape == (num_classes, num_classes)
    assert matrix[:, num_classes - 1].sum() == 6 and measured["accuracy"] == pytest.approx(2 / 6)
    assert len(measured["per_class_accuracy"]) == num_classes
    assert measured["per_class_accuracy"][num_classes - 1] == 1.0


def test_confusion_matrix_counts_and_rejects_out_of_range():
    matrix = evaluation.confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    with pytest.raises(ValueError, match=r"Received: num_classes=3, y_true in 0..5"):
        evaluation.confusion_matrix([0, 5], [0, 1], 3)


def test_evaluate_splits_measures_every_split():
    model = constant_classifier(4, predicted=2)
    images = np.zeros((8, 8, 8, 3), "uint8")
    labels = np.array([2, 2, 0, 1, 2, 3, 2, 2])
    splits = {"train": np.arange(4), "val": np.arange(4, 6), "test": np.arange(6, 8)}
    measured = evaluation.evaluate_splits(model, images, labels, splits)
    assert {k: v["accuracy"] for k, v in measured.items()} == {
        "train": 0.5,
        "val": 0.5,
        "test": 1.0,
    }
    fields = evaluation.split_metrics(measured)
    assert fields["test_accuracy"] == 1.0 and np.array(fields["confusion_matrix"]).shape == (4, 4)


def test_classify_files_reads_any_size_and_format(tmp_path):
    from PIL import Image

    model = constant_classifier(5, predicted=3, size=16)
    jpeg, png = tmp_path / "a.jpg", tmp_path / "b.png"
    Image.fromarray(np.full((40, 90, 3), 200, "uint8")).save(jpeg)
    Image.fromarray(np.full((7, 5, 4), 10, "uint8"), "RGBA").save(png)
    results = evaluation.classify_files(model, [jpeg, png], list("ABCDE"), top=3)
    assert [path for path, _ in results] == [str(jpeg), str(png)]
    for _, top in results:
        assert [name for name, _ in top][0] == "D" and len(top) == 3
        probs = [p for _, p in top]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"notes.txt is not an image Pillow can read"):
        evaluation.classify_files(model, [text])
    with pytest.raises(ValueError, match=r"No file at"):
        evaluation.classify_files(model, [tmp_path / "missing.jpg"])


def test_flip_tta_averages_an_image_and_its_mirror():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images = np.random.default_rng(0).uniform(0, 1, (5, 4, 4, 3)).astype("float32")
    plain = evaluation.predict(model, images)
    mirrored = evaluation.predict(model, images[:, :, ::-1, :])
    np.testing.assert_allclose(
        evaluation.predict(model, images, flip_tta=True), (plain + mirrored) / 2, atol=1e-6
    )
    assert not np.allclose(plain, mirrored)
