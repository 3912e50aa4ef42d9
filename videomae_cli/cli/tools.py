"""`videomae doctor` and `videomae visualize-mask`."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from videomae_cli.cli.common import app, check_output, fetch_checkpoint, in_flag_terms, user_errors

if TYPE_CHECKING:
    from videomae_cli.doctor import Check, DataPace


@app.command()
def doctor(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="PATH",
            help="Also measure how fast a training loader worker reads these videos, with each decoder: a "
            "prepare-data output folder, a manifest, or a folder of videos.",
            show_default=False,
        ),
    ] = None,
    sample: Annotated[int, typer.Option("--sample", metavar="N", help="Videos of --data to time, spread evenly.")] = 8,
    steps_per_second: Annotated[
        float,
        typer.Option("--steps-per-second", metavar="S", help="Training speed to size the loader workers for."),
    ] = 1.0,
    batch_size: Annotated[
        int, typer.Option("--batch-size", metavar="B", help="Clips per step (per device) to size the workers for.")
    ] = 32,
    frames: Annotated[int, typer.Option("--frames", metavar="N", help="Frames per clip.")] = 16,
    sampling_rate: Annotated[int, typer.Option("--sampling-rate", metavar="N", help="Stride between frames.")] = 4,
    input_size: Annotated[int, typer.Option("--input-size", metavar="PX", help="Clip side after the crop.")] = 224,
) -> None:
    """Check the environment: Python, torch (CUDA, cuDNN, NCCL, gloo, devices, bf16), the required and optional
    packages, and each video decoder with a decode self-test (a tiny clip in a temporary directory, removed). Writes
    nothing. Exit code 0 when every required piece works (warnings allowed), 1 otherwise. With --data, also the data
    path's pace: clips per second one loader worker makes with each decoder, and the workers a training speed needs."""
    from videomae_cli.doctor import check_positive, exit_code, list_videos, measure_data, run_checks, summary_line
    from videomae_cli.ui.tables import doctor_table, pace_table

    numbers = {"sample": sample, "batch_size": batch_size, "num_frames": frames, "sampling_rate": sampling_rate}
    numbers |= {"input_size": input_size, "steps_per_second": steps_per_second}
    flags = {**_DOCTOR_FLAGS, **_data_flags(data, numbers)}
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    with user_errors(flags):
        # a bad --data is refused before the checks run (a fraction of a second, not the whole report)
        videos: list[Path] = []
        if data is not None:
            check_positive(**numbers)
            videos = list_videos(data)
        checks = [_in_flag_terms(check) for check in run_checks()]
        console.print(doctor_table(checks))
        typer.echo(summary_line(checks))
        if data is not None:
            report = measure_data(data, videos, **numbers)
            console.print(pace_table(report))
            for line in pace_verdicts(report):
                typer.echo(line)
    raise typer.Exit(exit_code(checks))


# The settings the doctor's advice names (`precision=bf16`), said as the flags of the commands that take them.
_DOCTOR_FLAGS = {"precision": ("--precision", None), "format": ("--format", None)}


def _data_flags(data: Path | None, numbers: dict[str, float]) -> dict[str, tuple[str, Any]]:
    """The settings of `doctor --data` ({setting: (flag, value)}): errors name settings, the command says flags."""
    named = {"num_frames": "--frames"}
    flags = {name: (named.get(name, "--" + name.replace("_", "-")), value) for name, value in numbers.items()}
    # read_manifest names its file `data.source` (the training spec's field); here it is --data
    return {**flags, "data": ("--data", data), "data.source": ("--data", data)}


def pace_verdicts(report: DataPace) -> list[str]:
    """One line per backend: the workers it needs for the asked speed against the cores here, and, where that is more
    than the cores, what to do; then the videos that failed to load."""
    speed = f"{_rate(report.steps_per_second)} steps/s at batch {report.batch_size}"
    lines = []
    for pace in report.paces:
        workers = report.workers(pace)
        if workers is None:
            lines.append(f"{pace.backend}: no sampled video loaded")
        elif not report.bottleneck(pace):
            count = f"{workers} workers reach" if workers > 1 else "1 worker reaches"
            lines.append(f"{pace.backend}: {count} {speed} (this machine has {report.cores} cores)")
        else:
            best = report.best_steps_per_second(pace)
            remedy = (
                "the videos are prepared for training already: only more cores close the gap"
                if report.prepared
                else "prepare the videos for training: videomae prepare-data SRC --out DIR --resize-short 320"
            )
            lines.append(
                f"{pace.backend}: the loader will be the bottleneck: {speed} needs {workers} workers and this machine "
                f"has {report.cores} cores (at most {best:.2g} steps/s); {remedy}"
            )
    for pace in report.paces:
        if pace.failures:
            lines.append(
                f"warning: {pace.backend} could not load {len(pace.failures)} of {report.sampled} sampled videos "
                f"(skipped), e.g. {pace.failures[0]}"
            )
    return lines


def _rate(value: float) -> str:
    """1.0, 0.25, 12.5: a speed with at least one decimal, as people write them."""
    return f"{value:.1f}" if value == round(value, 1) else f"{value:g}"


def _in_flag_terms(check: Check) -> Check:
    """`check` with its detail and fix in the commands' own terms (common.in_flag_terms)."""
    return replace(
        check, detail=in_flag_terms(check.detail, _DOCTOR_FLAGS), fix=in_flag_terms(check.fix, _DOCTOR_FLAGS)
    )


@app.command("visualize-mask")
def visualize_mask(
    checkpoint: Annotated[
        str | None,
        typer.Argument(
            metavar="CKPT",
            help="A pretrain checkpoint (.safetensors, checkpoint dir or run dir, or a Hugging Face Hub id: ORG/NAME, "
            "ORG/NAME@REVISION or hf://ORG/NAME) to reconstruct with; its clip geometry and mask are the defaults. "
            "Without one only the mask is shown.",
            show_default=False,
        ),
    ] = None,
    video: Annotated[
        Path | None, typer.Option("--video", metavar="FILE", help="The video to take the clip from. Required.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Output picture: .png (a grid of --frames), .gif or .mp4 (every frame of the clip). Required.",
        ),
    ] = None,
    mask_type: Annotated[
        str | None,
        typer.Option(
            "--mask-type", metavar="TYPE", help="tube, random, frame or motion. [default: the checkpoint's, else tube]"
        ),
    ] = None,
    mask_ratio: Annotated[
        float | None,
        typer.Option(
            "--mask-ratio",
            metavar="R",
            help="Fraction of tokens hidden from the encoder. [default: the checkpoint's, else 0.9]",
        ),
    ] = None,
    decoder_mask_ratio: Annotated[
        float | None,
        typer.Option(
            "--decoder-mask-ratio",
            metavar="R",
            help="V2 running-cell decoder masking (0, .25, .5, .75): positions left unreconstructed. "
            "[default: the checkpoint's, else 0]",
        ),
    ] = None,
    frames: Annotated[
        str | None,
        typer.Option(
            "--frames",
            metavar="SPEC",
            help="PNG columns: clip frame numbers like 0,2,4, or all. [default: the first frame of each tubelet]",
        ),
    ] = None,
    error_map: Annotated[
        bool, typer.Option("--error-map", help="Add a row with each reconstructed patch's squared error (needs CKPT).")
    ] = False,
    seed: Annotated[int | None, typer.Option("--seed", metavar="N", help="Seed of the mask. [default: 0]")] = None,
    num_frames: Annotated[
        int | None,
        typer.Option("--num-frames", metavar="N", help="Clip length without a checkpoint. [default: 16]"),
    ] = None,
    input_size: Annotated[
        int | None,
        typer.Option("--input-size", metavar="PX", help="Clip side without a checkpoint. [default: 224]"),
    ] = None,
) -> None:
    """Picture one clip of a video as the model sees it: original, masked input, and with a pretrain checkpoint the
    reconstruction (alone and with the visible patches pasted back), as a PNG grid or a GIF/MP4 animation."""
    from videomae_cli.config.resolve import resolve_spec
    from videomae_cli.config.visualize import VisualizeSpec
    from videomae_cli.errors import ConfigError

    flags = {
        "checkpoint": ("CKPT", checkpoint),
        "video": ("--video", video),
        "out": ("--out", out),
        "mask.type": ("--mask-type", mask_type),
        "mask.ratio": ("--mask-ratio", mask_ratio),
        "mask.decoder_ratio": ("--decoder-mask-ratio", decoder_mask_ratio),
        "frames": ("--frames", frames),
        "error_map": ("--error-map", error_map or None),
        "seed": ("--seed", seed),
        "num_frames": ("--num-frames", num_frames),
        "input_size": ("--input-size", input_size),
    }
    with user_errors(flags):
        if video is None or out is None:
            missing = "--video" if video is None else "--out"
            raise ConfigError(f"{missing}: required (videomae visualize-mask [CKPT] --video FILE --out FILE.png)")
        spec = resolve_spec(VisualizeSpec, flags=flags)
        check_output(spec.out, "out", "file")
        # the request is valid: now load torch (see the package docstring)
        from videomae_cli.viz import compute, render

        if checkpoint is not None:
            spec.checkpoint = fetch_checkpoint(checkpoint, "checkpoint")
        setup = compute.setup(spec)
        columns = compute.parse_frames(spec.frames, setup.grid)
        clip, indices = compute.read_clip(spec.video, setup.plan)
        result = compute.visualize(clip, setup, indices, source=spec.video.name)
        render.write_visualization(result, spec.out, columns)
    shown = f"{len(columns)} frames" if spec.out.suffix.lower() == ".png" else f"{setup.grid.frames} frames animated"
    typer.echo(f"wrote {spec.out}: {len(result.rows())} rows × {shown} | {result.title()}")
