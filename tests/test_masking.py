"""Mask generators (design.md: math): tube, random, frame, V2's running-cell decoder mask, and the mask spec checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from videomae_cli.config.mask_fit import check_mask_fits, masked_count
from videomae_cli.config.schema import MaskSpec, PretrainSpec, grid_of
from videomae_cli.masking import (
    MaskGenerator,
    SampleMask,
    collate_masks,
    running_cell_selection,
)
from videomae_cli.models.vit import TokenGrid

# 16 frames of 128×128: 8 time slices of 8×8 patches, 512 tokens (an even grid, so running-cell masking applies).
GRID = TokenGrid(frames=16, height=128, width=128, patch=16, tubelet=2)
# Ratios whose counts differ between round() and int(): tube 0.9·64 = 57.6, random 0.9·512 = 460.8, frame 0.6·8 = 4.8.
RATIOS = {"tube": 0.9, "random": 0.9, "frame": 0.6, "motion": 0.9}
EXPECTED_MASKED = {"tube": 58 * 8, "random": 461, "frame": 5 * 64, "motion": 58 * 8}  # motion: clip-less, uniform
MASK_TYPES = list(RATIOS)
DECODER_RATIOS = [0.25, 0.5, 0.75]


def generator(mask_type: str, seed: int = 0, decoder_ratio: float = 0.0, grid: TokenGrid = GRID) -> MaskGenerator:
    return MaskGenerator(MaskSpec(type=mask_type, ratio=RATIOS[mask_type], decoder_ratio=decoder_ratio), grid, seed)


def encoder_mask(sample: SampleMask, grid: TokenGrid = GRID) -> np.ndarray:
    """bool [t, h, w], True where the encoder does not see the token."""
    masked = np.ones(grid.num_tokens, dtype=bool)
    masked[sample.visible] = False
    return masked.reshape(grid.t, grid.h, grid.w)


def selections(decoder_ratio: float, grid: TokenGrid = GRID, draws: int = 64) -> set[bytes]:
    """Every distinct running-cell selection seen over many RNG draws."""
    return {running_cell_selection(grid, decoder_ratio, np.random.default_rng(seed)).tobytes() for seed in range(draws)}


# ---------------------------------------------------------------------------------------------------------------------
# Encoder masks


@pytest.mark.parametrize("mask_type", MASK_TYPES)
def test_every_sample_masks_the_exact_count(mask_type: str) -> None:
    make = generator(mask_type)
    assert masked_count(make.spec, GRID) == EXPECTED_MASKED[mask_type]
    for epoch in range(3):
        for index in range(20):
            sample = make(epoch, index)
            assert len(sample.decoded) == EXPECTED_MASKED[mask_type]
            assert len(sample.visible) == GRID.num_tokens - EXPECTED_MASKED[mask_type]


def test_tube_mask_repeats_one_spatial_pattern_over_time() -> None:
    make = generator("tube")
    for index in range(10):
        masked = encoder_mask(make(0, index))
        assert (masked == masked[0]).all()


def test_frame_mask_hides_whole_time_slices() -> None:
    make = generator("frame")
    for index in range(10):
        per_slice = encoder_mask(make(0, index)).reshape(GRID.t, -1)
        assert (per_slice.all(1) | ~per_slice.any(1)).all()


@pytest.mark.parametrize("mask_type", MASK_TYPES)
def test_same_seed_epoch_and_index_give_the_same_mask(mask_type: str) -> None:
    first, second = generator(mask_type, seed=3)(2, 7), generator(mask_type, seed=3)(2, 7)
    assert np.array_equal(first.visible, second.visible)
    assert np.array_equal(first.decoded, second.decoded)


@pytest.mark.parametrize("vary", ["index", "epoch", "seed"])
@pytest.mark.parametrize("mask_type", MASK_TYPES)
def test_different_index_epoch_or_seed_give_different_masks(mask_type: str, vary: str) -> None:
    masks = set()
    for k in range(20):
        seed, epoch, index = {"seed": (k, 0, 0), "epoch": (0, k, 0), "index": (0, 0, k)}[vary]
        masks.add(generator(mask_type, seed=seed)(epoch, index).decoded.tobytes())
    # Frame masks pick 5 of 8 slices (56 possibilities), so a few repeats are expected among 20 draws.
    assert len(masks) >= (12 if mask_type == "frame" else 20)


@pytest.mark.parametrize("mask_type", MASK_TYPES)
def test_mask_does_not_depend_on_the_order_of_calls(mask_type: str) -> None:
    forward, backward = generator(mask_type, decoder_ratio=0.5), generator(mask_type, decoder_ratio=0.5)
    early = [forward(0, 3), forward(0, 5)]
    late = [backward(0, 5), backward(0, 3)][::-1]
    for a, b in zip(early, late, strict=True):
        assert np.array_equal(a.visible, b.visible)
        assert np.array_equal(a.decoded, b.decoded)


@pytest.mark.parametrize("mask_type", MASK_TYPES)
def test_visible_and_decoded_indices_ascend_and_partition_the_tokens(mask_type: str) -> None:
    make = generator(mask_type)
    for index in range(10):
        sample = make(0, index)
        assert sample.weight is None
        assert sample.visible.dtype == np.int64 and sample.decoded.dtype == np.int64
        assert (np.diff(sample.visible) > 0).all() and (np.diff(sample.decoded) > 0).all()
        assert np.intersect1d(sample.visible, sample.decoded).size == 0
        assert np.array_equal(np.sort(np.concatenate((sample.visible, sample.decoded))), np.arange(GRID.num_tokens))


# ---------------------------------------------------------------------------------------------------------------------
# Running-cell decoder masking (VideoMAE V2)


@pytest.mark.parametrize("decoder_ratio", DECODER_RATIOS)
def test_running_cell_selects_one_minus_the_decoder_ratio_of_every_slice(decoder_ratio: float) -> None:
    selection = running_cell_selection(GRID, decoder_ratio, np.random.default_rng(0))
    assert selection.dtype == bool and selection.shape == (GRID.num_tokens,)
    assert selection.sum() == (1 - decoder_ratio) * GRID.num_tokens
    assert (selection.reshape(GRID.t, -1).sum(1) == (1 - decoder_ratio) * GRID.per_slice).all()


@pytest.mark.parametrize("decoder_ratio", DECODER_RATIOS)
def test_running_cell_tiles_one_2x2_cell_over_each_slice(decoder_ratio: float) -> None:
    selection = running_cell_selection(GRID, decoder_ratio, np.random.default_rng(0))
    blocks = selection.reshape(GRID.t, GRID.h // 2, 2, GRID.w // 2, 2).transpose(0, 1, 3, 2, 4)  # [t, h/2, w/2, 2, 2]
    assert (blocks == blocks[:, :1, :1]).all()


@pytest.mark.parametrize("decoder_ratio", DECODER_RATIOS)
def test_running_cell_shifts_every_slice_and_repeats_every_four(decoder_ratio: float) -> None:
    slices = running_cell_selection(GRID, decoder_ratio, np.random.default_rng(0)).reshape(GRID.t, -1)
    for t in range(GRID.t - 1):
        assert not np.array_equal(slices[t], slices[t + 1])
    for t in range(GRID.t - 4):
        assert np.array_equal(slices[t], slices[t + 4])


@pytest.mark.parametrize("decoder_ratio", DECODER_RATIOS)
def test_running_cell_has_four_starting_positions(decoder_ratio: float) -> None:
    assert len(selections(decoder_ratio)) == 4


@pytest.mark.parametrize("decoder_ratio", DECODER_RATIOS)
@pytest.mark.parametrize("mask_type", MASK_TYPES)
def test_generator_decodes_the_running_cell_and_weights_the_masked_tokens(mask_type: str, decoder_ratio: float) -> None:
    make = generator(mask_type, decoder_ratio=decoder_ratio)
    patterns = selections(decoder_ratio)
    for index in range(10):
        sample = make(0, index)
        assert len(sample.visible) == GRID.num_tokens - EXPECTED_MASKED[mask_type]
        decoded = np.zeros(GRID.num_tokens, dtype=bool)
        decoded[sample.decoded] = True
        assert decoded.tobytes() in patterns
        assert (np.diff(sample.decoded) > 0).all()
        assert sample.weight is not None and sample.weight.dtype == np.float32
        assert np.array_equal(sample.weight, encoder_mask(sample).reshape(-1)[sample.decoded].astype(np.float32))


# ---------------------------------------------------------------------------------------------------------------------
# Checks and batching


SMALL = TokenGrid(frames=4, height=32, width=32, patch=16, tubelet=2)  # 2 slices of 2×2 patches


@pytest.mark.parametrize(
    ("mask_type", "ratio"),
    [("tube", 0.1), ("tube", 0.9), ("random", 0.05), ("random", 0.95), ("frame", 0.2), ("frame", 0.8)],
)
def test_a_ratio_that_masks_all_or_none_of_the_grid_is_rejected(mask_type: str, ratio: float) -> None:
    spec = MaskSpec(type=mask_type, ratio=ratio)
    with pytest.raises(ValueError, match=r"^mask\.ratio"):
        check_mask_fits(spec, SMALL)
    with pytest.raises(ValueError, match=r"^mask\.ratio"):
        MaskGenerator(spec, SMALL, seed=0)


def test_running_cell_on_an_odd_grid_is_rejected() -> None:
    odd = TokenGrid(frames=4, height=48, width=48, patch=16, tubelet=2)  # 3×3 patches
    check_mask_fits(MaskSpec(type="tube", ratio=0.5), odd)
    with pytest.raises(ValueError, match=r"^mask\.decoder_ratio"):
        check_mask_fits(MaskSpec(type="tube", ratio=0.5, decoder_ratio=0.5), odd)


@pytest.mark.parametrize("decoder_ratio", [0.0, 0.5])
def test_collate_stacks_samples_into_int64_index_tensors(decoder_ratio: float) -> None:
    make = generator("tube", decoder_ratio=decoder_ratio)
    samples = [make(0, index) for index in range(3)]
    batch = collate_masks(samples)
    num_decoded = len(samples[0].decoded)
    assert batch.visible.dtype == torch.int64 and batch.visible.shape == (3, GRID.num_tokens - 58 * 8)
    assert batch.decoded.dtype == torch.int64 and batch.decoded.shape == (3, num_decoded)
    assert torch.equal(batch.decoded[2], torch.from_numpy(samples[2].decoded))
    if decoder_ratio:
        assert batch.weight is not None and batch.weight.dtype == torch.float32
        assert batch.weight.shape == (3, num_decoded)
        assert torch.equal(batch.weight[1], torch.from_numpy(samples[1].weight))
    else:
        assert batch.weight is None


# ---------------------------------------------------------------------------------------------------------------------
# Spec validation


def test_mask_ratio_outside_zero_one_is_rejected() -> None:
    with pytest.raises(ValidationError) as excinfo:
        PretrainSpec.model_validate({"mask": {"ratio": 1.5}})
    assert excinfo.value.errors()[0]["loc"] == ("mask", "ratio")


def test_input_size_not_divisible_by_the_patch_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"data\.input_size"):
        PretrainSpec.model_validate({"model": {"name": "test"}, "data": {"input_size": 120}})


def test_heads_that_do_not_divide_the_width_are_rejected() -> None:
    with pytest.raises(ValidationError, match=r"model\.heads"):
        PretrainSpec.model_validate({"model": {"name": "test", "heads": 3}})


def test_spec_rejects_a_mask_that_hides_every_token_of_its_grid() -> None:
    with pytest.raises(ValidationError, match=r"mask\.ratio"):
        PretrainSpec.model_validate({"model": {"name": "test"}, "data": {"num_frames": 4, "input_size": 32}})


def test_grid_of_follows_the_spec() -> None:
    spec = PretrainSpec.model_validate({"model": {"name": "giant"}, "data": {"num_frames": 16, "input_size": 224}})
    grid = grid_of(spec)
    assert (grid.t, grid.h, grid.w, grid.patch_dim) == (8, 16, 16, 2 * 14 * 14 * 3)
