"""Spatial transforms on whole clips: uint8 [T, H, W, 3] in, uint8 [T, H', W', 3] out.

Every random parameter is drawn once per clip from the `np.random.Generator` passed in and applied to every frame, so a
clip stays consistent in time and a sample's augmentation is a pure function of its generator (which the caller seeds
from (seed, epoch, sample index)). Normalisation is not done here: clips stay uint8 until they reach the device.

The recipes follow the official VideoMAE (V1) code:
- pretraining: `MultiScaleCrop` (GroupMultiScaleCrop with scales (1, .875, .75, .66)) and nothing else;
- fine-tune training: `FinetuneTrainTransform` = RandAugment `rand-m7-n4-mstd0.5-inc1` on the decoded frames, random
  resized crop (scale (0.08, 1), ratio (3/4, 4/3)), horizontal flip (off for direction-sensitive data such as SSv2),
  random erasing (p 0.25, mode 'pixel', one box, the same box on every frame);
- evaluation: `ShortSideResize` then `center_crop` (validation) or `three_crops` (multi-view testing).

Resizing uses torchvision's uint8 bilinear kernels on a [T, 3, h, w] view of the channels-last clip (no float copy).
Antialiasing follows what each official step did: PIL's bilinear resize (antialiased) for the multi-scale crop, and
`F.interpolate` / cv2 (not antialiased) for the fine-tune crop and the evaluation resize.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from timm.data.auto_augment import AugmentOp, rand_augment_transform
from torchvision.transforms.v2 import functional as TF

from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD

OFFICIAL_SCALES = (1.0, 0.875, 0.75, 0.66)
OFFICIAL_RAND_AUGMENT = "rand-m7-n4-mstd0.5-inc1"
_MAX_MAGNITUDE = 10.0  # timm's _LEVEL_DENOM: RandAugment magnitudes are clipped to [0, 10] unless 'mmax' says otherwise
_SEED_BOUND = 2**62
_PIL_INTERPOLATION = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class CropBox:
    """A crop window in pixels: rows [top, top + height), columns [left, left + width)."""

    top: int
    left: int
    height: int
    width: int


def _check_clip(clip: torch.Tensor) -> None:
    if clip.dtype != torch.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
        raise ValueError(f"expected a uint8 clip [T, H, W, 3], got {clip.dtype} {tuple(clip.shape)}")


def crop(clip: torch.Tensor, box: CropBox) -> torch.Tensor:
    """The same window of every frame (a view, no copy)."""
    return clip[:, box.top : box.top + box.height, box.left : box.left + box.width]


def resize_clip(clip: torch.Tensor, height: int, width: int, antialias: bool) -> torch.Tensor:
    """Bilinear resize of every frame to height × width, staying uint8."""
    if clip.shape[1] == height and clip.shape[2] == width:
        return clip.contiguous()
    # The [T, 3, h, w] view of a channels-last clip is what torchvision's fast uint8 kernels want: no copy, no float.
    frames = TF.resize(clip.permute(0, 3, 1, 2), [height, width], antialias=antialias)
    return frames.permute(0, 2, 3, 1).contiguous()


def horizontal_flip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left-right."""
    return clip.flip(2)


def _child_rngs(rng: np.random.Generator, count: int) -> list[np.random.Generator]:
    """Independent generators for the stages of a pipeline, so switching one stage off leaves the others' draws as
    they were (the same seed gives the same crop with or without RandAugment)."""
    return [np.random.default_rng(int(seed)) for seed in rng.integers(_SEED_BOUND, size=count)]


class MultiScaleCrop:
    """The official pretraining crop (GroupMultiScaleCrop): a crop whose sides are picked from `scales` × the short
    side (width and height at most `max_distort` scale steps apart), at one of 5 (or 13 with `more_fix_crop`) fixed
    positions, resized to size × size.

    Official quirks kept: crop sides within 2 px of `size` snap to `size`; positions are a list with repeats when a
    step is zero, chosen uniformly. One deviation: a side that would exceed the frame (a snapped side on frames
    barely larger than `size`) is clamped to the frame instead of being zero-padded.
    """

    def __init__(
        self,
        size: int,
        scales: Sequence[float] = OFFICIAL_SCALES,
        max_distort: int = 1,
        fix_crop: bool = True,
        more_fix_crop: bool = True,
        antialias: bool = True,
    ) -> None:
        self.size, self.scales, self.max_distort = size, tuple(scales), max_distort
        self.fix_crop, self.more_fix_crop, self.antialias = fix_crop, more_fix_crop, antialias

    def crop_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The candidate (crop height, crop width) pairs for frames of height × width, in the official order."""
        base = min(height, width)
        sides = [int(base * scale) for scale in self.scales]
        sides = [self.size if abs(side - self.size) < 3 else side for side in sides]
        return [
            (min(h, height), min(w, width))
            for i, h in enumerate(sides)
            for j, w in enumerate(sides)
            if abs(i - j) <= self.max_distort
        ]

    def offsets(self, height: int, width: int, crop_h: int, crop_w: int) -> list[tuple[int, int]]:
        """The fixed (top, left) positions of a crop_h × crop_w crop: corners and centre, plus edge centres and the
        quarter points with `more_fix_crop`. Repeats are kept so the choice is weighted as officially."""
        h_step, w_step = (height - crop_h) // 4, (width - crop_w) // 4
        grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]  # (row, column) in steps
        if self.more_fix_crop:
            grid += [(2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
        return [(row * h_step, column * w_step) for row, column in grid]

    def sample_box(self, height: int, width: int, rng: np.random.Generator) -> CropBox:
        """The crop window of one clip."""
        sizes = self.crop_sizes(height, width)
        crop_h, crop_w = sizes[int(rng.integers(len(sizes)))]
        if self.fix_crop:
            positions = self.offsets(height, width, crop_h, crop_w)
            top, left = positions[int(rng.integers(len(positions)))]
        else:
            top, left = int(rng.integers(height - crop_h + 1)), int(rng.integers(width - crop_w + 1))
        return CropBox(top, left, crop_h, crop_w)

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Crop (the same window on every frame), then resize to size × size."""
        _check_clip(clip)
        box = self.sample_box(clip.shape[1], clip.shape[2], rng)
        return resize_clip(crop(clip, box), self.size, self.size, self.antialias)

    def decoder_crop(self, height: int, width: int, rng: np.random.Generator) -> tuple[CropBox, int] | None:
        """For a decoder that crops and resizes frames in its own scaler (fused decode-crop): the clip's crop window on
        frames of height × width and the output side, drawn from `rng` exactly as `__call__` draws them (the same seed
        gives the same window). None, drawing nothing, when a bilinear scaler cannot stand in for this resize: the
        scaler antialiases when it shrinks, so only the antialiased crop can be fused."""
        if not self.antialias:
            return None
        return self.sample_box(height, width, rng), self.size


class RandomResizedCrop:
    """Inception-style crop of the official fine-tune recipe: area in `scale` × frame area, aspect ratio log-uniform in
    `ratio`, 10 tries then the central crop of the clamped aspect ratio; resized to size × size. The official code
    resized with `F.interpolate` (bilinear, no antialias), hence `antialias=False`."""

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        antialias: bool = False,
        tries: int = 10,
    ) -> None:
        self.size, self.scale, self.ratio, self.antialias, self.tries = size, scale, ratio, antialias, tries

    def sample_box(self, height: int, width: int, rng: np.random.Generator) -> CropBox:
        """The crop window of one clip."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(self.tries):
            target_area = rng.uniform(*self.scale) * area
            aspect = math.exp(rng.uniform(*log_ratio))
            w, h = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
            if 0 < w <= width and 0 < h <= height:
                return CropBox(int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1)), h, w)
        return self._central_box(height, width)

    def _central_box(self, height: int, width: int) -> CropBox:
        aspect = width / height
        if aspect < min(self.ratio):
            h, w = round(width / min(self.ratio)), width
        elif aspect > max(self.ratio):
            h, w = height, round(height * max(self.ratio))
        else:
            h, w = height, width
        return CropBox((height - h) // 2, (width - w) // 2, h, w)

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Crop (the same window on every frame), then resize to size × size."""
        _check_clip(clip)
        box = self.sample_box(clip.shape[1], clip.shape[2], rng)
        return resize_clip(crop(clip, box), self.size, self.size, self.antialias)


@dataclass(frozen=True)
class _AugmentStep:
    """One RandAugment op with its arguments fixed for a whole clip."""

    op: AugmentOp
    level_args: tuple
    kwargs: dict

    def __call__(self, frame: Image.Image) -> Image.Image:
        return self.op.aug_fn(frame, *self.level_args, **self.kwargs)


_PYTHON_RANDOM_LOCK = threading.Lock()


@contextmanager
def _python_random_seeded(seed: int) -> Iterator[None]:
    """Run a block with Python's global `random` seeded, restoring its state afterwards. timm's level functions draw
    their random sign from the global `random`; seeding it here keeps the sign a function of the clip's generator."""
    with _PYTHON_RANDOM_LOCK:
        state = random.getstate()
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


class ClipRandAugment:
    """timm RandAugment applied consistently to a clip: the ops, whether each fires, its magnitude and sign are drawn
    once per clip and every frame gets exactly the same operations (as the official VideoMAE RandAugment, whose ops
    take the list of frames).

    The policy (op set, magnitude, std, probability) comes from timm's `rand_augment_transform(config, hparams)` with
    the official hparams (`translate_const` = 0.45 × crop size, the training interpolation, timm's grey fill); only the
    sampling is done here, from the clip's generator, instead of timm's global RNGs. With interpolation 'random' the
    resampling filter is also drawn once per op and clip (officially it was drawn per frame).
    """

    def __init__(
        self, config: str = OFFICIAL_RAND_AUGMENT, crop_size: int = 224, interpolation: str = "bicubic"
    ) -> None:
        hparams: dict = {"translate_const": int(crop_size * 0.45)}
        if interpolation != "random":
            hparams["interpolation"] = _PIL_INTERPOLATION.get(interpolation, Image.Resampling.BILINEAR)
        policy = rand_augment_transform(config, hparams)
        self.config, self.ops = config, list(policy.ops)
        self.num_layers, self.choice_weights = policy.num_layers, policy.choice_weights

    def sample(self, rng: np.random.Generator) -> list[_AugmentStep]:
        """The operations one clip gets, in order (ops that did not fire are left out)."""
        chosen = rng.choice(len(self.ops), self.num_layers, replace=self.choice_weights is None, p=self.choice_weights)
        steps = []
        for index in chosen:
            op = self.ops[int(index)]
            if op.prob < 1.0 and rng.random() > op.prob:
                continue
            steps.append(_AugmentStep(op, self._level_args(op, rng), self._kwargs(op, rng)))
        return steps

    @staticmethod
    def _level_args(op: AugmentOp, rng: np.random.Generator) -> tuple:
        magnitude = op.magnitude
        if op.magnitude_std == float("inf"):
            magnitude = rng.uniform(0, magnitude)
        elif op.magnitude_std > 0:
            magnitude = rng.normal(magnitude, op.magnitude_std)
        magnitude = float(np.clip(magnitude, 0.0, op.magnitude_max or _MAX_MAGNITUDE))
        if op.level_fn is None:
            return ()
        with _python_random_seeded(int(rng.integers(_SEED_BOUND))):
            return tuple(op.level_fn(magnitude, op.hparams))

    @staticmethod
    def _kwargs(op: AugmentOp, rng: np.random.Generator) -> dict:
        kwargs = dict(op.kwargs)
        if isinstance(kwargs.get("resample"), (list, tuple)):
            kwargs["resample"] = kwargs["resample"][int(rng.integers(len(kwargs["resample"])))]
        return kwargs

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """The clip with the same sampled operations applied to every frame."""
        _check_clip(clip)
        steps = self.sample(rng)
        if not steps:
            return clip
        frames = []
        for array in clip.contiguous().numpy():
            frame = Image.fromarray(array)
            for step in steps:
                frame = step(frame)
            frames.append(np.asarray(frame))
        return torch.from_numpy(np.stack(frames))


class ClipRandomErasing:
    """Random erasing as the official fine-tune recipe applies it to a clip (timm's RandomErasing with VideoMAE's
    `cube` mode): one decision with `probability`, then `count` boxes (area in [min_area, max_area] / count, aspect
    log-uniform in [min_aspect, 1 / min_aspect], up to 100 tries each) at the same place on every frame.

    Officially the clip was erased after normalisation; here it stays uint8, so the fill is the pixel value that the
    official fill becomes after normalisation is undone: 'pixel' (per-pixel N(0, 1), fresh for every frame as
    officially) → 255 · (mean + std · z), rounded and clipped to [0, 255]; 'rand' → one such colour per box and frame;
    'const' → the ImageNet mean colour (a normalised 0).
    """

    def __init__(
        self,
        probability: float = 0.25,
        mode: str = "pixel",
        min_area: float = 0.02,
        max_area: float = 1 / 3,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
        min_count: int = 1,
        max_count: int | None = None,
        tries: int = 100,
    ) -> None:
        if mode not in ("pixel", "rand", "const"):
            raise ValueError(f"random erasing mode must be 'pixel', 'rand' or 'const', got {mode!r}")
        self.probability, self.mode, self.min_area, self.max_area = probability, mode, min_area, max_area
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect or 1 / min_aspect))
        self.min_count, self.max_count, self.tries = min_count, max_count or min_count, tries
        self.mean = np.asarray(IMAGENET_MEAN, dtype=np.float32) * 255
        self.std = np.asarray(IMAGENET_STD, dtype=np.float32) * 255

    def sample_box(self, height: int, width: int, count: int, rng: np.random.Generator) -> CropBox | None:
        """One erasing box (None when no try fits inside the frame)."""
        for _ in range(self.tries):
            target_area = rng.uniform(self.min_area, self.max_area) * height * width / count
            aspect = math.exp(rng.uniform(*self.log_aspect))
            h, w = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
            if w < width and h < height:
                return CropBox(int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1)), h, w)
        return None

    def fill(self, frames: int, box: CropBox, rng: np.random.Generator) -> torch.Tensor:
        """uint8 fill [frames, h, w, 3] (or broadcastable) of one box."""
        if self.mode == "const":
            return torch.from_numpy(np.round(self.mean).astype(np.uint8))
        shape = (frames, box.height, box.width, 3) if self.mode == "pixel" else (frames, 1, 1, 3)
        pixels = self.mean + self.std * rng.standard_normal(shape, dtype=np.float32)
        return torch.from_numpy(np.clip(np.round(pixels), 0, 255).astype(np.uint8))

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """The clip, with the same box(es) erased on every frame (probability `probability`)."""
        _check_clip(clip)
        if rng.random() > self.probability:
            return clip
        count = int(rng.integers(self.min_count, self.max_count + 1))
        out = clip.clone()
        for _ in range(count):
            box = self.sample_box(clip.shape[1], clip.shape[2], count, rng)
            if box is not None:
                crop(out, box)[:] = self.fill(clip.shape[0], box, rng)
        return out


class FinetuneTrainTransform:
    """The official fine-tune training augmentation of a clip, in the official order: RandAugment on the decoded
    frames, random resized crop to size × size, horizontal flip (p 0.5, when enabled), random erasing.

    `auto_augment=None` or `erase_prob=0` switch those stages off. Each stage draws from its own generator split off
    the clip's, so switching one stage off does not change what the others do for the same seed.
    """

    def __init__(
        self,
        size: int = 224,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        horizontal_flip: bool = True,
        auto_augment: str | None = OFFICIAL_RAND_AUGMENT,
        interpolation: str = "bicubic",
        erase_prob: float = 0.25,
        erase_mode: str = "pixel",
        erase_count: int = 1,
    ) -> None:
        self.rand_augment = ClipRandAugment(auto_augment, size, interpolation) if auto_augment else None
        self.crop = RandomResizedCrop(size, scale, ratio)
        self.flip = horizontal_flip
        self.erase = ClipRandomErasing(erase_prob, erase_mode, max_count=erase_count) if erase_prob > 0 else None

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """uint8 [T, H, W, 3] → uint8 [T, size, size, 3]."""
        _check_clip(clip)
        augment_rng, crop_rng, flip_rng, erase_rng = _child_rngs(rng, 4)
        if self.rand_augment is not None:
            clip = self.rand_augment(clip, augment_rng)
        clip = self.crop(clip, crop_rng)
        if self.flip and flip_rng.random() < 0.5:
            clip = horizontal_flip(clip)
        if self.erase is not None:
            clip = self.erase(clip, erase_rng)
        return clip.contiguous()


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) with the short side scaled to `size`, the long side truncated as officially."""
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


class ShortSideResize:
    """Resize so the short side is `size`, keeping the aspect ratio (the official evaluation resize; it used cv2
    bilinear, not antialiased)."""

    def __init__(self, size: int, antialias: bool = False) -> None:
        self.size, self.antialias = size, antialias

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        """uint8 [T, H, W, 3] → uint8 [T, H', W', 3] with min(H', W') = size."""
        _check_clip(clip)
        height, width = short_side_size(clip.shape[1], clip.shape[2], self.size)
        return resize_clip(clip, height, width, self.antialias)


def _check_fits(clip: torch.Tensor, size: int) -> None:
    if min(clip.shape[1], clip.shape[2]) < size:
        raise ValueError(f"cannot crop {size}×{size} from frames of {clip.shape[1]}×{clip.shape[2]}")


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    """The central size × size window of every frame (offsets rounded as officially)."""
    _check_clip(clip)
    _check_fits(clip, size)
    height, width = clip.shape[1], clip.shape[2]
    return crop(clip, CropBox(round((height - size) / 2), round((width - size) / 2), size, size)).contiguous()


def three_crop_boxes(height: int, width: int, size: int) -> list[CropBox]:
    """The official test views: size × size windows at the start, middle and end of the long side (left/centre/right
    for landscape, top/centre/bottom for portrait and square), centred on the short side."""
    if height >= width:
        step, left = (height - size) / 2, round((width - size) / 2)
        return [CropBox(int(i * step), left, size, size) for i in range(3)]
    step, top = (width - size) / 2, round((height - size) / 2)
    return [CropBox(top, int(i * step), size, size) for i in range(3)]


def three_crops(clip: torch.Tensor, size: int) -> list[torch.Tensor]:
    """The three spatial test views of a (short-side resized) clip."""
    _check_clip(clip)
    _check_fits(clip, size)
    return [crop(clip, box).contiguous() for box in three_crop_boxes(clip.shape[1], clip.shape[2], size)]
