"""`videomae plot`: several runs' curves in one picture."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from videomae_cli.cli.common import app, check_output, user_errors

if TYPE_CHECKING:
    from videomae_cli.viz.curves import RunCurves


@app.command()
def plot(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN...", help="Run directories (or their metrics.jsonl) to draw together.", show_default=False
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", metavar="FILE.png", help="The picture to write. Required.")
    ] = None,
    x: Annotated[
        str,
        typer.Option(
            "--x",
            metavar="AXIS",
            help="Horizontal axis: step (optimizer steps) or clips (clips seen: compares runs with different "
            "batch sizes).",
        ),
    ] = "step",
    title: Annotated[
        str | None, typer.Option("--title", metavar="TEXT", help="Figure title. [default: the run's name or the count]")
    ] = None,
) -> None:
    """Draw training runs from their metrics.jsonl in one PNG, one colour per run: training loss, learning rate,
    throughput, the share of time waiting for data, and validation top-1 when a run validated. Each run also writes
    its own RUN/curves.png as it trains."""
    from videomae_cli.errors import ConfigError

    flags = {"out": ("--out", out), "x": ("--x", x)}
    with user_errors(flags):
        if out is None:
            raise ConfigError("--out: required (videomae plot RUN... --out FILE.png)")
        if out.suffix.lower() != ".png":
            raise ConfigError(f"--out: {out} must end in .png")
        from videomae_cli.viz.curves import AXES, read_curves, write_curves

        if x not in AXES:
            raise ConfigError(f"--x: {x!r} is not one of {', '.join(AXES)}")
        check_output(out, "out", "file")
        curves = [read_curves(run) for run in runs]
        write_curves(curves, out, x, title)  # type: ignore[arg-type]
    steps = ", ".join(f"{c.name} ({_last_step(c)} steps)" for c in curves)
    typer.echo(f"wrote {out}: {steps}")


def _last_step(curves: RunCurves) -> int:
    return max(r["step"] for r in [*curves.training, *curves.validation])
