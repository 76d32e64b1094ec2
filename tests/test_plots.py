"""Every plot returns a figure and saves a real PNG."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from resnet_lab import data, plots

HISTORY = {"accuracy": [0.2, 0.5, 0.7], "val_accuracy": [0.2, 0.4, 0.5],
           "loss": [2.0, 1.5, 1.0], "val_loss": [2.2, 1.8, 1.6]}


@pytest.mark.parametrize("make", [
    lambda p: plots.plot_history({"scratch": HISTORY, "transfer": HISTORY}, path=p),
    lambda p: plots.plot_confusion_matrix(np.eye(17) * 20, data.CLASS_NAMES, path=p),
    lambda p: plots.plot_samples(np.zeros((5, 8, 8, 3), np.uint8), [0, 1, 2, 3, 4],
                                 data.CLASS_NAMES, predictions=[0, 1, 0, 3, 4], path=p),
    lambda p: plots.plot_gradient_norms({"plain-20": [1, 0.1], "resnet-20": [1, 1]}, path=p),
    lambda p: plots.plot_degradation({"plain-20": HISTORY, "resnet-20": HISTORY}, path=p),
    lambda p: plots.plot_comparison({"a": {"train_accuracy": 1, "val_accuracy": 0.5,
                                           "test_accuracy": 0.4}}, path=p),
])
def test_plot_returns_figure_and_png(tmp_path, make):
    path = tmp_path / "sub" / "plot.png"
    assert isinstance(make(path), Figure)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
