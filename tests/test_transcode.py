"""prepare-data's training-ready transcode (data/transcode.py): geometry never enlarged, the promised keyframe
interval and x264 tuning, a constant frame rate, chunks that lose and repeat no frame, and a resumable cache.

Frame indices are read back from the pixels (tests/videogen.py), so "which source frame is this output frame" is
checked exactly.
"""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import av  # before anything that imports decord
import numpy as np
import pytest
from conftest import run_cli
from hypothesis import given
from hypothesis import strategies as st
from videogen import decode_index, frame_pattern, write_video

from videomae_cli.data.transcode import (
    EncodeSettings,
    chunk_of,
    output_dims,
    transcode_video,
)
from videomae_cli.errors import StorageError


def frame_indices(path: Path | str) -> list[int]:
    """The source frame index each frame of `path` shows, in order."""
    with av.open(str(path)) as container:
        return [decode_index(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


def keyframes(path: Path | str) -> list[int]:
    """Positions (in presentation order) of the keyframes of `path`."""
    with av.open(str(path)) as container:
        packets = sorted((p for p in container.demux(video=0) if p.size), key=lambda p: p.pts)
    return [i for i, packet in enumerate(packets) if packet.is_keyframe]


def x264_options(path: Path | str) -> str:
    """The option string x264 writes into the stream (its SEI), e.g. '... cabac=0 ... keyint=16 ...'."""
    data = Path(path).read_bytes()
    start = data.index(b"options: ")
    return data[start : data.index(b"\x00", start)].decode()


def stream_of(path: Path | str) -> tuple[int, int, Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height, stream.average_rate


def write_vfr(path: Path, times_ms: list[int], width: int = 64, height: int = 48) -> Path:
    """An H.264 mp4 whose frame i is shown at times_ms[i] milliseconds (a variable frame rate)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30, options={"crf": "10", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for index, ms in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(frame_pattern(index, width, height), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Geometry and encoding


@pytest.mark.parametrize(
    ("size", "short", "expected"),
    [
        ((1280, 720), 320, (568, 320)),  # down, even
        ((640, 272), 320, (640, 272)),  # already below the target: never enlarged
        ((99, 73), 320, (98, 72)),  # odd sizes rounded down to even, not scaled
        ((720, 1280), 320, (320, 568)),  # portrait
        ((96, 64), None, (96, 64)),  # no target: the source size
    ],
)
def test_output_size_is_never_enlarged(size: tuple[int, int], short: int | None, expected: tuple[int, int]) -> None:
    assert output_dims(*size, short) == expected


def test_a_video_below_the_target_keeps_its_size(tmp_path: Path) -> None:
    src = write_video(tmp_path / "small.mp4", 20, 64, 48, fps=10)
    result = transcode_video(str(src), str(tmp_path / "out.mp4"), EncodeSettings(short_side=320))
    assert result.problem is None
    assert stream_of(tmp_path / "out.mp4")[:2] == (64, 48)
    assert frame_indices(tmp_path / "out.mp4") == list(range(20))


def test_decode_encoding_promises_its_keyframe_interval_and_fastdecode(tmp_path: Path) -> None:
    src = write_video(tmp_path / "long_gop.mp4", 100, 96, 64, fps=25, gop=250)
    transcode_video(str(src), str(tmp_path / "out.mp4"), EncodeSettings(short_side=32, keyframe_interval=8))
    options = x264_options(tmp_path / "out.mp4")
    assert "keyint=8 " in options and "cabac=0" in options and "deblock=0" in options  # fastdecode's settings
    assert "ip_ratio=1.00" in options  # keyframes at the quality of the frames between them
    keys = keyframes(tmp_path / "out.mp4")
    assert keys[0] == 0 and max(b - a for a, b in zip(keys, [*keys[1:], 100], strict=True)) <= 8


def test_the_default_interval_is_48_and_size_encoding_keeps_x264_defaults(tmp_path: Path) -> None:
    src = write_video(tmp_path / "v.mp4", 40, 64, 48, fps=25, gop=250)
    transcode_video(str(src), str(tmp_path / "fast.mp4"), EncodeSettings(short_side=32))
    transcode_video(str(src), str(tmp_path / "small.mp4"), EncodeSettings(short_side=32, encode_for="size"))
    assert "keyint=48 " in x264_options(tmp_path / "fast.mp4")
    small = x264_options(tmp_path / "small.mp4")
    assert "keyint=250 " in small and "cabac=1" in small


def test_audio_is_dropped(tmp_path: Path) -> None:
    src = tmp_path / "with_audio.mp4"
    with av.open(str(src), mode="w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16000, layout="mono")
        for index in range(12):
            frame = av.VideoFrame.from_ndarray(frame_pattern(index, 64, 48), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        sound.sample_rate, sound.pts = 16000, 0
        container.mux(audio.encode(sound))
        container.mux(video.encode())
        container.mux(audio.encode())
    transcode_video(str(src), str(tmp_path / "out.mp4"), EncodeSettings())
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert [s.type for s in container.streams] == ["video"]


# ---------------------------------------------------------------------------------------------------------------------
# Frame rate


def test_a_constant_rate_source_keeps_every_frame_once(tmp_path: Path) -> None:
    src = write_video(tmp_path / "v.mp4", 45, 64, 48, fps=30)
    transcode_video(str(src), str(tmp_path / "out.mp4"), EncodeSettings())
    assert frame_indices(tmp_path / "out.mp4") == list(range(45))
    assert stream_of(tmp_path / "out.mp4")[2] == 30


def test_a_lower_rate_keeps_every_other_frame(tmp_path: Path) -> None:
    src = write_video(tmp_path / "v.mp4", 40, 64, 48, fps=30)
    transcode_video(str(src), str(tmp_path / "out.mp4"), EncodeSettings(fps=15))
    assert frame_indices(tmp_path / "out.mp4") == list(range(0, 40, 2))
    assert stream_of(tmp_path / "out.mp4")[2] == 15


def test_a_variable_rate_source_lands_on_a_constant_grid(tmp_path: Path) -> None:
    # Frames at 0, 100, 300, 350, 400, 600 ms (gaps and a burst); at 10 fps slot k is k × 100 ms and shows the
    # nearest frame: slot 2 (200 ms) ties between frames 1 and 2 and takes the earlier; frame 3 (350 ms) is nearest
    # to no slot and is dropped; slot 5 (500 ms) ties between frames 4 and 5.
    src = write_vfr(tmp_path / "vfr.mp4", [0, 100, 300, 350, 400, 600])
    transcode_video(str(src), str(tmp_path / "out.mp4"), EncodeSettings(fps=10))
    assert frame_indices(tmp_path / "out.mp4") == [0, 1, 1, 2, 4, 4, 5]


# ---------------------------------------------------------------------------------------------------------------------
# Chunks


@given(st.integers(1, 400), st.integers(1, 100), st.integers(0, 40))
def test_chunks_are_contiguous_and_none_is_a_short_tail(total: int, length: int, min_tail: int) -> None:
    chunks = [chunk_of(position, total, length, min_tail) for position in range(total)]
    assert chunks[0] == 0 and all(b - a in (0, 1) for a, b in itertools.pairwise(chunks))
    sizes = [chunks.count(c) for c in range(chunks[-1] + 1)]
    assert all(size == length for size in sizes[:-1])
    assert len(sizes) == 1 or sizes[-1] >= min(min_tail, length)


def test_chunking_loses_and_repeats_no_frame(tmp_path: Path) -> None:
    src = write_video(tmp_path / "v.mp4", 100, 64, 48, fps=10, gop=250)
    settings = EncodeSettings(chunk_seconds=3, min_frames=16)  # 30 + 30 + 40: the 10-frame tail joins the last chunk
    result = transcode_video(str(src), str(tmp_path / "out" / "v.mp4"), settings)
    assert [Path(o.path).name for o in result.outputs] == ["v.000.mp4", "v.001.mp4", "v.002.mp4"]
    assert [o.frames for o in result.outputs] == [30, 30, 40]
    shown = [index for output in result.outputs for index in frame_indices(output.path)]
    assert shown == list(range(100))
    assert all(keyframes(o.path)[0] == 0 for o in result.outputs)  # each chunk starts at a keyframe


def test_a_failed_transcode_keeps_no_chunk(tmp_path: Path) -> None:
    src = write_video(tmp_path / "v.mp4", 60, 64, 48, fps=10)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) * 2 // 3])  # the index (written last) is gone: the file does not open
    result = transcode_video(str(src), str(tmp_path / "out" / "v.mp4"), EncodeSettings(chunk_seconds=2))
    assert result.problem is not None and result.problem.startswith("transcode failed")
    assert not [p for p in tmp_path.joinpath("out").rglob("*") if p.is_file()]


def test_a_full_disk_is_a_storage_error_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from videomae_cli.data import transcode

    src = write_video(tmp_path / "v.mp4", 60, 64, 48, fps=10)
    calls = {"n": 0}
    real_add = transcode._H264Writer.add

    def add_until_full(self: transcode._H264Writer, frame: av.VideoFrame) -> None:
        calls["n"] += 1
        if calls["n"] == 45:  # inside the third chunk, after two finished ones
            raise OSError(errno.ENOSPC, "No space left on device")
        real_add(self, frame)

    monkeypatch.setattr(transcode._H264Writer, "add", add_until_full)
    with pytest.raises(StorageError, match="No space left on device"):
        transcode_video(str(src), str(tmp_path / "out" / "v.mp4"), EncodeSettings(chunk_seconds=2))
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


# ---------------------------------------------------------------------------------------------------------------------
# Through prepare-data


def _source(tmp_path: Path, frames: int = 100) -> Path:
    src = tmp_path / "src"
    for name in ("a", "b"):
        (src / name).mkdir(parents=True)
        for i in range(3):
            write_video(src / name / f"v{i}.mp4", frames, 96, 64, fps=10, gop=250)
    return src


def _rows(out: Path) -> dict[str, list[tuple[str, int]]]:
    rows = {}
    for split in ("train", "val"):
        lines = (out / f"{split}.csv").read_text().splitlines()
        rows[split] = [(line.rsplit(" ", 1)[0], int(line.rsplit(" ", 1)[1])) for line in lines]
    return rows


def test_prepare_data_lists_every_chunk_in_the_split_of_its_video(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("prepare-data", str(_source(tmp_path)), "--out", str(out), "--resize-short", "32", "--chunk-seconds", "4")
    result = run_cli(*args, "--val-fraction", "0.34")
    assert result.returncode == 0, result.stderr
    rows = _rows(out)
    videos = {split: {path.rsplit(".", 2)[0] for path, _ in rows[split]} for split in rows}
    assert not videos["train"] & videos["val"]  # no video has chunks on both sides
    listed = [path for split in rows.values() for path, _ in split]
    assert len(listed) == 6 * 3  # 100 frames at 10 fps in 4-s chunks: 40 + 60 (the 20-frame tail is a whole chunk)
    assert all(stream_of(path)[:2] == (48, 32) for path in listed)
    for split in rows.values():
        for path, label in split:
            assert label == (0 if "/a/" in path else 1)
    report = json.loads((out / "report.json").read_text())
    assert report["transcode"]["files"] == 18 and report["transcode"]["transcoded"] == 6
    assert report["transcode"]["bytes_before"] > 0 and report["transcode"]["bytes_after"] > 0
    speed = report["transcode"]["decode_speed"]
    assert speed["videos"] == 4 and speed["source_clips_per_second"] > 0 and speed["prepared_clips_per_second"] > 0


def test_prepare_data_reuses_finished_transcodes_and_redoes_changed_settings(tmp_path: Path) -> None:
    src, out = _source(tmp_path, frames=40), tmp_path / "out"
    base = ("prepare-data", str(src), "--out", str(out), "--resize-short", "32")
    assert run_cli(*base, "--chunk-seconds", "2").returncode == 0
    chunks = sorted(out.rglob("*.mp4"))
    mtimes = [path.stat().st_mtime_ns for path in chunks]
    assert run_cli(*base, "--chunk-seconds", "2").returncode == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["transcode"]["transcoded"], report["transcode"]["reused"]) == (0, 6)
    assert [path.stat().st_mtime_ns for path in chunks] == mtimes
    assert run_cli(*base).returncode == 0  # no chunks now: every video again, the stale chunk files removed
    report = json.loads((out / "report.json").read_text())
    assert (report["transcode"]["transcoded"], report["transcode"]["reused"]) == (6, 0)
    assert sorted(p.name for p in out.rglob("*.mp4")) == sorted(f"v{i}.mp4" for i in range(3) for _ in "ab")
    assert not list(out.rglob(".*.part"))


def test_transcode_settings_are_refused_with_synthetic_data(tmp_path: Path) -> None:
    result = run_cli("prepare-data", "--synthetic", "4", "--out", str(tmp_path), "--chunk-seconds", "2")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: chunk_seconds: not used with --synthetic (set by --chunk-seconds)"
