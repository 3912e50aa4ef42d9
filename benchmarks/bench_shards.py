"""Loader throughput from local WebDataset shards against the file-based loader, on the same prepared videos: clips/s
of the pretraining loader (16 frames at stride 4, the multi-scale crop to 224, the tube mask) with 2 workers. The
goal: shards at least as fast as files.

The videos are the built-in synthetic ones written by `videomae prepare-data --synthetic N --shards` (H.264, cached
in the temp dir by their parameters), so both sides read the very same files: the manifest's mp4s one by one, or the
same bytes streamed from the tar shards. Each measurement runs in its own process (no shared decoder state or page
cache warmth beyond what the OS keeps for both), the sides alternate which goes first from round to round, round r
reads the clips of seed r on both sides, and each measurement warms up two batches per worker before timing batches
for `--seconds`.

    python benchmarks/bench_shards.py [--videos 64] [--frames 96] [--size 256] [--shards-per-worker 4] [--workers 2]
                                      [--seconds 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIDES = ("files", "shards")


def prepared(args: argparse.Namespace) -> Path:
    """The prepared folder (manifests and shards) for these parameters, made once: the videos are written first in
    one shard, then packed again into at least `shards_per_worker` shards per loader worker (each reads its own)."""
    out = Path(tempfile.gettempdir()) / f"bench-shards-{args.videos}x{args.frames}x{args.size}"
    wanted = args.shards_per_worker * max(args.workers, 1)
    index = out / "shards" / "index.json"
    if not index.exists() or len(json.loads(index.read_text())["splits"]["train"]) < wanted:
        prepare(args, out, "100GB")
        total = sum(shard["bytes"] for shard in json.loads(index.read_text())["splits"]["train"])
        prepare(args, out, str(total // wanted + 1))
    return out


def prepare(args: argparse.Namespace, out: Path, shard_size: str) -> None:
    command = [sys.executable, "-m", "videomae_cli", "prepare-data", "--synthetic", str(args.videos)]
    command += ["--num-frames", str(args.frames), "--size", str(args.size), "--val-fraction", "0"]
    command += ["--shards", "--shard-size", shard_size, "--progress", "off", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True)


def measure(side: str, folder: Path, seed: int, args: argparse.Namespace) -> float:
    """Clips/s of one side, in this process, reading the clips and masks of `seed`."""
    from videomae_cli.config.schema import PretrainSpec, grid_of
    from videomae_cli.data.loader import SampledClips, batches_from, train_loader
    from videomae_cli.data.shards.training import shard_loader
    from videomae_cli.data.sources import pretrain_dataset
    from videomae_cli.masking import MaskGenerator

    source = str(folder / "shards") if side == "shards" else str(folder / "train.csv")
    spec = PretrainSpec(model={"name": "test"}, data={"source": source, "num_frames": 16, "input_size": 224})
    dataset, _ = pretrain_dataset(spec.data, seed, MaskGenerator(spec.mask, grid_of(spec), seed))
    batch, workers = 8, args.workers
    if isinstance(dataset, SampledClips):
        loader = train_loader(dataset, batch, 0, 0, workers, pin_memory=False)
    else:
        loader = shard_loader(dataset, batch, workers, pin_memory=False)
    with batches_from(loader) as batches:
        for _ in range(2 * max(workers, 1)):
            next(batches)
        start, clips = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:
            clips += len(next(batches).clips)
        return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--shards-per-worker", type=int, default=4, help="the videos are packed into this many shards")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: SIDE SEED FOLDER
    args = parser.parse_args()
    if args.worker:
        side, seed, folder = args.worker.split(" ", 2)
        print(json.dumps({"clips_per_s": measure(side, Path(folder), int(seed), args)}))
        return
    folder = prepared(args)
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    for round_ in range(args.rounds):
        for side in SIDES if round_ % 2 == 0 else reversed(SIDES):
            # Each round its own seed (both sides alike): other videos, clip positions and crops, so that no side
            # keeps the luck of one fixed draw of clips (decoding cost varies with a clip's distance from a keyframe).
            command = [sys.executable, __file__, "--worker", f"{side} {round_} {folder}"]
            command += [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "worker"]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            rates[side].append(json.loads(done.stdout.strip().splitlines()[-1])["clips_per_s"])
            print(f"round {round_ + 1}: {side} {rates[side][-1]:.1f} clips/s", file=sys.stderr)
    files, shards = (statistics.median(rates[side]) for side in SIDES)
    print(f"{args.videos} synthetic videos, {args.frames} frames at {args.size}², {args.workers} workers, "
          f"{args.rounds} rounds of {args.seconds:.0f} s (medians)")  # fmt: skip
    print("| loader | clips/s (min / median / max) |")
    print("|---|---:|")
    for side in SIDES:
        print(f"| {side} | {min(rates[side]):.1f} / {statistics.median(rates[side]):.1f} / {max(rates[side]):.1f} |")
    # Rounds differ by seed (other clips), so each round's two sides are compared with each other: the verdict is the
    # median of the per-round ratios.
    paired = [shard / file for shard, file in zip(rates["shards"], rates["files"], strict=True)]
    verdict = "met" if statistics.median(paired) >= 1.0 else "missed"
    print(f"shards / files: {shards / files:.3f}× (medians); per round: {', '.join(f'{r:.3f}' for r in paired)}")
    print(f"per-round median {statistics.median(paired):.3f}× (goal ≥ 1.0: {verdict})")


if __name__ == "__main__":
    main()
