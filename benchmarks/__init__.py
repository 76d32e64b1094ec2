"""Benchmarks of resnet_lab: `python -m benchmarks.run` (see benchmarks/README.md)."""
