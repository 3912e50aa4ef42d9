"""Tests for the PyAV reader's shortcuts: unwanted non-reference frames are never decoded, and the fused decode-crop
(crop + resize in FFmpeg's scaler) matches the torch crop + resize within a stated tolerance, with the same window."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av  # before anything can import decord (see videogen's docstring)
import numpy as np
import pytest
import torch
from videogen import decode_index, frame_pattern

from videomae_cli.config.schema import DataSpec
from videomae_cli.data import pyav_reader, video
from videomae_cli.data.clips import VideoClips
from videomae_cli.data.manifest import ManifestEntry
from videomae_cli.data.transforms import CropBox, MultiScaleCrop
from videomae_cli.data.video import PyAVReader, available_backends, open_video
from videomae_cli.seeding import Stream, sample_rng

# Fused vs torch path, mean and max |difference| in 0-255 levels over many random crops of natural-looking footage,
# measured: 1.2 / 14 at 1280×720 and 1.3 / 38 at 568×320 sources (224 crops); 1.8 / 42 for this file's 192×144 video
# (112 crops: scale factors near 1, where film grain shows the two filters apart most). Tolerances leave ~40% margin.
FUSED_MEAN_TOLERANCE = 2.5
FUSED_MAX_TOLERANCE = 64

# name -> (codec, width, height, frames, codec options)
INDEXED = {
    "bframes3": ("libx264", 64, 48, 60, {"x264-params": "bframes=3:b-pyramid=normal:keyint=20:min-keyint=20"}),
    "bframes0": ("libx264", 64, 48, 60, {"x264-params": "bframes=0:keyint=20:min-keyint=20"}),
    "even-odd-ish": ("libx264", 98, 74, 40, {"x264-params": "bframes=3:keyint=15:min-keyint=15"}),
    "odd-444": ("libx264", 99, 73, 40, {"x264-params": "bframes=3:keyint=15:min-keyint=15"}),
    "odd-vp9": ("libvpx-vp9", 99, 73, 30, {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "0"}),
    "odd-mpeg4": ("mpeg4", 99, 73, 30, {"qscale": "2", "bf": "2"}),
}


def _write(path: Path, codec: str, width: int, height: int, pts: list[int], options: dict, tb: Fraction) -> Path:
    """Frames of `frame_pattern(i)` at timestamps `pts` (in `tb` units)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=25, options={"crf": "10", "preset": "veryfast", **options})
        pix_fmt = "yuv444p" if codec == "libx264" and (width % 2 or height % 2) else "yuv420p"
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = tb
        stream.codec_context.gop_size = 15
        for index, stamp in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(frame_pattern(index, width, height), format="rgb24")
            frame.pts, frame.time_base = stamp, tb
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fast")
    suffix = {"libx264": ".mp4", "libvpx-vp9": ".webm", "mpeg4": ".mp4"}
    videos = {
        name: _write(root / f"{name}{suffix[codec]}", codec, w, h, list(range(n)), opts, Fraction(1, 25))
        for name, (codec, w, h, n, opts) in INDEXED.items()
    }
    gaps = np.random.default_rng(0).integers(1, 90, size=50)  # irregular frame durations, in ms
    vfr = np.cumsum(gaps) - gaps[0]
    options = INDEXED["bframes3"][4]
    videos["vfr"] = _write(root / "vfr.mp4", "libx264", 64, 48, vfr.tolist(), options, Fraction(1, 1000))
    return videos


def _reader(path: Path, skip: bool) -> PyAVReader:
    reader = open_video(path, "pyav")
    assert isinstance(reader, PyAVReader)
    reader.skip_unwanted = skip and reader.skip_unwanted
    return reader


def _index_sets(frames: int) -> list[list[int]]:
    """Random sets with repeats, the first and last frames, and runs across keyframes."""
    rng = np.random.default_rng(3)
    sets = [[0, frames - 1, 0], [frames - 1], list(range(5, frames, 4)), [13, 14, 15, 16, 17, 31, 33, 2, 2]]
    sets += [rng.integers(0, frames, size=int(rng.integers(1, 12))).tolist() for _ in range(8)]
    return [[i for i in s if i < frames] for s in sets]


# ------------------------------------------------------------------------------------------ skipping unwanted frames


@pytest.mark.parametrize("name", [*INDEXED, "vfr"])
def test_skipping_reader_equals_the_full_decode(indexed: dict[str, Path], name: str) -> None:
    with _reader(indexed[name], skip=True) as fast, _reader(indexed[name], skip=False) as full:
        for wanted in _index_sets(fast.num_frames):
            got = fast.get_frames(wanted)
            assert np.array_equal(got, full.get_frames(wanted))
            assert [decode_index(frame) for frame in got] == wanted


def test_h264_skips_only_where_it_may(indexed: dict[str, Path]) -> None:
    with open_video(indexed["bframes3"], "pyav") as reader, open_video(indexed["odd-vp9"], "pyav") as vp9:
        assert reader.skip_unwanted and not vp9.skip_unwanted  # VP9 is not in SKIP_CODECS: decoded in full


def _frames_out(reader: PyAVReader, monkeypatch: pytest.MonkeyPatch, wanted: list[int]) -> int:
    """How many frames the decoder gave while reading `wanted`."""
    count = 0
    original = video.PyAVReader._decoded

    def counting(self: PyAVReader, wanted_pts: set[int] | None = None) -> Iterator[av.VideoFrame]:
        nonlocal count
        for frame in original(self, wanted_pts):
            count += 1
            yield frame

    monkeypatch.setattr(video.PyAVReader, "_decoded", counting)
    reader.get_frames(wanted)
    monkeypatch.undo()
    return count


def test_unwanted_b_frames_are_not_decoded(indexed: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    wanted = [40, 44, 48]  # one GOP (keyframe at 40): the non-reference B-frames in between are left out
    with _reader(indexed["bframes3"], skip=True) as fast, _reader(indexed["bframes3"], skip=False) as full:
        assert _frames_out(fast, monkeypatch, wanted) < _frames_out(full, monkeypatch, wanted)


def test_all_p_frames_are_all_decoded(indexed: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every P-frame is a reference: nothing can be skipped, and nothing is."""
    with _reader(indexed["bframes0"], skip=True) as fast, _reader(indexed["bframes0"], skip=False) as full:
        assert _frames_out(fast, monkeypatch, [40, 48]) == _frames_out(full, monkeypatch, [40, 48])


def test_unseekable_files_are_decoded_in_full(indexed: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without timestamps frames are counted from the start: every frame up to the last wanted one must come out."""
    with open_video(indexed["bframes3"], "pyav") as reader:
        reader._table = pyav_reader.FrameTable(list(range(60)), [0] * 60, seekable=False, cut_at=None)
        assert _frames_out(reader, monkeypatch, [7, 30]) >= 31
        assert [decode_index(frame) for frame in reader.get_frames([30, 7])] == [30, 7]


class _Packet:
    def __init__(self, pts: int | None, size: int = 10, disposable: bool = False) -> None:
        self.pts, self.size, self.is_disposable = pts, size, disposable


class _Context:
    def __init__(self) -> None:
        self.skip_frame, self.seen = "DEFAULT", []


def test_packets_to_decode_sets_skip_frame_per_packet() -> None:
    packets = [_Packet(0), _Packet(1, disposable=True), _Packet(2, disposable=True), _Packet(3), _Packet(None, 0)]
    context = _Context()
    sent = []
    for packet in pyav_reader.packets_to_decode(packets, context, {0, 2}):  # type: ignore[arg-type]
        sent.append((packet.pts, context.skip_frame))
    # 1: disposable and unwanted, never sent; 2: wanted although disposable; 3: sent, skipped if unreferenced
    assert sent == [(0, "DEFAULT"), (2, "DEFAULT"), (3, "NONREF"), (None, "NONREF")]


def test_packets_to_decode_without_wanted_sends_everything_as_is() -> None:
    packets = [_Packet(0), _Packet(1, disposable=True)]
    context = _Context()
    assert list(pyav_reader.packets_to_decode(packets, context, None)) == packets  # type: ignore[arg-type]
    assert context.skip_frame == "DEFAULT"


# -------------------------------------------------------------------------------------------- fused decode-crop


def _natural(path: Path, width: int = 192, height: int = 144, frames: int = 40) -> Path:
    """Footage that compresses like a camera's: a panned smooth texture, a moving soft blob, film grain."""
    rng = np.random.default_rng(1)
    blocks = np.kron(rng.random((2 * height // 16 + 2, 2 * width // 16 + 2, 3)), np.ones((16, 16, 1)))
    summed = blocks.cumsum(0).cumsum(1)  # a 16-pixel box blur of the blocks: smooth, like a defocused scene
    texture = (summed[16:, 16:] - summed[:-16, 16:] - summed[16:, :-16] + summed[:-16, :-16]) / 256
    texture = texture[: 2 * height, : 2 * width] * 180 + 30
    ys, xs = np.mgrid[0:height, 0:width]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "20", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            frame = texture[t : t + height, 2 * t : 2 * t + width].copy()
            frame += 60 * np.exp(-((xs - 3 * t) ** 2 + (ys - height / 2) ** 2) / 400)[..., None] * [1, -1, 0.5]
            frame += rng.normal(0, 4, (height, width, 1))
            rgb = np.clip(frame, 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def natural(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _natural(tmp_path_factory.mktemp("natural") / "natural.mp4")


def _clips(path: Path, fused: bool = True, decoder: str = "pyav", size: int = 112) -> VideoClips:
    spec = DataSpec(decoder=decoder, input_size=size, num_frames=8, sampling_rate=2, fused_crop=fused)
    return VideoClips([ManifestEntry(path)] * 40, spec, seed=0)


def test_fused_clips_match_the_torch_path_within_tolerance(natural: Path) -> None:
    fused, plain = _clips(natural, fused=True), _clips(natural, fused=False)
    diffs = []
    for index in range(40):
        (a,), _ = fused.load(0, index)
        (b,), _ = plain.load(0, index)
        assert a.dtype == torch.uint8 and a.shape == b.shape == (8, 112, 112, 3)
        diffs.append((a.to(torch.int16) - b.to(torch.int16)).abs())
    diff = torch.stack(diffs).float()
    assert diff.mean() <= FUSED_MEAN_TOLERANCE and diff.max() <= FUSED_MAX_TOLERANCE


def test_fused_and_plain_draw_the_same_windows(natural: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[CropBox] = []
    original = MultiScaleCrop.sample_box

    def recording(self: MultiScaleCrop, height: int, width: int, rng: np.random.Generator) -> CropBox:
        drawn.append(original(self, height, width, rng))
        return drawn[-1]

    monkeypatch.setattr(MultiScaleCrop, "sample_box", recording)
    for fused in (True, False):
        for index in range(6):
            _clips(natural, fused=fused).load(0, index, repeats=2)
    assert drawn[:12] == drawn[12:] and len(set(drawn)) > 1


def test_fused_windows_are_the_ones_asked_for(natural: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    original = PyAVReader.get_frames_cropped

    def spy(self: PyAVReader, indices: list[int], windows: list, height: int, width: int) -> list[np.ndarray]:
        seen.append(windows)
        return original(self, indices, windows, height, width)

    monkeypatch.setattr(PyAVReader, "get_frames_cropped", spy)
    _clips(natural).load(0, 3)
    box = MultiScaleCrop(112).sample_box(144, 192, sample_rng(0, 0, 3, Stream.AUGMENT, 0))
    assert seen == [[(box.top, box.left, box.height, box.width)]]


def _forbid_fused(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fused path was used")

    monkeypatch.setattr(PyAVReader, "get_frames_cropped", refuse)


def test_fused_crop_off_is_the_exact_v1_path(natural: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_fused(monkeypatch)
    clips = _clips(natural, fused=False)
    (got,), _ = clips.load(0, 5)
    with open_video(natural, "pyav") as reader:
        frames = torch.from_numpy(reader.get_frames(clips.frame_indices(reader.num_frames, 0, 5).tolist()))
    assert torch.equal(got, MultiScaleCrop(112)(frames, sample_rng(0, 0, 5, Stream.AUGMENT, 0)))


@pytest.mark.skipif("decord" not in available_backends(), reason="decord not installed")
def test_decord_never_uses_the_fused_path(natural: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_fused(monkeypatch)
    (clip,), _ = _clips(natural, decoder="decord").load(0, 1)
    assert clip.shape == (8, 112, 112, 3)


def test_a_transform_without_antialias_is_not_fused() -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert MultiScaleCrop(112, antialias=False).decoder_crop(144, 192, rng) is None
    assert rng.bit_generator.state == state  # declining draws nothing


def test_crop_scaler_output_and_bad_window(natural: Path) -> None:
    with av.open(str(natural)) as container:
        frame = next(container.decode(video=0))
    out = pyav_reader.CropScaler((1, 3, 95, 126), 56, 64)(frame)
    assert out.dtype == np.uint8 and out.shape == (56, 64, 3)
    with pytest.raises(ValueError, match="does not fit"):
        pyav_reader.CropScaler((100, 0, 95, 126), 56, 64)(frame)
