"""Clips decoded from real videos: sample frame indices, decode only those, crop, stay uint8.

Every random choice of a training sample (clip position, crop, augmentation) comes from an RNG seeded by (seed, epoch,
sample index), so the stream of clips does not depend on worker count, batch size or restarts. Readers are opened
inside the worker that loads the clip (decord must not be created before the DataLoader forks).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from videomae_cli.config.schema import DataSpec
from videomae_cli.data.loader import ClipTransform, ViewIndices
from videomae_cli.data.manifest import ManifestEntry
from videomae_cli.data.sampling import dense_indices, pretrain_indices, segment_indices
from videomae_cli.data.transforms import MultiScaleCrop
from videomae_cli.data.video import VideoError, VideoReader, open_video, resolve_backend
from videomae_cli.errors import ConfigError
from videomae_cli.seeding import Stream, sample_rng


def window_length(entry: ManifestEntry, reader: VideoReader) -> int:
    """Frames in the entry's window (V2's START TOTAL; TOTAL -1 = to the end) of the opened video."""
    available = reader.num_frames - entry.start
    length = available if entry.total < 0 else min(entry.total, available)
    if length < 1:
        raise VideoError(f"{entry.path}: the window starts at frame {entry.start} of {reader.num_frames}")
    return length


class VideoClips:
    """A ClipSource over the videos of a manifest. Pretraining (the default) uses the official V1 pretraining
    sampler and multi-scale crop; fine-tuning passes purpose="finetune" (the fine-tune dense sampler) and its
    augmentation as `transform`."""

    def __init__(
        self,
        entries: list[ManifestEntry],
        spec: DataSpec,
        seed: int,
        transform: ClipTransform | None = None,
        purpose: Literal["pretrain", "finetune"] = "pretrain",
    ) -> None:
        self.entries, self.spec, self.seed, self.purpose = entries, spec, seed, purpose
        try:
            self.backend = resolve_backend(spec.decoder)
        except VideoError as e:
            raise ConfigError(f"data.decoder: {e}") from None
        self.transform = transform or MultiScaleCrop(spec.input_size)

    def __len__(self) -> int:
        return len(self.entries)

    def describe(self, index: int) -> str:
        return str(self.entries[index].path)

    def label(self, index: int) -> int:
        return self.entries[index].label

    def labels(self) -> list[int]:
        return [entry.label for entry in self.entries]

    def frame_indices(self, video_frames: int, epoch: int, index: int) -> np.ndarray:
        """Which frames of the (windowed) video make the clip of sample `index` in `epoch`."""
        rng = sample_rng(self.seed, epoch, index, Stream.CLIP)
        d = self.spec
        if d.sampling == "segment":
            return segment_indices(video_frames, d.num_frames, rng)
        if self.purpose == "finetune":
            return dense_indices(video_frames, d.num_frames, d.sampling_rate, rng)
        return pretrain_indices(video_frames, d.num_frames, d.sampling_rate, rng)

    def decode(self, index: int, choose: ViewIndices) -> list[torch.Tensor]:
        """uint8 clips [T, H, W, 3] of video `index`, one per index array `choose(window_length)` returns; the union
        of their frames is decoded once."""
        entry = self.entries[index]
        with open_video(entry.path, self.backend) as reader:
            views = [indices + entry.start for indices in choose(window_length(entry, reader))]
            wanted = np.unique(np.concatenate(views))
            frames = torch.from_numpy(reader.get_frames(wanted.tolist()))  # [F, H, W, 3] for the sorted union
        return [frames[np.searchsorted(wanted, indices)] for indices in views]

    def load(self, epoch: int, index: int, repeats: int = 1) -> tuple[list[torch.Tensor], int]:
        (clip,) = self.decode(index, lambda length: [self.frame_indices(length, epoch, index)])
        rngs = (sample_rng(self.seed, epoch, index, Stream.AUGMENT, r) for r in range(repeats))
        return [self.transform(clip, rng) for rng in rngs], self.entries[index].label
