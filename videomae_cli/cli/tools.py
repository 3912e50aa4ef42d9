"""`videomae doctor` and `videomae visualize-mask`."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from videomae_cli.cli.common import app, check_output, in_flag_terms, user_errors

if TYPE_CHECKING:
    from videomae_cli.doctor import Check


@app.command()
def doctor() -> None:
    """Check the environment: Python, torch (CUDA, cuDNN, NCCL, gloo, devices, bf16), the required and optional
    packages, and each video decoder with a decode self-test (a tiny clip in a temporary directory, removed). Writes
    nothing. Exit code 0 when every required piece works (warnings allowed), 1 otherwise."""
    from videomae_cli.doctor import exit_code, run_checks, summary_line
    from videomae_cli.ui.tables import doctor_table

    with user_errors():
        checks = [_in_flag_terms(check) for check in run_checks()]
        Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(doctor_table(checks))
        typer.echo(summary_line(checks))
    raise typer.Exit(exit_code(checks))


# The settings the doctor's advice names (`precision=bf16`), said as the flags of the commands that take them.
_DOCTOR_FLAGS = {"precision": ("--precision", None), "format": ("--format", None)}


def _in_flag_terms(check: Check) -> Check:
    """`check` with its detail and fix in the commands' own terms (common.in_flag_terms)."""
    return replace(
        check, detail=in_flag_terms(check.detail, _DOCTOR_FLAGS), fix=in_flag_terms(check.fix, _DOCTOR_FLAGS)
    )


@app.command("visualize-mask")
def visualize_mask(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            metavar="CKPT",
            help="A pretrain checkpoint (.safetensors, checkpoint dir or run dir) to reconstruct with; its clip "
            "geometry and mask are the defaults. Without one only the mask is shown.",
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
            "--mask-type", metavar="TYPE", help="tube, random or frame. [default: the checkpoint's, else tube]"
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

        setup = compute.setup(spec)
        columns = compute.parse_frames(spec.frames, setup.grid)
        clip, indices = compute.read_clip(spec.video, setup.plan)
        result = compute.visualize(clip, setup, indices, source=spec.video.name)
        render.write_visualization(result, spec.out, columns)
    shown = f"{len(columns)} frames" if spec.out.suffix.lower() == ".png" else f"{setup.grid.frames} frames animated"
    typer.echo(f"wrote {spec.out}: {len(result.rows())} rows × {shown} | {result.title()}")
