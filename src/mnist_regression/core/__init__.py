"""The numerics, no I/O and no tracking: losses, the objective, models, full-data
passes and the training loop."""
