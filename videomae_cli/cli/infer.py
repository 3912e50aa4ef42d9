"""`videomae evaluate`, `predict` and `embed`: flags → a spec → the inference layer → a summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from videomae_cli.cli.common import (
    DeviceOpt,
    PrecisionOpt,
    ProgressOpt,
    WorkersOpt,
    app,
    check_output,
    fetch_checkpoint,
    hub_output_folder,
    inference_flags,
    reporting,
    stderr,
    user_errors,
)

InputsArg = Annotated[
    list[str],
    typer.Argument(
        metavar="INPUT...",
        help="Video files, folders of videos, or manifests; or shards: a prepared shards folder (every split), tar "
        "shards, a brace pattern (train-{000000..000009}.tar) or pipe:/http(s) URLs, each sample once, in order.",
        show_default=False,
    ),
]


@app.command()
def evaluate(
    checkpoint: Annotated[
        str,
        typer.Argument(
            metavar="CKPT",
            help="A classifier or pretrain checkpoint (.safetensors, checkpoint dir or run dir), or a Hugging Face Hub "
            "id: ORG/NAME, ORG/NAME@REVISION or hf://ORG/NAME.",
            show_default=False,
        ),
    ],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="PATH",
            help="Manifest, prepare-data directory (its val.csv) or 'synthetic'. [default: the checkpoint's "
            "validation set]",
        ),
    ] = None,
    views: Annotated[
        str | None,
        typer.Option(
            "--views",
            metavar="CLIPSxCROPS",
            help="Test views per video, crops 1 or 3, e.g. 5x3. [default: 5x3 dense sampling, 2x3 segment]",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="FILE",
            help="Report JSON; the CSVs and the PNG go beside it. [default: eval/report.json beside CKPT]",
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", metavar="N", help="Videos per batch (all their views). [default: 4]")
    ] = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    num_workers: WorkersOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Evaluate a checkpoint. Classifier: multi-view top-1/top-5, per-class accuracy, confusion matrix and
    per-video predictions. Pretrain: masked reconstruction loss, k-NN and linear-probe top-1 on frozen features."""
    from videomae_cli.config.resolve import resolve_spec
    from videomae_cli.config.schema import EvaluateSpec

    flags = {
        "data": ("--data", data),
        "views": ("--views", views),
        "report": ("--report", report),
        "batch_size": ("--batch-size", batch_size),
        **inference_flags(checkpoint, precision, device, num_workers, progress),
    }
    with user_errors(flags):
        spec = resolve_spec(EvaluateSpec, flags=flags)
        if spec.report is not None:
            check_output(spec.report, "report", "file")
        # the request is valid: now load torch (see the module docstring)
        from videomae_cli.infer.evaluate import REPORT_NAME, default_report_path
        from videomae_cli.infer.evaluate import evaluate as run_evaluation
        from videomae_cli.ui.tables import per_class_table, report_table

        if spec.report is None:  # beside the checkpoint; for a hub id in runs/ORG--NAME (the cache is not ours)
            hub_folder = hub_output_folder(checkpoint)
            spec.report = hub_folder / "eval" / REPORT_NAME if hub_folder else default_report_path(spec.checkpoint)
            check_output(spec.report, "report", "file")
        spec.checkpoint = fetch_checkpoint(checkpoint, "checkpoint")
        with reporting(spec.progress) as reporter:
            result = run_evaluation(spec, reporter)
        console = Console(highlight=False)
        console.print(report_table(result.report, f"{result.report['kind']} checkpoint {checkpoint}"))
        if "per_class" in result.report:
            console.print(per_class_table(result.report, limit=20))
        console.print(f"report: {result.path}", markup=False)


@app.command()
def predict(
    checkpoint: Annotated[
        str,
        typer.Argument(
            metavar="CKPT",
            help="A classifier checkpoint (.safetensors, checkpoint dir or run dir), or a Hugging Face Hub id: "
            "ORG/NAME, ORG/NAME@REVISION or hf://ORG/NAME.",
            show_default=False,
        ),
    ],
    inputs: InputsArg,
    top_k: Annotated[
        int | None, typer.Option("--top-k", metavar="K", help="Classes shown per video. [default: 5]")
    ] = None,
    views: Annotated[
        str | None,
        typer.Option(
            "--views",
            metavar="CLIPSxCROPS",
            help="Views per video, merged by mean softmax. [default: 5x3 dense sampling, 2x3 segment]",
        ),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", metavar="FILE", help="Also write JSON lines: one object per video.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", metavar="N", help="Videos per batch (all their views). [default: 4]")
    ] = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    num_workers: WorkersOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Classify videos with a fine-tuned checkpoint: top-k classes per video. Unreadable inputs are reported and
    skipped (exit 0 when some video was classified, 3 when none was)."""
    from videomae_cli.config.resolve import resolve_spec
    from videomae_cli.config.schema import PredictSpec
    from videomae_cli.errors import DataError

    flags = {
        "inputs": ("INPUT", inputs),
        "top_k": ("--top-k", top_k),
        "views": ("--views", views),
        "json_path": ("--json", json_path),
        "batch_size": ("--batch-size", batch_size),
        **inference_flags(checkpoint, precision, device, num_workers, progress),
    }
    with user_errors(flags):
        spec = resolve_spec(PredictSpec, flags=flags)
        if spec.json_path is not None:
            check_output(spec.json_path, "json_path", "file")
        # the request is valid: now load torch (see the module docstring)
        from videomae_cli.infer.predict import predict as run_prediction

        spec.checkpoint = fetch_checkpoint(checkpoint, "checkpoint")

        with reporting(spec.progress) as reporter:
            found, failures = run_prediction(spec, reporter)
        for bad in failures:
            stderr.print(f"error: {bad.message}", markup=False)
        if not found:
            raise DataError(f"none of the {len(failures)} inputs could be read")
        from videomae_cli.ui.tables import predictions_table

        Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(predictions_table(found, checkpoint))
        if spec.json_path is not None:
            typer.echo(f"wrote {spec.json_path}")


@app.command()
def embed(
    checkpoint: Annotated[
        str,
        typer.Argument(
            metavar="CKPT",
            help="A pretrain or classifier checkpoint (.safetensors, checkpoint dir or run dir), or a Hugging Face Hub "
            "id: ORG/NAME, ORG/NAME@REVISION or hf://ORG/NAME.",
            show_default=False,
        ),
    ],
    inputs: InputsArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="FILE.safetensors (features + index) or FILE.npy (index in FILE.index.jsonl). Required.",
        ),
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option(
            "--pool", metavar="P", help="mean (one vector per clip) or tokens (every patch token). [default: mean]"
        ),
    ] = None,
    window_frames: Annotated[
        int | None,
        typer.Option(
            "--window-frames",
            metavar="N",
            help="Sliding windows of N frames over each video, one feature row each. [default: one centred clip]",
        ),
    ] = None,
    window_stride: Annotated[
        int | None,
        typer.Option("--window-stride", metavar="S", help="Frames between window starts. [default: --window-frames]"),
    ] = None,
    shard_size: Annotated[
        int | None,
        typer.Option(
            "--shard-size",
            metavar="N",
            help="Videos per shard, the unit an interrupted run resumes from. [default: 256]",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", metavar="N", help="Clips decoded together (memory); never changes features. [default: 16]"
        ),
    ] = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    num_workers: WorkersOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace FILE, or restart an unfinished run.")] = False,
    progress: ProgressOpt = None,
) -> None:
    """Extract encoder features: one vector (or every token) per video, or per sliding window of a long video (as
    VideoMAE V2's temporal-detection features). Large jobs run in parts; running the same command again resumes.
    Unreadable inputs are reported and skipped (exit 3 when none could be read)."""
    from videomae_cli.config.resolve import resolve_spec
    from videomae_cli.config.schema import EmbedSpec
    from videomae_cli.errors import ConfigError, DataError

    flags = {
        "inputs": ("INPUT", inputs),
        "out": ("--out", out),
        "pool": ("--pool", pool),
        "window_frames": ("--window-frames", window_frames),
        "window_stride": ("--window-stride", window_stride),
        "shard_size": ("--shard-size", shard_size),
        "batch_size": ("--batch-size", batch_size),
        "overwrite": ("--overwrite", overwrite or None),
        **inference_flags(checkpoint, precision, device, num_workers, progress),
    }
    with user_errors(flags):
        if out is None:
            raise ConfigError("--out: required (videomae embed CKPT INPUT... --out FILE.safetensors)")
        spec = resolve_spec(EmbedSpec, flags=flags)
        check_output(spec.out, "out", "file")  # and OUT.parts/ beside it
        # the request is valid: now load torch (see the module docstring)
        from videomae_cli.infer.embed import embed as run_embedding
        from videomae_cli.infer.embed import index_path

        spec.checkpoint = fetch_checkpoint(checkpoint, "checkpoint")

        with reporting(spec.progress) as reporter:
            result = run_embedding(spec, reporter)
        for bad in result.embedding.errors:
            stderr.print(f"error: {bad.message}", markup=False)
        rows = len(result.embedding.video)
        if not rows:
            raise DataError(f"none of the {len(result.embedding.errors)} inputs could be read")
        shape = "×".join(map(str, result.embedding.features.shape))
        videos = len(set(result.embedding.video.tolist()))
        index = f" (index in {index_path(spec.out)})" if spec.out.suffix == ".npy" else ""
        typer.echo(f"wrote {spec.out}{index}: features {shape} for {rows} clips of {videos} videos")
