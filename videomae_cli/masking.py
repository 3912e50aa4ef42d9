"""Mask generators (design.md: math): tube, random, frame, motion, and VideoMAE V2's running-cell decoder mask.

A sample's mask is a pure function of (seed, epoch, sample index) — and, for the motion mask, of the clip itself —
so it does not depend on batch size, worker count, world size or restarts. Every sample of a spec masks the same
number of tokens, and masks reach the model as index tensors (visible tokens, decoded tokens), never as boolean
selections inside the training step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from videomae_cli.config.grid import TokenGrid
from videomae_cli.config.mask_fit import check_mask_fits
from videomae_cli.config.schema import MaskSpec
from videomae_cli.seeding import Stream, sample_rng

if TYPE_CHECKING:
    import torch


def tube_mask(grid: TokenGrid, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """One spatial mask of round(ratio·h·w) patches, repeated over every time slice. → bool [N], True = masked."""
    per_slice = np.zeros(grid.per_slice, dtype=bool)
    per_slice[rng.permutation(grid.per_slice)[: round(ratio * grid.per_slice)]] = True
    return np.tile(per_slice, grid.t)


def random_mask(grid: TokenGrid, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """round(ratio·N) tokens anywhere in spacetime (MAE-ST). → bool [N]."""
    mask = np.zeros(grid.num_tokens, dtype=bool)
    mask[rng.permutation(grid.num_tokens)[: round(ratio * grid.num_tokens)]] = True
    return mask


def frame_mask(grid: TokenGrid, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """round(ratio·t) whole time slices. → bool [N]."""
    slices = np.zeros(grid.t, dtype=bool)
    slices[rng.permutation(grid.t)[: round(ratio * grid.t)]] = True
    return np.repeat(slices, grid.per_slice)


ENCODER_MASKS = {"tube": tube_mask, "random": random_mask, "frame": frame_mask}


def motion_energy(clip: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """How much each token's pixels change: the mean absolute difference between consecutive frames over its
    tubelet, patch and channels (the last frame takes the change into it), sampled on every other row and column of
    an even patch (a quarter of the pixels: 5 ms instead of 18 for a 16 × 224² clip in a loader worker).
    uint8 clip [T, H, W, 3] → float [N] in (t, h, w) order."""
    step = 2 if grid.patch % 2 == 0 else 1
    sampled = clip[:, ::step, ::step].astype(np.int16)  # [T, H/step, W/step, 3]
    change = np.abs(np.diff(sampled, axis=0)).sum(-1, dtype=np.int32)  # [T-1, H/step, W/step], summed over colour
    if not len(change):
        return np.zeros(grid.num_tokens, dtype=np.float32)
    change = np.concatenate([change, change[-1:]])  # [T, H/step, W/step]
    p = grid.patch // step
    per_token = change.reshape(grid.t, grid.tubelet, grid.h, p, grid.w, p).mean(axis=(1, 3, 5)) / 3
    return per_token.reshape(-1).astype(np.float32)


def motion_mask(
    grid: TokenGrid, ratio: float, rng: np.random.Generator, energy: np.ndarray, temperature: float, tube: bool
) -> np.ndarray:
    """Visible tokens drawn where there is motion (AdaMAE/MGMAE's idea): in each time slice (or once, for every slice,
    when `tube`), per_slice − round(ratio·h·w) tokens drawn without replacement with probability ∝ exp(score /
    temperature), score = the token's energy over the mean energy (a token with the average motion scores 1). The
    Gumbel-top-k trick draws exactly that; temperature 0 takes the highest scores (ties at random). → bool [N]."""
    keep = grid.per_slice - round(ratio * grid.per_slice)
    energy = energy.reshape(grid.t, grid.per_slice)
    if tube:
        energy = energy.mean(0, keepdims=True)  # [1, h·w]: one choice of cells for every slice
    score = energy / (energy.mean() + 1e-6)
    noise = rng.gumbel(size=score.shape)
    if temperature > 0:
        order = np.argsort(-(score / temperature + noise), axis=-1, kind="stable")
    else:
        order = np.lexsort((noise, -score), axis=-1)  # by score, then at random
    mask = np.ones(score.shape, dtype=bool)
    np.put_along_axis(mask, order[:, :keep], False, axis=-1)
    return np.tile(mask, (grid.t, 1)).reshape(-1) if tube else mask.reshape(-1)


def running_cell_selection(grid: TokenGrid, decoder_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """VideoMAE V2's running-cell decoder mask as a selection: True = the decoder reconstructs this token.

    A 2×2 cell holds int(4·ratio) "hidden" and the rest "selected" entries in a ring; the ring starts at a random
    offset and advances by one at every time slice; the cell is tiled over the (h, w) grid. → bool [N].
    """
    hidden = int(4 * decoder_ratio)
    ring = np.array([True] * hidden + [False] * (4 - hidden))  # True = not decoded
    start = int(rng.integers(4))
    slices = []
    for t in range(grid.t):
        cell = ring[(np.arange(4) + start + t + 1) % 4].reshape(2, 2)
        slices.append(np.tile(cell, (grid.h // 2, grid.w // 2)).reshape(-1))
    return ~np.concatenate(slices)


@dataclass
class MaskedTokens:
    """A batch's mask as index tensors (same counts in every sample).

    visible: [B, N_vis] tokens the encoder sees, ascending.
    decoded: [B, N_dec] tokens the decoder reconstructs (the masked ones, or V2's running-cell selection), ascending.
    weight:  [B, N_dec] 1 where the encoder did not see the token, 0 where it did; None when every decoded token counts.
    """

    visible: torch.Tensor
    decoded: torch.Tensor
    weight: torch.Tensor | None = None

    @classmethod
    def from_mask(cls, mask: torch.Tensor, decode: torch.Tensor | None = None) -> MaskedTokens:
        """From a bool mask [B, N] (True = masked) and optionally a bool decoder selection [B, N] (True = decoded).

        A convenience for the Python API: it reads the mask counts on the host, which the training step never does.
        """
        import torch  # the module imports no torch: see collate_masks

        num_visible = mask.shape[1] - _same_count(mask, "mask")
        order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)  # visible first, each part ascending
        if decode is None:
            return cls(order[:, :num_visible], order[:, num_visible:])
        num_decoded = _same_count(decode, "decoder selection")
        decoded = torch.argsort((~decode).to(torch.uint8), dim=1, stable=True)[:, :num_decoded]
        return cls(order[:, :num_visible], decoded, mask.gather(1, decoded).float())

    def to(self, device: torch.device | str) -> MaskedTokens:
        """The same indices on `device` (non-blocking)."""
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return MaskedTokens(move(self.visible), move(self.decoded), move(self.weight))


def _same_count(selection: torch.Tensor, what: str) -> int:
    """The number of True entries per sample of a bool [B, N] selection, which must be equal across the batch."""
    counts = selection.sum(1)
    if bool((counts != counts[0]).any()):
        raise ValueError(f"every sample's {what} must select the same number of tokens, got {counts.tolist()}")
    return int(counts[0])


@dataclass(frozen=True)
class SampleMask:
    """One sample's mask as indices: visible tokens, tokens the decoder rebuilds, which of those count in the loss."""

    visible: np.ndarray  # int64 [N_vis], ascending
    decoded: np.ndarray  # int64 [N_dec], ascending
    weight: np.ndarray | None  # float32 [N_dec]: 1 where the encoder did not see the token; None = all count


class MaskGenerator:
    """Makes the mask of sample `index` in `epoch`, deterministically from the run seed."""

    def __init__(self, spec: MaskSpec, grid: TokenGrid, seed: int) -> None:
        check_mask_fits(spec, grid)
        self.spec, self.grid, self.seed = spec, grid, seed

    def rng(self, epoch: int, index: int, repeat: int = 0) -> np.random.Generator:
        """The mask RNG of one sample (and of each repeated clip of it)."""
        return sample_rng(self.seed, epoch, index, Stream.MASK, repeat)

    def __call__(self, epoch: int, index: int, repeat: int = 0, clip: np.ndarray | None = None) -> SampleMask:
        """The mask of one sample; a motion mask reads the sample's uint8 clip [T, H, W, 3] (None, for a sample that
        could not be loaded: no motion anywhere, so uniform)."""
        rng = self.rng(epoch, index, repeat)
        if self.spec.type == "motion":
            energy = motion_energy(clip, self.grid) if clip is not None else np.zeros(self.grid.num_tokens)
            masked = motion_mask(
                self.grid, self.spec.ratio, rng, energy, self.spec.motion_temperature, self.spec.motion_tube
            )
        else:
            masked = ENCODER_MASKS[self.spec.type](self.grid, self.spec.ratio, rng)
        visible = np.flatnonzero(~masked)
        if not self.spec.decoder_ratio:
            return SampleMask(visible, np.flatnonzero(masked), None)
        decoded = np.flatnonzero(running_cell_selection(self.grid, self.spec.decoder_ratio, rng))
        return SampleMask(visible, decoded, masked[decoded].astype(np.float32))


def collate_masks(masks: Sequence[SampleMask]) -> MaskedTokens:
    """Stack per-sample masks into the batch index tensors the model consumes."""
    import torch  # here: the rest of this module is numpy only at import, so a bad request is refused quickly

    weight = None
    if masks[0].weight is not None:
        weight = torch.from_numpy(np.stack([m.weight for m in masks]))
    return MaskedTokens(
        visible=torch.from_numpy(np.stack([m.visible for m in masks])),
        decoded=torch.from_numpy(np.stack([m.decoded for m in masks])),
        weight=weight,
    )
