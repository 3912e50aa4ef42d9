"""Clips decoded from real videos for pretraining: sample frame indices, decode only those, crop, stay uint8.

Every random choice of a sample (clip position, crop) comes from an RNG seeded by (seed, epoch, sample index), so the
stream of clips does not depend on worker count, batch size or restarts. Readers are opened inside the worker that
loads the clip (decord must not be created before the DataLoader forks).
"""

from __future__ import annotations

import numpy as np
import torch

from videomae_cli.data.manifest import ManifestEntry
from videomae_cli.data.sampling import pretrain_indices, segment_indices
from videomae_cli.data.transforms import MultiScaleCrop
from videomae_cli.data.video import VideoError, open_video, resolve_backend
from videomae_cli.errors import ConfigError
from videomae_cli.seeding import Stream, sample_rng
from videomae_cli.specs import DataSpec


class VideoClips:
    """A ClipSource over the videos of a manifest, with the official V1 pretraining sampling and multi-scale crop."""

    def __init__(self, entries: list[ManifestEntry], spec: DataSpec, seed: int) -> None:
        self.entries, self.spec, self.seed = entries, spec, seed
        try:
            self.backend = resolve_backend(spec.decoder)
        except VideoError as e:
            raise ConfigError(f"data.decoder: {e}") from None
        self.crop = MultiScaleCrop(spec.input_size)

    def __len__(self) -> int:
        return len(self.entries)

    def describe(self, index: int) -> str:
        return str(self.entries[index].path)

    def frame_indices(self, video_frames: int, epoch: int, index: int) -> np.ndarray:
        """Which frames of the (windowed) video make the clip of sample `index` in `epoch`."""
        rng = sample_rng(self.seed, epoch, index, Stream.CLIP)
        if self.spec.sampling == "segment":
            return segment_indices(video_frames, self.spec.num_frames, rng)
        return pretrain_indices(video_frames, self.spec.num_frames, self.spec.sampling_rate, rng)

    def load(self, epoch: int, index: int, repeats: int = 1) -> tuple[list[torch.Tensor], int]:
        entry = self.entries[index]
        with open_video(entry.path, self.backend) as reader:
            available = reader.num_frames - entry.start
            length = available if entry.total < 0 else min(entry.total, available)
            if length < 1:
                raise VideoError(f"{entry.path}: the window starts at frame {entry.start} of {reader.num_frames}")
            frames = reader.get_frames((self.frame_indices(length, epoch, index) + entry.start).tolist())
        clip = torch.from_numpy(frames)
        crops = [
            self.crop(clip, sample_rng(self.seed, epoch, index, Stream.AUGMENT, r)) for r in range(repeats)
        ]
        return crops, entry.label
