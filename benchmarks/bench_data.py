"""Data-loading benchmark: clips/s for decode + augment of VideoMAE pretraining clips from H.264 videos, on the CPU.

What a pretraining step asks of the loader: per clip, 16 frames at sampling rate 4 (the V1 pretraining sampler), decode
only those, the multi-scale crop resized to 224 (and 112 as a second config), plus the tube mask. Compared:

- ours: `SampledClips(VideoClips(...))` through `train_loader` (the training loader), for every backend in
  `available_backends()`: uint8 clips, normalised later on the training device;
- official: a reimplementation of the official VideoMAE V1 pretraining loader (official_v1.py: decord
  `get_batch`, PIL GroupMultiScaleCrop, float normalise, tube mask, default collate), the reference, unchanged for
  every set and for original and prepared files alike.

Video sets (video_sets.py; N videos each, `--count`, default 8; 10 s of synthetic "natural-ish" content: a panning
textured background, moving soft blobs, film grain; H.264 yuv420p, crf 23, x264 preset medium), generated once and
cached in the temp dir (or `--videos DIR`) in a folder named after every encoding parameter:

- `320x240`: 320×240, 30 fps, GOP 60, B-frames (the first version's set: crops 224 and 112, 0/1/2 workers);
- `720p-b`: 1280×720, 30 fps, GOP 250, B-frames (x264's default 3); `720p-p`: the same, B-frames off (all P);
- `1080p-b`: 1920×1080, 25 fps, GOP 250, B-frames.

The three real-resolution sets (crop 224, 0 and 2 workers) are also timed as prepared by the tool itself: `videomae
prepare-data SRC --out OUT --resize-short 320 --format folders` in a subprocess, with whatever transcoding defaults it
has (reused while the videomae_cli sources are unchanged); and, for bytes only, re-encoded here at the same short side
as the tool used to (libx264 crf 18, preset veryfast, default keyint, no tune, area downscale). Every file set is
inspected with PyAV: size, GOP (most frames between keyframes), B-frames or not, x264's settings, bytes.

Each measurement (files, implementation, backend, crop size, worker count) runs in its own subprocess (`--worker`),
so no side inherits another's imports, allocator state or decoder threads; the sides rotate which goes first from
round to round, because other processes share the CPU. A measurement: a DataLoader of batches of 8 (0 workers: loaded
in the main process), 2 untimed batches per worker, then batches until `--seconds` have passed; clips/s over rounds
(min/median/max) and per worker, and the CPU time per clip of all the loading processes (main + workers, all
threads). Every loading process uses one torch thread (DataLoader workers do by default; the 0-worker process is set
to 1), so "per worker" means per core. "others CPU" is the largest share of the machine's CPU that other processes
used during a measurement (from /proc/stat): it says how far to trust the medians.

`--quick` is a smoke run (~2 min on 2 cores, encoding included): 2 videos of 2 s per set, crop 224, 0 workers (and 2
on the 320×240 set), batches of 2, 1 round of 1 s windows, each side's measurements one after the other in one
subprocess (~25 interpreter starts would be most of it). Its numbers say little: a clip's 64-frame span then covers
about the whole video, so there is nothing for seeking to skip.

Then the targets, from the medians of the same run ("ours" = our fastest backend in that cell, named in the row):
ours on the prepared copies ≥ 4× official on the original 720p/1080p files; ≥ 1.5× official on the same prepared
files; ≥ 1.3× official on the original long-GOP files with B-frames; ≥ 1.0× on the original all-P files; the prepared
copies' bytes ≤ 1.5× the plain x264 transcode's.

Before timing, one check per file set that both sides do the same work: on the same frames and crop window, the
official float clip (de-normalised) and ours (uint8) must agree to within 2 levels of 255.

    python benchmarks/bench_data.py                        # everything: ~45 min on 2 cores, +~10 min the first time
    python benchmarks/bench_data.py --quick                # the smoke run
    python benchmarks/bench_data.py --sets 320x240 --sizes 224 --workers 0,2 --rounds 5 --json /tmp/bench_data.json
    python benchmarks/bench_data.py --sets 720p-b,1080p-b --videos /tmp/bench_videos  # cache the videos there
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av  # before anything that imports decord (see videomae_cli.data.video)
import checkout  # noqa: F401  before videomae_cli: this checkout's package (benchmarks/checkout.py)
import machine  # benchmarks/machine.py: scripts run from this folder
import numpy as np
import torch
import video_sets
from official_v1 import (
    MASK_RATIO,
    NUM_FRAMES,
    PATCH,
    SAMPLING_RATE,
    SEED,
    TUBELET,
    GroupMultiScaleCrop,
    group_normalize,
    official_loader,
    stack,
    to_torch_format_tensor,
)
from PIL import Image
from torch.utils.data import DataLoader
from video_sets import SETS, VideoSet

import videomae_cli
from videomae_cli.config.schema import DataSpec, MaskSpec
from videomae_cli.data.clips import VideoClips
from videomae_cli.data.loader import SampledClips, train_loader
from videomae_cli.data.manifest import ManifestEntry
from videomae_cli.data.sampling import pretrain_indices
from videomae_cli.data.transforms import MultiScaleCrop, crop, resize_clip
from videomae_cli.data.video import available_backends, open_video
from videomae_cli.masking import MaskGenerator
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD
from videomae_cli.models.vit import TokenGrid

OFFICIAL = "official"
ORIGINAL, PREPARED, DEFAULT_X264 = "original", "prepared", "x264-default"
REAL_SIZES, REAL_WORKERS = [224], [0, 2]  # the real-resolution sets' cases (the 320×240 set: --sizes, --workers)


# ------------------------------------------------------------------------ the 320×240 set, as bench_e2e.py uses it


def default_video_dir() -> Path:
    """The cache folder of the 320×240 set."""
    return video_sets.default_root() / SETS["320x240"].folder_name()


def prepare_videos(folder: Path, count: int) -> list[Path]:
    """The first `count` 320×240 benchmark videos in `folder`, encoding those not there yet."""
    return video_sets.make_originals(SETS["320x240"], folder, count)[0]


def describe_videos(paths: list[Path]) -> dict[str, Any]:
    """Frame count, bitrate and frame sizes of the 320×240 benchmark videos."""
    video_set = SETS["320x240"]
    files = video_sets.describe(paths, video_set.seconds)
    return {**video_set.params(), "count": files["count"], "frames": files["frames"], "kbit_s": files["kbit_s"]} | (
        video_sets.frame_sizes(paths[0])
    )


# ------------------------------------------------------------------------------------------ the files of a run


def make_files(video_set: VideoSet, root: Path, count: int) -> dict[str, dict[str, Any]]:
    """The set's file sets: the originals, and for a real-resolution set the prepared copies and the default
    transcode; each {"paths", "seconds" (making them this run; 0 when cached), "describe", ...}."""
    originals, seconds = video_sets.make_originals(video_set, root / video_set.folder_name(), count)
    files = {ORIGINAL: {"paths": originals, "seconds": seconds}}
    if video_set.real:
        base = f"{video_set.folder_name()}_n{count}_prepared{video_sets.RESIZE_SHORT}_{video_sets.tool_fingerprint()}"
        paths, run = video_sets.make_prepared(originals, root / base)
        files[PREPARED] = {"paths": paths, "seconds": 0.0 if run["reused"] else run["seconds"], "prepare_data": run}
        folder = root / f"{video_set.folder_name()}_x264default{video_sets.RESIZE_SHORT}"
        paths, seconds = video_sets.make_default_transcodes(originals, folder)
        files[DEFAULT_X264] = {"paths": paths, "seconds": seconds}
    for kind, entry in files.items():
        entry["describe"] = video_sets.describe(entry["paths"], video_set.seconds)
        sys.stderr.write(
            f"{video_set.name} {kind}: {len(entry['paths'])} videos, {entry['describe']['bytes'] / 2**20:.1f} MiB"
            f" (made in {entry['seconds']:.1f}s)\n"
        )
    return files


# --------------------------------------------------------------------------------------------------- our loader


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
        raise SystemExit(f"{path}: ours and the official pipeline disagree on the same frames and crop: {result}")
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


def measure(impl: str, paths: list[Path], size: int, workers: int, seconds: float, batch_size: int) -> dict[str, Any]:
    """One measurement: warm-up batches, then batches for `seconds`."""
    if impl == OFFICIAL:
        np.random.seed(SEED)
        random.seed(SEED)
        loader = official_loader(paths, size, batch_size, workers)
    else:
        loader = our_loader(paths, impl, size, batch_size, workers)
    iterator = iter(loader)
    warmup = 2 * max(workers, 1)
    for _ in range(warmup):
        next(iterator)
    busy_start, cpu_start, start = machine.busy_cpu_seconds(), loader_cpu_seconds(iterator), time.perf_counter()
    batches = 0
    while True:
        batch = next(iterator)
        batches += 1
        wall = time.perf_counter() - start
        if wall >= seconds and batches >= 2:
            break
    busy_end, cpu = machine.busy_cpu_seconds(), loader_cpu_seconds(iterator) - cpu_start
    first = batch[0] if impl == OFFICIAL else batch.clips
    clips = batches * batch_size
    del iterator, loader
    return {
        "impl": impl,
        "size": size,
        "workers": workers,
        "clips": clips,
        "wall_s": wall,
        "clips_s": clips / wall,
        "cpu_ms_per_clip": 1000 * cpu / clips,
        # The share of all CPUs that other processes used while this measurement ran: its noise floor.
        "others_cpu": None if busy_end is None else max(busy_end - busy_start - cpu, 0.0) / (wall * os.cpu_count()),
        "batch_shape": list(first.shape),
        "batch_dtype": str(first.dtype).removeprefix("torch."),
    }


def run_worker(args: argparse.Namespace) -> None:
    """Worker mode: the measurements in `--cases` (one, but for --quick), one after the other; a JSON line each."""
    torch.set_num_threads(1)  # as in DataLoader workers: one core per loading process
    for case in json.loads(args.cases):
        paths = [Path(line) for line in Path(case["list"]).read_text().splitlines()]
        result = measure(args.impl, paths, case["size"], case["workers"], args.seconds, args.batch)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


def spawn(impl: str, cases: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run a measurement subprocess for `cases` ({"list": a file listing the videos, "size", "workers"})."""
    cmd = [sys.executable, __file__, "--worker", impl, "--cases", json.dumps(cases)]
    cmd += ["--seconds", str(args.seconds), "--batch", str(args.batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker {impl} on {cases} failed:\n{proc.stderr}")
    return [json.loads(line) for line in proc.stdout.strip().splitlines()[-len(cases) :]]


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


def cases(args: argparse.Namespace, video_set: VideoSet) -> tuple[list[int], list[int]]:
    """(crop sizes, worker counts) timed on a set: --sizes/--workers for the 320×240 set, 224 and 0/2 workers for
    the real-resolution ones (unless given)."""
    if video_set.real:
        return args.real_sizes, args.real_workers
    return args.sizes, args.workers


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Make the files, check, run rotating rounds over every (files, size, workers) case; the JSON-able report."""
    start = time.perf_counter()
    root = Path(args.videos) if args.videos else video_sets.default_root()
    chosen = [video_sets.quick(SETS[name]) if args.quick else SETS[name] for name in args.sets]
    files = {video_set.name: make_files(video_set, root, args.count) for video_set in chosen}
    impls = [*available_backends(), OFFICIAL]
    timed = [(s, kind) for s in chosen for kind in (ORIGINAL, PREPARED) if kind in files[s.name]]
    checks = {
        f"{s.name}/{kind}": {
            str(size): check_same_work(files[s.name][kind]["paths"][0], size) for size in cases(args, s)[0]
        }
        for s, kind in timed
    }
    runs: dict[tuple[str, str, int, int, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_data_") as lists:
        listings = {}
        for s, kind in timed:
            listings[s.name, kind] = Path(lists) / f"{s.name}_{kind}.txt"
            listings[s.name, kind].write_text("".join(f"{p}\n" for p in files[s.name][kind]["paths"]))
        grid = [
            (s, kind, size, workers) for s, kind in timed for size in cases(args, s)[0] for workers in cases(args, s)[1]
        ]
        for round_index in range(args.rounds):
            order = impls[round_index % len(impls) :] + impls[: round_index % len(impls)]
            # One subprocess per measurement; --quick: one per side, for the import time of ~25 processes.
            batches = [[case] for case in grid] if not args.quick else [grid]
            for cases_, impl in itertools.product(batches, order):
                listed = [
                    {"list": str(listings[s.name, kind]), "size": size, "workers": w} for s, kind, size, w in cases_
                ]
                for (s, kind, size, workers), result in zip(cases_, spawn(impl, listed, args), strict=True):
                    runs.setdefault((s.name, kind, size, workers, impl), []).append(result)
                    sys.stderr.write(
                        f"round {round_index + 1}/{args.rounds} {s.name} {kind} {size}px {workers} workers {impl}: "
                        f"{result['clips_s']:.1f} clips/s (others CPU {result['others_cpu'] or 0:.0%})\n"
                    )
    results = []
    for s, kind, size, workers in grid:
        official = summarize(runs[(s.name, kind, size, workers, OFFICIAL)])
        for impl in impls:
            side = summarize(runs[(s.name, kind, size, workers, impl)])
            if impl != OFFICIAL:
                side["ours_over_official"] = side["median_clips_s"] / official["median_clips_s"]
                side["ours_over_official_max"] = side["max_clips_s"] / official["max_clips_s"]
            results.append({"set": s.name, "files": kind, "size": size, "workers": workers, "impl": impl, **side})
    videos = {
        s.name: {
            "params": s.params(),
            **{kind: {k: v for k, v in entry.items() if k != "paths"} for kind, entry in files[s.name].items()},
            "folder": str(files[s.name][ORIGINAL]["paths"][0].parent),
        }
        for s in chosen
    }
    return {
        "environment": environment(),
        "videos": videos,
        "same_work_check": checks,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_s": time.perf_counter() - start,
        "results": results,
        "targets": targets(chosen, results, videos),
    }


# ------------------------------------------------------------------------------------------------------ targets


def _cell(results: list[dict[str, Any]], name: str, kind: str, workers: int, ours: bool) -> dict[str, Any] | None:
    """The 224-px result of the official side, or of our fastest backend (by median), on a set's files."""
    rows = [
        r
        for r in results
        if (r["set"], r["files"], r["size"], r["workers"]) == (name, kind, 224, workers)
        and (r["impl"] != OFFICIAL) == ours
    ]
    return max(rows, key=lambda r: r["median_clips_s"], default=None)


def targets(chosen: list[VideoSet], results: list[dict[str, Any]], videos: dict[str, Any]) -> list[dict[str, Any]]:
    """The target ratios, per real-resolution set and worker count, from the medians of this run."""
    speed = [
        ("ours on prepared vs official on original", PREPARED, ORIGINAL, 4.0, lambda s: True),
        ("ours vs official on the same prepared files", PREPARED, PREPARED, 1.5, lambda s: True),
        ("ours vs official on original long-GOP B-frame files", ORIGINAL, ORIGINAL, 1.3, lambda s: s.bframes),
        ("ours vs official on original all-P files", ORIGINAL, ORIGINAL, 1.0, lambda s: not s.bframes),
    ]
    rows = []
    for what, ours_files, official_files, target, applies in speed:
        for s in chosen:
            if not s.real or not applies(s):
                continue
            for workers in sorted({r["workers"] for r in results if r["set"] == s.name}):
                ours = _cell(results, s.name, ours_files, workers, ours=True)
                official = _cell(results, s.name, official_files, workers, ours=False)
                if ours is None or official is None:
                    continue
                ratio = ours["median_clips_s"] / official["median_clips_s"]
                rows.append(
                    {
                        "what": what,
                        "set": s.name,
                        "workers": workers,
                        "ours": f"{ours['impl']} ({ours_files})",
                        "reference": f"{OFFICIAL} ({official_files})",
                        "ratio": ratio,
                        "target": f">= {target:g}x",
                        "met": ratio >= target,
                    }
                )
    for s in chosen:
        if s.real:
            ratio = videos[s.name][PREPARED]["describe"]["bytes"] / videos[s.name][DEFAULT_X264]["describe"]["bytes"]
            rows.append(
                {
                    "what": "bytes of prepared vs default x264 transcode",
                    "set": s.name,
                    "workers": None,
                    "ours": PREPARED,
                    "reference": DEFAULT_X264,
                    "ratio": ratio,
                    "target": "<= 1.5x",
                    "met": ratio <= 1.5,
                }
            )
    return rows


# ------------------------------------------------------------------------------------------------------- report


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    import decord
    import PIL
    import torchvision

    return machine.environment(
        videomae_cli=str(Path(videomae_cli.__file__).parent),
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        av=av.__version__,
        decord=decord.__version__,
        pillow=PIL.__version__,
        numpy=np.__version__,
    )


# (header, width, format, key) of the tables' columns; a missing key leaves the cell empty.
COLUMNS = (
    ("set", -8, "s", "set"),
    ("files", -9, "s", "files"),
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
FILE_COLUMNS = (
    ("set", -8, "s", "set"),
    ("files", -12, "s", "files"),
    ("size", -9, "s", "size"),
    ("fps", 4, "g", "fps"),
    ("frames", 6, "d", "frames"),
    ("GOP", 4, "d", "max_gop"),
    ("B used", 6, "s", "b_frames"),
    ("x264", -40, "s", "x264"),
    ("kbit/s", 7, ".0f", "kbit_s"),
    ("MiB", 7, ".1f", "mib"),
    ("made in s", 9, ".1f", "seconds"),
)
TARGET_COLUMNS = (
    ("what", -52, "s", "what"),
    ("set", -8, "s", "set"),
    ("workers", 7, "s", "workers"),
    ("ours", -18, "s", "ours"),
    ("ratio", 6, ".2f", "ratio"),
    ("target", 7, "s", "target"),
    ("met", -3, "s", "met"),
)


def format_rows(columns: tuple[tuple[str, int, str, str], ...], rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table."""

    def line(values: list[Any], header: bool = False) -> str:
        cells = []
        for (_, width, fmt, _), value in zip(columns, values, strict=True):
            text = "" if value is None else value if header or fmt == "s" else format(value, fmt)
            cells.append(f"{text:<{-width}}" if width < 0 else f"{text:>{width}}")
        return " ".join(cells).rstrip()

    lines = [line([name for name, _, _, _ in columns], header=True)]
    lines.append("-" * len(lines[0]))
    lines += [line([row.get(key) for _, _, _, key in columns]) for row in rows]
    return "\n".join(lines)


def format_tables(report: dict[str, Any]) -> str:
    """The clips/s tables (the 320×240 set, then the real-resolution ones), the files, the targets."""
    results = report["results"]
    small = [r for r in results if not SETS[r["set"]].real]
    large = [r for r in results if SETS[r["set"]].real]
    tables = [format_rows(COLUMNS, part) for part in (small, large) if part]
    file_rows = []
    for name, video in report["videos"].items():
        for kind in (ORIGINAL, PREPARED, DEFAULT_X264):
            if kind in video:
                d = video[kind]["describe"]
                x264 = " ".join(f"{k}={v}" for k, v in d["x264"].items() if k in ("keyint", "bframes", "crf", "cabac"))
                row = {**d, "set": name, "files": kind, "size": ",".join(d["sizes"]), "b_frames": str(d["b_frames"])}
                file_rows.append({**row, "x264": x264, "mib": d["bytes"] / 2**20, "seconds": video[kind]["seconds"]})
    tables.append(format_rows(FILE_COLUMNS, file_rows))
    if report["targets"]:
        rows = [
            {**t, "workers": "-" if t["workers"] is None else str(t["workers"]), "met": "yes" if t["met"] else "NO"}
            for t in report["targets"]
        ]
        tables.append(format_rows(TARGET_COLUMNS, rows))
    return "\n\n".join(tables)


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=lambda s: s.split(","), default=list(SETS), help=f"of {','.join(SETS)}")
    parser.add_argument("--videos", type=Path, help="folder for the video sets' folders (default: the temp dir)")
    parser.add_argument("--count", type=int, default=8, help="videos per set")
    parser.add_argument("--sizes", type=int_list, default=[224, 112], help="crop sizes on the 320x240 set")
    parser.add_argument("--workers", type=int_list, default=[0, 1, 2], help="worker counts on the 320x240 set")
    parser.add_argument("--real-sizes", type=int_list, default=REAL_SIZES, help="crop sizes on the larger sets")
    parser.add_argument("--real-workers", type=int_list, default=REAL_WORKERS, help="worker counts on the larger sets")
    parser.add_argument("--rounds", type=int, default=3, help="rotating rounds per case")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per measurement (after warm-up)")
    parser.add_argument("--batch", type=int, default=8, help="clips per batch")
    parser.add_argument("--quick", action="store_true", help="a smoke run (see above)")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    # Worker mode (internal): one measurement.
    parser.add_argument("--worker", dest="impl", help=argparse.SUPPRESS)
    parser.add_argument("--cases", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [name for name in args.sets if name not in SETS]
    if unknown:
        parser.error(f"unknown sets {unknown}; choose from {', '.join(SETS)}")
    if args.quick:  # every set, backend and side once, 2 workers on the small set only: a minute or two on 2 cores
        args.count, args.rounds, args.seconds, args.batch = 2, 1, 1.0, 2
        args.sizes, args.workers, args.real_sizes, args.real_workers = [224], [0, 2], [224], [0]
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
    print(format_tables(report))
    if args.json is None:
        print(blob)


if __name__ == "__main__":
    main()
