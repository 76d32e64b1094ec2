"""Walking a model's layers, nested models included: the one walker of the lab (FLOPs,
gradient norms, Grad-CAM and the diagrams use it)."""

import keras


def all_layers(model):
    """Layers of `model` in order, descending into nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
        else:
            yield layer
