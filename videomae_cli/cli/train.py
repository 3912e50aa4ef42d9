"""`videomae pretrain` and `videomae finetune`: flags → a spec → the training loop."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from videomae_cli.cli.common import (
    BatchSizeOpt,
    ConfigOpt,
    DataOpt,
    DeviceOpt,
    EpochsOpt,
    ModelOpt,
    PrefetchOpt,
    PrintConfigOpt,
    ProgressOpt,
    ResumeOpt,
    SeedOpt,
    SetOpt,
    StepsOpt,
    TrainPrecisionOpt,
    WorkersOpt,
    app,
    check_output,
    common_run_flags,
    reporting,
    user_errors,
)


@app.command()
def pretrain(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data: DataOpt = None,
    model: ModelOpt = None,
    mask_type: Annotated[
        str | None,
        typer.Option(
            "--mask-type",
            metavar="TYPE",
            help="Encoder mask: tube (V1), random (MAE-ST), frame or motion. [default: tube]",
        ),
    ] = None,
    mask_ratio: Annotated[
        float | None,
        typer.Option("--mask-ratio", metavar="R", help="Fraction of tokens hidden from the encoder. [default: 0.9]"),
    ] = None,
    decoder_mask_ratio: Annotated[
        float | None,
        typer.Option(
            "--decoder-mask-ratio",
            metavar="R",
            help="V2 running-cell decoder masking: share of positions not decoded (0, .25, .5, .75). [default: 0]",
        ),
    ] = None,
    steps: StepsOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr", metavar="X", help="Base learning rate per 256 clips, scaled by the global batch. [default: 1.5e-4]"
        ),
    ] = None,
    precision: TrainPrecisionOpt = None,
    device: DeviceOpt = None,
    num_workers: WorkersOpt = None,
    prefetch: PrefetchOpt = None,
    seed: SeedOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="DIR", help="Run directory. [default: runs/pretrain-<date>-<time>]")
    ] = None,
    resume: ResumeOpt = None,
    print_config: PrintConfigOpt = False,
    progress: ProgressOpt = None,
    compile_: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the training step: faster steps after minutes of compiling (bf16 on CPUs with AMX; "
            "see the README's performance notes).",
        ),
    ] = False,
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy",
            metavar="S",
            help="Under torchrun/srun: ddp (replicate) or fsdp (FSDP2, shard per block: large models). [default: ddp]",
        ),
    ] = None,
) -> None:
    """Pretrain a VideoMAE model (default 300 steps). With no options: a tiny model on the built-in synthetic
    videos, minutes on a CPU."""
    from videomae_cli.config.resolve import resolve_spec, spec_to_yaml
    from videomae_cli.config.schema import PretrainSpec

    flags = {
        "data.source": ("--data", data),
        "model.name": ("--model", model),
        "mask.type": ("--mask-type", mask_type),
        "mask.ratio": ("--mask-ratio", mask_ratio),
        "mask.decoder_ratio": ("--decoder-mask-ratio", decoder_mask_ratio),
        "run.strategy": ("--strategy", strategy),
        "run.compile": ("--compile", compile_ or None),
        "data.prefetch": ("--prefetch", prefetch),
        **common_run_flags(steps, epochs, batch_size, lr, precision, device, num_workers, seed, out, resume, progress),
    }
    with user_errors(flags):
        spec = resolve_spec(PretrainSpec, config, set_, flags)
        if spec.run.out is None:
            spec.run.out = Path("runs") / time.strftime("pretrain-%Y%m%d-%H%M%S")
        if print_config:
            typer.echo(spec_to_yaml(spec), nl=False)
            return
        check_output(spec.run.out, "run.out", "dir")
        # the request is valid: now load torch (see the module docstring)
        from videomae_cli.train.distributed import detect, process_group
        from videomae_cli.train.loop import train
        from videomae_cli.train.pretrain import setup

        rank = detect().rank
        with reporting(spec.run.progress, rank, flags) as reporter, process_group(), _holding(spec.run.out, rank):
            train(setup(spec, argv=["videomae", *sys.argv[1:]]), reporter)


@app.command()
def finetune(
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            metavar="CKPT|none",
            help="Pretrain or classifier checkpoint (file, checkpoint dir or run dir) to start from, or none for "
            "training from scratch. Required. The model and clip geometry default to the checkpoint's.",
        ),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="PATH",
            help="Labelled manifest (PATH LABEL lines) or prepare-data directory; validation uses val.csv beside "
            "it. [default: synthetic motion classes]",
        ),
    ] = None,
    model: ModelOpt = None,
    steps: StepsOpt = None,
    epochs: Annotated[float | None, typer.Option("--epochs", metavar="N", help="Epochs to train. [default: 3]")] = None,
    batch_size: BatchSizeOpt = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr", metavar="X", help="Base learning rate per 256 clips, scaled by the global batch. [default: 5e-4]"
        ),
    ] = None,
    precision: TrainPrecisionOpt = None,
    device: DeviceOpt = None,
    num_workers: WorkersOpt = None,
    prefetch: PrefetchOpt = None,
    seed: SeedOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="DIR", help="Run directory. [default: runs/finetune-<date>-<time>]")
    ] = None,
    resume: ResumeOpt = None,
    print_config: PrintConfigOpt = False,
    progress: ProgressOpt = None,
    compile_: Annotated[
        bool, typer.Option("--compile", help="torch.compile the training step (as pretrain --compile).")
    ] = False,
) -> None:
    """Fine-tune a classifier with the official V1 recipe (layer decay, Mixup/CutMix, RandAugment, drop path),
    validating every epoch; the best weights are kept as RUN/best.safetensors."""
    from videomae_cli.config.resolve import spec_to_yaml
    from videomae_cli.train.distributed import detect, process_group
    from videomae_cli.train.finetune import resolve_finetune_spec, setup
    from videomae_cli.train.loop import train

    flags = {
        "init": ("--init", init),
        "data.source": ("--data", data),
        "model.name": ("--model", model),
        "run.compile": ("--compile", compile_ or None),
        "data.prefetch": ("--prefetch", prefetch),
        **common_run_flags(steps, epochs, batch_size, lr, precision, device, num_workers, seed, out, resume, progress),
    }
    with user_errors(flags):
        spec = resolve_finetune_spec(config, set_, flags)
        if spec.run.out is None:
            spec.run.out = Path("runs") / time.strftime("finetune-%Y%m%d-%H%M%S")
        if print_config:
            typer.echo(spec_to_yaml(spec), nl=False)
            return
        check_output(spec.run.out, "run.out", "dir")
        rank = detect().rank
        with reporting(spec.run.progress, rank, flags) as reporter, process_group(), _holding(spec.run.out, rank):
            train(setup(spec, reporter, argv=["videomae", *sys.argv[1:]]), reporter)


def _holding(out: Path, rank: int) -> contextlib.AbstractContextManager[object]:
    """The run directory's lock (train/lock.py), taken by rank 0 before anything else runs, so a second run on the
    same directory is refused before it reads a checkpoint or writes a file; train() then holds it on (nested)."""
    from videomae_cli.train.lock import hold_run_directory

    return hold_run_directory(out) if rank == 0 else contextlib.nullcontext()
