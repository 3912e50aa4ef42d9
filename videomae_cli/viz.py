"""`videomae visualize-mask`: what a masked autoencoder sees and what it rebuilds, for one clip of one video.

The clip is cut exactly as single-view evaluation cuts it (the centred temporal clip, short-side resize, centre crop),
masked with the run's mask generator, and — with a pretrain checkpoint — passed through the model. Computation and
rendering are separate: `visualize` returns a `MaskVisualization` of plain arrays (the rows of the picture), and
`write_png` / `write_gif` / `write_mp4` draw them.

Predictions are shown in pixels as the official VideoMAE V1 visualisation does: a norm_pixel prediction is
un-normalised with the mean and std of the original patch, so the picture shows the structure the model predicted
inside each patch, not its brightness (which the target never asked for).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import torch
from pydantic import Field

from videomae_cli.checkpoint import atomic_write
from videomae_cli.config.resolve import resolve_spec
from videomae_cli.config.schema import MaskSpec, Strict
from videomae_cli.data.loader import ClipNormalizer
from videomae_cli.data.video import VideoError, open_video
from videomae_cli.data.views import ViewPlan
from videomae_cli.errors import ConfigError, DataError
from videomae_cli.masking import MaskGenerator, SampleMask, collate_masks
from videomae_cli.models.pretrain import PretrainVideoMAE, denormalize_prediction
from videomae_cli.models.vit import TokenGrid, gather_tokens, patchify, unpatchify

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL.ImageFont import FreeTypeFont

    from videomae_cli.checkpoint import LoadedCheckpoint

MID_GREY = 0.5  # the fill of masked or unpredicted cells: no uint8 pixel / 255 equals it, so tests can find it
OUTPUT_SUFFIXES = (".png", ".gif", ".mp4")
ANIMATION_FPS = 4  # slow enough to follow the mask from one frame to the next

# Geometry without a checkpoint: the official ViT-B clip (16 × 224², 16-pixel patches, 2-frame tubelets, rate 4).
DEFAULT_NUM_FRAMES = 16
DEFAULT_INPUT_SIZE = 224
DEFAULT_PATCH = 16
DEFAULT_TUBELET = 2
DEFAULT_SAMPLING_RATE = 4


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


class _MaskSettings(Strict):
    """Wraps MaskSpec so that validation errors name `mask.<field>` and the flag that set it."""

    mask: MaskSpec = Field(default_factory=MaskSpec)


def setup(
    checkpoint: Path | None,
    *,
    mask_type: str | None = None,
    mask_ratio: float | None = None,
    decoder_mask_ratio: float | None = None,
    num_frames: int | None = None,
    input_size: int | None = None,
    seed: int = 0,
    error_map: bool = False,
) -> MaskViewSetup:
    """Resolve the clip geometry and mask: from the checkpoint's spec when one is given, else from the flags (or the
    official ViT-B defaults); explicit mask flags override either. Raises ConfigError naming the flag or field."""
    if seed < 0:
        raise ConfigError(f"--seed: must be 0 or more, got {seed}")
    loaded = load_pretrain_checkpoint(checkpoint) if checkpoint is not None else None
    model = loaded.model if loaded is not None else None
    if loaded is None:
        if error_map:
            raise ConfigError("--error-map: needs a pretrain checkpoint (without one nothing is reconstructed)")
        plan, grid = default_geometry(num_frames, input_size)
        base = MaskSpec()
    else:
        for flag, value in (("--num-frames", num_frames), ("--input-size", input_size)):
            if value is not None:
                raise ConfigError(
                    f"{flag}: the checkpoint fixes the clip ({model.grid.frames} frames of {model.grid.height}²); "
                    f"leave {flag} out"
                )
        plan, grid, base = ViewPlan.for_data(loaded.spec.data), model.grid, loaded.spec.mask
    mask = resolve_mask(base, grid, mask_type, mask_ratio, decoder_mask_ratio)
    return MaskViewSetup(plan, grid, mask, seed, model, error_map)


def load_pretrain_checkpoint(path: Path) -> LoadedCheckpoint:
    """A pretrain checkpoint (file, checkpoint dir or run dir) in eval mode, on the CPU; not a classifier."""
    from videomae_cli.checkpoint import load_checkpoint  # the model code imports only when a checkpoint is given

    loaded = load_checkpoint(path)
    if loaded.kind != "pretrain":
        raise ConfigError(
            f"checkpoint: {path} is a classifier checkpoint; visualize-mask needs a pretrain checkpoint "
            "(its decoder makes the reconstruction), or none to show the mask alone"
        )
    return loaded


def default_geometry(num_frames: int | None, input_size: int | None) -> tuple[ViewPlan, TokenGrid]:
    """The clip without a checkpoint: dense sampling at rate 4, 16-pixel patches, 2-frame tubelets."""
    frames = DEFAULT_NUM_FRAMES if num_frames is None else num_frames
    size = DEFAULT_INPUT_SIZE if input_size is None else input_size
    if frames <= 0 or frames % DEFAULT_TUBELET:
        raise ConfigError(
            f"--num-frames: must be a positive multiple of the tubelet size {DEFAULT_TUBELET}, got {frames}"
        )
    if size <= 0 or size % DEFAULT_PATCH:
        raise ConfigError(f"--input-size: must be a positive multiple of the patch size {DEFAULT_PATCH}, got {size}")
    plan = ViewPlan(clips=1, crops=1, num_frames=frames, size=size, sampling_rate=DEFAULT_SAMPLING_RATE)
    return plan, TokenGrid(frames, size, size, DEFAULT_PATCH, DEFAULT_TUBELET)


def resolve_mask(
    base: MaskSpec, grid: TokenGrid, mask_type: str | None, ratio: float | None, decoder_ratio: float | None
) -> MaskSpec:
    """`base` with the flags given applied, validated as a MaskSpec and checked against the grid."""
    flags = {
        "mask.type": ("--mask-type", mask_type),
        "mask.ratio": ("--mask-ratio", ratio),
        "mask.decoder_ratio": ("--decoder-mask-ratio", decoder_ratio),
    }
    spec = resolve_spec(_MaskSettings, flags=flags, base=({"mask": base.model_dump()}, "the checkpoint")).mask
    try:
        MaskGenerator(spec, grid, seed=0)  # check_mask_fits: a ratio that hides no token or all of them
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return spec


def parse_frames(text: str | None, grid: TokenGrid) -> list[int]:
    """The clip frames shown as PNG columns: "all", a comma list ("0,2,4"), or None for the first frame of each
    tubelet (every frame of a tubelet shares its mask, so one per tubelet shows every mask slice once)."""
    if text is None:
        return list(range(0, grid.frames, grid.tubelet))
    if text.strip().lower() == "all":
        return list(range(grid.frames))
    try:
        frames = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--frames: expected 'all' or frame numbers like 0,2,4, got {text!r}") from None
    bad = [f for f in frames if not 0 <= f < grid.frames]
    if bad:
        raise ConfigError(
            f"--frames: frame {bad[0]} is out of range: the clip has {grid.frames} frames (0-{grid.frames - 1})"
        )
    return frames


def output_suffix(path: Path) -> str:
    """The picture kind `path` asks for (.png, .gif or .mp4); checked before any work is done."""
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--out: {path.name} must end in .png (a grid), .gif or .mp4 (an animation)")
    return suffix


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
    video_frames: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # source frame per clip frame
    source: str = ""  # the video's name, for titles

    def rows(self) -> list[tuple[str, np.ndarray]]:
        """(label, float RGB [T, S, S, 3]) for each row of the picture, top to bottom."""
        rows = [("original", self.original), ("masked input", self.masked)]
        if self.reconstruction is not None and self.pasted is not None:
            rows += [("reconstruction", self.reconstruction), ("reconstruction + visible", self.pasted)]
        if self.error is not None:
            top = float(np.nanmax(self.error)) if np.isfinite(self.error).any() else 0.0
            rows.append((f"error (MSE 0-{top:.3g})", heat_map(self.error, top)))
        return rows

    def title(self) -> str:
        """Mask type and ratios, and the loss when a model made the reconstruction."""
        decoder = f"decoder mask {self.spec.decoder_ratio:g}" if self.spec.decoder_ratio else "no decoder mask"
        parts = [self.source, f"{self.spec.type} mask {self.spec.ratio:g}", decoder]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        return " · ".join(p for p in parts if p)


def visualize(
    clip: torch.Tensor, setup: MaskViewSetup, video_frames: np.ndarray | None = None, source: str = ""
) -> MaskVisualization:
    """The picture rows of uint8 clip [T, S, S, 3] under the setup's mask (and model, when it has one)."""
    grid = setup.grid
    sample = MaskGenerator(setup.mask, grid, setup.seed)(epoch=0, index=0)
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
    """Fill the reconstruction rows, the loss and (with `error_map`) the error of `out` from the model's predictions."""
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


def target_geometry(model: PretrainVideoMAE) -> tuple[TokenGrid, torch.Tensor]:
    """The grid of the decoder's predictions and the clip frames it covers: the clip's own, except for MAE-ST models
    that predict only `pred_frames` evenly spread frames (same time slices, fewer frames per token)."""
    if model.target_grid is model.grid:
        return model.grid, torch.arange(model.grid.frames)
    return model.target_grid, model.target_frames.cpu()


def predict_pixels(model: PretrainVideoMAE, clip: torch.Tensor, sample: SampleMask) -> tuple[torch.Tensor, float]:
    """The model's predictions for the decoded tokens as [0, 1] pixels [N_dec, P] (not clipped), and its loss."""
    device = next(model.parameters()).device
    grid, frames = target_geometry(model)
    video = ClipNormalizer(device)(clip[None])  # [1, 3, T, S, S]: exactly what training feeds the model
    tokens = collate_masks([sample]).to(device)
    with torch.no_grad():
        output = model(video, tokens)
        patches = patchify(video.index_select(2, frames.to(device)), grid)  # [1, N, P], normalised, as the target's
        patches = gather_tokens(patches, tokens.decoded)[0]  # [N_dec, P]
        pixels = denormalize_prediction(output.pred[0].float(), patches, model.config.target)
    return pixels.cpu(), float(output.loss)


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


# ------------------------------------------------------------------------------------------------------- rendering


def write_visualization(vis: MaskVisualization, path: Path, frames: Sequence[int] | None = None) -> None:
    """Write `vis` as the kind `path`'s suffix names (PNG grid of `frames`, or a GIF/MP4 of every frame)."""
    suffix = output_suffix(path)
    if suffix == ".png":
        write_png(vis, path, frames)
    elif suffix == ".gif":
        write_gif(vis, path)
    else:
        write_mp4(vis, path)


def grid_figure(vis: MaskVisualization, frames: Sequence[int] | None = None) -> Figure:
    """The PNG grid as a matplotlib Figure: one row per `vis.rows()`, one column per clip frame in `frames`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = list(frames) if frames is not None else list(range(0, vis.grid.frames, vis.grid.tubelet))
    rows = vis.rows()
    fig = Figure(figsize=(1.2 + 1.6 * len(columns), 0.6 + 1.6 * len(rows)), layout="constrained")
    FigureCanvasAgg(fig)  # no pyplot: nothing global, nothing to leak (as metrics.plot_confusion)
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, frame in enumerate(columns):
            ax = axes[r][c]
            ax.imshow(images[frame], interpolation="nearest", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(column_label(vis, frame), fontsize=9)
        axes[r][0].set_ylabel(label.replace(" + ", "\n+ ").replace(" (", "\n("), fontsize=9)
    fig.suptitle(vis.title(), fontsize=10)
    return fig


def column_label(vis: MaskVisualization, frame: int) -> str:
    """ "frame 3" and, when known, the video frame it came from."""
    if frame < len(vis.video_frames):
        return f"frame {frame}\n(video #{vis.video_frames[frame]})"
    return f"frame {frame}"


def write_png(vis: MaskVisualization, path: Path, frames: Sequence[int] | None = None) -> None:
    """The grid of rows × `frames` (default: the first frame of each tubelet), atomically."""
    fig = grid_figure(vis, frames)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    fig.clear()


def write_gif(vis: MaskVisualization, path: Path) -> None:
    """An animated GIF with one image per clip frame (every row of that frame, stacked), looping, atomically."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in animation_frames(vis)]
    duration = round(1000 / ANIMATION_FPS)

    def save(tmp: Path) -> None:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)

    atomic_write(path, save)


def write_mp4(vis: MaskVisualization, path: Path) -> None:
    """The animation of `write_gif` as H.264 (yuv420p, which players expect) in an mp4, atomically."""
    images = animation_frames(vis)
    height, width = images[0].shape[:2]

    def encode(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=ANIMATION_FPS, options={"crf": "18"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for image in images:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())

    atomic_write(path, encode)


def animation_frames(vis: MaskVisualization) -> list[np.ndarray]:
    """uint8 [H, W, 3] images, one per clip frame: title lines on top, then each row's frame with its label.

    Small clips are enlarged by a whole factor (nearest neighbour) so cells stay sharp; H and W are even, as
    yuv420p needs. Every image names its frame, so no two are identical (GIF writers merge identical frames).
    """
    from PIL import Image, ImageDraw

    font = _font(13)
    rows = vis.rows()
    size = vis.grid.height
    scale = max(1, 128 // size)
    cell = size * scale
    pad, line = 6, 18
    label_width = max(int(font.getlength(label)) for label, _ in rows) + 2 * pad
    titles = [vis.title()] + [animation_frame_label(vis, t) for t in range(vis.grid.frames)]
    width = max(label_width + cell + pad, max(int(font.getlength(t)) for t in titles) + 2 * pad)
    height = 2 * line + pad + len(rows) * (cell + pad)  # two title lines
    width, height = width + width % 2, height + height % 2

    frames = []
    for t in range(vis.grid.frames):
        canvas = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(canvas)
        draw.text((pad, pad // 2), vis.title(), fill="black", font=font)
        draw.text((pad, pad // 2 + line), animation_frame_label(vis, t), fill="black", font=font)
        top = 2 * line + pad
        for label, images in rows:
            picture = Image.fromarray(to_uint8(images[t])).resize((cell, cell), Image.Resampling.NEAREST)
            canvas.paste(picture, (label_width, top))
            draw.text((pad, top + cell // 2), label, fill="black", font=font, anchor="lm")
            top += cell + pad
        frames.append(np.asarray(canvas))
    return frames


def animation_frame_label(vis: MaskVisualization, frame: int) -> str:
    """ "frame 3/16 (video #48)" — the running counter under the title."""
    text = f"frame {frame}/{vis.grid.frames}"
    if frame < len(vis.video_frames):
        text += f" (video #{vis.video_frames[frame]})"
    return text


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] → uint8, rounded."""
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _font(size: int) -> FreeTypeFont:
    """matplotlib's bundled DejaVu Sans at `size` px: a real font wherever matplotlib is installed."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
