"""End-to-end pretraining on real H.264 files: how much of the step time is spent waiting for data, CPU.

Runs the real command — `videomae pretrain --data MANIFEST --model small --set data.input_size=112 --num-workers 2`
(16 frames at sampling rate 4, multi-scale crop, tube masks, the default precision) — on the benchmark videos of
bench_data.py (320×240, 10 s, H.264), and reads what the loop records per log window in metrics.jsonl: `data_wait`,
the share of the window's wall time spent in `next(loader)`. The first window (workers starting, caches cold) is
reported apart; the target counts the rest.

    python benchmarks/bench_e2e.py                           # ~4 min on 2 cores (+35 s to encode the videos once)
    python benchmarks/bench_e2e.py --workers 1 --steps 60 --set optim.batch_size=4
    python benchmarks/bench_e2e.py --data PREPARED_DIR --input-size 224   # videos prepare-data wrote (e.g. bench_data's
                                                                          # prepared 720p set), ViT-S 16×224
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench_data  # benchmarks/bench_data.py: its videos (scripts run from this folder)
import harness
import video_sets  # benchmarks/video_sets.py

TARGET = 0.10  # at most this share of the step time waiting for data


def run_pretrain(manifest: Path, out: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The real command line; returns its metrics.jsonl records."""
    cmd = [sys.executable, "-m", "videomae_cli", "pretrain", "--data", str(manifest), "--model", args.model]
    cmd += ["--set", f"data.input_size={args.input_size}", "--num-workers", str(args.workers)]
    cmd += ["--steps", str(args.steps), "--set", f"run.log_every={args.log_every}", "--progress", "plain"]
    cmd += ["--out", str(out), "--set", "run.save_every=0"]
    for item in args.set or []:
        cmd += ["--set", item]
    sys.stderr.write(" ".join(cmd) + "\n")
    proc = subprocess.run(cmd, text=True, capture_output=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"pretrain failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    sys.stderr.write(proc.stdout)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Time-weighted waiting share over the windows after the first; clips/s likewise."""
    windows = [r for r in records if "data_wait" in r]
    later = windows[1:]
    seconds = [1 / r["clips_per_s"] for r in later]  # proportional to window durations (equal clips per window)
    weight = sum(seconds)
    return {
        "first_window_data_wait": windows[0]["data_wait"],
        "data_wait": sum(r["data_wait"] * s for r, s in zip(later, seconds, strict=True)) / weight,
        "max_window_data_wait": max(r["data_wait"] for r in later),
        "clips_per_s": sum(r["clips_per_s"] * s for r, s in zip(later, seconds, strict=True)) / weight,
        "windows": len(later),
        "last_loss": windows[-1]["loss"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=bench_data.default_video_dir(), help="benchmark video folder")
    parser.add_argument("--count", type=int, default=16, help="videos in the manifest")
    parser.add_argument("--data", type=Path, help="a prepare-data output folder to train on instead (its train.csv)")
    parser.add_argument("--model", default="small")
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--set", action="append", help="more `videomae pretrain --set` items")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if args.data is not None:
        paths = [Path(line.rsplit(" ", 1)[0]) for line in (args.data / "train.csv").read_text().splitlines()]
    else:
        paths = bench_data.prepare_videos(args.videos, args.count)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "train.csv"
        manifest.write_text("".join(f"{p} 0 -1\n" for p in paths))
        records = run_pretrain(manifest, Path(tmp) / "run", args)
        spec = (Path(tmp) / "run" / "spec.yaml").read_text()
    result = summarize(records)
    met = result["data_wait"] <= TARGET
    print(
        f"{args.model} 16×{args.input_size}² on {len(paths)} H.264 videos, {args.workers} workers: "
        f"waiting for data {result['data_wait']:.1%} of the step time "
        f"(first window {result['first_window_data_wait']:.1%}, "
        f"worst later window {result['max_window_data_wait']:.1%}); {result['clips_per_s']:.1f} clips/s; "
        f"target <= {TARGET:.0%}: {'met' if met else 'NOT met'}"
    )
    precision = next((line.split(":", 1)[1].strip() for line in spec.splitlines() if "precision:" in line), "?")
    report = {
        "environment": bench_data.environment(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "videos": bench_data.describe_videos(paths)
        if args.data is None
        else {"data": str(args.data), "count": len(paths), **video_sets.inspect_file(paths[0])},
        "precision": precision,
        "result": result,
        "target": TARGET,
        "met": met,
    }
    harness.write_report(report, args.json)


if __name__ == "__main__":
    main()
