"""Thin entry points of the DVC stages; each reads its section of params.yaml."""
