"""Clip transforms: official crop geometry, one set of random parameters per clip, determinism, uint8 in and out."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from videomae_cli.data.transforms import (
    ClipRandAugment,
    ClipRandomErasing,
    CropBox,
    FinetuneTrainTransform,
    MultiScaleCrop,
    RandomResizedCrop,
    ShortSideResize,
    center_crop,
    crop,
    resize_clip,
    short_side_size,
    three_crop_boxes,
    three_crops,
)

SIZES = [(240, 320), (320, 240), (97, 53), (53, 97)]  # (height, width): landscape, portrait, odd both ways
SIZE_IDS = ["landscape", "portrait", "odd-portrait", "odd-landscape"]


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def noise_clip(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth-ish random content (so RandAugment's histogram and geometric ops all do something)."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (frames, 3, height // 4 + 2, width // 4 + 2), generator=gen, dtype=torch.uint8)
    big = resize_clip(small.permute(0, 2, 3, 1), height, width, antialias=False)
    return big.contiguous()


def repeated_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """`frames` copies of one frame."""
    return noise_clip(1, height, width).expand(frames, -1, -1, -1).contiguous()


def coordinate_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """R encodes x, G encodes y (identical in every frame), B encodes the frame index."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    red, green = xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1)
    clip = torch.empty(frames, height, width, 3, dtype=torch.uint8)
    clip[..., 0], clip[..., 1] = red, green
    clip[..., 2] = (torch.arange(frames) * 16).view(frames, 1, 1)
    return clip


def all_frames_equal(clip: torch.Tensor) -> bool:
    return bool((clip == clip[:1]).all())


def train_transforms(size: int) -> dict[str, object]:
    """Every random clip transform, called as transform(clip, rng)."""
    return {
        "multiscale": MultiScaleCrop(size),
        "resized_crop": RandomResizedCrop(size),
        "rand_augment": ClipRandAugment(crop_size=size),
        "finetune": FinetuneTrainTransform(size),
        "finetune_no_aug": FinetuneTrainTransform(size, auto_augment=None, erase_prob=0.0),
    }


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize(("height", "width"), SIZES, ids=SIZE_IDS)
def test_train_outputs_are_uint8_clips_of_the_crop_size(height: int, width: int) -> None:
    clip = noise_clip(4, height, width)
    for name, transform in train_transforms(32).items():
        out = transform(clip, rng(1))
        expected = (4, height, width, 3) if name == "rand_augment" else (4, 32, 32, 3)
        assert out.shape == expected, name
        assert out.dtype == torch.uint8 and out.is_contiguous(), name


@pytest.mark.parametrize(("height", "width"), SIZES, ids=SIZE_IDS)
def test_eval_outputs(height: int, width: int) -> None:
    resized = ShortSideResize(48)(noise_clip(3, height, width))
    assert min(resized.shape[1:3]) == 48 and resized.dtype == torch.uint8
    assert center_crop(resized, 48).shape == (3, 48, 48, 3)
    views = three_crops(resized, 48)
    assert len(views) == 3 and all(v.shape == (3, 48, 48, 3) and v.dtype == torch.uint8 for v in views)


def test_rejects_non_uint8_or_channels_first_clips() -> None:
    with pytest.raises(ValueError, match="uint8 clip"):
        MultiScaleCrop(32)(torch.zeros(2, 64, 64, 3), rng(0))
    with pytest.raises(ValueError, match="uint8 clip"):
        MultiScaleCrop(32)(torch.zeros(2, 3, 64, 64, dtype=torch.uint8), rng(0))
    with pytest.raises(ValueError, match="cannot crop"):
        center_crop(torch.zeros(2, 20, 64, 3, dtype=torch.uint8), 32)


# ---------------------------------------------------------------- one set of parameters per clip


@pytest.mark.parametrize("seed", range(6))
def test_identical_frames_stay_identical(seed: int) -> None:
    clip = repeated_clip(5, 60, 80)
    transforms = {name: t for name, t in train_transforms(32).items() if name != "finetune"}
    # 'pixel' erasing draws fresh noise on every frame (official): identical frames need a noise-free fill here
    transforms["finetune_const_erase"] = FinetuneTrainTransform(32, erase_prob=1.0, erase_mode="const")
    transforms["erase_const"] = ClipRandomErasing(probability=1.0, mode="const")
    for name, transform in transforms.items():
        assert all_frames_equal(transform(clip, rng(seed))), name
    assert all_frames_equal(center_crop(ShortSideResize(32)(clip), 32))
    assert all(all_frames_equal(view) for view in three_crops(ShortSideResize(32)(clip), 32))


@pytest.mark.parametrize("seed", range(6))
def test_official_finetune_frames_differ_only_in_the_erased_box(seed: int) -> None:
    out = FinetuneTrainTransform(32, erase_prob=1.0)(repeated_clip(5, 60, 80), rng(seed))
    differs = (out != out[:1]).any(-1).any(0)  # [32, 32]: pixels where some frame differs from the first
    rows, cols = differs.any(1).nonzero().flatten(), differs.any(0).nonzero().flatten()
    box_area = (int(rows[-1]) - int(rows[0]) + 1) * (int(cols[-1]) - int(cols[0]) + 1)
    assert box_area <= 32 * 32 / 3 * 1.2  # one erasing box (at most a third of the frame, plus rounding)
    assert differs.sum() >= 0.9 * box_area  # ... filled with per-frame noise


def test_rand_augment_does_change_clips() -> None:
    clip = repeated_clip(3, 60, 80)
    augment = ClipRandAugment(crop_size=32)
    changed = sum(not torch.equal(augment(clip, rng(seed)), clip) for seed in range(20))
    assert changed >= 15  # four ops at p 0.5 each: all four skipped on 1/16 of the clips


@pytest.mark.parametrize("name", ["multiscale", "resized_crop", "finetune_no_aug"])
def test_different_frames_share_one_crop_box(name: str) -> None:
    clip = coordinate_clip(6, 120, 160)
    transform = train_transforms(40)[name]
    for seed in range(10):
        out = transform(clip, rng(seed)).int()
        assert all_frames_equal(out[..., :2]), "x/y content differs between frames: the crop box moved"
        for t in range(6):  # the frame-index channel survives the resize (constant in, constant out)
            assert (out[t, ..., 2] - t * 16).abs().max() <= 1


@pytest.mark.parametrize("seed", range(12))
def test_every_frame_gets_the_same_augmentation(seed: int) -> None:
    # Frames with different content: each output frame equals the transform of that frame alone (same seed), so
    # the ops, magnitudes, signs, crop box and flip do not depend on the frame.
    clip = noise_clip(4, 60, 80, seed=100 + seed)
    for transform in (ClipRandAugment(crop_size=32), FinetuneTrainTransform(32, erase_prob=0.0)):
        out = transform(clip, rng(seed))
        for t in range(4):
            assert torch.equal(out[t], transform(clip[t : t + 1], rng(seed))[0])


def changed_box(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int, int, int] | None:
    """Bounding box (top, bottom, left, right) of the pixels that changed in one frame."""
    changed = (before != after).any(-1)
    if not changed.any():
        return None
    rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


@pytest.mark.parametrize("seed", range(8))
def test_erasing_erases_the_same_box_on_every_frame(seed: int) -> None:
    clip = repeated_clip(6, 64, 96)
    out = ClipRandomErasing(probability=1.0, mode="pixel")(clip, rng(seed))
    boxes = {changed_box(clip[t], out[t]) for t in range(6)}
    assert len(boxes) == 1 and None not in boxes
    top, bottom, left, right = boxes.pop()
    outside = torch.ones(64, 96, dtype=torch.bool)
    outside[top : bottom + 1, left : right + 1] = False
    assert torch.equal(out[:, outside], clip[:, outside])
    # 'pixel' noise is fresh for every frame, as in the official code
    inside = out[:, top : bottom + 1, left : right + 1]
    assert not torch.equal(inside[0], inside[1])


def test_pixel_erasing_fill_is_normalised_noise_in_pixel_units() -> None:
    clip = torch.zeros(8, 224, 224, 3, dtype=torch.uint8)
    erasing = ClipRandomErasing(probability=1.0, mode="pixel", min_area=0.3, max_area=0.3)
    out = erasing(clip, rng(3)).float()
    mask = (out != 0).any(-1)
    values = out[mask]  # [n, 3]
    mean = values.mean(0) / 255
    std = values.std(0) / 255
    assert torch.allclose(mean, torch.tensor([0.485, 0.456, 0.406]), atol=0.02)
    assert torch.allclose(std, torch.tensor([0.229, 0.224, 0.225]), atol=0.02)


def test_erasing_probability() -> None:
    clip = repeated_clip(2, 32, 32)
    erasing = ClipRandomErasing()  # official: p 0.25, 'pixel', one box
    erased = sum(not torch.equal(erasing(clip, rng(seed)), clip) for seed in range(400))
    assert 70 <= erased <= 130


# ---------------------------------------------------------------- official multi-scale crop geometry


def official_boxes(height: int, width: int, size: int) -> set[CropBox]:
    """All GroupMultiScaleCrop windows for scales (1, .875, .75, .66), max_distort 1, 13 fixed positions."""
    sides = [int(min(height, width) * s) for s in (1, 0.875, 0.75, 0.66)]
    sides = [size if abs(s - size) < 3 else s for s in sides]
    boxes = set()
    for i, crop_h in enumerate(sides):
        for j, crop_w in enumerate(sides):
            if abs(i - j) > 1:
                continue
            ws, hs = (width - crop_w) // 4, (height - crop_h) // 4
            xs_ys = [
                (0, 0),
                (4, 0),
                (0, 4),
                (4, 4),
                (2, 2),
                (0, 2),
                (4, 2),
                (2, 4),
                (2, 0),
                (1, 1),
                (3, 1),
                (1, 3),
                (3, 3),
            ]
            boxes |= {CropBox(y * hs, x * ws, crop_h, crop_w) for x, y in xs_ys}
    return boxes


@pytest.mark.parametrize(("height", "width"), [(240, 320), (320, 240), (255, 340)])
def test_multiscale_crop_draws_exactly_the_official_windows(height: int, width: int) -> None:
    msc = MultiScaleCrop(224)
    drawn = {msc.sample_box(height, width, rng(seed)) for seed in range(4000)}
    assert drawn == official_boxes(height, width, 224)


def test_multiscale_crop_sizes() -> None:
    msc = MultiScaleCrop(224)
    sides = [240, 210, 180, 158]  # int(240 · scale)
    pairs = {(sides[i], sides[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    assert set(msc.crop_sizes(240, 320)) == pairs and len(msc.crop_sizes(240, 320)) == 10
    # int(255 · .875) = 223 is within 2 px of 224: snapped to the output size
    assert sorted({h for h, _ in msc.crop_sizes(255, 340)}) == [168, 191, 224, 255]
    assert len(MultiScaleCrop(224, more_fix_crop=False).offsets(240, 320, 180, 180)) == 5
    assert len(msc.offsets(240, 320, 180, 180)) == 13


def test_multiscale_crop_is_crop_then_resize_of_the_sampled_box() -> None:
    clip = noise_clip(3, 240, 320)
    msc = MultiScaleCrop(64)
    for seed in range(5):
        box = msc.sample_box(240, 320, rng(seed))
        assert torch.equal(msc(clip, rng(seed)), resize_clip(crop(clip, box), 64, 64, antialias=True))


def test_multiscale_resize_matches_pil_bilinear() -> None:
    # The official crop resized each frame with PIL's bilinear filter (antialiased when shrinking).
    clip = noise_clip(2, 240, 320)
    for size, seed in ((224, 0), (224, 1), (96, 2)):
        box = MultiScaleCrop(size).sample_box(240, 320, rng(seed))
        ours = MultiScaleCrop(size)(clip, rng(seed)).int()
        pil = [
            np.asarray(
                Image.fromarray(frame)
                .crop((box.left, box.top, box.left + box.width, box.top + box.height))
                .resize((size, size), Image.Resampling.BILINEAR)
            )
            for frame in clip.numpy()
        ]
        diff = (ours - torch.from_numpy(np.stack(pil)).int()).abs()
        assert diff.max() <= 1 and diff.float().mean() < 0.05


def test_resized_crop_resize_matches_float_interpolate() -> None:
    # The official fine-tune crop resized with F.interpolate(bilinear, align_corners=False), no antialias.
    clip = noise_clip(2, 240, 320)
    rrc = RandomResizedCrop(224)
    for seed in range(3):
        box = rrc.sample_box(240, 320, rng(seed))
        frames = crop(clip, box).permute(0, 3, 1, 2).float()
        official = F.interpolate(frames, size=(224, 224), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
        assert (rrc(clip, rng(seed)).float() - official).abs().max() <= 1.01  # uint8 rounding


def test_resized_crop_boxes_stay_in_range() -> None:
    rrc = RandomResizedCrop(224)
    for seed in range(300):
        box = rrc.sample_box(240, 320, rng(seed))
        assert box.top >= 0 and box.top + box.height <= 240 and box.left >= 0 and box.left + box.width <= 320
        area = box.height * box.width / (240 * 320)
        assert 0.07 <= area <= 1.0
        assert 3 / 4 - 0.02 <= box.width / box.height <= 4 / 3 + 0.02


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", ["multiscale", "resized_crop", "rand_augment", "finetune"])
def test_same_seed_same_clip_different_seed_different_clip(name: str) -> None:
    clip = noise_clip(3, 60, 80)
    transform = train_transforms(32)[name]
    assert torch.equal(transform(clip, rng(7)), transform(clip, rng(7)))
    outputs = {transform(clip, rng(seed)).numpy().tobytes() for seed in range(8)}
    assert len(outputs) >= 5


def test_python_and_numpy_global_rngs_untouched() -> None:
    random.seed(11)
    np.random.seed(11)
    before = random.getstate(), np.random.get_state()[1].copy()
    FinetuneTrainTransform(32)(noise_clip(2, 60, 80), rng(0))
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])


# ---------------------------------------------------------------- flip


def flipped(out: torch.Tensor) -> bool:
    """x grows left to right in the coordinate clip: a flipped clip has it shrink."""
    red = out[0, :, :, 0].float()
    return bool(red[:, -1].mean() < red[:, 0].mean())


def test_flip_off_never_flips_and_flip_on_flips_about_half() -> None:
    clip = coordinate_clip(2, 60, 80)
    no_flip = FinetuneTrainTransform(16, horizontal_flip=False, auto_augment=None, erase_prob=0.0)
    with_flip = FinetuneTrainTransform(16, horizontal_flip=True, auto_augment=None, erase_prob=0.0)
    assert not any(flipped(no_flip(clip, rng(seed))) for seed in range(200))
    assert 70 <= sum(flipped(with_flip(clip, rng(seed))) for seed in range(200)) <= 130


# ---------------------------------------------------------------- evaluation views


def test_short_side_resize_keeps_the_aspect_ratio() -> None:
    assert short_side_size(240, 320, 224) == (224, 298)
    assert short_side_size(320, 240, 224) == (298, 224)
    assert short_side_size(97, 53, 224) == (409, 224)
    for height, width in SIZES:
        out = ShortSideResize(224)(noise_clip(1, height, width))
        assert min(out.shape[1:3]) == 224
        assert abs(out.shape[2] / out.shape[1] - width / height) < 2 / 224
    clip = noise_clip(2, 224, 300)
    assert torch.equal(ShortSideResize(224)(clip), clip)  # already the right size: untouched


def test_three_crop_positions() -> None:
    # landscape: left / centre / right along the width, rows centred
    assert three_crop_boxes(224, 398, 224) == [
        CropBox(0, 0, 224, 224),
        CropBox(0, 87, 224, 224),
        CropBox(0, 174, 224, 224),
    ]
    # portrait: top / centre / bottom along the height
    assert three_crop_boxes(398, 224, 224) == [
        CropBox(0, 0, 224, 224),
        CropBox(87, 0, 224, 224),
        CropBox(174, 0, 224, 224),
    ]
    assert three_crop_boxes(240, 320, 224)[1] == CropBox(8, 48, 224, 224)
    clip = coordinate_clip(2, 60, 100)
    views = three_crops(clip, 60)
    assert [int(v[0, 0, 0, 0]) for v in views] == [int(clip[0, 0, x, 0]) for x in (0, 20, 40)]
    portrait = coordinate_clip(2, 100, 60)
    assert [int(v[0, 0, 0, 1]) for v in three_crops(portrait, 60)] == [int(portrait[0, y, 0, 1]) for y in (0, 20, 40)]


def test_center_crop_position() -> None:
    clip = coordinate_clip(1, 60, 101)
    out = center_crop(clip, 40)
    assert torch.equal(out, clip[:, 10:50, 30:70])  # round(61 / 2) = 30 (round half to even, as officially)


def test_rand_augment_uses_the_official_policy() -> None:
    augment = ClipRandAugment()
    assert augment.num_layers == 4 and len(augment.ops) == 15
    assert {"PosterizeIncreasing", "SolarizeIncreasing", "ColorIncreasing", "TranslateXRel"} <= {
        op.name for op in augment.ops
    }
    op = augment.ops[0]
    assert op.magnitude == 7 and op.magnitude_std == 0.5 and op.prob == 0.5
    assert op.hparams["translate_const"] == 100 and op.kwargs["fillcolor"] == (128, 128, 128)
