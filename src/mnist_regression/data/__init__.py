"""MNIST: download and verification, the IDX reader, and the prepared splits."""
