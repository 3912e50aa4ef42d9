"""`videomae prepare-data`: flags → a PrepareSpec (config/prepare.py) → manifests (data/prepare/), and a summary
of what was found (ui/tables.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from videomae_cli.cli.common import (
    app,
    check_output,
    reporting,
    stderr,
    user_errors,
)


@app.command("prepare-data")
def prepare_data(
    src: Annotated[
        Path | None,
        typer.Argument(
            metavar="SRC",
            help="Class-per-folder tree, flat folder of videos, VideoMAE annotation file, Kinetics csv, or "
            "Something-Something V2 folder.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Output folder for train.csv, val.csv, classes.json, report.json."),
    ] = None,
    format_: Annotated[
        str | None,
        typer.Option("--format", metavar="FMT", help="auto, folders, annotations, kinetics or ssv2. [default: auto]"),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            metavar="VIDEO_DIR",
            help="Where the videos of an annotation/Kinetics/SSv2 source are. [default: next to SRC]",
        ),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(
            "--val-fraction",
            metavar="F",
            help="Validation share when the source has no split (stratified, seeded). [default: 0.1]",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", metavar="N", help="Seed for the split and synthetic videos. [default: 0]")
    ] = None,
    min_frames: Annotated[
        int | None,
        typer.Option(
            "--min-frames", metavar="N", help="Leave out videos with fewer frames (the clip length). [default: 16]"
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", metavar="N", help="Parallel probe/transcode processes. [default: min(8, CPUs)]"),
    ] = None,
    resize_short: Annotated[
        int | None,
        typer.Option(
            "--resize-short",
            metavar="PX",
            help="Transcode for training to DIR/videos/ (H.264, resumable) with this short side, never enlarged; the "
            "manifests list the copies. Recommended: 320 (Kinetics, SSv2).",
        ),
    ] = None,
    fps: Annotated[
        float | None,
        typer.Option(
            "--fps", metavar="RATE", help="Transcode at this constant frame rate. [default: each video's own rate]"
        ),
    ] = None,
    keyframe_interval: Annotated[
        int | None,
        typer.Option(
            "--keyframe-interval",
            metavar="N",
            help="Frames between keyframes of the transcodes: short = fast random access, long = smaller files. "
            "[default: 48 (--encode-for decode), 250 (size)]",
        ),
    ] = None,
    encode_for: Annotated[
        str | None,
        typer.Option(
            "--encode-for",
            metavar="GOAL",
            help="decode (x264 tune fastdecode: training reads it fastest) or size (x264 defaults). [default: decode]",
        ),
    ] = None,
    chunk_seconds: Annotated[
        float | None,
        typer.Option(
            "--chunk-seconds",
            metavar="S",
            help="Transcode long videos into files of S seconds, each listed in the manifests (no frame lost or "
            "repeated; a tail shorter than --min-frames joins the chunk before it).",
        ),
    ] = None,
    decoder: Annotated[
        str | None,
        typer.Option(
            "--decoder",
            metavar="NAME",
            help="Training decoder every video must also decode with: auto (pyav), pyav or decord. [default: auto]",
        ),
    ] = None,
    progress: Annotated[
        str | None,
        typer.Option(
            "--progress", metavar="MODE", help="auto (a bar on a terminal, plain lines otherwise), rich, plain or off."
        ),
    ] = None,
    synthetic: Annotated[
        int | None,
        typer.Option("--synthetic", metavar="N", help="Write N built-in synthetic videos (H.264 mp4) instead of SRC."),
    ] = None,
    shards: Annotated[
        bool | None,
        typer.Option(
            "--shards",
            help="Also write the videos as WebDataset tar shards in DIR/shards/ (per split, with index.json), for "
            "--data on clusters and object stores. Resumable: finished shards are kept.",
        ),
    ] = None,
    shard_size: Annotated[
        str | None,
        typer.Option("--shard-size", metavar="SIZE", help="Bytes per shard, about (e.g. 1GB, 500MB). [default: 1GB]"),
    ] = None,
    num_frames: Annotated[
        int | None, typer.Option("--num-frames", metavar="N", help="Frames per synthetic video. [default: 16]")
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", metavar="PX", help="Synthetic frame size (square). [default: 112]")
    ] = None,
    scene: Annotated[
        str | None,
        typer.Option(
            "--scene",
            metavar="NAME",
            help="Synthetic scene: busy (textured background, distractors), plain (one shape on a colour gradient) "
            "or field (a texture moving as a whole). [default: busy]",
        ),
    ] = None,
) -> None:
    """Check every video of a dataset and write VideoMAE manifests (train.csv, val.csv; absolute paths), classes.json
    and report.json. Bad videos are listed in report.json and left out; nothing usable exits 3."""
    from videomae_cli.config.prepare import PrepareSpec
    from videomae_cli.config.resolve import resolve_spec

    flags = {
        "src": ("SRC", src),
        "out": ("--out", out),
        "format": ("--format", format_),
        "root": ("--root", root),
        "val_fraction": ("--val-fraction", val_fraction),
        "seed": ("--seed", seed),
        "min_frames": ("--min-frames", min_frames),
        "workers": ("--workers", workers),
        "resize_short": ("--resize-short", resize_short),
        "fps": ("--fps", fps),
        "keyframe_interval": ("--keyframe-interval", keyframe_interval),
        "encode_for": ("--encode-for", encode_for),
        "chunk_seconds": ("--chunk-seconds", chunk_seconds),
        "decoder": ("--decoder", decoder),
        "progress": ("--progress", progress),
        "synthetic": ("--synthetic", synthetic),
        "shards": ("--shards", shards),
        "shard_size": ("--shard-size", shard_size),
        "num_frames": ("--num-frames", num_frames),
        "size": ("--size", size),
        "scene": ("--scene", scene),
    }
    with user_errors(flags):
        # The spec is checked before the video libraries load: a typo costs no import time.
        spec = resolve_spec(PrepareSpec, flags=flags)
        check_output(spec.out, "out", "dir")
        from videomae_cli.data.prepare.outputs import REPORT_FILE
        from videomae_cli.data.prepare.pipeline import prepare_data
        from videomae_cli.ui.tables import prepare_summary

        with reporting(spec.progress) as reporter:
            result = prepare_data(spec, reporter)
        Console(highlight=False).print(prepare_summary(result))
        if result.problems:
            listed = result.report["counts"]["listed"]
            report = result.out / REPORT_FILE
            stderr.print(
                f"warning: left out {len(result.problems)} of {listed} videos with problems (see {report})",
                markup=False,
            )
