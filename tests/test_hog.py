"""The HOG target (model.target: hog) against a float64 reference written from MaskFeat's definition, pixel by pixel:
Sobel gradients of the reflect-padded frame, magnitudes weighted by a Gaussian over the patch, unsigned orientation
in 9 hard bins, 8-pixel cells, each cell's histogram L2-normalised; rows (channel, bin, cell row, cell column). And
scikit-image's `hog` where the two definitions agree (stripes of one orientation)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TOY_ARGS, run_cli
from videogen import write_video

import videomae_cli
from videomae_cli.config.schema import ModelSpec, PretrainSpec, grid_of
from videomae_cli.masking import MaskedTokens
from videomae_cli.models.hog import hog_dim, hog_target
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD, PretrainVideoMAE
from videomae_cli.models.vit import TokenGrid

GRID = TokenGrid(frames=4, height=32, width=48, patch=16, tubelet=2)  # 2 × 2 × 3 tokens


def reference_token_hog(frame: np.ndarray, top: int, left: int, patch: int, cell: int, bins: int = 9) -> np.ndarray:
    """One token's HOG row, float64, one pixel at a time. frame: [3, H, W]."""
    padded = np.pad(frame, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    n = np.arange(patch) - (patch - 1) / 2
    line = np.exp(-0.5 * (n / (patch // 2)) ** 2)
    window = np.outer(line, line) / np.outer(line, line).sum()
    cells = patch // cell
    hist = np.zeros((3, bins, cells, cells))
    for c in range(3):
        for y in range(top, top + patch):
            for x in range(left, left + patch):
                around = padded[c, y : y + 3, x : x + 3]  # the 3 × 3 neighbourhood of (y, x)
                # Sobel as differences across the pixel, so a mirrored border gives exactly 0, as the convolution does
                gx = sum(w * (around[i, 0] - around[i, 2]) for i, w in enumerate((1, 2, 1)))
                gy = sum(w * (around[0, j] - around[2, j]) for j, w in enumerate((1, 2, 1)))
                weight = math.hypot(gx, gy) * window[y - top, x - left]
                angle_bin = math.floor(math.atan2(gx, gy) / math.pi * bins) % bins
                hist[c, angle_bin, (y - top) // cell, (x - left) // cell] += weight
    norms = np.sqrt((hist**2).sum(axis=1, keepdims=True))
    return (hist / np.maximum(norms, 1e-12)).reshape(-1)


def reference(video: torch.Tensor, grid: TokenGrid, tokens: torch.Tensor, cell: int) -> np.ndarray:
    """Rows for tokens [B, K] of video [B, 3, T, H, W] (token index = (t, h, w) in order)."""
    rows = []
    for b, sample in enumerate(tokens.tolist()):
        for token in sample:
            t, rest = divmod(token, grid.h * grid.w)
            h, w = divmod(rest, grid.w)
            frame = video[b, :, t * grid.tubelet].double().numpy()
            rows.append(reference_token_hog(frame, h * grid.patch, w * grid.patch, grid.patch, cell))
    return np.stack(rows).reshape(*tokens.shape, -1)


def structured_clip() -> torch.Tensor:
    """Edges at several angles, a ramp, a flat region and a bright square: [1, 3, T, H, W] in [0, 1]."""
    y, x = torch.meshgrid(torch.arange(GRID.height), torch.arange(GRID.width), indexing="ij")
    frame = torch.stack(
        [
            ((x + 2 * y) % 11 < 5).double(),  # stripes at an angle
            x.double() / GRID.width,  # a horizontal ramp
            ((x > 20) & (x < 30) & (y > 5) & (y < 25)).double(),  # a square (and flat regions around it)
        ]
    )
    return torch.stack([frame, frame.flip(-1), frame.roll(7, dims=-2), frame * 0.5], dim=1)[None]


ALL_TOKENS = torch.arange(GRID.num_tokens)[None]


@pytest.mark.parametrize("cell", [8, 4])
def test_hog_matches_the_reference_on_random_clips(cell: int) -> None:
    video = torch.rand(
        2, 3, GRID.frames, GRID.height, GRID.width, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    tokens = torch.tensor([[0, 5, 7, 11], [1, 2, 9, 10]])
    ours = hog_target(video, GRID, tokens, cell)
    assert ours.shape == (2, 4, hog_dim(GRID.patch, cell))
    np.testing.assert_allclose(ours.numpy(), reference(video, GRID, tokens, cell), rtol=0, atol=1e-12)


def test_hog_matches_the_reference_on_edges_ramps_and_flat_regions() -> None:
    video = structured_clip()
    ours = hog_target(video, GRID, ALL_TOKENS, 8)
    np.testing.assert_allclose(ours.numpy(), reference(video, GRID, ALL_TOKENS, 8), rtol=0, atol=1e-12)
    flat = ours.unflatten(2, (3, 9, 4))[0, :, 2]  # the square's channel: tokens far from it have no gradient at all
    assert (flat.abs().sum((1, 2)) == 0).any() and (flat.norm(dim=1) > 0.99).any()


def test_hog_is_the_same_for_the_pixels_and_the_normalised_clip() -> None:
    # Continuous random pixels: with integer ones a gradient exactly on a bin edge (gx = 0, the edge between the last
    # bin and the first) can round to either side once normalised, a pixel's worth of difference, as in MaskFeat.
    pixels = torch.rand(1, 3, GRID.frames, GRID.height, GRID.width, dtype=torch.float64)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)[:, None, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)[:, None, None, None]
    torch.testing.assert_close(
        hog_target((pixels - mean) / std, GRID, ALL_TOKENS, 8), hog_target(pixels * 255, GRID, ALL_TOKENS, 8)
    )


def test_a_hog_model_predicts_histograms_of_the_decoded_tokens() -> None:
    spec = PretrainSpec(
        model={"name": "test", "target": "hog", "patch_size": 16},
        data={"num_frames": 4, "input_size": 32},
        mask={"ratio": 0.5},
    )
    model = PretrainVideoMAE(spec.model, grid_of(spec)).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    mask = torch.zeros(2, model.grid.num_tokens, dtype=torch.bool)
    mask[:, ::2] = True
    out = model(video, mask)
    assert out.pred.shape == out.target.shape == (2, 4, 108)  # 3 channels × 9 bins × 2 × 2 cells
    tokens = MaskedTokens.from_mask(mask).decoded
    torch.testing.assert_close(out.target, hog_target(video, model.grid, tokens, 8))
    assert out.loss == torch.nn.functional.mse_loss(out.pred, out.target)


def test_a_cell_that_does_not_tile_the_patch_is_refused() -> None:
    with pytest.raises(ValueError, match=r"model\.hog_cell: 6-pixel cells do not tile model\.patch_size 16"):
        ModelSpec(name="test", target="hog", patch_size=16, hog_cell=6)


def test_a_hog_run_pretrains_evaluates_and_fine_tunes_through_the_cli(tmp_path: Path) -> None:
    small = ("--set", "data.synthetic_val_videos=8", "--progress", "off")
    done = run_cli(
        "pretrain", *TOY_ARGS, *small, "--set", "model.target=hog", "--steps", "2", "--out", str(tmp_path / "p")
    )
    assert done.returncode == 0, done.stderr
    done = run_cli("evaluate", str(tmp_path / "p"), "--num-workers", "0", "--progress", "off")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "p" / "eval" / "report.json").read_text())
    assert report["target"] == "hog" and report["reconstruction_loss"] > 0
    assert "Reconstruction loss (hog target, tube mask 0.9)" in done.stdout
    video = write_video(tmp_path / "v.mp4", 24, width=80, height=64)
    done = run_cli("visualize-mask", str(tmp_path / "p"), "--video", str(video), "--out", str(tmp_path / "m.png"))
    assert done.returncode == 0, done.stderr
    assert "3 rows" in done.stdout and "hog target: pixels are not reconstructed" in done.stdout  # + the HOG error
    done = run_cli(
        "finetune", "--init", str(tmp_path / "p"), *TOY_ARGS, *small, "--steps", "2", "--out", str(tmp_path / "f")
    )
    assert done.returncode == 0, done.stderr
    assert videomae_cli.load(tmp_path / "f").classes is not None


# Where MaskFeat's HOG and scikit-image's agree: one orientation per pixel. skimage takes central differences and the
# angle atan2(d_row, d_col); MaskFeat takes Sobel and atan2(gx, gy) with gx = left − right, gy = top − bottom, so an
# orientation φ of skimage's is 90° − φ of ours (mod 180°): its bins 0 and 4 are our 4 and 0, the diagonals (2, 6)
# the same. On stripes of one orientation every pixel falls in one bin, whatever the smoothing and the weighting.
SKIMAGE_BIN = {0: 4, 4: 0, 2: 2, 6: 6}
STRIPES = {  # pattern over (row y, column x) → our bin, and whether border cells compare (straight stripes only)
    "vertical": (lambda y, x: x % 5 < 2, 4, True),
    "horizontal": (lambda y, x: y % 6 < 3, 0, True),
    "diagonal": (lambda y, x: (x + y) % 7 < 3, 2, False),
    "anti-diagonal": (lambda y, x: (x - y) % 7 < 3, 6, False),
}


@pytest.mark.parametrize("pattern", list(STRIPES))
def test_hog_agrees_with_scikit_image_on_stripes_of_one_orientation(pattern: str) -> None:
    skimage_feature = pytest.importorskip("skimage.feature")
    stripes, our_bin, borders = STRIPES[pattern]
    y, x = np.mgrid[0:32, 0:32]
    image = stripes(y, x).astype(np.float64) * 200  # [32, 32]: 4 × 4 cells of 8 pixels, 2 × 2 patches of 16
    grid = TokenGrid(frames=2, height=32, width=32, patch=16, tubelet=2)
    clip = torch.from_numpy(np.broadcast_to(image, (1, 3, 2, 32, 32)).copy())
    ours = hog_target(clip, grid, torch.arange(4)[None], 8)[0].reshape(2, 2, 3, 9, 2, 2)  # token h, w; c, bin, cell
    ours = ours[:, :, 0].permute(0, 3, 1, 4, 2).reshape(4, 4, 9)  # [cell row, cell col, bin]
    theirs = skimage_feature.hog(
        image, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(1, 1), block_norm="L2", feature_vector=False
    )[:, :, 0, 0]  # [cell row, cell col, bin]
    cells = range(4) if borders else range(1, 3)  # diagonal stripes: skimage zeroes the border gradients' one half
    for row in cells:
        for col in cells:
            mine, skimage_cell = ours[row, col].numpy(), theirs[row, col]
            assert mine.argmax() == our_bin and skimage_cell.argmax() == SKIMAGE_BIN[our_bin]
            np.testing.assert_allclose(mine[list(SKIMAGE_BIN)], skimage_cell[list(SKIMAGE_BIN.values())], atol=1e-6)
            assert mine.sum() == pytest.approx(1.0) and skimage_cell.sum() == pytest.approx(1.0)  # one bin each
