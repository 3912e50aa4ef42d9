"""The video sets of bench_data.py: synthetic "natural-ish" H.264 videos generated and encoded here, cached in a folder
named after every encoding parameter; for the real-resolution sets also the copies `videomae prepare-data` writes at
short side 320 and, for the bytes comparison, a plain libx264 transcode at the same short side (what the tool used to
write). Every file set is described by inspecting its files with PyAV (size, GOP, B-frames, bytes).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import checkout  # this checkout's videomae_cli, also for prepare-data (benchmarks/checkout.py)
import numpy as np
from PIL import Image

import videomae_cli

RESIZE_SHORT = 320  # the short side of the prepared copies and of the default transcode
# What prepare-data wrote before its transcoding defaults changed: libx264 defaults but for these, area downscale.
DEFAULT_TRANSCODE = {"crf": "18", "preset": "veryfast"}


@dataclass(frozen=True)
class VideoSet:
    """One generated set: `count` videos of `seconds` at width×height, H.264 yuv420p (x264 `preset`, `crf`, keyframe
    every `gop` frames, x264's default 3 B-frames unless `bframes` is False). `generator` 1 is the 320×240 content
    of the first version of this benchmark, 2 the same kind of content at any size. `real`: a real-resolution set,
    also prepared with `videomae prepare-data` and transcoded plainly for the bytes comparison."""

    name: str
    width: int
    height: int
    fps: int
    seconds: float
    gop: int
    bframes: bool = True
    crf: int = 23
    preset: str = "medium"
    generator: int = 2
    real: bool = True

    @property
    def frames(self) -> int:
        return round(self.fps * self.seconds)

    def params(self) -> dict[str, Any]:
        """The encoding parameters, as in params.json (the 320×240 set's keys are those of the first version)."""
        params = {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "seconds": self.seconds,
            "codec": "libx264",
            "pix_fmt": "yuv420p",
            "gop": self.gop,
            "crf": self.crf,
            "preset": self.preset,
            "generator": self.generator,
        }
        return params if self.bframes else {**params, "bframes": 0}

    def folder_name(self) -> str:
        seconds = f"{self.seconds:g}".replace(".", "p")
        name = f"videomae_bench_data_{self.width}x{self.height}_{self.fps}fps_{seconds}s_gop{self.gop}_crf{self.crf}"
        return f"{name}_{self.preset}{'' if self.bframes else '_bf0'}_v{self.generator}"


SETS: dict[str, VideoSet] = {
    "320x240": VideoSet("320x240", 320, 240, 30, 10, gop=60, generator=1, real=False),
    "720p-b": VideoSet("720p-b", 1280, 720, 30, 10, gop=250),
    "720p-p": VideoSet("720p-p", 1280, 720, 30, 10, gop=250, bframes=False),
    "1080p-b": VideoSet("1080p-b", 1920, 1080, 25, 10, gop=250),
}
GRAIN_FIELDS, GRAIN_SHIFT = 4, 64
QUICK_SECONDS = 2.0  # --quick: short (a clip's 64-frame span then covers about the whole video)


def default_root() -> Path:
    return Path(tempfile.gettempdir())


def quick(video_set: VideoSet) -> VideoSet:
    return replace(video_set, seconds=QUICK_SECONDS)


# ---------------------------------------------------------------------------------------------------- the content


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """float32 [height, width, 3] in [0, 1]: random values on a `cell`-pixel grid, box-blurred over a cell."""
    coarse = rng.random((height // cell + 2, width // cell + 2, 3), dtype=np.float32)
    fine = np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:height, :width]
    summed = np.pad(fine, ((cell, 0), (cell, 0), (0, 0))).cumsum(0).cumsum(1)
    return (summed[cell:, cell:] - summed[:-cell, cell:] - summed[cell:, :-cell] + summed[:-cell, :-cell]) / cell**2


def natural_frames(seed: int, width: int = 320, height: int = 240, count: int = 300):
    """Generator 1: uint8 [height, width, 3] RGB frames that compress like camera footage: a textured background
    twice the frame size that the view pans across, three soft coloured blobs moving on their own, and fresh film
    grain each frame. (Computes everything at full size: meant for 320×240.)"""
    rng = np.random.default_rng(seed)
    texture = 0.6 * _smooth_noise(rng, 2 * height, 2 * width, 32) + 0.3 * _smooth_noise(rng, 2 * height, 2 * width, 8)
    texture += 0.25 * rng.random((2 * height, 2 * width, 3), dtype=np.float32)
    texture = (texture - texture.min()) / (texture.max() - texture.min()) * 200 + 20
    pan_x, pan_y = rng.uniform(-1.5, 1.5, 2)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    blobs = [
        (
            rng.uniform(0, width),
            rng.uniform(0, height),
            *rng.uniform(-3, 3, 2),
            rng.uniform(20, 50),
            rng.uniform(-80, 80, 3),
        )
        for _ in range(3)
    ]
    for t in range(count):
        left = int(width / 2 * (1 + 0.9 * np.sin(pan_x * t / 60)))
        top = int(height / 2 * (1 + 0.9 * np.sin(pan_y * t / 60)))
        frame = texture[top : top + height, left : left + width].copy()
        for x, y, dx, dy, radius, colour in blobs:
            cx, cy = (x + dx * t) % width, (y + dy * t) % height
            frame += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius**2))[..., None] * colour
        frame += rng.normal(0, 4, (height, width, 1)).astype(np.float32)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def _upscale(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 [h, w, C] → [height, width, C], bilinear (PIL, channel by channel)."""
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F").resize((width, height), Image.BILINEAR)
        )
        for c in range(image.shape[2])
    ]
    return np.stack(channels, axis=2)


def scaled_natural_frames(seed: int, width: int, height: int, count: int):
    """Generator 2: generator 1's scene at any size, fast enough for 1080p. The scene scales with the frame (pan
    speed, blob size and speed, texture cells: as if the same shot were filmed at a higher resolution): the texture
    is computed at most at twice 320×240-scale detail and upscaled once, each blob is rendered once as a sprite and
    pasted where it moves, and the film grain is drawn at full size but once: each frame takes a window of one of
    `GRAIN_FIELDS` noise fields at a random offset (a block's grain never moves with the scene, so to the encoder it
    is as fresh as a sensor's). Frames are summed in int16."""
    rng = np.random.default_rng(seed)
    scale = height / 240
    step = max(1, int(scale // 2))  # texture pixels per frame pixel: detail at 1-2 px of the 320×240 scene, scaled
    tex_h, tex_w = 2 * height // step, 2 * width // step
    texture = 0.6 * _smooth_noise(rng, tex_h, tex_w, max(2, round(32 * scale / step)))
    texture += 0.3 * _smooth_noise(rng, tex_h, tex_w, max(2, round(8 * scale / step)))
    texture += 0.25 * rng.random((tex_h, tex_w, 3), dtype=np.float32)
    texture = (texture - texture.min()) / (texture.max() - texture.min()) * 200 + 20
    if step > 1:
        texture = _upscale(texture, 2 * height, 2 * width)
    background = texture.astype(np.int16)
    pan_x, pan_y = rng.uniform(-1.5, 1.5, 2)
    sprites = []
    for _ in range(3):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        dx, dy = rng.uniform(-3, 3, 2) * scale
        radius, colour = rng.uniform(20, 50) * scale, rng.uniform(-80, 80, 3)
        half = int(3 * radius)
        offsets = np.arange(-half, half + 1, dtype=np.float32)
        bump = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * radius**2))
        sprites.append((x, y, dx, dy, half, np.round(bump[..., None] * colour).astype(np.int16)))
    grain = (rng.standard_normal((GRAIN_FIELDS, height + GRAIN_SHIFT, width + GRAIN_SHIFT, 1), np.float32) * 4).astype(
        np.int16
    )
    for t in range(count):
        left = int(width / 2 * (1 + 0.9 * np.sin(pan_x * t / 60)))
        top = int(height / 2 * (1 + 0.9 * np.sin(pan_y * t / 60)))
        frame = background[top : top + height, left : left + width].copy()
        field, down, right = rng.integers(GRAIN_FIELDS), *rng.integers(GRAIN_SHIFT, size=2)
        frame += grain[field, down : down + height, right : right + width]
        for x, y, dx, dy, half, sprite in sprites:
            cx, cy = int((x + dx * t) % width), int((y + dy * t) % height)
            x0, y0 = max(cx - half, 0), max(cy - half, 0)
            x1, y1 = min(cx + half + 1, width), min(cy + half + 1, height)
            frame[y0:y1, x0:x1] += sprite[y0 - cy + half : y1 - cy + half, x0 - cx + half : x1 - cx + half]
        yield np.clip(frame, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------- the originals


def encode_video(path: Path, seed: int, video_set: VideoSet) -> None:
    """One video of the set at `path` (written to a temporary name first, so a killed run leaves no half file)."""
    partial = path.with_suffix(".partial")
    generate = natural_frames if video_set.generator == 1 else scaled_natural_frames
    options = {"crf": str(video_set.crf), "preset": video_set.preset}
    if not video_set.bframes:
        options["bf"] = "0"
    with av.open(str(partial), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=video_set.fps, options=options)
        stream.width, stream.height, stream.pix_fmt = video_set.width, video_set.height, "yuv420p"
        stream.codec_context.gop_size = video_set.gop
        stream.codec_context.time_base = Fraction(1, video_set.fps)
        for index, pixels in enumerate(generate(seed, video_set.width, video_set.height, video_set.frames)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    partial.rename(path)


def video_paths(folder: Path, count: int) -> list[Path]:
    return [folder / f"video_{i:03d}.mp4" for i in range(count)]


def make_originals(video_set: VideoSet, folder: Path, count: int) -> tuple[list[Path], float]:
    """The first `count` videos of the set in `folder`, encoding those not there yet; and the seconds spent."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "params.json"
    if meta.exists() and json.loads(meta.read_text()) != video_set.params():
        raise SystemExit(f"{folder} holds videos made with other parameters ({meta}); pick another --videos folder")
    meta.write_text(json.dumps(video_set.params(), indent=2) + "\n")
    start = time.perf_counter()
    paths = video_paths(folder, count)
    for i, path in enumerate(paths):
        if not path.exists():
            began = time.perf_counter()
            encode_video(path, 1000 + i, video_set)
            sys.stderr.write(f"{video_set.name}: encoded {path.name} in {time.perf_counter() - began:.1f}s\n")
    return paths, time.perf_counter() - start


# ------------------------------------------------------------------------------- the default transcode (bytes)


def resized_dims(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) scaled so the shorter side is `short_side`, both even (as prepare-data has always done)."""
    scale = short_side / min(width, height)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def default_transcode(src: Path, dst: Path, short_side: int = RESIZE_SHORT) -> None:
    """`src` re-encoded with plain libx264 defaults at short side `short_side` (crf 18, preset veryfast, x264's
    keyint, no tune, area downscale, same frame rate), as prepare-data transcoded before its defaults changed."""
    partial = dst.with_suffix(".partial")
    with av.open(str(src)) as source, av.open(str(partial), mode="w", format="mp4") as out:
        stream = source.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        width, height = resized_dims(stream.codec_context.width, stream.codec_context.height, short_side)
        encoder = out.add_stream("libx264", rate=rate, options=DEFAULT_TRANSCODE)
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        for index, frame in enumerate(source.decode(stream)):
            frame = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
            frame.pts, frame.time_base = index, 1 / rate
            out.mux(encoder.encode(frame))
        out.mux(encoder.encode(None))
    partial.rename(dst)


def make_default_transcodes(originals: list[Path], folder: Path) -> tuple[list[Path], float]:
    """The default transcode of every original in `folder` (cached: the originals are fixed by their parameters)."""
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = [folder / source.name for source in originals]
    for source, path in zip(originals, paths, strict=True):
        if not path.exists():
            default_transcode(source, path)
    return paths, time.perf_counter() - start


# ----------------------------------------------------------------------------------- prepare-data's copies


def tool_fingerprint() -> str:
    """A hash of the videomae_cli sources and the PyAV version: prepared copies are reused only while both hold."""
    package = Path(videomae_cli.__file__).parent
    digest = hashlib.sha256(av.__version__.encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def make_prepared(originals: list[Path], folder: Path) -> tuple[list[Path], dict[str, Any]]:
    """`videomae prepare-data SRC --out OUT --resize-short 320 --format folders` on the originals (SRC: a folder of
    links to them, OUT: `folder`/out), run as a subprocess with the tool's own defaults; the copies it lists in
    train.csv + val.csv. Reused while `folder`/done.json exists (the folder name carries the tool's fingerprint)."""
    done = folder / "done.json"
    if done.exists():
        info = json.loads(done.read_text())
        if all(Path(p).exists() for p in info["paths"]):
            return [Path(p) for p in info["paths"]], {**info["run"], "reused": True}
    shutil.rmtree(folder, ignore_errors=True)
    src, out = folder / "src", folder / "out"
    src.mkdir(parents=True)
    for path in originals:
        (src / path.name).symlink_to(path.resolve())
    cmd = [sys.executable, "-m", "videomae_cli", "prepare-data", str(src), "--out", str(out)]
    cmd += ["--resize-short", str(RESIZE_SHORT), "--format", "folders", "--progress", "off"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=checkout.ROOT, env=checkout.run_env())
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    paths = sorted(p for name in ("train.csv", "val.csv") if (out / name).exists() for p in _manifest_paths(out / name))
    if len(paths) != len(originals):
        raise SystemExit(f"prepare-data listed {len(paths)} of {len(originals)} videos in {out}: see report.json")
    package = str(Path(videomae_cli.__file__).parent)
    run = {"command": ["videomae", *cmd[3:]], "seconds": seconds, "package": package, "fingerprint": tool_fingerprint()}
    done.write_text(json.dumps({"paths": [str(p) for p in paths], "run": run}, indent=2) + "\n")
    return paths, {**run, "reused": False}


def _manifest_paths(manifest: Path) -> list[Path]:
    """The video paths a prepare-data manifest lists (read as training reads it); none for an empty one."""
    from videomae_cli.data.manifest import read_manifest

    return [Path(entry.path) for entry in read_manifest(manifest)] if manifest.read_text().strip() else []


# ------------------------------------------------------------------------------------------------ inspection


def inspect_file(path: Path) -> dict[str, Any]:
    """One file's stream properties from its packets (no decoding): size, frame rate, frames, keyframes, GOP (the
    most frames from a keyframe to the next keyframe or the end), B-frames (packets out of presentation order:
    frames decoded before ones shown earlier), codec options x264 wrote into the stream, bytes."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
        rate = stream.average_rate
        info = {
            "width": context.width,
            "height": context.height,
            "fps": float(rate) if rate else None,
            "codec": context.name,
            "profile": context.profile,
            "pix_fmt": context.pix_fmt,
        }
    keys = [i for i, (_, key) in enumerate(packets) if key] + [len(packets)]
    seen, reordered = -1, 0
    for pts, _ in packets:
        reordered += pts is not None and pts < seen
        seen = max(seen, pts if pts is not None else seen)
    x264 = _x264_settings(path)
    return {
        **info,
        "frames": len(packets),
        "keyframes": len(keys) - 1,
        "gop": max(b - a for a, b in itertools.pairwise(keys)) if len(keys) > 1 else len(packets),
        "b_frames": reordered > 0,
        "x264": x264,
        "bytes": path.stat().st_size,
    }


def _x264_settings(path: Path) -> dict[str, str]:
    """The encoder settings x264 writes into its SEI ("keyint=250 bframes=3 ..."), for a few keys; {} if none."""
    blob = path.read_bytes()[: 1 << 20]
    start = blob.find(b"x264 - core")
    if start < 0:
        return {}
    text = blob[start : blob.find(b"\0", start)].decode("latin-1")
    fields = dict(item.split("=", 1) for item in text.split(" - ")[-1].split() if "=" in item)
    keep = ("keyint", "keyint_min", "scenecut", "bframes", "crf", "ref", "deblock", "cabac", "weightp", "threads")
    info = {key: fields[key] for key in keep if key in fields}
    core = text.split("core ", 1)[1].split()[0] if "core " in text else None
    return {"core": core, **info} if core else info


def describe(paths: list[Path], seconds: float) -> dict[str, Any]:
    """A file set: every file's properties summarised (sizes, GOP, B-frames), bytes in all, kbit/s per video."""
    files = [inspect_file(path) for path in paths]
    first = files[0]
    total = sum(f["bytes"] for f in files)
    return {
        "count": len(files),
        "sizes": sorted({f"{f['width']}x{f['height']}" for f in files}),
        "fps": first["fps"],
        "frames": first["frames"],
        "max_gop": max(f["gop"] for f in files),
        "keyframes": first["keyframes"],
        "b_frames": any(f["b_frames"] for f in files),
        "x264": first["x264"],
        "bytes": total,
        "kbit_s": total / len(files) * 8 / seconds / 1000,
        "files": {Path(path).name: f for path, f in zip(paths, files, strict=True)} if len(files) <= 16 else None,
    }


def frame_sizes(path: Path) -> dict[str, float]:
    """Mean keyframe and other-frame packet sizes (KiB) of one file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        sizes = [(p.size, p.is_keyframe) for p in container.demux(stream) if p.size]
    keys = [s for s, key in sizes if key] or [0]
    others = [s for s, key in sizes if not key] or [0]
    return {"keyframe_kib": statistics.mean(keys) / 1024, "other_frame_kib": statistics.mean(others) / 1024}
