"""The reference: a faithful reimplementation of the official VideoMAE V1 pretraining loader (`VideoMAE` dataset +
`DataAugmentationForVideoMAE`, default collate), used by bench_data.py unchanged for every video set.

decord `VideoReader(path, num_threads=1)`, `get_batch(frame_id_list).asnumpy()` of the V1 sampler's indices (one
segment, no temporal jitter), every frame to a PIL image, GroupMultiScaleCrop (PIL crop, then PIL bilinear resize, per
frame), Stack, ToTorchFormatTensor (float / 255), GroupNormalize (in place, channel by channel), the tube mask:
float32 clips, as officially. Randomness from the global RNGs (`random`, `np.random`), as there.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from videomae_cli.data.loader import EpochSampler
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD

NUM_FRAMES = 16
SAMPLING_RATE = 4
PATCH, TUBELET = 16, 2
MASK_RATIO = 0.9
SEED = 0


class GroupMultiScaleCrop:
    """Official GroupMultiScaleCrop: a (w, h) pair from scales × short side (2-px snap to the size, at most one scale
    step apart), one of 13 fixed offsets, `random.choice` for both; then PIL crop + bilinear resize of every frame."""

    def __init__(self, size: int, scales: tuple[float, ...] = (1, 0.875, 0.75, 0.66)) -> None:
        self.size, self.scales, self.max_distort = size, scales, 1

    def __call__(self, frames: list[Image.Image], box: tuple[int, int, int, int] | None = None) -> list[Image.Image]:
        crop_w, crop_h, left, top = box if box is not None else self.sample_crop(*frames[0].size)
        cropped = [frame.crop((left, top, left + crop_w, top + crop_h)) for frame in frames]
        return [frame.resize((self.size, self.size), Image.BILINEAR) for frame in cropped]

    def sample_crop(self, image_w: int, image_h: int) -> tuple[int, int, int, int]:
        sides = [int(min(image_w, image_h) * scale) for scale in self.scales]
        sides = [self.size if abs(side - self.size) < 3 else side for side in sides]
        pairs = [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= self.max_distort]
        crop_w, crop_h = random.choice(pairs)
        w_step, h_step = (image_w - crop_w) // 4, (image_h - crop_h) // 4
        steps = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
        left, top = random.choice([(i * w_step, j * h_step) for i, j in steps])
        return crop_w, crop_h, left, top


def stack(frames: list[Image.Image]) -> np.ndarray:
    """Official Stack(roll=False): the RGB frames concatenated along channels, [H, W, 3T]."""
    return np.concatenate(frames, axis=2)


def to_torch_format_tensor(pixels: np.ndarray) -> torch.Tensor:
    """Official ToTorchFormatTensor(div=True): [3T, H, W] float in [0, 1]."""
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous().float().div(255.0)


def group_normalize(tensor: torch.Tensor) -> torch.Tensor:
    """Official GroupNormalize: mean/std repeated over the frames, applied in place one channel at a time."""
    repeats = tensor.size(0) // len(IMAGENET_MEAN)
    for channel, mean, std in zip(tensor, list(IMAGENET_MEAN) * repeats, list(IMAGENET_STD) * repeats, strict=True):
        channel.sub_(mean).div_(std)
    return tensor


def tube_mask(frames: int, height: int, width: int, ratio: float) -> np.ndarray:
    """Official TubeMaskingGenerator: one shuffled 0/1 (float) mask per frame, tiled over time, flattened."""
    per_frame = height * width
    masked = int(ratio * per_frame)
    mask = np.hstack([np.zeros(per_frame - masked), np.ones(masked)])
    np.random.shuffle(mask)
    return np.tile(mask, (frames, 1)).flatten()


class OfficialV1Pretrain(Dataset):
    """The official V1 pretraining dataset (`VideoMAE` with `DataAugmentationForVideoMAE`), keyed like ours by
    (epoch, index) so both sides read the same videos in the same order; randomness from the global RNGs, as there."""

    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths, self.size = paths, size
        self.new_length, self.new_step = NUM_FRAMES, SAMPLING_RATE
        self.skip_length = self.new_length * self.new_step
        self.crop = GroupMultiScaleCrop(size)
        self.mask_shape = (NUM_FRAMES // TUBELET, size // PATCH, size // PATCH)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray]:
        import decord

        path = self.paths[key[1]]
        reader = decord.VideoReader(str(path), num_threads=1)
        duration = len(reader)
        offset, skip_offsets = self.sample_train_indices(duration)
        frames = self.load_frames(reader, duration, offset, skip_offsets)
        clip = group_normalize(to_torch_format_tensor(stack(self.crop(frames))))  # [3T, H, W]
        clip = clip.view((self.new_length, 3, *clip.shape[-2:])).transpose(0, 1)  # [3, T, H, W], a view
        return clip, tube_mask(*self.mask_shape, MASK_RATIO)

    def sample_train_indices(self, duration: int) -> tuple[int, np.ndarray]:
        """Official `_sample_train_indices` with one segment, no temporal jitter: a 1-based start."""
        average = duration - self.skip_length + 1
        if average > 0:
            start = int(np.random.randint(average))
        elif duration > self.skip_length:
            start = int(np.random.randint(duration - self.skip_length + 1))
        else:
            start = 0
        return start + 1, np.zeros(self.skip_length // self.new_step, dtype=int)

    def frame_ids(self, duration: int, offset: int, skip_offsets: np.ndarray) -> list[int]:
        """Official `_video_TSN_decord_batch_loader` index arithmetic (one segment)."""
        ids = []
        for i in range(len(range(0, self.skip_length, self.new_step))):
            ids.append(offset + int(skip_offsets[i]) - 1 if offset + skip_offsets[i] <= duration else offset - 1)
            if offset + self.new_step < duration:
                offset += self.new_step
        return ids

    def load_frames(self, reader: Any, duration: int, offset: int, skip_offsets: np.ndarray) -> list[Image.Image]:
        video = reader.get_batch(self.frame_ids(duration, offset, skip_offsets)).asnumpy()
        return [Image.fromarray(video[i]).convert("RGB") for i in range(len(video))]


def official_loader(paths: list[Path], size: int, batch: int, workers: int) -> DataLoader:
    """The official pretraining DataLoader (default collate and prefetch factor, drop_last), our sample order."""
    return DataLoader(
        OfficialV1Pretrain(paths, size),
        batch_size=batch,
        sampler=EpochSampler(len(paths), SEED),
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
    )
