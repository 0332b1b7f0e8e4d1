"""Benchmarks of the trainer; run them with ``python -m benchmarks.<name>``."""
