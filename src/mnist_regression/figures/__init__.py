"""What figures share (matplotlib without pyplot) and the weight images logged
with each run."""
