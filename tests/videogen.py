"""Tiny test videos written with PyAV whose pixels encode their own frame index.

Frame `i` shows `i` as a 12-bit binary code: a grid of 2 rows x 6 columns of black/white cells scaled to the frame
(most significant bit top-left, row-major). Cells are large and pure black or white, so the code survives lossy codecs
and 4:2:0 chroma subsampling; `decode_index` reads the mean luma of each cell's inner half and thresholds it. Any frame
of at least 12 x 4 pixels works; indices up to 4095 fit.

Odd sizes: libx264 refuses odd dimensions in yuv420p, so `write_video` switches to yuv444p (full-resolution chroma,
exact width/height kept) when a dimension is odd and the default pix_fmt was asked for. VP9 and MPEG-4 Part 2 take
odd sizes in yuv420p as they are.

Import order: decord bundles its own libvpx; if decord is imported before av, PyAV's VP9 *encoder* fails with "ABI
version mismatch". This module imports av first, so import it (or av) before anything that imports decord.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GRID_ROWS = 2
GRID_COLS = 6
NUM_BITS = GRID_ROWS * GRID_COLS
MAX_INDEX = 2**NUM_BITS - 1

# Quality settings high enough that every cell stays clearly black or white (decode_index exact).
_CODEC_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "10", "preset": "veryfast"},  # veryfast keeps B-frames (ultrafast has none)
    "libvpx-vp9": {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"},
    "mpeg4": {"qscale": "2"},
}


def _cell_edges(size: int, cells: int) -> np.ndarray:
    """Pixel boundaries of `cells` near-equal cells covering `size` pixels."""
    return np.linspace(0, size, cells + 1).round().astype(int)


def frame_pattern(index: int, width: int, height: int) -> np.ndarray:
    """The RGB uint8 [height, width, 3] frame that encodes `index` (0 <= index <= MAX_INDEX)."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"index {index} does not fit in {NUM_BITS} bits")
    if width < GRID_COLS * 2 or height < GRID_ROWS * 2:
        raise ValueError(f"frame {width}x{height} too small for a {GRID_COLS}x{GRID_ROWS} code grid")
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    ys, xs = _cell_edges(height, GRID_ROWS), _cell_edges(width, GRID_COLS)
    for bit in range(NUM_BITS):
        if index >> (NUM_BITS - 1 - bit) & 1:
            row, col = divmod(bit, GRID_COLS)
            frame[ys[row] : ys[row + 1], xs[col] : xs[col + 1]] = 255
    return frame


def decode_index(frame: np.ndarray) -> int:
    """Read back the index of a decoded [H, W, 3] frame made by `frame_pattern` (tolerates codec noise)."""
    height, width = frame.shape[:2]
    luma = frame.astype(np.float32).mean(axis=2)
    ys, xs = _cell_edges(height, GRID_ROWS), _cell_edges(width, GRID_COLS)
    index = 0
    for bit in range(NUM_BITS):
        row, col = divmod(bit, GRID_COLS)
        # The inner half of the cell: edges ring and bleed under compression.
        y0, y1 = _inner(ys[row], ys[row + 1])
        x0, x1 = _inner(xs[col], xs[col + 1])
        index = index << 1 | int(luma[y0:y1, x0:x1].mean() > 127.5)
    return index


def _inner(lo: int, hi: int) -> tuple[int, int]:
    """The middle half of [lo, hi), never empty."""
    quarter = (hi - lo) // 4
    return lo + quarter, max(hi - quarter, lo + quarter + 1)


def write_video(
    path: Path,
    num_frames: int,
    width: int = 64,
    height: int = 48,
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    gop: int = 12,
    faststart: bool = False,
    start: int = 0,
) -> Path:
    """Encode `num_frames` frames of `frame_pattern` to `path` (container chosen by its suffix); returns `path`.

    A short `gop` gives several keyframes so readers must seek; libx264 uses B-frames (pts != dts). `faststart` puts
    an mp4's index (moov) before the data. `start` is the index the first frame's pattern shows.
    """
    if codec == "libx264" and pix_fmt == "yuv420p" and (width % 2 or height % 2):
        pix_fmt = "yuv444p"  # x264 cannot subsample odd dimensions
    path = Path(path)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=fps, options=_CODEC_OPTIONS.get(codec, {}))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.gop_size = gop
        stream.codec_context.time_base = Fraction(1, fps)
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pattern(start + index, width, height), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_audio_only(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    """An .mp4 holding one AAC audio stream and no video; returns `path`."""
    path = Path(path)
    samples = int(seconds * rate)
    tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / rate)).astype(np.float32)[None]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        for start in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(tone[:, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_truncated(path: Path, num_frames: int = 48, keep: float = 0.5, faststart: bool = False) -> Path:
    """A valid H.264 mp4 of `num_frames` frames with only its first `keep` fraction of bytes kept; returns `path`.

    By default the index (moov) is written last, so the cut loses it and demuxers refuse the file. With `faststart`
    the index survives and promises all frames, but the data of the later ones is gone.
    """
    path = Path(path)
    write_video(path, num_frames, faststart=faststart)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_zero_bytes(path: Path) -> Path:
    """An empty file; returns `path`."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def write_text_as_video(path: Path) -> Path:
    """A plain text file (named like a video by the caller); returns `path`."""
    path = Path(path)
    path.write_text("this is not a video\n" * 20)
    return path
