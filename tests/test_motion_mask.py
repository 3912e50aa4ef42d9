"""mask.type: motion — visible tokens drawn where the clip moves (AdaMAE / MGMAE's idea): on the moving region at a
low temperature, uniform at a high one, deterministic per (seed, epoch, index, clip), the exact count per time slice,
as one tube or per slice, and with V2's running-cell decoder mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TOY_ARGS, run_cli

import videomae_cli
from videomae_cli.config.schema import MaskSpec
from videomae_cli.data.loader import SampledClips
from videomae_cli.masking import MaskGenerator, motion_energy
from videomae_cli.models.vit import TokenGrid

GRID = TokenGrid(frames=8, height=64, width=64, patch=16, tubelet=2)  # 4 slices of 4 × 4 cells
RATIO = 0.75  # 12 of 16 cells hidden per slice, 4 visible


def moving_square_clip(path: list[tuple[int, int]] | None = None) -> np.ndarray:
    """uint8 [T, 64, 64, 3]: a still textured background, and a bright 24-pixel square that jumps 4 pixels back and
    forth every frame inside the 32 × 32 top-left quarter (its edges cross all 4 of its cells); `path` gives each time
    slice's cell for a smaller square instead."""
    rng = np.random.default_rng(0)
    clip = np.repeat(rng.integers(0, 60, (1, 64, 64, 3), dtype=np.uint8), GRID.frames, axis=0)
    for f in range(GRID.frames):
        if path is None:
            corner = 4 + 4 * (f % 2)  # 4 or 8: the square spans rows and columns 4-27 or 8-31
            clip[f, corner : corner + 24, corner : corner + 24] = 255
        else:
            row, col = path[f // GRID.tubelet]
            clip[f, row * 16 : row * 16 + 16, col * 16 + f % 2 * 4 : col * 16 + 12 + f % 2 * 4] = 255
    return clip


def visible_cells(generator: MaskGenerator, clip: np.ndarray, index: int = 0) -> np.ndarray:
    """bool [t, h, w]: True where the encoder sees the token."""
    seen = np.zeros(GRID.num_tokens, dtype=bool)
    seen[generator(0, index, clip=clip).visible] = True
    return seen.reshape(GRID.t, GRID.h, GRID.w)


def motion(temperature: float, tube: bool = True, decoder_ratio: float = 0.0, seed: int = 0) -> MaskGenerator:
    spec = MaskSpec(
        type="motion", ratio=RATIO, motion_temperature=temperature, motion_tube=tube, decoder_ratio=decoder_ratio
    )
    return MaskGenerator(spec, GRID, seed)


def test_motion_energy_is_the_mean_frame_change_of_each_token() -> None:
    clip = np.zeros((GRID.frames, 64, 64, 3), dtype=np.uint8)
    clip[3, :16, 16:32] = 90  # one frame of one cell changes: into frame 3 (slice 1) and out of it (slice 1)
    energy = motion_energy(clip, GRID).reshape(GRID.t, GRID.h, GRID.w)
    assert energy[1, 0, 1] == pytest.approx(90.0)  # slice 1 = frames 2, 3: |f3 - f2| = 90 and |f4 - f3| = 90
    assert np.count_nonzero(energy) == 1


def test_a_low_temperature_shows_the_encoder_the_moving_region() -> None:
    clip = moving_square_clip()
    for index in range(5):
        seen = visible_cells(motion(temperature=0.05), clip, index)
        assert seen[:, :2, :2].all() and seen.sum() == 4 * GRID.t  # exactly the square's quarter, every slice


def test_temperature_zero_is_greedy() -> None:
    seen = visible_cells(motion(temperature=0.0), moving_square_clip())
    assert seen[:, :2, :2].all()


def test_a_high_temperature_is_uniform() -> None:
    clip, draws = moving_square_clip(), 4000
    counts = sum(visible_cells(motion(temperature=1e6, seed=s), clip)[0].astype(int) for s in range(draws))
    expected = draws * 4 / 16  # 4 visible cells of 16, each equally likely
    spread = np.sqrt(draws * (4 / 16) * (12 / 16))
    assert np.abs(counts - expected).max() < 5 * spread, counts


def test_the_mask_is_the_same_for_the_same_seed_key_and_clip() -> None:
    clip, make = moving_square_clip(), motion(temperature=1.0)
    assert np.array_equal(make(2, 7, clip=clip).visible, motion(temperature=1.0)(2, 7, clip=clip).visible)
    others = {make(2, i, clip=clip).visible.tobytes() for i in range(20)}
    assert len(others) > 1  # the key draws the noise: samples differ


@pytest.mark.parametrize("tube", [True, False])
def test_every_slice_hides_the_ratio(tube: bool) -> None:
    clip = moving_square_clip()
    for index in range(10):
        seen = visible_cells(motion(temperature=1.0, tube=tube), clip, index)
        assert (seen.reshape(GRID.t, -1).sum(1) == 4).all()


def test_a_tube_keeps_its_cells_and_per_slice_masks_follow_the_motion() -> None:
    path = [(0, 0), (1, 1), (2, 2), (3, 3)]  # the square visits a diagonal cell per time slice
    clip = moving_square_clip(path)
    tube = visible_cells(motion(temperature=0.0, tube=True), clip)
    assert all(np.array_equal(tube[0], tube[t]) for t in range(GRID.t))
    per_slice = visible_cells(motion(temperature=0.0, tube=False), clip)
    assert all(per_slice[t, row, col] for t, (row, col) in enumerate(path))
    assert not all(np.array_equal(per_slice[0], per_slice[t]) for t in range(GRID.t))


def test_motion_masks_work_with_running_cell_decoder_masking() -> None:
    sample = motion(temperature=1.0, decoder_ratio=0.5)(0, 0, clip=moving_square_clip())
    assert len(sample.decoded) == GRID.num_tokens // 2
    hidden = np.ones(GRID.num_tokens, dtype=bool)
    hidden[sample.visible] = False
    assert np.array_equal(sample.weight, hidden[sample.decoded].astype(np.float32))


class OneClip:
    """A ClipSource of one fixed clip."""

    def __init__(self, clip: np.ndarray) -> None:
        self.clip = torch.from_numpy(clip)

    def __len__(self) -> int:
        return 4

    def load(self, epoch: int, index: int, repeats: int = 1) -> tuple[list[torch.Tensor], int]:
        return [self.clip] * repeats, 0

    def describe(self, index: int) -> str:
        return f"clip {index}"


def test_the_loader_draws_the_mask_from_the_clip_it_loaded() -> None:
    clip = moving_square_clip()
    sample = SampledClips(OneClip(clip), motion(temperature=0.0), seed=0)[(0, 1)]
    assert np.array_equal(sample.masks[0].visible, motion(temperature=0.0)(0, 1, clip=clip).visible)
    seen = np.zeros(GRID.num_tokens, dtype=bool)
    seen[sample.masks[0].visible] = True
    assert seen.reshape(GRID.t, GRID.h, GRID.w)[:, :2, :2].all()


def test_a_motion_masked_run_pretrains_evaluates_and_fine_tunes_through_the_cli(tmp_path: Path) -> None:
    small = ("--set", "data.synthetic_val_videos=8", "--progress", "off")
    options = ("--mask-type", "motion", "--set", "mask.motion_temperature=0.5", "--set", "mask.motion_tube=false")
    done = run_cli("pretrain", *TOY_ARGS, *small, *options, "--steps", "2", "--out", str(tmp_path / "p"))
    assert done.returncode == 0, done.stderr
    assert videomae_cli.load_checkpoint(tmp_path / "p").spec.mask.motion_tube is False  # the checkpoint records it
    done = run_cli("evaluate", str(tmp_path / "p"), "--num-workers", "0", "--progress", "off")
    assert done.returncode == 0, done.stderr
    assert "Reconstruction loss (norm_pixel target, motion mask 0.9)" in done.stdout
    done = run_cli(
        "finetune", "--init", str(tmp_path / "p"), *TOY_ARGS, *small, "--steps", "2", "--out", str(tmp_path / "f")
    )
    assert done.returncode == 0, done.stderr
