"""Writing training-ready video: prepare-data's transcode, and the H.264 writer the synthetic videos share.

A training reader opens a video, seeks to the keyframe before the first frame it wants, and decodes forward to the last
one. What makes that cheap is decided when the file is written, so `transcode_video` writes for the reader:

- the short side scaled down to the target, never up (upscaling adds pixels to decode and no information);
- a constant frame rate: output frame k (time k / fps) is the source frame nearest in time, so a variable-rate source
  neither drifts nor stutters, and frame index / rate is time;
- a keyframe every `keyframe_interval` frames (x264 `keyint`, default 48): a 16-frame clip at stride 4 spans 61
  frames, and the reader starts at the keyframe before it, decoding on average (interval − 1) / 2 frames it does not
  need: 23.5 at 48 against 125 with x264's default of 250;
- x264 `tune=fastdecode` (no CABAC, no deblocking, no weighted prediction), with keyframes coded at the quality of the
  frames between them (`ipratio=1`: x264's usual 1.4× boost of keyframe quality pays for rare keyframes, not for one
  every 48 frames). Measured on 720p and 1080p sources brought to a 320 short side: the reader runs about 2× faster
  than on x264's defaults (decoding CABAC is most of the difference) for 1.3–1.4× the bytes (keyframes every 16
  frames: 1.75–2.1×). `encode_for="size"` keeps x264's defaults (keyframe interval 250, no tune) for archives;
- video only: audio, subtitles and data streams are dropped;
- optionally cut into chunks of `chunk_seconds` (AVION's recipe for long videos): each chunk a file, so a clip read
  from it never decodes the rest of a long video, and an epoch that samples one clip per chunk still covers the whole
  video. A tail shorter than `min_frames` joins the chunk before it, so every chunk holds a whole clip; no frame is
  lost or written twice.

Every output appears complete or not at all (written under a hidden temporary name, then renamed). A full disk
(or quota, file-size limit, read-only file system) is no fault of the video and would fail every later one too: it
raises StorageError (exit 74); any other failure is the video's problem, returned in a few words.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np

from videomae_cli.config.prepare import EncodeFor
from videomae_cli.data.probe import short_reason
from videomae_cli.errors import StorageError

if TYPE_CHECKING:
    from videomae_cli.config.schema import SyntheticScene

DEFAULT_KEYFRAME_INTERVAL = 48
_CRF = "18"  # visually near-lossless at a modest size
_PRESET = "veryfast"  # keeps a dataset-wide transcode bound by decoding the source, not by encoding
_FALLBACK_FPS = Fraction(25)
_MAX_FPS_DENOMINATOR = 1001  # NTSC rates (30000/1001) stay exact; odd averages become a nearby simple fraction
# Errors only a write can raise, and that say the output is full or unwritable, not that the source is bad.
_OUTPUT_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS})


@dataclass(frozen=True)
class EncodeSettings:
    """How prepare-data writes each video (PrepareSpec's transcode fields, with the defaults filled in)."""

    short_side: int | None = None  # None: keep the source's size (rounded down to even)
    fps: float | None = None  # None: the source's average frame rate
    keyframe_interval: int | None = None  # None: DEFAULT_KEYFRAME_INTERVAL for "decode", x264's own for "size"
    encode_for: EncodeFor = "decode"
    chunk_seconds: float | None = None
    min_frames: int = 16  # the shortest chunk: one whole clip

    def key(self) -> str:
        """What identifies these settings in the transcode cache: outputs made with other settings are redone."""
        return repr(sorted(vars(self).items()))


@dataclass(frozen=True)
class Output:
    """One file written for a source: its path, frame count and size in bytes."""

    path: str
    frames: int
    bytes: int


@dataclass(frozen=True)
class TranscodeResult:
    """What became of one source: its outputs (one per chunk), or the problem that stopped it."""

    source: str
    source_bytes: int
    source_mtime_ns: int
    outputs: list[Output] = field(default_factory=list)
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the transcode cache's entry format)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TranscodeResult:
        """Inverse of `to_json`."""
        outputs = [Output(**output) for output in data["outputs"]]
        return cls(data["source"], data["source_bytes"], data["source_mtime_ns"], outputs, data.get("problem"))


def output_dims(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) with the short side at most `short_side` (never enlarged), both even (H.264 in 4:2:0)."""
    if short_side is None or min(width, height) <= short_side:
        return max(2, width - width % 2), max(2, height - height % 2)
    scale = short_side / min(width, height)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def output_rate(source_rate: Fraction | None, fps: float | None) -> Fraction:
    """The constant output frame rate: `fps` where given, else the source's average rate."""
    rate = Fraction(fps) if fps is not None else source_rate or _FALLBACK_FPS
    return rate.limit_denominator(_MAX_FPS_DENOMINATOR)


def chunk_path(dst: Path, index: int) -> Path:
    """Chunk `index` of a source cut into chunks: dst's stem numbered (`clip.000.mp4`, `clip.001.mp4`, ...)."""
    return dst.with_name(f"{dst.stem}.{index:03d}{dst.suffix}")


def transcode_video(src: str, dst: str, settings: EncodeSettings, threads: int = 1) -> TranscodeResult:
    """Re-encode `src` for training at `dst` (or, chunked, at `dst`'s numbered chunk names): see the module docstring.

    Returns the outputs, or the problem that stopped this video (nothing of it is kept then). Raises StorageError when
    the output cannot be written at all.
    """
    stat = os.stat(src)
    source = (src, stat.st_size, stat.st_mtime_ns)
    written: list[Output] = []
    try:
        with av.open(src, metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = output_rate(stream.average_rate or stream.guessed_rate, settings.fps)
            width, height = output_dims(stream.codec_context.width, stream.codec_context.height, settings.short_side)
            frames = (
                frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
                for frame in constant_rate(container.decode(stream), rate)
            )
            # A chunk holds at least one whole clip, however short chunk_seconds is at a low frame rate.
            chunk = max(round(settings.chunk_seconds * rate), settings.min_frames) if settings.chunk_seconds else None
            written = _write_chunks(Path(dst), frames, chunk, settings, (width, height, rate, threads))
    except OSError as e:
        _remove(written)
        if e.errno not in _OUTPUT_FULL:
            return TranscodeResult(*source, problem=f"transcode failed: {short_reason(e)}")
        raise StorageError(
            f"cannot write {e.filename or dst}: {e.strerror or e}; the finished transcodes are kept: free "
            "space and run prepare-data again"
        ) from None
    except Exception as e:  # one odd file must not abort a dataset-wide transcode
        _remove(written)
        return TranscodeResult(*source, problem=f"transcode failed: {short_reason(e)}")
    if not written:
        return TranscodeResult(*source, problem="transcode failed: no frames decoded")
    return TranscodeResult(*source, written)


def constant_rate(frames: Iterable[av.VideoFrame], rate: Fraction) -> Iterator[av.VideoFrame]:
    """The frames on a constant-rate grid: slot k (time k / rate from the first frame) shows the frame nearest to it
    in time (the earlier one on a tie), up to the last frame's time. A frame nearest to no slot is dropped and one
    nearest to several is repeated; a source already at `rate` passes every frame through once. Times are exact
    fractions (pts × time base), so no rounding decides which frame a slot shows."""
    interval = 1 / rate
    slot, start = 0, None
    previous: tuple[av.VideoFrame, Fraction] | None = None
    for frame in frames:
        if frame.pts is None or frame.time_base is None:
            time = previous[1] + interval if previous is not None else Fraction(0)  # no timestamp: one slot later
        else:
            time = Fraction(frame.pts) * frame.time_base
        start = time if start is None else start
        time -= start
        while slot * interval <= time:
            target = slot * interval
            nearer_previous = previous is not None and target - previous[1] <= time - target
            yield previous[0] if nearer_previous else frame
            slot += 1
        previous = (frame, time)


def chunk_of(position: int, total: int, length: int | None, min_tail: int) -> int:
    """Which chunk frame `position` (of `total`) belongs to: chunks of `length` frames, a tail shorter than
    `min_tail` joined to the chunk before it."""
    if length is None:
        return 0
    chunk = position // length
    last = (total - 1) // length
    if chunk == last and last > 0 and total - last * length < min_tail:
        return last - 1
    return chunk


def numbered_chunks(
    frames: Iterable[av.VideoFrame], length: int | None, min_tail: int
) -> Iterator[tuple[int, av.VideoFrame]]:
    """(chunk index, frame) for each frame, streaming: `min_tail` frames are held back, so a frame's chunk is final
    when it is given out (whether the tail joins the chunk before it is known only at the end)."""
    held: deque[av.VideoFrame] = deque()
    given = 0
    for frame in frames:
        held.append(frame)
        if len(held) > min_tail:
            # At least min_tail frames follow: this frame's chunk cannot be a short tail.
            yield (given // length if length else 0), held.popleft()
            given += 1
    total = given + len(held)
    for position in range(given, total):
        yield chunk_of(position, total, length, min_tail), held.popleft()


def _write_chunks(
    dst: Path,
    frames: Iterable[av.VideoFrame],
    length: int | None,
    settings: EncodeSettings,
    geometry: tuple[int, int, Fraction, int],
) -> list[Output]:
    """Encode the frames to `dst`, or to its numbered chunk files when `length` is set; returns what was written."""
    written: list[Output] = []
    writer: _H264Writer | None = None
    current = -1
    try:
        for chunk, frame in numbered_chunks(frames, length, settings.min_frames if length else 0):
            if chunk != current:
                if writer is not None:
                    written.append(writer.finish())
                path = chunk_path(dst, chunk) if length else dst
                writer, current = _H264Writer(path, *geometry, settings), chunk
            writer.add(frame)
        if writer is not None:
            written.append(writer.finish())
            writer = None
    except BaseException:
        if writer is not None:
            writer.abandon()
        _remove(written)
        raise
    return written


class _H264Writer:
    """One H.264 mp4 written under a hidden, pid-tagged temporary name and renamed when finished, so concurrent
    writers never share a file and a crash leaves nothing that looks done."""

    def __init__(
        self, path: Path, width: int, height: int, rate: Fraction, threads: int, settings: EncodeSettings
    ) -> None:
        self.path, self.rate, self.frames = path, rate, 0
        self.temp = path.with_name(f".{path.name}.{os.getpid()}.part")
        with self._named():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.container = av.open(str(self.temp), "w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=rate, options=_x264_options(settings))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.codec_context.thread_count = threads

    def add(self, frame: av.VideoFrame) -> None:
        # Renumbered at the output rate: frame index × rate is time, whatever the source's timestamps were.
        frame.pts, frame.time_base = self.frames, 1 / self.rate
        with self._named():
            self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def finish(self) -> Output:
        try:
            with self._named():
                self.container.mux(self.stream.encode(None))
                self.container.close()
                os.replace(self.temp, self.path)
        except BaseException:
            self.abandon()
            raise
        return Output(str(self.path), self.frames, self.path.stat().st_size)

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        """An OSError names the file being made, not its temporary name, which means nothing to the user."""
        try:
            yield
        except OSError as e:
            raise OSError(e.errno, e.strerror or str(e), str(self.path)) from e

    def abandon(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken writer may fail again; the temp file goes anyway
            self.container.close()
        self.temp.unlink(missing_ok=True)


def _x264_options(settings: EncodeSettings) -> dict[str, str]:
    options = {"crf": _CRF, "preset": _PRESET}
    interval = settings.keyframe_interval
    params = []
    if settings.encode_for == "decode":
        options["tune"] = "fastdecode"
        interval = interval or DEFAULT_KEYFRAME_INTERVAL
        params.append("ipratio=1")
    if interval is not None:
        # keyint is the promise to the reader; min-keyint bounds how soon a scene-cut keyframe may follow another.
        params += [f"keyint={interval}", f"min-keyint={max(1, min(interval, 25) // 2)}"]
    if params:
        options["x264-params"] = ":".join(params)
    return options


def _remove(outputs: list[Output]) -> None:
    for output in outputs:
        Path(output.path).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------------------
# Frames to a file: the built-in synthetic videos


def write_frames(dst: str, frames: np.ndarray, fps: int, threads: int = 1) -> None:
    """Write uint8 frames [T, H, W, 3] (RGB, even H and W) as an H.264 mp4 at `dst`, atomically."""
    _, height, width, _ = frames.shape
    # x264's defaults, as these videos were always written: a clip of a few frames has one keyframe either way.
    writer = _H264Writer(Path(dst), width, height, Fraction(fps), threads, EncodeSettings(encode_for="size"))
    try:
        for pixels in frames:
            writer.add(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24"))
    except BaseException:
        writer.abandon()
        raise
    writer.finish()


def write_synthetic_video(
    dst: str, index: int, seed: int, num_frames: int, size: int, fps: int, scene: SyntheticScene = "busy"
) -> None:
    """Render synthetic clip `index` (`synthetic.render_clip`) in `scene` and write it as an H.264 mp4 at `dst`."""
    from videomae_cli.data.synthetic import render_clip  # imports torch: only workers that render pay for it

    clip, _ = render_clip(index, seed, num_frames, size, scene)
    write_frames(dst, clip, fps, threads=1)
