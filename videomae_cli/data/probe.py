"""Probing one video file with PyAV: does it open, what does its stream say, does it decode to its end?

`probe_video` is a per-file job `videomae prepare-data` runs in a process pool, so this module imports nothing heavier
than PyAV. It never raises for a bad file: it returns what went wrong, in a few words.

`probe_video` decodes the first frame and a frame near the end because a truncated download usually opens fine (the
container header is intact) and only fails when the decoder reaches the missing bytes -- the kind of silent data error
that otherwise surfaces hours into training. Given the training decoder (`decoder`), it then also opens the video
with that backend (`video.open_video`) and decodes its first and last frames: decord bundles an older FFmpeg and can
fail on files PyAV reads, and a video that passes only PyAV's check would still fail every time training samples it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av

from videomae_cli.data.video import VideoError, open_video

# Leading bytes of the containers we see in practice. A file that starts like a container but does not open is a
# damaged video (typically an mp4 whose index, written last, was cut off), not a stray non-video file.
_CONTAINER_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # mp4 / mov / m4v / 3gp
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM (EBML)
    (0, b"RIFF"),  # avi
    (0, b"FLV"),
    (0, b"OggS"),
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"\x30\x26\xb2\x75"),  # ASF / wmv
)
# The end-of-stream check aims this many frame intervals before the reported end: the last one or two frames of a
# valid file may carry timestamps slightly short of the container's duration.
_END_MARGIN_FRAMES = 2.5


@dataclass(frozen=True)
class VideoInfo:
    """What a readable video's stream reports. `frames` is exact where the container indexes frames (mp4, avi) and
    estimated from duration × fps otherwise (WebM, MKV)."""

    frames: int
    duration: float  # seconds
    fps: float
    width: int
    height: int
    codec: str


@dataclass(frozen=True)
class ProbeResult:
    """The outcome for one file. `size`/`mtime_ns` identify the version probed and `decoder` the training decoder it
    was checked with (None: PyAV's probe only); together they are the cache key. A missing file has size -1. Exactly
    one of `info` and `problem` is set."""

    path: str
    size: int
    mtime_ns: int
    info: VideoInfo | None = None
    problem: str | None = None
    decoder: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the probe cache's entry format)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProbeResult:
        """Inverse of `to_json`."""
        info = data.get("info")
        return cls(
            path=data["path"],
            size=data["size"],
            mtime_ns=data["mtime_ns"],
            info=VideoInfo(**info) if info else None,
            problem=data.get("problem"),
            decoder=data.get("decoder"),
        )


class _Bad(Exception):
    """Internal: the file has a problem; the message is the reason."""


def probe_video(path: str | Path, decoder: str | None = None) -> ProbeResult:
    """Open `path`, read its video stream's properties, and decode its first frame and a frame near its end.

    With `decoder` (a concrete backend, "decord" or "pyav"), a video that passes is also opened with that backend and
    its first and last frames decoded; one that fails gets the problem "<decoder> cannot decode it: <reason>".
    """
    path = str(path)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return ProbeResult(path, -1, 0, problem="missing file", decoder=decoder)
    except OSError as e:
        return ProbeResult(path, -1, 0, problem=f"cannot read ({e.strerror})", decoder=decoder)
    try:
        info = _probe_file(path, stat.st_size)
    except _Bad as e:
        return ProbeResult(path, stat.st_size, stat.st_mtime_ns, problem=str(e), decoder=decoder)
    except Exception as e:
        # Exotic files raise beyond FFmpegError (an unknown codec is a ValueError): one odd file among hundreds of
        # thousands must not abort the whole run, so it is reported like any other unreadable video.
        problem = f"unreadable ({type(e).__name__}: {short_reason(e)})"
        return ProbeResult(path, stat.st_size, stat.st_mtime_ns, problem=problem, decoder=decoder)
    if decoder is not None:
        problem = _decoder_problem(path, decoder)
        if problem is not None:
            return ProbeResult(path, stat.st_size, stat.st_mtime_ns, problem=problem, decoder=decoder)
    return ProbeResult(path, stat.st_size, stat.st_mtime_ns, info=info, decoder=decoder)


def _decoder_problem(path: str, decoder: str) -> str | None:
    """None if `decoder` opens `path` and decodes its first and last frames, else why not.

    The first and last frames are the cheap pair that catches both a stream the backend cannot open or decode at all
    and one whose tail it cannot reach; they are indexed as training indexes them, by the backend's own frame count.
    """
    try:
        with open_video(path, decoder) as reader:
            reader.get_frames([0, reader.num_frames - 1])
    except VideoError as e:
        reason = str(e).removeprefix(f"{Path(path)}: ")  # the path is already the report entry's key
    except Exception as e:  # as in probe_video: a backend's unexpected exception is this file's problem, not the run's
        reason = f"{type(e).__name__}: {short_reason(e)}"
    else:
        return None
    # The reader's own wording often names the backend already ("decord cannot read it: ..."): don't say it twice.
    return reason if reason.startswith(f"{decoder} ") else f"{decoder} cannot decode it: {reason}"


def _probe_file(path: str, size: int) -> VideoInfo:
    if size == 0:
        raise _Bad("empty file (0 bytes)")
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.FFmpegError as e:
        raise _Bad(_open_failure(path, e)) from None
    except OSError as e:
        raise _Bad(f"cannot read ({e.strerror})") from None
    with container:
        if not container.streams.video:
            kind = " (audio only)" if container.streams.audio else ""
            raise _Bad(f"no video stream{kind}")
        stream = container.streams.video[0]
        info = _stream_info(container, stream)
        _check_decodes_to_end(container, stream, info)
    return info


def _open_failure(path: str, error: av.FFmpegError) -> str:
    """Reason for a file FFmpeg cannot open: damaged video or not a video at all, told apart by its first bytes."""
    message = short_reason(error)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        head = b""
    if any(head[offset : offset + len(magic)] == magic for offset, magic in _CONTAINER_SIGNATURES):
        return f"truncated or corrupt: the container does not open ({message})"
    return f"not a media file ({message})"


def short_reason(error: Exception) -> str:
    """FFmpeg's message without the errno and file name PyAV adds ('[Errno 1094995529] Invalid data ...: 'x.mp4'')."""
    if isinstance(error, av.FFmpegError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _stream_info(container: av.container.InputContainer, stream: av.VideoStream) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    frames = stream.frames or round(duration * fps)
    if frames <= 0:
        frames = _count_packets(container, stream)
    width, height = stream.codec_context.width, stream.codec_context.height
    return VideoInfo(frames, round(duration, 3), round(fps, 3), width, height, stream.codec_context.name)


def _count_packets(container: av.container.InputContainer, stream: av.VideoStream) -> int:
    """Frame count by demuxing (no decoding), for containers that report neither frame count nor duration."""
    try:
        count = sum(1 for packet in container.demux(stream) if packet.size)
        container.seek(0)
    except av.FFmpegError as e:
        raise _Bad(f"truncated or corrupt: {short_reason(e)}") from None
    return count


def _check_decodes_to_end(container: av.container.InputContainer, stream: av.VideoStream, info: VideoInfo) -> None:
    """Decode the first frame, then seek near the end and decode forward until a frame there comes out."""
    try:
        first = next(container.decode(stream), None)
    except av.FFmpegError as e:
        raise _Bad(f"corrupt: the first frame does not decode ({short_reason(e)})") from None
    if first is None:
        raise _Bad("no decodable frames")
    if info.fps <= 0 or info.duration <= 0:
        return  # nothing says where the end is; the first frame is all we can check cheaply
    start = first.time or 0.0
    target = start + info.duration - _END_MARGIN_FRAMES / info.fps
    if target <= start:
        return
    # Without a seek index (a WebM cut before its cues) seeking fails; decoding on from the first frame still works.
    with contextlib.suppress(av.FFmpegError):
        container.seek(int(target / stream.time_base), stream=stream)
    last = start
    try:
        for frame in container.decode(stream):
            if frame.time is not None:
                last = frame.time
                if last >= target:
                    return
    except av.FFmpegError as e:
        raise _Bad(f"truncated or corrupt: a frame near the end does not decode ({short_reason(e)})") from None
    raise _Bad(f"truncated: decoding stops at {last:.2f}s of {info.duration:.2f}s")
