"""Data-loading benchmark: clips/s for decode + augment of VideoMAE pretraining clips from H.264 videos, on the CPU.

What a pretraining step asks of the loader: per clip, 16 frames at sampling rate 4 (the V1 pretraining sampler), decode
only those, the multi-scale crop resized to 224 (and 112 as a second config), plus the tube mask. Compared:

- ours: `SampledClips(VideoClips(...))` through `train_loader` (the training loader), for every backend in
  `available_backends()`: uint8 clips, normalised later on the training device;
- official: a reimplementation of the official VideoMAE V1 pretraining loader (`VideoMAE` dataset +
  `DataAugmentationForVideoMAE`): decord `VideoReader(path, num_threads=1)`, `get_batch(frame_id_list).asnumpy()`
  of the V1 sampler's indices, every frame to a PIL image, GroupMultiScaleCrop (PIL crop, then PIL bilinear resize,
  per frame), Stack, ToTorchFormatTensor (float / 255), GroupNormalize (in place, channel by channel), the tube mask,
  default collate: float32 clips, as officially.

Videos: N (default 16) 320×240, 10 s at 30 fps, H.264 yuv420p (GOP 60, crf 23, x264 preset medium, B-frames) of
synthetic "natural-ish" content (a panning textured background, moving soft blobs, film grain; ~350-400 kbit/s),
generated once and cached (`--videos DIR`, default a folder in the temp dir named after the encoding parameters).

Each measurement (implementation, backend, crop size, worker count) runs in its own subprocess (`--worker ...`), so
no side inherits another's imports, allocator state or decoder threads; the sides rotate which goes first from
round to round, because other processes share the CPU. A measurement: a DataLoader of batches of 8 (0 workers: loaded
in the main process), 2 untimed batches per worker, then batches until `--seconds` have passed; clips/s over rounds
(min/median/max) and per worker, and the CPU time per clip of all the loading processes (main + workers, all
threads). Every loading process uses one torch thread (DataLoader workers do by default; the 0-worker process is set
to 1), so "per worker" means per core. "others CPU" is the largest share of the machine's CPU that other processes
used during a measurement (from /proc/stat): it says how far to trust the medians.

Before timing, one check that both sides do the same work: on the same frames and crop window, the official float
clip (de-normalised) and ours (uint8) must agree to within 2 levels of 255 (PIL and torchvision may round differently).

    python benchmarks/bench_data.py                             # the full run (~8 min on 2 cores, +35 s to encode)
    python benchmarks/bench_data.py --quick                     # a smoke run: 2 videos, 1 round, short windows
    python benchmarks/bench_data.py --sizes 224 --workers 0,2 --rounds 5 --json /tmp/bench_data.json
    python benchmarks/bench_data.py --videos /tmp/bench_videos  # keep the generated videos in a folder of your own
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av  # before anything that imports decord (see videomae_cli.data.video)
import machine  # benchmarks/machine.py: scripts run from this folder
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from videomae_cli.config.schema import DataSpec, MaskSpec
from videomae_cli.data.clips import VideoClips
from videomae_cli.data.loader import EpochSampler, SampledClips, train_loader
from videomae_cli.data.manifest import ManifestEntry
from videomae_cli.data.sampling import pretrain_indices
from videomae_cli.data.transforms import MultiScaleCrop, crop, resize_clip
from videomae_cli.data.video import available_backends, open_video
from videomae_cli.masking import MaskGenerator
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD
from videomae_cli.models.vit import TokenGrid

NUM_FRAMES = 16
SAMPLING_RATE = 4
PATCH, TUBELET = 16, 2
MASK_RATIO = 0.9
SEED = 0
OFFICIAL = "official"

# The generated videos; the cache folder's name carries every parameter, so a change makes a new folder.
WIDTH, HEIGHT, FPS, SECONDS = 320, 240, 30, 10
GOP, CRF, PRESET = 60, 23, "medium"
GENERATOR_VERSION = 1


# ------------------------------------------------------------------------------------------------------ the videos


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """float32 [height, width, 3] in [0, 1]: random values on a `cell`-pixel grid, box-blurred over a cell."""
    coarse = rng.random((height // cell + 2, width // cell + 2, 3), dtype=np.float32)
    fine = np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:height, :width]
    summed = np.pad(fine, ((cell, 0), (cell, 0), (0, 0))).cumsum(0).cumsum(1)
    return (summed[cell:, cell:] - summed[:-cell, cell:] - summed[cell:, :-cell] + summed[:-cell, :-cell]) / cell**2


def natural_frames(seed: int, width: int = WIDTH, height: int = HEIGHT, count: int = FPS * SECONDS):
    """uint8 [height, width, 3] RGB frames that compress like camera footage: a textured background twice the frame
    size that the view pans across, three soft coloured blobs moving on their own, and fresh film grain each frame."""
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


def encode_video(path: Path, seed: int) -> None:
    """One benchmark video at `path` (written to a temporary name first, so a killed run leaves no half file)."""
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": str(CRF), "preset": PRESET})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = GOP
        stream.codec_context.time_base = Fraction(1, FPS)
        for index, pixels in enumerate(natural_frames(seed)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    partial.rename(path)


def video_params() -> dict[str, Any]:
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "fps": FPS,
        "seconds": SECONDS,
        "codec": "libx264",
        "pix_fmt": "yuv420p",
        "gop": GOP,
        "crf": CRF,
        "preset": PRESET,
        "generator": GENERATOR_VERSION,
    }


def default_video_dir() -> Path:
    p = video_params()
    name = f"videomae_bench_data_{p['width']}x{p['height']}_{p['fps']}fps_{p['seconds']}s_gop{p['gop']}_crf{p['crf']}"
    return Path(tempfile.gettempdir()) / f"{name}_{p['preset']}_v{p['generator']}"


def prepare_videos(folder: Path, count: int) -> list[Path]:
    """The first `count` benchmark videos in `folder`, encoding those not there yet."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "params.json"
    if meta.exists() and json.loads(meta.read_text()) != video_params():
        raise SystemExit(f"{folder} holds videos made with other parameters ({meta}); pick another --videos folder")
    meta.write_text(json.dumps(video_params(), indent=2) + "\n")
    paths = [folder / f"video_{i:03d}.mp4" for i in range(count)]
    for i, path in enumerate(paths):
        if not path.exists():
            start = time.perf_counter()
            encode_video(path, seed=1000 + i)
            sys.stderr.write(f"encoded {path.name} in {time.perf_counter() - start:.1f}s\n")
    return paths


def describe_videos(paths: list[Path]) -> dict[str, Any]:
    """Frame count, bitrate and frame sizes of the benchmark videos (from the first one's packets)."""
    with av.open(str(paths[0])) as container:
        stream = container.streams.video[0]
        sizes = [(p.size, p.is_keyframe) for p in container.demux(stream) if p.size]
    keys = [s for s, key in sizes if key]
    others = [s for s, key in sizes if not key]
    return {
        **video_params(),
        "count": len(paths),
        "frames": len(sizes),
        "kbit_s": statistics.mean(p.stat().st_size for p in paths) * 8 / SECONDS / 1000,
        "keyframe_kib": statistics.mean(keys) / 1024,
        "other_frame_kib": statistics.mean(others) / 1024,
    }


# -------------------------------------------------------------------------------- the official V1 loader, rebuilt


class GroupMultiScaleCrop:
    """Official GroupMultiScaleCrop: a (w, h) pair from scales × short side (2-px snap to the size, at most one scale
    step apart), one of 13 fixed offsets, `random.choice` for both; then PIL crop + bilinear resize of every frame."""

    def __init__(self, size: int, scales: tuple[float, ...] = (1, 0.875, 0.75, 0.66)) -> None:
        self.size, self.scales, self.max_distort = size, scales, 1

    def __call__(self, frames: list[Image.Image], box: tuple[int, int, int, int] | None = None) -> list[Image.Image]:
        crop_w, crop_h, left, top = box if box is not None else self.sample_crop(*frames[0].size)
        cropped = [frame.crop((left, top, left + crop_w, top + crop_h)) for frame in frames]
        return [frame.resize((self.size, self.size), Image.BILINEAR) for frame in cropped]

    def sample_crop(self, image_w: int, image_h: int) -> tuple[int, int, int, int]:
        sides = [int(min(image_w, image_h) * scale) for scale in self.scales]
        sides = [self.size if abs(side - self.size) < 3 else side for side in sides]
        pairs = [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= self.max_distort]
        crop_w, crop_h = random.choice(pairs)
        w_step, h_step = (image_w - crop_w) // 4, (image_h - crop_h) // 4
        steps = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
        left, top = random.choice([(i * w_step, j * h_step) for i, j in steps])
        return crop_w, crop_h, left, top


def stack(frames: list[Image.Image]) -> np.ndarray:
    """Official Stack(roll=False): the RGB frames concatenated along channels, [H, W, 3T]."""
    return np.concatenate(frames, axis=2)


def to_torch_format_tensor(pixels: np.ndarray) -> torch.Tensor:
    """Official ToTorchFormatTensor(div=True): [3T, H, W] float in [0, 1]."""
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous().float().div(255.0)


def group_normalize(tensor: torch.Tensor) -> torch.Tensor:
    """Official GroupNormalize: mean/std repeated over the frames, applied in place one channel at a time."""
    repeats = tensor.size(0) // len(IMAGENET_MEAN)
    for channel, mean, std in zip(tensor, list(IMAGENET_MEAN) * repeats, list(IMAGENET_STD) * repeats, strict=True):
        channel.sub_(mean).div_(std)
    return tensor


def tube_mask(frames: int, height: int, width: int, ratio: float) -> np.ndarray:
    """Official TubeMaskingGenerator: one shuffled 0/1 (float) mask per frame, tiled over time, flattened."""
    per_frame = height * width
    masked = int(ratio * per_frame)
    mask = np.hstack([np.zeros(per_frame - masked), np.ones(masked)])
    np.random.shuffle(mask)
    return np.tile(mask, (frames, 1)).flatten()


class OfficialV1Pretrain(Dataset):
    """The official V1 pretraining dataset (`VideoMAE` with `DataAugmentationForVideoMAE`), keyed like ours by
    (epoch, index) so both sides read the same videos in the same order; randomness from the global RNGs, as there."""

    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths, self.size = paths, size
        self.new_length, self.new_step = NUM_FRAMES, SAMPLING_RATE
        self.skip_length = self.new_length * self.new_step
        self.crop = GroupMultiScaleCrop(size)
        self.mask_shape = (NUM_FRAMES // TUBELET, size // PATCH, size // PATCH)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray]:
        import decord

        path = self.paths[key[1]]
        reader = decord.VideoReader(str(path), num_threads=1)
        duration = len(reader)
        offset, skip_offsets = self.sample_train_indices(duration)
        frames = self.load_frames(reader, duration, offset, skip_offsets)
        clip = group_normalize(to_torch_format_tensor(stack(self.crop(frames))))  # [3T, H, W]
        clip = clip.view((self.new_length, 3, *clip.shape[-2:])).transpose(0, 1)  # [3, T, H, W], a view
        return clip, tube_mask(*self.mask_shape, MASK_RATIO)

    def sample_train_indices(self, duration: int) -> tuple[int, np.ndarray]:
        """Official `_sample_train_indices` with one segment, no temporal jitter: a 1-based start."""
        average = duration - self.skip_length + 1
        if average > 0:
            start = int(np.random.randint(average))
        elif duration > self.skip_length:
            start = int(np.random.randint(duration - self.skip_length + 1))
        else:
            start = 0
        return start + 1, np.zeros(self.skip_length // self.new_step, dtype=int)

    def frame_ids(self, duration: int, offset: int, skip_offsets: np.ndarray) -> list[int]:
        """Official `_video_TSN_decord_batch_loader` index arithmetic (one segment)."""
        ids = []
        for i in range(len(range(0, self.skip_length, self.new_step))):
            ids.append(offset + int(skip_offsets[i]) - 1 if offset + skip_offsets[i] <= duration else offset - 1)
            if offset + self.new_step < duration:
                offset += self.new_step
        return ids

    def load_frames(self, reader: Any, duration: int, offset: int, skip_offsets: np.ndarray) -> list[Image.Image]:
        video = reader.get_batch(self.frame_ids(duration, offset, skip_offsets)).asnumpy()
        return [Image.fromarray(video[i]).convert("RGB") for i in range(len(video))]


def official_loader(paths: list[Path], size: int, batch: int, workers: int) -> DataLoader:
    """The official pretraining DataLoader (default collate and prefetch factor, drop_last), our sample order."""
    return DataLoader(
        OfficialV1Pretrain(paths, size),
        batch_size=batch,
        sampler=EpochSampler(len(paths), SEED),
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
    )


def our_loader(paths: list[Path], backend: str, size: int, batch: int, workers: int) -> DataLoader:
    """The training loader: SampledClips(VideoClips) through train_loader."""
    spec = DataSpec(decoder=backend, num_frames=NUM_FRAMES, input_size=size, sampling_rate=SAMPLING_RATE)
    clips = VideoClips([ManifestEntry(path) for path in paths], spec, SEED)
    masks = MaskGenerator(
        MaskSpec(type="tube", ratio=MASK_RATIO), TokenGrid(NUM_FRAMES, size, size, PATCH, TUBELET), SEED
    )
    return train_loader(SampledClips(clips, masks, SEED), batch, SEED, 0, workers, pin_memory=False)


# ------------------------------------------------------------------------------------------- same work, checked


def check_same_work(path: Path, size: int) -> dict[str, float]:
    """Ours and official on the same frames and crop window: largest and mean difference in 0-255 levels after the
    official clip is de-normalised; and how far the PyAV backend's frames are from decord's."""
    import decord

    with open_video(path, "decord") as reader:
        indices = pretrain_indices(reader.num_frames, NUM_FRAMES, SAMPLING_RATE, np.random.default_rng(SEED))
        ours_frames = reader.get_frames(indices.tolist())
    official_frames = decord.VideoReader(str(path), num_threads=1).get_batch(indices.tolist()).asnumpy()
    if not np.array_equal(ours_frames, official_frames):
        raise SystemExit(f"{path}: our decord reader and plain decord returned different frames")
    result: dict[str, float] = {}
    if "pyav" in available_backends():
        with open_video(path, "pyav") as reader:
            pyav_frames = reader.get_frames(indices.tolist())
        result["pyav_vs_decord_max"] = float(np.abs(pyav_frames.astype(np.int16) - ours_frames).max())
    box = MultiScaleCrop(size).sample_box(*ours_frames.shape[1:3], np.random.default_rng(SEED))
    ours = resize_clip(crop(torch.from_numpy(ours_frames), box), size, size, antialias=True).float()
    pil_frames = [Image.fromarray(frame).convert("RGB") for frame in official_frames]
    official = group_normalize(
        to_torch_format_tensor(
            stack(GroupMultiScaleCrop(size)(pil_frames, box=(box.width, box.height, box.left, box.top)))
        )
    )
    mean, std = torch.tensor(IMAGENET_MEAN).repeat(NUM_FRAMES), torch.tensor(IMAGENET_STD).repeat(NUM_FRAMES)
    official = (official * std[:, None, None] + mean[:, None, None]) * 255  # [3T, H, W] back to levels
    official = official.view(NUM_FRAMES, 3, size, size).permute(0, 2, 3, 1)
    diff = (official - ours).abs()
    result.update(ours_vs_official_max=float(diff.max()), ours_vs_official_mean=float(diff.mean()))
    if result["ours_vs_official_max"] > 2:
        raise SystemExit(f"ours and the official pipeline disagree on the same frames and crop: {result}")
    return result


# ------------------------------------------------------------------------------------------------------- timing


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def loader_cpu_seconds(iterator: Any) -> float:
    """CPU seconds of this process and of the DataLoader's worker processes."""
    workers = getattr(iterator, "_workers", [])  # private, but the only handle on the worker pids
    return time.process_time() + sum(process_cpu_seconds(w.pid) for w in workers)


def run_worker(args: argparse.Namespace) -> None:
    """One measurement: warm-up batches, then batches for `--seconds`; prints one JSON line."""
    torch.set_num_threads(1)  # as in DataLoader workers: one core per loading process
    paths = [Path(args.videos) / f"video_{i:03d}.mp4" for i in range(args.count)]
    if args.impl == OFFICIAL:
        np.random.seed(SEED)
        random.seed(SEED)
        loader = official_loader(paths, args.size, args.batch, args.num_workers)
    else:
        loader = our_loader(paths, args.impl, args.size, args.batch, args.num_workers)
    iterator = iter(loader)
    warmup = 2 * max(args.num_workers, 1)
    for _ in range(warmup):
        next(iterator)
    busy_start, cpu_start, start = machine.busy_cpu_seconds(), loader_cpu_seconds(iterator), time.perf_counter()
    batches = 0
    while True:
        batch = next(iterator)
        batches += 1
        wall = time.perf_counter() - start
        if wall >= args.seconds and batches >= 2:
            break
    busy_end, cpu = machine.busy_cpu_seconds(), loader_cpu_seconds(iterator) - cpu_start
    first = batch[0] if args.impl == OFFICIAL else batch.clips
    clips = batches * args.batch
    result = {
        "impl": args.impl,
        "size": args.size,
        "workers": args.num_workers,
        "clips": clips,
        "wall_s": wall,
        "clips_s": clips / wall,
        "cpu_ms_per_clip": 1000 * cpu / clips,
        # The share of all CPUs that other processes used while this measurement ran: its noise floor.
        "others_cpu": None if busy_end is None else max(busy_end - busy_start - cpu, 0.0) / (wall * os.cpu_count()),
        "batch_shape": list(first.shape),
        "batch_dtype": str(first.dtype).removeprefix("torch."),
    }
    del iterator, loader
    sys.stdout.write(json.dumps(result) + "\n")


def spawn(impl: str, size: int, workers: int, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one measurement subprocess and parse its JSON line."""
    cmd = [sys.executable, __file__, "--worker", impl, "--size", str(size), "--num-workers", str(workers)]
    cmd += ["--videos", str(folder), "--count", str(args.count), "--seconds", str(args.seconds)]
    cmd += ["--batch", str(args.batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker {impl} {size} {workers} workers failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's rounds → min/median/max clips/s, per worker, CPU per clip, the worst others-CPU share."""
    rates = [run["clips_s"] for run in runs]
    workers = max(runs[0]["workers"], 1)
    return {
        "min_clips_s": min(rates),
        "median_clips_s": statistics.median(rates),
        "max_clips_s": max(rates),
        "per_worker_clips_s": statistics.median(rates) / workers,
        "cpu_ms_per_clip": statistics.median(run["cpu_ms_per_clip"] for run in runs),
        "max_others_cpu": max((run["others_cpu"] or 0.0) for run in runs),
        "clips_timed": sum(run["clips"] for run in runs),
        "batch_shape": runs[0]["batch_shape"],
        "batch_dtype": runs[0]["batch_dtype"],
        "rates": rates,
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Rotating rounds over every (size, workers) case; returns the JSON-able report."""
    folder = Path(args.videos) if args.videos else default_video_dir()
    start = time.perf_counter()
    paths = prepare_videos(folder, args.count)
    videos = describe_videos(paths)
    videos["folder"], videos["prepare_s"] = str(folder), time.perf_counter() - start
    checks = {size: check_same_work(paths[0], size) for size in args.sizes}
    impls = [*available_backends(), OFFICIAL]
    runs: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    for round_index in range(args.rounds):
        order = impls[round_index % len(impls) :] + impls[: round_index % len(impls)]
        for size in args.sizes:
            for workers in args.workers:
                for impl in order:
                    result = spawn(impl, size, workers, folder, args)
                    runs.setdefault((size, workers, impl), []).append(result)
                    sys.stderr.write(
                        f"round {round_index + 1}/{args.rounds} {size}px {workers} workers {impl}: "
                        f"{result['clips_s']:.1f} clips/s (others CPU {result['others_cpu'] or 0:.0%})\n"
                    )
    results = []
    for size in args.sizes:
        for workers in args.workers:
            official = summarize(runs[(size, workers, OFFICIAL)])
            for impl in impls:
                side = summarize(runs[(size, workers, impl)])
                if impl != OFFICIAL:
                    side["ours_over_official"] = side["median_clips_s"] / official["median_clips_s"]
                    side["ours_over_official_max"] = side["max_clips_s"] / official["max_clips_s"]
                results.append({"size": size, "workers": workers, "impl": impl, **side})
    return {
        "environment": environment(),
        "videos": videos,
        "same_work_check": {str(size): check for size, check in checks.items()},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_s": time.perf_counter() - start,
        "results": results,
    }


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    import decord
    import PIL
    import torchvision

    return machine.environment(
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        av=av.__version__,
        decord=decord.__version__,
        pillow=PIL.__version__,
        numpy=np.__version__,
    )


# (header, width, format, key) of the table's columns; the ratio columns are filled on our rows only.
COLUMNS = (
    ("size", 4, "d", "size"),
    ("workers", 7, "d", "workers"),
    ("side", -9, "s", "impl"),
    ("min clip/s", 10, ".1f", "min_clips_s"),
    ("median", 7, ".1f", "median_clips_s"),
    ("max", 6, ".1f", "max_clips_s"),
    ("per worker", 10, ".1f", "per_worker_clips_s"),
    ("CPU ms/clip", 11, ".1f", "cpu_ms_per_clip"),
    ("others CPU", 10, ".0%", "max_others_cpu"),
    ("ours/off med", 12, ".2f", "ours_over_official"),
    ("ours/off max", 12, ".2f", "ours_over_official_max"),
)


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width text table of the results (clips per second; "off" is the official V1 loader)."""

    def row(values: list[Any], header: bool = False) -> str:
        cells = []
        for (_, width, fmt, _), value in zip(COLUMNS, values, strict=False):
            text = value if header or fmt == "s" else format(value, fmt)
            cells.append(f"{text:<{-width}}" if width < 0 else f"{text:>{width}}")
        return " ".join(cells).rstrip()

    lines = [row([name for name, _, _, _ in COLUMNS], header=True)]
    lines.append("-" * len(lines[0]))
    for r in report["results"]:
        lines.append(row([r[key] for _, _, _, key in COLUMNS if key in r]))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, help="folder for the generated videos (default: a temp-dir cache)")
    parser.add_argument("--count", type=int, default=16, help="number of videos")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[224, 112])
    parser.add_argument("--workers", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3, help="rotating rounds per case")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per measurement (after warm-up)")
    parser.add_argument("--batch", type=int, default=8, help="clips per batch")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 videos, 1 round, 1 s per measurement")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    # Worker mode (internal): one measurement.
    parser.add_argument("--worker", dest="impl", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--num-workers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.rounds, args.seconds = 2, 1, 1.0
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.impl is not None:
        run_worker(args)
        return
    report = run_benchmark(args)
    blob = json.dumps(report, indent=2)
    if args.json is not None:
        args.json.write_text(blob + "\n")
    print(format_table(report))
    print(blob)


if __name__ == "__main__":
    main()
