"""Tests for videomae_cli.data.video: both backends read the exact frames asked for, and fail only with VideoError."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import videogen  # imports av before anything can import decord (see videogen's docstring)
from videogen import decode_index, frame_pattern, write_video

from videomae_cli.data import video
from videomae_cli.data.video import VideoError, available_backends, open_video, resolve_backend

HAS_DECORD = "decord" in available_backends()
BACKENDS = ["pyav", pytest.param("decord", marks=pytest.mark.skipif(not HAS_DECORD, reason="decord not installed"))]

# name -> (file name, codec, width, height, frames)
VIDEOS = {
    "h264": ("h264.mp4", "libx264", 64, 48, 60),  # B-frames, a keyframe every 12 frames
    "h264-mkv": ("h264.mkv", "libx264", 64, 48, 40),  # Matroska: seek index keyed by pts, not dts
    "mpeg4": ("mpeg4.avi", "mpeg4", 64, 48, 40),
    "mpeg4-mp4": ("mpeg4.mp4", "mpeg4", 64, 48, 20),
    "vp9": ("vp9.webm", "libvpx-vp9", 64, 48, 40),
    "odd": ("odd.mp4", "libx264", 97, 53, 30),  # odd size: yuv444p
    "portrait": ("portrait.mp4", "libx264", 48, 96, 30),  # width 48 hits decord's padded-row bug
    "short": ("short.mp4", "libx264", 64, 48, 3),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {
        name: write_video(root / file, frames, width, height, codec=codec)
        for name, (file, codec, width, height, frames) in VIDEOS.items()
    }


def _indices(frames: np.ndarray) -> list[int]:
    return [decode_index(frame) for frame in frames]


# ------------------------------------------------------------------------------------------------- test videos


@pytest.mark.parametrize(("width", "height"), [(64, 48), (97, 53), (12, 4), (48, 96)])
def test_frame_pattern_round_trips_under_noise(width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    for index in [0, 1, 2, 100, 2047, videogen.MAX_INDEX]:
        frame = frame_pattern(index, width, height).astype(np.int16)
        noisy = np.clip(frame + rng.integers(-60, 61, size=frame.shape), 0, 255).astype(np.uint8)
        assert decode_index(noisy) == index


# ------------------------------------------------------------------------------------------------ reading frames


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(VIDEOS))
def test_metadata(videos: dict[str, Path], name: str, backend: str) -> None:
    _, _, width, height, frames = VIDEOS[name]
    with open_video(videos[name], backend) as reader:
        assert (reader.num_frames, reader.width, reader.height) == (frames, width, height)
        assert reader.fps == pytest.approx(25.0)
        assert reader.path == videos[name]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(VIDEOS))
def test_get_frames_returns_the_requested_frames_in_order(videos: dict[str, Path], name: str, backend: str) -> None:
    frames = VIDEOS[name][4]
    rng = np.random.default_rng(1)
    with open_video(videos[name], backend) as reader:
        # every frame, shuffled, with repeats: decoded once each, returned in the order asked
        wanted = [*rng.permutation(frames).tolist(), 0, frames - 1, 0]
        got = reader.get_frames(wanted)
        assert got.dtype == np.uint8 and got.shape == (len(wanted), reader.height, reader.width, 3)
        assert _indices(got) == wanted
        # the same reader again, backwards and in small random sets (seeks back and forth)
        assert _indices(reader.get_frames(list(range(frames))[::-1])) == list(range(frames))[::-1]
        for _ in range(5):
            wanted = rng.integers(0, frames, size=4).tolist()
            assert _indices(reader.get_frames(wanted)) == wanted


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["h264", "h264-mkv", "vp9"])
def test_every_frame_alone(videos: dict[str, Path], name: str, backend: str) -> None:
    """One frame per call, last to first: each seek must land on a keyframe at or before the frame (B-frames)."""
    with open_video(videos[name], backend) as reader:
        for index in reversed(range(reader.num_frames)):
            assert decode_index(reader.get_frames([index])[0]) == index


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_request(videos: dict[str, Path], backend: str) -> None:
    with open_video(videos["odd"], backend) as reader:
        assert reader.get_frames([]).shape == (0, 53, 97, 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("index", [-1, 60, 1000])
def test_index_out_of_range(videos: dict[str, Path], backend: str, index: int) -> None:
    with open_video(videos["h264"], backend) as reader, pytest.raises(VideoError, match="out of range"):
        reader.get_frames([0, index])


def test_pyav_decodes_only_from_the_keyframe_before(videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = []
    original = video.PyAVReader._decoded_from

    def counting(self: video.PyAVReader, seek_ts: int) -> Iterator[tuple[int, object]]:
        for item in original(self, seek_ts):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(video.PyAVReader, "_decoded_from", counting)
    with open_video(videos["h264"], "pyav") as reader:
        assert _indices(reader.get_frames([50, 51])) == [50, 51]
    # GOPs are at most 12 frames: decoding starts at the keyframe before 50 and stops at 51
    assert 2 <= len(decoded) <= 13 and min(decoded) >= 38 and max(decoded) == 51


@pytest.mark.parametrize("name", ["h264", "mpeg4"])
def test_pyav_without_timestamps_counts_from_the_start(videos: dict[str, Path], name: str) -> None:
    """Files whose packets lack unique timestamps are decoded from the start, frames counted as they come."""
    with open_video(videos[name], "pyav") as reader:
        table = reader._table
        reader._table = dataclasses.replace(table, pts=list(range(len(table.pts))), seekable=False)
        wanted = [7, 3, reader.num_frames - 1, 3]
        assert _indices(reader.get_frames(wanted)) == wanted


@pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")
@pytest.mark.parametrize("name", list(VIDEOS))
def test_backends_agree(videos: dict[str, Path], name: str) -> None:
    with open_video(videos[name], "pyav") as pyav, open_video(videos[name], "decord") as decord:
        assert pyav.num_frames == decord.num_frames
        wanted = list(range(0, pyav.num_frames, 2))
        a, b = pyav.get_frames(wanted), decord.get_frames(wanted)
    assert _indices(a) == _indices(b) == wanted
    assert np.abs(a.astype(np.int16) - b).mean() < 2.0  # both convert YUV to RGB; allow rounding differences


# ----------------------------------------------------------------------------------------------------- backends


def test_resolve_backend() -> None:
    assert resolve_backend("auto") == "pyav"  # the faster reader (docs/performance.md), installed everywhere
    assert resolve_backend("pyav") == "pyav"
    with pytest.raises(VideoError, match="unknown video backend"):
        resolve_backend("opencv")


def test_missing_decord_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, videos: dict[str, Path]) -> None:
    monkeypatch.setattr(video, "_decord", lambda: None)
    assert available_backends() == ["pyav"]
    assert resolve_backend("auto") == "pyav"
    with pytest.raises(VideoError, match="'decord' is not available"):
        open_video(videos["short"], "decord")


# ------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: path, "no such file"),
        (videogen.write_zero_bytes, "empty file"),
        (videogen.write_text_as_video, "not a readable video"),
        (videogen.write_audio_only, "no video stream"),
        (videogen.write_truncated, "not a readable video"),  # index (moov) cut off
    ],
    ids=["missing", "zero-bytes", "text", "audio-only", "truncated"],
)
def test_unreadable_files_raise_video_error(
    tmp_path: Path, backend: str, make: Callable[[Path], Path], reason: str
) -> None:
    path = make(tmp_path / "clip.mp4")
    with pytest.raises(VideoError, match=reason) as caught:
        open_video(path, backend)
    assert str(path) in str(caught.value)


def test_truncated_with_index_up_front_pyav(tmp_path: Path) -> None:
    """PyAV counts the frames whose data survived the cut (frame i = the i-th surviving one): all of them decode."""
    path = videogen.write_truncated(tmp_path / "cut.mp4", num_frames=48, keep=0.75, faststart=True)
    with open_video(path, "pyav") as reader:
        assert 0 < reader.num_frames < 48
        got = _indices(reader.get_frames(list(range(reader.num_frames))))
        # a cut inside a B-frame group can drop a frame shown before the last survivor
        assert got[0] == 0 and got == sorted(set(got))
        with pytest.raises(VideoError, match="out of range"):
            reader.get_frames([reader.num_frames])


def test_truncated_inside_the_first_frame_pyav(tmp_path: Path) -> None:
    path = videogen.write_truncated(tmp_path / "cut.mp4", num_frames=48, keep=0.4, faststart=True)
    with pytest.raises(VideoError, match="no frames"):
        open_video(path, "pyav")


@pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")
def test_truncated_with_index_up_front_decord(tmp_path: Path) -> None:
    """decord reads every packet when it opens a file, so a cut file fails at once."""
    path = videogen.write_truncated(tmp_path / "cut.mp4", num_frames=48, faststart=True)
    with pytest.raises(VideoError, match="decord cannot read it"):
        open_video(path, "decord")
