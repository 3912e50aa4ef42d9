"""Clips decoded from real videos: sample frame indices, decode only those, crop, stay uint8.

Every random choice of a training sample (clip position, crop, augmentation) comes from an RNG seeded by (seed, epoch,
sample index), so the stream of clips does not depend on worker count, batch size or restarts. Readers are opened
inside the worker that loads the clip (decord must not be created before the DataLoader forks).
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
import torch

from videomae_cli.config.schema import DataSpec
from videomae_cli.data.loader import ClipTransform, ViewIndices
from videomae_cli.data.manifest import ManifestEntry
from videomae_cli.data.sampling import dense_indices, pretrain_indices, segment_indices
from videomae_cli.data.transforms import CropBox, MultiScaleCrop
from videomae_cli.data.video import PyAVReader, VideoError, VideoReader, open_video, resolve_backend
from videomae_cli.errors import ConfigError
from videomae_cli.seeding import Stream, sample_rng


class DecoderCrop(Protocol):
    """A transform's hook for the fused decode-crop (`MultiScaleCrop.decoder_crop`): the crop window and output side
    for frames of height × width, drawn from `rng` as the transform itself would, or None (drawing nothing)."""

    def __call__(self, height: int, width: int, rng: np.random.Generator) -> tuple[CropBox, int] | None: ...


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
        # The fused decode-crop: PyAV crops and resizes in its scaler, for transforms that offer the hook.
        hook = getattr(self.transform, "decoder_crop", None)
        self._decoder_crop: DecoderCrop | None = hook if spec.fused_crop and self.backend == "pyav" else None

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
        return self.decode_entry(self.entries[index], choose)

    def decode_entry(self, entry: ManifestEntry, choose: ViewIndices) -> list[torch.Tensor]:
        """`decode` of an entry that need not be in the manifest (a video in memory, from a shard)."""
        with open_video(entry.path, self.backend) as reader:
            views = [indices + entry.start for indices in choose(window_length(entry, reader))]
            wanted = np.unique(np.concatenate(views))
            frames = torch.from_numpy(reader.get_frames(wanted.tolist()))  # [F, H, W, 3] for the sorted union
        return [frames[np.searchsorted(wanted, indices)] for indices in views]

    def load(self, epoch: int, index: int, repeats: int = 1) -> tuple[list[torch.Tensor], int]:
        return self.load_entry(self.entries[index], epoch, index, repeats)

    def load_entry(
        self, entry: ManifestEntry, epoch: int, index: int, repeats: int = 1
    ) -> tuple[list[torch.Tensor], int]:
        """`load` of an entry that need not be in the manifest (a video in memory, from a shard); `index` keys its
        random choices."""
        rngs = [sample_rng(self.seed, epoch, index, Stream.AUGMENT, r) for r in range(repeats)]
        if self._decoder_crop is not None:
            return self._load_fused(entry, epoch, index, rngs), entry.label
        (clip,) = self.decode_entry(entry, lambda length: [self.frame_indices(length, epoch, index)])
        return [self.transform(clip, rng) for rng in rngs], entry.label

    def _load_fused(
        self, entry: ManifestEntry, epoch: int, index: int, rngs: list[np.random.Generator]
    ) -> list[torch.Tensor]:
        """`load`'s clips with each crop window cropped and resized by the PyAV decoder's scaler, before the RGB
        conversion. The windows are drawn before decoding, from the same generators with the same draws as the
        transform's, so a seed gives the same window either way; the pixels differ from the torch resize by rounding
        (see `pyav_reader.SCALER_FLAGS`). Falls back to the plain path where the hook declines."""
        with open_video(entry.path, self.backend) as reader:
            indices = (self.frame_indices(window_length(entry, reader), epoch, index) + entry.start).tolist()
            crops = [self._decoder_crop(reader.height, reader.width, rng) for rng in rngs]
            if isinstance(reader, PyAVReader) and None not in crops:
                windows = [(box.top, box.left, box.height, box.width) for box, _ in crops]
                size = crops[0][1]
                return [torch.from_numpy(c) for c in reader.get_frames_cropped(indices, windows, size, size)]
            clip = torch.from_numpy(reader.get_frames(indices))
        return [self.transform(clip, rng) for rng in rngs]
