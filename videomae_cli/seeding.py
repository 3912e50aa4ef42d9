"""Per-sample randomness: every random choice about a sample comes from an RNG seeded by (run seed, epoch, sample
index, stream), so a sample is the same whatever the batch size, worker count, world size or restart point.

Each kind of choice has its own stream, so adding or changing one never shifts the others.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """RNG stream ids. Never renumber: that would change every run's data."""

    MASK = 1  # encoder/decoder masks
    SHUFFLE = 2  # the per-epoch sample order
    REPLACE = 3  # replacements for clips that fail to decode
    CLIP = 4  # where in the video a clip is taken
    AUGMENT = 5  # spatial augmentation
    MIX = 6  # Mixup/CutMix of a fine-tuning micro-batch (keyed by step and micro-batch, not by sample)


def sample_rng(seed: int, epoch: int, index: int, stream: Stream, *extra: int) -> np.random.Generator:
    """The RNG of one choice about sample `index` in `epoch` (`extra` tells apart e.g. repeated clips)."""
    return np.random.default_rng([seed, epoch, index, int(stream), *extra])
