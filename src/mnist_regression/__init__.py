"""Logistic and softmax regression on MNIST in NumPy, as a tracked DVC pipeline."""

__version__ = "0.1.0"
