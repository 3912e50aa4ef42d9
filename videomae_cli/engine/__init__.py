"""Training and inference engines: loops, checkpoints, distributed setup, metrics and progress."""
