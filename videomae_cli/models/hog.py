"""MaskFeat's HOG target: histograms of oriented gradients per token (Wei et al., "Masked Feature Prediction for
Self-Supervised Visual Pre-Training", 2022; the video model's `HOGLayerC(nbins=9, pool=8, gaussian_window=16)`).

For each token, on the first frame of its tubelet and per colour channel:

1. Sobel gradients over the whole frame, reflect-padded by one pixel: gx from [[1, 0, -1], [2, 0, -2], [1, 0, -1]],
   gy from its transpose (cross-correlation, as conv2d computes it).
2. Each pixel's magnitude √(gx² + gy²), weighted by a Gaussian over its patch (a patch-sized window, σ = patch // 2,
   summing to 1, the same in every patch).
3. Its unsigned orientation atan2(gx, gy) mod π picks one of `bins` equal bins (hard binning, 180°/bins each).
4. Magnitudes summed per bin over `cell` × `cell` pixel cells; each cell's histogram L2-normalised.

A token's row is laid out (channel, bin, cell row, cell column): 3 · bins · (patch / cell)² values. Gradients ignore
the mean and the per-channel scale cancels in the normalisation, so the ImageNet-normalised clip, the [0, 1] clip and
the uint8 clip give the same target. Gradients are taken over whole frames (a patch border sees its neighbour, as in
MaskFeat); histograms are built for the requested tokens only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from videomae_cli.models.vit import TokenGrid

HOG_BINS = 9


def hog_dim(patch: int, cell: int, bins: int = HOG_BINS) -> int:
    """Values per token: 3 channels × bins × cells per patch."""
    return 3 * bins * (patch // cell) ** 2


def gaussian_window(size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[size, size] outer product of a Gaussian over `size` centred positions, σ = size // 2, summing to 1."""
    offsets = torch.arange(size, dtype=torch.float64)
    line = torch.exp(-0.5 * ((offsets - offsets.mean()) / (size // 2)) ** 2)
    window = torch.outer(line, line)
    return (window / window.sum()).to(dtype)


def sobel_gradients(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames [F, 3, H, W] → (gx, gy) [F, 3, H, W]: per channel, the cross-correlation of the reflect-padded frames
    with [[1, 0, -1], [2, 0, -2], [1, 0, -1]] and its transpose, as differences across each pixel smoothed 1-2-1 (the
    same sums as the 3 × 3 kernel, several times faster than a grouped conv2d on CPU, and exactly 0 at a mirrored
    border)."""
    padded = F.pad(frames, (1, 1, 1, 1), mode="reflect")  # [F, 3, H+2, W+2]
    across = padded[..., :-2] - padded[..., 2:]  # left − right: [F, 3, H+2, W]
    gx = torch.add(across[..., :-2, :], across[..., 2:, :]).add_(across[..., 1:-1, :], alpha=2)
    down = padded[..., :-2, :] - padded[..., 2:, :]  # top − bottom: [F, 3, H, W+2]
    gy = torch.add(down[..., :-2], down[..., 2:]).add_(down[..., 1:-1], alpha=2)
    return gx, gy


def hog_target(
    video: torch.Tensor, grid: TokenGrid, tokens: torch.Tensor, cell: int, bins: int = HOG_BINS
) -> torch.Tensor:
    """The HOG rows of `tokens` [B, K] (indices in (t, h, w) order) of `video` [B, 3, T, H, W] → [B, K, hog_dim]."""
    b, p = video.shape[0], grid.patch
    # The first frame of each time slice: [B, 3, t, H, W], in float32 at least (float64 stays float64).
    frames = video[:, :, :: grid.tubelet].to(torch.promote_types(video.dtype, torch.float32))
    frames = frames.transpose(1, 2).flatten(0, 1)  # [B·t, 3, H, W]
    gx, gy = sobel_gradients(frames)
    weight = gaussian_window(p, frames.dtype).to(frames.device).repeat(grid.h, grid.w)  # [H, W], one per patch
    magnitude = torch.hypot(gx, gy).mul_(weight)  # [B·t, 3, H, W]
    phase = torch.atan2(gx, gy).div_(math.pi).mul_(bins)  # [-bins, bins], rounded as MaskFeat rounds it
    orientation = phase.floor_().remainder_(bins).long()  # unsigned: θ and θ + π share a bin
    # Every pixel adds its magnitude to one value of its token's row: (token, channel, bin, cell) flattened.
    dim = hog_dim(p, cell, bins)
    slot = histogram_slots(grid, cell, bins, video.device) + orientation * (dim // 3 // bins)  # [B·t, 3, H, W]
    hist = magnitude.new_zeros(b * grid.t, grid.per_slice * dim)
    hist.scatter_add_(1, slot.flatten(1), magnitude.flatten(1))  # [B·t, h·w·dim]
    rows = hist.view(b, grid.num_tokens, dim).gather(1, tokens[:, :, None].expand(-1, -1, dim))  # [B, K, dim]
    rows = rows.unflatten(2, (3, bins, -1))  # [B, K, 3, bins, cells²]
    return F.normalize(rows, p=2, dim=3).flatten(2)  # each cell's histogram L2-normalised over its bins


def histogram_slots(grid: TokenGrid, cell: int, bins: int, device: torch.device) -> torch.Tensor:
    """[3, H, W]: where in its slice's histograms [h·w, 3, bins, cells²] (flattened) each pixel of each channel
    adds its magnitude, for orientation bin 0 (a bin adds bin · cells² to it)."""
    p, cells = grid.patch, grid.patch // cell
    rows, cols = torch.arange(grid.height, device=device), torch.arange(grid.width, device=device)
    token = (rows // p)[:, None] * grid.w + (cols // p)[None, :]  # [H, W]: the token of each pixel in its slice
    where = ((rows % p) // cell)[:, None] * cells + ((cols % p) // cell)[None, :]  # [H, W]: the cell in its patch
    channel = torch.arange(3, device=device)[:, None, None]  # [3, 1, 1]
    return token * (3 * bins * cells * cells) + channel * (bins * cells * cells) + where
