"""`videomae convert` and `videomae export`: checkpoints to and from the other codebases."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from videomae_cli.cli.common import (
    SetOpt,
    app,
    check_output,
    fetch_checkpoint,
    user_errors,
)

if TYPE_CHECKING:  # the interop layer imports torch: only after a request is valid
    from videomae_cli.interop.convert import Conversion


@app.command()
def convert(
    src: Annotated[
        str,
        typer.Argument(
            metavar="SRC",
            help="An official VideoMAE V1/V2 or MAE-ST .pth, an HF transformers directory, model.safetensors "
            "with config.json beside it, or a Hugging Face Hub id of any of these: ORG/NAME, ORG/NAME@REVISION, "
            "hf://ORG/NAME or hf://ORG/NAME/FILE.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", metavar="FILE.safetensors", help="Where to write our checkpoint.", show_default=False),
    ],
    sets: SetOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace FILE if it exists.")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Before writing, run one fixed clip and mask through the converted model and through the source's "
            "own math (transformers for HF sources; the official V1/V2 and MAE-ST formulas otherwise) and fail "
            "(exit 2, nothing written) if they differ by more than 1e-4.",
        ),
    ] = False,
) -> None:
    """Convert a checkpoint from another codebase into a self-describing videomae-cli checkpoint. The model spec is
    inferred from the weights (and config.json or the saved training args); override any field with --set. Head
    counts are never guessed: where SRC does not record them, convert stops and names the fields to --set."""
    from videomae_cli.errors import ConfigError

    with user_errors():
        if out.suffix != ".safetensors":
            raise ConfigError(f"--out: {out} must end in .safetensors")
        check_output(out, "--out", "file")
        if out.exists() and not overwrite:
            raise ConfigError(f"--out: {out} exists (pass --overwrite to replace it)")
        # the request is valid: now load torch
        from videomae_cli.interop.convert import convert as run_conversion
        from videomae_cli.interop.convert import save_conversion
        from videomae_cli.interop.settings import MissingSettings
        from videomae_cli.ui.tables import summary_table

        source, origin = _source_path(src)
        try:
            conversion = run_conversion(source, sets)
        except MissingSettings as e:
            hint = " ".join(f"--set {field}=N" for field in e.fields)
            raise ConfigError(f"{e}: pass {hint}") from None
        # Piped output (logs, CI) gets a wide table: rich would otherwise cut key names at 80 columns.
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
        console.print(summary_table(conversion, out))
        if verify:
            _verify_conversion(conversion)
        save_conversion(conversion, out, origin=origin)
        typer.echo(f"wrote {out} ({conversion.kind} checkpoint; try: videomae evaluate {out})")


def _source_path(src: str) -> tuple[Path, str | None]:
    """(SRC on this machine, the origin to record where its path would not say it): a hub id's files are fetched
    into the Hugging Face cache first (interop/hub.py); anything else is a path."""
    from videomae_cli.interop.hub import hub_source, parse_hub_ref

    ref = parse_hub_ref(src)
    return (Path(src), None) if ref is None else hub_source(ref, "SRC")


def _verify_conversion(conversion: Conversion) -> None:
    """convert --verify: print the comparison; a difference above tolerance is an error (nothing is written)."""
    from videomae_cli.errors import ConfigError
    from videomae_cli.interop.verify import verify

    result = verify(conversion)
    line = (
        f"verify: {result.compared}: largest difference {result.max_diff:.1e} from {result.reference} "
        f"(tolerance {result.tolerance:.0e})"
    )
    typer.echo(line)
    if not result.ok:
        raise ConfigError(f"--verify: the converted model does not compute what its source does ({line}); not written")


@app.command()
def export(
    checkpoint: Annotated[
        str,
        typer.Argument(
            metavar="CKPT",
            help="Our checkpoint (.safetensors, checkpoint dir or run dir), or a Hugging Face Hub id (ORG/NAME, "
            "ORG/NAME@REVISION, hf://ORG/NAME), converted first when it is in another layout.",
            show_default=False,
        ),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="hf (a transformers model directory), official (a .pth for the official VideoMAE code) or onnx "
            "(classifier logits or pretrain-encoder features, verified in onnxruntime).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", metavar="PATH", help="Output directory (hf) or file (.pth, .onnx).", show_default=False),
    ],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace PATH if it exists.")] = False,
) -> None:
    """Export a checkpoint for HF transformers, the official VideoMAE code, or ONNX, and say what the receiving
    library needs to know (input layout, normalisation)."""
    from videomae_cli.errors import ConfigError

    suffixes = {"official": ".pth", "onnx": ".onnx"}
    with user_errors({"format": ("--format", fmt)}):
        if fmt in suffixes and out.suffix != suffixes[fmt]:
            raise ConfigError(f"--out: {out} must end in {suffixes[fmt]} for --format {fmt}")
        check_output(out, "--out", "dir" if fmt == "hf" else "file")
        if out.exists() and not overwrite:
            raise ConfigError(f"--out: {out} exists (pass --overwrite to replace it)")
        # the request is valid: now load torch
        from videomae_cli.checkpoint import load_checkpoint
        from videomae_cli.interop.export import export as run_export

        result = run_export(load_checkpoint(fetch_checkpoint(checkpoint, "checkpoint")), fmt, out)
        typer.echo(f"wrote {result.path} ({result.target})")
        for note in result.notes:
            typer.echo(f"  - {note}")
