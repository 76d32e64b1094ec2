"""Every use of a private Keras attribute in the lab, in one file.

Keras 3 has no public API to walk a functional graph backwards from a tensor to the layer call
that made it, which the block diagrams (`resnet_lab.diagrams`) and Grad-CAM
(`resnet_lab.gradcam`) need. They read it here, so a Keras release that renames these
attributes breaks one file, and its tests (`tests/test_diagrams.py`, `tests/test_gradcam.py`)
say so at once.

The private things, checked with Keras 3.15.1 (`keras/src/ops/node.py`):

* `KerasTensor._keras_history`: a `KerasHistory(operation, node_index, tensor_index)` set on
  every symbolic tensor a layer call returns; a model input's `operation` is its `InputLayer`
  (or `None` for a bare tensor).
* `Operation._inbound_nodes`: one `Node` per call of the layer; `node_index` picks the call
  that made the tensor (a layer shared between models has several).
* `Node.arguments.keras_tensors`: the symbolic tensors that call received, in order (public
  attribute of a private class).
"""


def is_symbolic(value):
    """True for a symbolic Keras tensor made in a functional graph (it has a history)."""
    return hasattr(value, "_keras_history")


def producer(tensor):
    """The layer call that made a symbolic `tensor`.

    Args:
        tensor: A `KerasTensor` of a functional graph, e.g. `model.outputs[0]` or a block's
            output.

    Returns:
        `(layer, inputs)`: the layer (an `InputLayer` for a model input) and the list of
        tensors that call took (empty for an input).
    """
    history = tensor._keras_history
    if history.operation is None:  # a bare `keras.Input` tensor, no layer recorded
        return None, []
    node = history.operation._inbound_nodes[history.node_index]
    return history.operation, list(node.arguments.keras_tensors)
