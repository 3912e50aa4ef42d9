"""What `videomae visualize-mask` draws: the settings of one picture, checked without torch.

Everything that can be checked without the checkpoint is checked here, so a bad request is refused before the model
code loads: the output kind, the frame list's syntax, and — without a checkpoint, where the clip geometry comes from
these settings — the clip, the mask's fit to it and the frames' range. What needs the checkpoint (its clip fixes
`num_frames` and `input_size`; its grid bounds `frames`) is checked in viz/compute.py with the same helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from videomae_cli.config.grid import TokenGrid
from videomae_cli.config.mask_fit import check_mask_fits
from videomae_cli.config.schema import MaskSpec, MaskType, NonNegativeInt, Strict

OUTPUT_SUFFIXES = (".png", ".gif", ".mp4")

# Geometry without a checkpoint: the official ViT-B clip (16 × 224², 16-pixel patches, 2-frame tubelets, rate 4).
DEFAULT_NUM_FRAMES = 16
DEFAULT_INPUT_SIZE = 224
DEFAULT_PATCH = 16
DEFAULT_TUBELET = 2
DEFAULT_SAMPLING_RATE = 4


class MaskChoice(Strict):
    """The mask settings asked for: None keeps the checkpoint's (without one, MaskSpec's default). The constraints
    are MaskSpec's, so that a bad value is refused (naming `mask.<field>`) before any checkpoint loads."""

    type: MaskType | None = None
    ratio: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    decoder_ratio: Literal[0.0, 0.25, 0.5, 0.75] | None = None

    def over(self, base: MaskSpec, grid: TokenGrid) -> MaskSpec:
        """`base` with the settings given applied, checked against the grid: ValueError naming the field when the
        mask would hide no token or all of them."""
        spec = base.model_copy(update=self.model_dump(exclude_none=True))
        check_mask_fits(spec, grid)
        return spec


class VisualizeSpec(Strict):
    """One picture of one clip: which model (if any), which video, which mask, which frames, where it goes."""

    checkpoint: Path | None = None  # a pretrain checkpoint; None: the mask alone, on the geometry below
    video: Path
    out: Path  # .png (a grid of `frames`), .gif or .mp4 (every frame of the clip)
    mask: MaskChoice = Field(default_factory=MaskChoice)
    frames: str | None = None  # PNG columns: "all", "0,2,4", or None for the first frame of each tubelet
    error_map: bool = False  # a row with each reconstructed patch's squared error (needs the checkpoint)
    seed: NonNegativeInt = 0  # the mask's seed
    num_frames: int | None = None  # the clip's length without a checkpoint (None: DEFAULT_NUM_FRAMES); a checkpoint
    input_size: int | None = None  # fixes both itself (None: DEFAULT_INPUT_SIZE)

    @field_validator("out")
    @classmethod
    def _check_out(cls, out: Path) -> Path:
        output_suffix(out)
        return out

    @field_validator("frames")
    @classmethod
    def _check_frames(cls, frames: str | None) -> str | None:
        if frames is not None:
            frame_numbers(frames)
        return frames

    @model_validator(mode="after")
    def _check_without_checkpoint(self) -> VisualizeSpec:
        if self.checkpoint is None:
            if self.error_map:
                raise ValueError("error_map: needs a pretrain checkpoint (without one nothing is reconstructed)")
            grid = default_grid(self.num_frames, self.input_size)
            self.mask.over(MaskSpec(), grid)
            clip_frames(self.frames, grid)
        return self


def default_grid(num_frames: int | None, input_size: int | None) -> TokenGrid:
    """The clip's tokens without a checkpoint: 16-pixel patches, 2-frame tubelets; ValueError naming the field."""
    frames = DEFAULT_NUM_FRAMES if num_frames is None else num_frames
    size = DEFAULT_INPUT_SIZE if input_size is None else input_size
    if frames <= 0 or frames % DEFAULT_TUBELET:
        raise ValueError(f"num_frames: must be a positive multiple of the tubelet size {DEFAULT_TUBELET}, got {frames}")
    if size <= 0 or size % DEFAULT_PATCH:
        raise ValueError(f"input_size: must be a positive multiple of the patch size {DEFAULT_PATCH}, got {size}")
    return TokenGrid(frames, size, size, DEFAULT_PATCH, DEFAULT_TUBELET)


def output_suffix(path: Path) -> str:
    """The picture kind `path` asks for (.png, .gif or .mp4); ValueError naming `out` otherwise."""
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"out: {path.name} must end in .png (a grid), .gif or .mp4 (an animation)")
    return suffix


def frame_numbers(text: str) -> list[int] | None:
    """The frame numbers of a comma list ("0,2,4"), or None for "all"; ValueError naming `frames` otherwise."""
    if text.strip().lower() == "all":
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"frames: expected 'all' or frame numbers like 0,2,4, got {text!r}") from None


def clip_frames(text: str | None, grid: TokenGrid) -> list[int]:
    """The clip frames shown as PNG columns: "all", a comma list ("0,2,4"), or None for the first frame of each
    tubelet (every frame of a tubelet shares its mask, so one per tubelet shows every mask slice once).
    ValueError naming `frames` for a bad list or a frame outside the clip."""
    if text is None:
        return list(range(0, grid.frames, grid.tubelet))
    frames = frame_numbers(text)
    if frames is None:
        return list(range(grid.frames))
    bad = [f for f in frames if not 0 <= f < grid.frames]
    if bad:
        raise ValueError(
            f"frames: frame {bad[0]} is out of range: the clip has {grid.frames} frames (0-{grid.frames - 1})"
        )
    return frames
