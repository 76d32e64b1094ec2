"""resnet_lab: a Keras 3 teaching lab for Residual Networks."""

__version__ = "0.1.0"
