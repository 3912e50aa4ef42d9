"""Video readers: random access to RGB frames by index, with decord or PyAV, decoding only what is asked for.

Frame `i` is the i-th frame in presentation order, counted the same way by both backends (one per video packet), so
the same index gives the same picture whichever backend decodes it. Every failure to read a video -- missing or empty
file, no video stream, corrupt data, an index out of range, a missing backend -- raises `VideoError`, whose message
names the file and the reason; no av or decord exception escapes.

Workers: open readers inside the DataLoader worker that uses them, never before the fork. A decord reader owns
FFmpeg state and threads that do not survive `fork`; both backends decode with one thread, since parallelism comes from
the workers.

Import order: decord bundles its own libvpx; importing it before av breaks PyAV's VP9 encoder ("ABI version
mismatch"). This module imports av at the top and decord only on first use. decord's FFmpeg logging is silenced and
files are first opened with PyAV (headers only), so broken files fail with a clear reason and no stderr noise.
"""

from __future__ import annotations

import functools
import io
import os
import platform
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType

import av
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from videomae_cli.data.pyav_reader import CropScaler, FrameTable, Window, can_skip, frame_table, packets_to_decode

# Preferred first: the PyAV reader skips the non-reference frames a clip does not need and crops in FFmpeg's scaler,
# 1.3-2.3x decord's clips/s on every set of benchmarks/bench_data.py (docs/performance.md); decord stays selectable.
BACKENDS: tuple[str, ...] = ("pyav", "decord")
_REASON_CHARS = 300  # decord error texts carry long C++ traces; the first part says what went wrong


class VideoError(Exception):
    """A video that cannot be read; the message names the file and the reason (`"PATH: reason"`)."""


@dataclass(frozen=True)
class VideoBytes:
    """A video held in memory (a shard's member): its bytes, and the name messages give it (SHARD:KEY.mp4)."""

    name: str
    data: bytes = field(repr=False)

    def __str__(self) -> str:
        return self.name


VideoSource = Path | VideoBytes  # what a reader reads: a file, or a video in memory


def _media(source: VideoSource) -> str | io.BytesIO:
    """What the decoders open: the file's path, or a fresh stream over the bytes."""
    return io.BytesIO(source.data) if isinstance(source, VideoBytes) else str(source)


def _error(path: str | os.PathLike[str] | VideoBytes, reason: str) -> VideoError:
    return VideoError(f"{path}: {reason}")


def _reason(exc: BaseException) -> str:
    """A one-line reason from a backend exception, without decord's "[time] file.cc:line: Check failed: ..." noise."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r"\[[\d:]+\] \S+:\d+: (Check failed: .*? ERROR )?|\[Errno -?\d+\] ", "", text)
    return text[:_REASON_CHARS]


@functools.cache
def _decord() -> ModuleType | None:
    """The decord module, or None where it is not installed or cannot load (wheels exist for Linux x86_64 only)."""
    if not (sys.platform.startswith("linux") and platform.machine() == "x86_64"):
        return None
    try:
        import decord
    except (ImportError, OSError):
        return None
    decord.logging.set_level(decord.logging.QUIET)  # its FFmpeg's log lines; failures surface as VideoError
    return decord


def available_backends() -> list[str]:
    """The backends that can be used here, preferred first."""
    return [name for name in BACKENDS if name == "pyav" or _decord() is not None]


def resolve_backend(name: str = "auto") -> str:
    """The concrete backend for `name`: "auto" is pyav (always installed); a missing one is a VideoError."""
    if name == "auto":
        return available_backends()[0]
    if name not in BACKENDS:
        raise VideoError(f"unknown video backend {name!r}; choose one of auto, {', '.join(BACKENDS)}")
    if name not in available_backends():
        raise VideoError(f"video backend {name!r} is not available here (installed: {', '.join(available_backends())})")
    return name


class VideoReader(ABC):
    """Random access to the frames of one video; a context manager that closes the file."""

    path: VideoSource

    @property
    @abstractmethod
    def num_frames(self) -> int:
        """Number of frames."""

    @property
    @abstractmethod
    def fps(self) -> float:
        """Average frame rate (0.0 where the container does not say)."""

    @property
    @abstractmethod
    def width(self) -> int:
        """Frame width in pixels."""

    @property
    @abstractmethod
    def height(self) -> int:
        """Frame height in pixels."""

    @abstractmethod
    def _decode_sorted(self, indices: list[int]) -> np.ndarray:
        """uint8 [K, H, W, 3] RGB frames for strictly increasing, in-range `indices`."""

    @abstractmethod
    def close(self) -> None:
        """Release the file and the decoder."""

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [K, H, W, 3] RGB frames at `indices`, in the order given (repeats allowed; each is decoded once)."""
        unique, inverse = self._unique(indices)
        if unique.size == 0:
            return np.empty((0, self.height, self.width, 3), dtype=np.uint8)
        return self._decode_sorted(unique.tolist())[inverse]

    def _unique(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(sorted unique indices, positions of `indices` in them), after checking every index is in range."""
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = wanted[(wanted < 0) | (wanted >= self.num_frames)]
        if bad.size:
            raise _error(self.path, f"frame index {int(bad[0])} is out of range (the video has {self.num_frames})")
        unique, inverse = np.unique(wanted, return_inverse=True)
        return unique, inverse.reshape(-1)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_video(path: str | os.PathLike[str] | VideoBytes, backend: str = "auto") -> VideoReader:
    """A reader for the video at `path` (or in memory) with `backend` ("auto", "decord" or "pyav"); raises
    VideoError."""
    name = resolve_backend(backend)
    source = path if isinstance(path, VideoBytes) else Path(path)
    _check_file(source)
    return DecordReader(source) if name == "decord" else PyAVReader(source)


def _check_file(path: VideoSource) -> None:
    """Reject what no decoder can read before handing it over (decord can hang on empty files)."""
    if isinstance(path, VideoBytes):
        if not path.data:
            raise _error(path, "empty file (0 bytes)")
        return
    if not path.exists():
        raise _error(path, "no such file")
    if not path.is_file():
        raise _error(path, "not a regular file")
    if path.stat().st_size == 0:
        raise _error(path, "empty file (0 bytes)")


# ---------------------------------------------------------------------------------------------------------- decord


class DecordReader(VideoReader):
    """decord backend: one `get_batch` call over the needed frames, one decoder thread."""

    def __init__(self, path: VideoSource) -> None:
        self.path = path
        self._decord = _decord()
        if self._decord is None:
            raise _error(path, "the decord backend is not available here")
        self._shape: tuple[int, int] | None = None
        # Let FFmpeg (via PyAV, headers only) reject what it cannot open: the reason is clearer than decord's, and
        # decord would print its own error lines to stderr first.
        _open_av(path)[0].close()
        try:
            self._reader = self._decord.VideoReader(_media(path), ctx=self._decord.cpu(0), num_threads=1)
            self._num_frames = len(self._reader)
            self._fps = float(self._reader.get_avg_fps())
        except (RuntimeError, self._decord.DECORDError) as exc:
            raise _error(path, f"decord cannot read it: {_reason(exc)}") from exc
        if self._num_frames < 1:
            raise _error(path, "the video stream has no frames")

    @property
    def num_frames(self) -> int:
        return self._num_frames

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def width(self) -> int:
        return self._frame_shape()[1]

    @property
    def height(self) -> int:
        return self._frame_shape()[0]

    def _frame_shape(self) -> tuple[int, int]:
        # decord has no size query: decode frame 0 once, only if someone asks.
        if self._shape is None:
            self._shape = self._decode_one(0).shape[:2]
        return self._shape

    def _decode_sorted(self, indices: list[int]) -> np.ndarray:
        try:
            frames = self._reader.get_batch(indices).asnumpy()
        except (RuntimeError, self._decord.DECORDError) as exc:
            if "must exactly match" not in str(exc):
                raise _error(self.path, f"decord cannot decode frames {indices}: {_reason(exc)}") from exc
            frames = None  # the padded-row bug below, hit inside get_batch
        if frames is None or frames.shape[-1] != 3:
            frames = np.stack([self._decode_one(i) for i in indices])
        self._shape = frames.shape[1:3]
        return frames

    def _decode_one(self, index: int) -> np.ndarray:
        """Frame `index` alone, repairing decord's padded-row frames.

        For some widths (12, 16, 24, 48, 72, ... px) decord returns rows padded to a 32-pixel multiple, reshaped as
        [H, W, C] with C != 3, and `get_batch` fails outright; the pixels are right, only the shape is not.
        """
        try:
            frame = self._reader[index].asnumpy()
        except (RuntimeError, self._decord.DECORDError) as exc:
            raise _error(self.path, f"decord cannot decode frame {index}: {_reason(exc)}") from exc
        height, width = frame.shape[:2]
        if frame.shape[2] != 3:
            if frame.size % (height * 3) or frame.size // (height * 3) < width:
                raise _error(self.path, f"decord returned frame {index} with an unexpected shape {frame.shape}")
            frame = frame.reshape(height, -1, 3)[:, :width]
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        self._reader = None


# ------------------------------------------------------------------------------------------------------------ PyAV


def _open_av(path: VideoSource) -> tuple[InputContainer, VideoStream]:
    """(container, first video stream) of `path`, decoding single-threaded; VideoError if FFmpeg cannot open it."""
    try:
        container = av.open(_media(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise _error(path, f"not a readable video: {_reason(exc)}") from exc
    if not container.streams.video:
        container.close()
        raise _error(path, "no video stream (audio or data only)")
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"  # no frame threading: it delays output and multiplies memory per worker
    stream.codec_context.thread_count = 1
    return container, stream


def _scan(path: VideoSource, container: InputContainer, stream: VideoStream) -> FrameTable:
    packets, cut_at = [], None
    try:
        for packet in container.demux(stream):
            # Size-0 packets only flush the demuxer; discarded ones (edit lists) are never shown.
            if packet.size and not packet.is_discard:
                packets.append((packet.pts, packet.dts, packet.is_keyframe, packet.is_corrupt, packet.pos))
    except av.error.FFmpegError as exc:
        raise _error(path, f"corrupt video data: {_reason(exc)}") from exc
    if packets and packets[-1][3]:
        cut_at = packets.pop()[4]  # a truncated file ends in a partial packet, flagged corrupt, that cannot decode
    return frame_table([(p, d if d is not None else p, key) for p, d, key, _, _ in packets], cut_at)


class PyAVReader(VideoReader):
    """PyAV backend: per run of needed frames, one seek to the keyframe before it, decode forward, stop after it.

    Only what the wanted frames need is decoded (see `pyav_reader.packets_to_decode`), and only wanted frames are
    converted to RGB: in full (`get_frames`), or cropped and resized in FFmpeg's scaler (`get_frames_cropped`).
    """

    def __init__(self, path: VideoSource) -> None:
        self.path = path
        self._container, self._stream = _open_av(self.path)
        try:
            self._table = _scan(path, self._container, self._stream)
        except VideoError:
            self.close()
            raise
        if not self._table.pts:
            self.close()
            raise _error(path, "the video stream has no frames")
        self._index_of = {p: i for i, p in enumerate(self._table.pts)}
        self.skip_unwanted = can_skip(self._stream)  # False: every packet is decoded (the V1 behaviour)
        self._wanted_pts: set[int] | None = None  # the pts of the run being decoded, when skipping

    @property
    def num_frames(self) -> int:
        return len(self._table.pts)

    @property
    def fps(self) -> float:
        rate = self._stream.average_rate or self._stream.guessed_rate
        return float(rate) if rate else 0.0

    @property
    def width(self) -> int:
        return int(self._stream.codec_context.width)

    @property
    def height(self) -> int:
        return int(self._stream.codec_context.height)

    def get_frames_cropped(
        self, indices: Sequence[int], windows: Sequence[Window], height: int, width: int
    ) -> list[np.ndarray]:
        """One uint8 [K, height, width, 3] clip per (top, left, crop height, crop width) window: the frames at
        `indices` (as `get_frames`), each window cropped and resized by FFmpeg's scaler before the RGB conversion."""
        unique, inverse = self._unique(indices)
        if unique.size == 0:
            return [np.empty((0, height, width, 3), dtype=np.uint8) for _ in windows]
        scalers = [CropScaler(window, height, width) for window in windows]
        frames = self._decode_sorted(unique.tolist(), lambda frame: np.stack([scale(frame) for scale in scalers]))
        return [frames[inverse, k] for k in range(len(windows))]  # frames: [K, windows, height, width, 3]

    def _decode_sorted(
        self, indices: list[int], convert: Callable[[VideoFrame], np.ndarray] | None = None
    ) -> np.ndarray:
        frames: dict[int, np.ndarray] = {}
        convert = convert or _to_rgb
        for run in self._runs(indices):
            found = self._decode_run(run, self._table.seek_ts[run[0]], convert)
            if len(found) < len(run):
                # The seek landed after the frame (an odd index, open GOP): retry from the first frame.
                found = self._decode_run(run, self._table.seek_ts[0], convert)
            missing = sorted(set(run) - found.keys())
            if missing:
                raise _error(self.path, f"frame {missing[0]} could not be decoded (of {self.num_frames})")
            frames.update(found)
        return np.stack([frames[i] for i in indices])

    def _runs(self, indices: list[int]) -> Iterator[list[int]]:
        """Split sorted indices where the next one needs a later keyframe: seeking there beats decoding up to it."""
        run = [indices[0]]
        for index in indices[1:]:
            if self._table.seekable and self._table.seek_ts[index] != self._table.seek_ts[run[-1]]:
                yield run
                run = []
            run.append(index)
        yield run

    def _decode_run(
        self, run: list[int], seek_ts: int, convert: Callable[[VideoFrame], np.ndarray]
    ) -> dict[int, np.ndarray]:
        """Seek to `seek_ts` and decode forward until the last frame of `run`; returns the frames of `run` met."""
        wanted, found = set(run), {}
        self._wanted_pts = {self._table.pts[i] for i in run} if self.skip_unwanted else None
        try:
            for index, frame in self._decoded_from(seek_ts):
                if index in wanted:
                    found[index] = convert(frame)
                if index >= run[-1]:
                    break
        except av.error.FFmpegError as exc:
            raise _error(self.path, f"corrupt video data near frame {run[0]}: {_reason(exc)}") from exc
        except ValueError as exc:  # a frame the fused crop cannot take (its size changed mid-stream)
            raise _error(self.path, f"cannot crop frames near frame {run[0]}: {exc}") from exc
        return found

    def _decoded_from(self, seek_ts: int) -> Iterator[tuple[int, VideoFrame]]:
        """(frame index, frame) pairs decoded forward from the keyframe at or before `seek_ts`; frames whose pts is
        not in `_wanted_pts` may be left out."""
        if not self._table.seekable:
            # Without usable timestamps only counting from the very start identifies frames: decode every packet.
            self.close()
            self._container, self._stream = _open_av(self.path)
            yield from enumerate(self._decoded())
            return
        self._container.seek(seek_ts, backward=True, any_frame=False, stream=self._stream)
        self._stream.codec_context.flush_buffers()
        for frame in self._decoded(self._wanted_pts):
            index = self._index_of.get(frame.pts)
            if index is not None:
                yield index, frame

    def _decoded(self, wanted_pts: set[int] | None = None) -> Iterator[VideoFrame]:
        """Frames from the current position on, in presentation order; the final empty packet flushes the decoder.
        With `wanted_pts`, frames not wanted that nothing references are not decoded."""
        packets = (p for p in self._container.demux(self._stream) if p.pos is None or p.pos != self._table.cut_at)
        for packet in packets_to_decode(packets, self._stream.codec_context, wanted_pts):
            yield from packet.decode()

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None


def _to_rgb(frame: VideoFrame) -> np.ndarray:
    """uint8 [H, W, 3] RGB of the whole frame (FFmpeg's scaler, the frame's own colour matrix and range)."""
    return frame.to_ndarray(format="rgb24")
