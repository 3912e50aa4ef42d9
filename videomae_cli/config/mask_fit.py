"""Whether a mask spec fits a token grid: how many tokens every sample hides, and the check that it hides some but
not all. Torch-free and below the spec, which runs the check while it validates (a spec error names mask.ratio)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from videomae_cli.config.grid import TokenGrid

if TYPE_CHECKING:
    from videomae_cli.config.schema import MaskSpec


def masked_count(spec: MaskSpec, grid: TokenGrid) -> int:
    """How many tokens every sample masks under `spec`."""
    if spec.type in ("tube", "motion"):  # motion masks hide the same count in every time slice
        return round(spec.ratio * grid.per_slice) * grid.t
    if spec.type == "frame":
        return round(spec.ratio * grid.t) * grid.per_slice
    return round(spec.ratio * grid.num_tokens)


def check_mask_fits(spec: MaskSpec, grid: TokenGrid) -> None:
    """Raise ValueError naming the field when the mask would hide every token, or none, of this grid."""
    masked = masked_count(spec, grid)
    if not 0 < masked < grid.num_tokens:
        per_frame = f"{grid.per_slice} patches per frame"
        unit = {"tube": per_frame, "motion": per_frame, "frame": f"{grid.t} time slices"}.get(
            spec.type, f"{grid.num_tokens} tokens"
        )
        raise ValueError(f"mask.ratio: {spec.ratio} masks {'none' if masked == 0 else 'all'} of the {unit}")
    if spec.decoder_ratio and (grid.h % 2 or grid.w % 2):
        raise ValueError(
            f"mask.decoder_ratio: running-cell masking needs an even patch grid, got {grid.h}×{grid.w} "
            "(change data.input_size)"
        )
