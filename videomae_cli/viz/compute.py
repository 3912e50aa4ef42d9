"""`videomae visualize-mask`, up to arrays: what a masked autoencoder sees and what it rebuilds, for one clip.

The clip is cut exactly as single-view evaluation cuts it (the centred temporal clip, short-side resize, centre crop),
masked with the run's mask generator, and — with a pretrain checkpoint — passed through the model. Computation and
rendering are separate: `visualize` returns a `MaskVisualization` of plain arrays (the rows of the picture), and
viz/render.py draws them.

Predictions are shown in pixels as the official VideoMAE V1 visualisation does: a norm_pixel prediction is
un-normalised with the mean and std of the original patch, so the picture shows the structure the model predicted
inside each patch, not its brightness (which the target never asked for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from videomae_cli.config.grid import TokenGrid
from videomae_cli.config.schema import MaskSpec
from videomae_cli.config.visualize import (
    DEFAULT_SAMPLING_RATE,
    MaskChoice,
    VisualizeSpec,
    clip_frames,
    default_grid,
)
from videomae_cli.data.loader import ClipNormalizer
from videomae_cli.data.video import VideoError, open_video
from videomae_cli.data.views import ViewPlan
from videomae_cli.errors import ConfigError, DataError
from videomae_cli.masking import MaskedTokens, MaskGenerator, SampleMask, collate_masks
from videomae_cli.models.pretrain import (
    PIXEL_TARGETS,
    PretrainOutput,
    PretrainVideoMAE,
    denormalize_prediction,
    token_errors,
)
from videomae_cli.models.vit import gather_tokens, patchify, unpatchify

if TYPE_CHECKING:
    from videomae_cli.checkpoint import LoadedCheckpoint

MID_GREY = 0.5  # the fill of masked or unpredicted cells: no uint8 pixel / 255 equals it, so tests can find it


# ---------------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class MaskViewSetup:
    """Everything `visualize` needs besides the video, resolved and validated once."""

    plan: ViewPlan  # which frames and crop make the clip
    grid: TokenGrid
    mask: MaskSpec
    seed: int
    model: PretrainVideoMAE | None = None  # None: show the mask alone
    error_map: bool = False


def setup(spec: VisualizeSpec) -> MaskViewSetup:
    """Resolve the clip geometry and mask: from the checkpoint's spec when one is given, else from the spec's
    `num_frames` and `input_size` (or the official ViT-B defaults); the mask settings given override either.
    Raises ConfigError naming the field. (VisualizeSpec has checked all that needs no checkpoint.)"""
    loaded = load_pretrain_checkpoint(spec.checkpoint) if spec.checkpoint is not None else None
    model = loaded.model if loaded is not None else None
    if loaded is None:
        plan, grid = default_geometry(spec.num_frames, spec.input_size)
        base = MaskSpec()
    else:
        for name, value in (("num_frames", spec.num_frames), ("input_size", spec.input_size)):
            if value is not None:
                raise ConfigError(
                    f"{name}: the checkpoint fixes the clip ({model.grid.frames} frames of {model.grid.height}²); "
                    "leave it out"
                )
        plan, grid, base = ViewPlan.for_data(loaded.spec.data), model.grid, loaded.spec.mask
    mask = resolve_mask(base, grid, spec.mask)
    return MaskViewSetup(plan, grid, mask, spec.seed, model, spec.error_map)


def load_pretrain_checkpoint(path: Path) -> LoadedCheckpoint:
    """A pretrain checkpoint (file, checkpoint dir or run dir) in eval mode, on the CPU; not a classifier."""
    from videomae_cli.checkpoint import load_checkpoint  # the model code imports only when a checkpoint is given
    from videomae_cli.models.teacher import with_teacher

    loaded = with_teacher(load_checkpoint(path), "cpu")  # a teacher-target model's loss needs its teacher
    if loaded.kind != "pretrain":
        raise ConfigError(
            f"checkpoint: {path} is a classifier checkpoint; visualize-mask needs a pretrain checkpoint "
            "(its decoder makes the reconstruction), or none to show the mask alone"
        )
    return loaded


def default_geometry(num_frames: int | None, input_size: int | None) -> tuple[ViewPlan, TokenGrid]:
    """The clip without a checkpoint: dense sampling at rate 4, 16-pixel patches, 2-frame tubelets."""
    try:
        grid = default_grid(num_frames, input_size)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    plan = ViewPlan(clips=1, crops=1, num_frames=grid.frames, size=grid.height, sampling_rate=DEFAULT_SAMPLING_RATE)
    return plan, grid


def resolve_mask(base: MaskSpec, grid: TokenGrid, choice: MaskChoice) -> MaskSpec:
    """`base` (the checkpoint's mask, or MaskSpec's defaults) with the settings chosen applied, checked against the
    grid: a ratio that hides no token or all of them is a ConfigError naming the field."""
    try:
        return choice.over(base, grid)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def parse_frames(text: str | None, grid: TokenGrid) -> list[int]:
    """The clip frames shown as PNG columns (config/visualize.py: clip_frames); ConfigError naming `frames`."""
    try:
        return clip_frames(text, grid)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def read_clip(video: Path, plan: ViewPlan) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 [T, S, S, 3] single-view evaluation clip of `video`, and the video frame index of each clip frame."""
    try:
        with open_video(video) as reader:
            indices = plan.frame_indices(reader.num_frames)[0]  # one clip: the centred one
            frames = torch.from_numpy(reader.get_frames(indices))
    except VideoError as e:
        raise DataError(f"video: {e}") from None
    return plan.spatial_views(frames)[0], indices


# ----------------------------------------------------------------------------------------------------- computation


@dataclass
class MaskVisualization:
    """One clip's picture rows as float arrays in [0, 1], and the mask that made them.

    Pixel rows are [T, S, S, 3]; the reconstruction rows, the loss and the error map exist only with a model.
    """

    original: np.ndarray
    masked: np.ndarray  # tokens hidden from the encoder filled with MID_GREY
    mask: np.ndarray  # bool [N]: True = hidden from the encoder, tokens ordered (t, h, w)
    predicted: np.ndarray  # bool [N]: True = hidden and reconstructed by the decoder (all hidden ones without V2)
    grid: TokenGrid
    spec: MaskSpec
    reconstruction: np.ndarray | None = None  # predicted tokens; MID_GREY wherever there is no prediction
    pasted: np.ndarray | None = None  # the reconstruction with the visible tokens pasted back
    error: np.ndarray | None = None  # float [T, S, S]: each predicted patch's MSE to the original; NaN elsewhere
    loss: float | None = None  # the model's reconstruction loss on this clip and mask
    target: str | None = None  # a target that is not pixels (hog): nothing is reconstructed, the error is the target's
    video_frames: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # source frame per clip frame
    source: str = ""  # the video's name, for titles

    def rows(self) -> list[tuple[str, np.ndarray]]:
        """(label, float RGB [T, S, S, 3]) for each row of the picture, top to bottom."""
        rows = [("original", self.original), ("masked input", self.masked)]
        if self.reconstruction is not None and self.pasted is not None:
            rows += [("reconstruction", self.reconstruction), ("reconstruction + visible", self.pasted)]
        if self.error is not None:
            top = float(np.nanmax(self.error)) if np.isfinite(self.error).any() else 0.0
            what = f"{self.target} error" if self.target else "error"
            rows.append((f"{what} (MSE 0-{top:.3g})", heat_map(self.error, top)))
        return rows

    def title(self) -> str:
        """Mask type and ratios, and the loss when a model made the reconstruction."""
        decoder = f"decoder mask {self.spec.decoder_ratio:g}" if self.spec.decoder_ratio else "no decoder mask"
        parts = [self.source, f"{self.spec.type} mask {self.spec.ratio:g}", decoder]
        if self.target:
            parts.append(f"{self.target} target: pixels are not reconstructed")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        return " · ".join(p for p in parts if p)


def visualize(
    clip: torch.Tensor, setup: MaskViewSetup, video_frames: np.ndarray | None = None, source: str = ""
) -> MaskVisualization:
    """The picture rows of uint8 clip [T, S, S, 3] under the setup's mask (and model, when it has one)."""
    grid = setup.grid
    sample = MaskGenerator(setup.mask, grid, setup.seed)(epoch=0, index=0, clip=clip.numpy())
    mask = np.ones(grid.num_tokens, dtype=bool)
    mask[sample.visible] = False
    predicted = np.zeros(grid.num_tokens, dtype=bool)
    if setup.model is not None:
        predicted[sample.decoded] = mask[sample.decoded]  # V2 also decodes some visible tokens: not shown, not trained

    original = clip.float() / 255  # [T, S, S, 3]
    out = MaskVisualization(
        original=original.numpy(),
        masked=original.masked_fill(token_pixels(mask, grid), MID_GREY).numpy(),
        mask=mask,
        predicted=predicted,
        grid=grid,
        spec=setup.mask,
        video_frames=np.asarray(video_frames if video_frames is not None else [], dtype=np.int64),
        source=source,
    )
    if setup.model is not None:
        add_reconstruction(out, setup.model, clip, sample, setup.error_map)
    return out


def add_reconstruction(
    out: MaskVisualization,
    model: PretrainVideoMAE,
    clip: torch.Tensor,
    sample: SampleMask,
    error_map: bool,
) -> None:
    """Fill the reconstruction rows, the loss and (with `error_map`) the error of `out` from the model's predictions.
    A model whose target is not pixels (hog) reconstructs none: its loss and per-token target error instead."""
    if model.config.target not in PIXEL_TARGETS:
        add_target_error(out, model, clip, sample)
        return
    grid, frames = target_geometry(model)
    pixels, out.loss = predict_pixels(model, clip, sample)  # [N_dec, P] on the predicted grid
    shown = torch.from_numpy(out.predicted[sample.decoded])  # which decoded rows are hidden tokens
    where = torch.from_numpy(sample.decoded)[shown]
    original = torch.from_numpy(out.original)  # [T, S, S, 3]
    truth = patchify(original[frames].permute(3, 0, 1, 2)[None], grid)[0]  # [N, P]
    recon = torch.full_like(truth, MID_GREY)
    recon[where] = pixels[shown].clamp(0, 1)
    # Frames the decoder does not predict (MAE-ST pred_frames) stay grey, like tokens it does not decode.
    reconstruction = torch.full_like(original, MID_GREY)
    reconstruction[frames] = unpatchify(recon, grid)
    out.reconstruction = reconstruction.numpy()
    out.pasted = torch.where(token_pixels(~out.mask, out.grid), original, reconstruction).numpy()
    if error_map:
        error = torch.full_like(truth, math.nan)  # [N, P]: one value per patch, spread over its pixels
        error[where] = (recon[where] - truth[where]).pow(2).mean(-1, keepdim=True).expand(-1, truth.shape[1])
        full = torch.full(original.shape[:3], math.nan)
        full[frames] = unpatchify(error, grid)[..., 0]
        out.error = full.numpy()  # [T, S, S]


def add_target_error(out: MaskVisualization, model: PretrainVideoMAE, clip: torch.Tensor, sample: SampleMask) -> None:
    """The loss and each reconstructed token's error in the model's own target space, spread over its pixels."""
    output, _, _ = run_model(model, clip, sample)
    errors = token_errors(output.pred, output.target, model.loss_kind)[0].cpu()  # [N_dec]
    shown = torch.from_numpy(out.predicted[sample.decoded])  # which decoded rows are hidden tokens
    per_token = torch.full((out.grid.num_tokens,), math.nan)
    per_token[torch.from_numpy(sample.decoded)[shown]] = errors[shown]
    out.error = unpatchify(per_token[:, None].expand(-1, out.grid.patch_dim), out.grid)[..., 0].numpy()  # [T, S, S]
    out.loss, out.target = float(output.loss), model.config.target


def target_geometry(model: PretrainVideoMAE) -> tuple[TokenGrid, torch.Tensor]:
    """The grid of the decoder's predictions and the clip frames it covers: the clip's own, except for MAE-ST models
    that predict only `pred_frames` evenly spread frames (same time slices, fewer frames per token)."""
    if model.target_grid is model.grid:
        return model.grid, torch.arange(model.grid.frames)
    return model.target_grid, model.target_frames.cpu()


def predict_pixels(model: PretrainVideoMAE, clip: torch.Tensor, sample: SampleMask) -> tuple[torch.Tensor, float]:
    """The model's predictions for the decoded tokens as [0, 1] pixels [N_dec, P] (not clipped), and its loss."""
    grid, frames = target_geometry(model)
    output, video, tokens = run_model(model, clip, sample)
    patches = patchify(video.index_select(2, frames.to(video.device)), grid)  # [1, N, P], normalised, as the target's
    patches = gather_tokens(patches, tokens.decoded)[0]  # [N_dec, P]
    pixels = denormalize_prediction(output.pred[0].float(), patches, model.config.target)
    return pixels.cpu(), float(output.loss)


def run_model(
    model: PretrainVideoMAE, clip: torch.Tensor, sample: SampleMask
) -> tuple[PretrainOutput, torch.Tensor, MaskedTokens]:
    """(the model's output, the video it read [1, 3, T, S, S], the tokens) for uint8 clip [T, S, S, 3] under
    `sample`, without gradients."""
    device = next(model.parameters()).device
    video = ClipNormalizer(device)(clip[None])  # exactly what training feeds the model
    tokens = collate_masks([sample]).to(device)
    with torch.no_grad():
        return model(video, tokens), video, tokens


def token_pixels(selection: np.ndarray, grid: TokenGrid) -> torch.Tensor:
    """bool [N] over tokens → bool [T, H, W, 3]: each token's value on every pixel of its tubelet."""
    return unpatchify(torch.from_numpy(selection)[:, None].expand(-1, grid.patch_dim), grid)


def heat_map(error: np.ndarray, top: float) -> np.ndarray:
    """float [...] errors → RGB [..., 3] with matplotlib's inferno scaled to [0, top]; NaN (no prediction) → grey."""
    from matplotlib import colormaps

    scaled = np.nan_to_num(error / top if top > 0 else np.zeros_like(error))
    colours = colormaps["inferno"](scaled)[..., :3].astype(np.float32)
    colours[np.isnan(error)] = MID_GREY
    return colours
