"""`videomae visualize-mask`, from arrays to files: a MaskVisualization drawn as a PNG grid (matplotlib), an animated
GIF (PIL) or an H.264 MP4 (PyAV), each written atomically. Nothing here computes: viz/compute.py made the rows."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from videomae_cli.checkpoint import atomic_write
from videomae_cli.config.visualize import output_suffix
from videomae_cli.errors import ConfigError
from videomae_cli.viz.compute import MaskVisualization

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL.ImageFont import FreeTypeFont

ANIMATION_FPS = 4  # slow enough to follow the mask from one frame to the next


def write_visualization(vis: MaskVisualization, path: Path, frames: Sequence[int] | None = None) -> None:
    """Write `vis` as the kind `path`'s suffix names (PNG grid of `frames`, or a GIF/MP4 of every frame)."""
    try:
        suffix = output_suffix(path)
    except ValueError as e:
        raise ConfigError(str(e)) from None
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
    # Wrapped to the figure's width (about 13 characters per inch at 10 pt): a narrow grid must not cut it off.
    fig.suptitle(textwrap.fill(vis.title(), width=int(13 * fig.get_figwidth())), fontsize=10)
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
