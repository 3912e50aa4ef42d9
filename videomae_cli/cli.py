"""The `videomae` command: one thin function per subcommand.

Each command builds a validated spec from its flags, calls the engine, and maps errors to the documented exit codes:
0 ok · 1 unexpected internal error · 2 usage/config error · 3 data error · 4 non-finite loss · 75 stopped by
SIGTERM/SIGUSR1 after a checkpoint (resume with --resume auto). The engine (torch and timm: seconds to import) is
loaded only once the spec is valid, so a mistyped flag is refused without it (not by finetune, whose spec is read from
its --init checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from videomae_cli.errors import VideoMAEError

if TYPE_CHECKING:  # the interop layer imports torch: only after a request is valid
    from videomae_cli.interop.convert import Conversion

app = typer.Typer(
    name="videomae",
    help="VideoMAE-style masked-autoencoder video pretraining (VideoMAE V1/V2, MAE-ST).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


@app.callback()
def _group() -> None:
    """VideoMAE-style masked-autoencoder video pretraining (VideoMAE V1/V2, MAE-ST)."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors into one line on stderr and the documented exit code (VIDEOMAE_DEBUG=1 re-raises)."""
    try:
        yield
    except VideoMAEError as e:
        stderr.print(f"{e.label}{_rank_tag()}: {e}", markup=False)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        stderr.print("interrupted", markup=False)
        raise typer.Exit(130) from None
    except Exception as e:
        if os.environ.get("VIDEOMAE_DEBUG") or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise  # under torchrun, main()'s @record hands this rank's traceback to the launcher's failure report
        stderr.print(f"internal error: {type(e).__name__}: {e} (set VIDEOMAE_DEBUG=1 for the traceback)", markup=False)
        raise typer.Exit(1) from None


def _rank_tag() -> str:
    """ " (rank N)" in a multi-process run, where every rank may print."""
    world = int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1")))
    rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))
    return f" (rank {rank})" if world > 1 else ""


ConfigOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--config", metavar="FILE", help="YAML/JSON spec file (repeatable; later files win). A run's spec.yaml works."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", metavar="KEY=VALUE", help="Override any spec field: --set model.depth=6 (repeatable; beats --config)."
    ),
]


DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        metavar="PATH",
        help="A manifest (PATH LABEL lines, or V2's PATH START TOTAL) or a prepare-data directory. "
        "[default: synthetic]",
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", metavar="NAME", help="Model size: test, tiny, small, base, large, huge, giant. [default: tiny]"
    ),
]
StepsOpt = Annotated[int | None, typer.Option("--steps", metavar="N", help="Optimizer steps to train.")]
EpochsOpt = Annotated[
    float | None, typer.Option("--epochs", metavar="N", help="Train for this many epochs instead of --steps.")
]
BatchSizeOpt = Annotated[
    int | None, typer.Option("--batch-size", metavar="N", help="Clips per step per device. [default: 8]")
]
PrecisionOpt = Annotated[
    str | None, typer.Option("--precision", metavar="P", help="fp32, bf16 or fp16 (autocast). [default: fp32]")
]
TrainPrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        metavar="P",
        help="auto (bf16 autocast where the CPU/GPU has native bf16, else fp32), fp32, bf16 or fp16 (with a grad "
        "scaler). [default: auto]",
    ),
]
DeviceOpt = Annotated[str | None, typer.Option("--device", metavar="D", help="auto, cpu or cuda. [default: auto]")]
WorkersOpt = Annotated[
    int | None, typer.Option("--num-workers", metavar="N", help="Data loader processes. [default: 1]")
]
PrefetchOpt = Annotated[
    int | None,
    typer.Option("--prefetch", metavar="N", help="Batches each loader worker prepares ahead. [default: 4]"),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", metavar="N", help="Seed for init, data order, augmentation and masks. [default: 0]"),
]
ResumeOpt = Annotated[
    str | None,
    typer.Option(
        "--resume",
        metavar="auto|none|PATH",
        help="auto (continue --out if it has checkpoints), none, or a checkpoint/run path.",
    ),
]
PrintConfigOpt = Annotated[bool, typer.Option("--print-config", help="Print the resolved spec as YAML and exit.")]
ProgressOpt = Annotated[
    str | None,
    typer.Option(
        "--progress", metavar="MODE", help="auto (a bar on a terminal, plain lines otherwise), rich, plain or off."
    ),
]


@app.command()
def pretrain(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data: DataOpt = None,
    model: ModelOpt = None,
    mask_type: Annotated[
        str | None,
        typer.Option(
            "--mask-type", metavar="TYPE", help="Encoder mask: tube (V1), random (MAE-ST) or frame. [default: tube]"
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
    from videomae_cli.specs import PretrainSpec, resolve_spec, spec_to_yaml

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
    with user_errors():
        spec = resolve_spec(PretrainSpec, config, set_, flags)
        if spec.run.out is None:
            spec.run.out = Path("runs") / time.strftime("pretrain-%Y%m%d-%H%M%S")
        if print_config:
            typer.echo(spec_to_yaml(spec), nl=False)
            return
        # the request is valid: now load torch (see the module docstring)
        from videomae_cli.engine.distributed import detect, process_group
        from videomae_cli.engine.loop import train
        from videomae_cli.engine.pretrain import setup
        from videomae_cli.engine.progress import make_reporter

        reporter = make_reporter(spec.run.progress, label="pretrain", rank=detect().rank)
        with process_group():
            train(setup(spec, argv=["videomae", *sys.argv[1:]]), reporter)


def common_run_flags(
    steps: int | None,
    epochs: float | None,
    batch_size: int | None,
    lr: float | None,
    precision: str | None,
    device: str | None,
    num_workers: int | None,
    seed: int | None,
    out: Path | None,
    resume: str | None,
    progress: str | None,
) -> dict[str, tuple[str, Any]]:
    """The flags pretrain and finetune share, as {spec path: (flag, value)}."""
    return {
        "run.steps": ("--steps", steps),
        "run.epochs": ("--epochs", epochs),
        "optim.batch_size": ("--batch-size", batch_size),
        "optim.lr": ("--lr", lr),
        "run.precision": ("--precision", precision),
        "run.device": ("--device", device),
        "data.num_workers": ("--num-workers", num_workers),
        "run.seed": ("--seed", seed),
        "run.out": ("--out", out),
        "run.resume": ("--resume", resume),
        "run.progress": ("--progress", progress),
    }


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
    from videomae_cli.engine.distributed import detect, process_group
    from videomae_cli.engine.finetune import resolve_finetune_spec, setup
    from videomae_cli.engine.loop import train
    from videomae_cli.engine.progress import make_reporter
    from videomae_cli.specs import spec_to_yaml

    flags = {
        "init": ("--init", init),
        "data.source": ("--data", data),
        "model.name": ("--model", model),
        "run.compile": ("--compile", compile_ or None),
        "data.prefetch": ("--prefetch", prefetch),
        **common_run_flags(steps, epochs, batch_size, lr, precision, device, num_workers, seed, out, resume, progress),
    }
    with user_errors():
        spec = resolve_finetune_spec(config, set_, flags)
        if spec.run.out is None:
            spec.run.out = Path("runs") / time.strftime("finetune-%Y%m%d-%H%M%S")
        if print_config:
            typer.echo(spec_to_yaml(spec), nl=False)
            return
        reporter = make_reporter(spec.run.progress, label="finetune", rank=detect().rank)
        with process_group():
            train(setup(spec, reporter, argv=["videomae", *sys.argv[1:]]), reporter)


@app.command()
def evaluate(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            metavar="CKPT",
            help="A classifier or pretrain checkpoint (.safetensors, checkpoint dir or run dir).",
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
    from videomae_cli.specs import EvaluateSpec, resolve_spec

    flags = {
        "checkpoint": ("CKPT", checkpoint),
        "data": ("--data", data),
        "views": ("--views", views),
        "report": ("--report", report),
        "batch_size": ("--batch-size", batch_size),
        "precision": ("--precision", precision),
        "device": ("--device", device),
        "num_workers": ("--num-workers", num_workers),
        "progress": ("--progress", progress),
    }
    with user_errors():
        spec = resolve_spec(EvaluateSpec, flags=flags)
        # the request is valid: now load torch (see the module docstring)
        from videomae_cli.engine.evaluate import evaluate as run_evaluation
        from videomae_cli.engine.progress import make_reporter
        from videomae_cli.ui.tables import per_class_table, report_table

        reporter = make_reporter(spec.progress, label="evaluate")
        try:
            result = run_evaluation(spec, reporter)
        finally:
            reporter.close()
        console = Console(highlight=False)
        console.print(report_table(result.report, f"{result.report['kind']} checkpoint {spec.checkpoint}"))
        if "per_class" in result.report:
            console.print(per_class_table(result.report, limit=20))
        console.print(f"report: {result.path}", markup=False)


@app.command()
def convert(
    src: Annotated[
        Path,
        typer.Argument(
            metavar="SRC",
            help="An official VideoMAE V1/V2 or MAE-ST .pth, an HF transformers directory, or model.safetensors "
            "with config.json beside it.",
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
    from videomae_cli.interop.convert import convert as run_conversion
    from videomae_cli.interop.convert import save_conversion
    from videomae_cli.interop.settings import MissingSettings
    from videomae_cli.ui.tables import summary_table

    with user_errors():
        if out.suffix != ".safetensors":
            raise ConfigError(f"--out: {out} must end in .safetensors")
        if out.exists() and not overwrite:
            raise ConfigError(f"--out: {out} exists (pass --overwrite to replace it)")
        try:
            conversion = run_conversion(src, sets)
        except MissingSettings as e:
            hint = " ".join(f"--set {field}=N" for field in e.fields)
            raise ConfigError(f"{e}: pass {hint}") from None
        # Piped output (logs, CI) gets a wide table: rich would otherwise cut key names at 80 columns.
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
        console.print(summary_table(conversion, out))
        if verify:
            _verify_conversion(conversion)
        save_conversion(conversion, out)
        typer.echo(f"wrote {out} ({conversion.kind} checkpoint; try: videomae evaluate {out})")


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
        Path,
        typer.Argument(
            metavar="CKPT", help="Our checkpoint (.safetensors, checkpoint dir or run dir).", show_default=False
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
    from videomae_cli.api import load_checkpoint
    from videomae_cli.errors import ConfigError
    from videomae_cli.interop.export import export as run_export

    suffixes = {"official": ".pth", "onnx": ".onnx"}
    with user_errors():
        if fmt in suffixes and out.suffix != suffixes[fmt]:
            raise ConfigError(f"--out: {out} must end in {suffixes[fmt]} for --format {fmt}")
        if out.exists() and not overwrite:
            raise ConfigError(f"--out: {out} exists (pass --overwrite to replace it)")
        model = load_checkpoint(checkpoint)
        result = run_export(model, fmt, out)
        typer.echo(f"wrote {result.path} ({result.target})")
        for note in result.notes:
            typer.echo(f"  - {note}")


@app.command()
def predict(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            metavar="CKPT",
            help="A classifier checkpoint (.safetensors, checkpoint dir or run dir).",
            show_default=False,
        ),
    ],
    inputs: Annotated[
        list[Path],
        typer.Argument(metavar="INPUT...", help="Video files, folders of videos, or manifests.", show_default=False),
    ],
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
    from rich.table import Table

    from videomae_cli.errors import DataError
    from videomae_cli.specs import PredictSpec, resolve_spec

    flags = {
        "checkpoint": ("CKPT", checkpoint),
        "inputs": ("INPUT", inputs),
        "top_k": ("--top-k", top_k),
        "views": ("--views", views),
        "json_path": ("--json", json_path),
        "batch_size": ("--batch-size", batch_size),
        "precision": ("--precision", precision),
        "device": ("--device", device),
        "num_workers": ("--num-workers", num_workers),
        "progress": ("--progress", progress),
    }
    with user_errors():
        spec = resolve_spec(PredictSpec, flags=flags)
        # the request is valid: now load torch (see the module docstring)
        from videomae_cli.engine.predict import predict as run_prediction
        from videomae_cli.engine.progress import make_reporter

        reporter = make_reporter(spec.progress, label="predict")
        try:
            found, failures = run_prediction(spec, reporter)
        finally:
            reporter.close()
        for bad in failures:
            stderr.print(f"error: {bad.reason}", markup=False)
        if not found:
            raise DataError(f"none of the {len(failures)} inputs could be read")
        table = Table(title=f"predictions of {spec.checkpoint}", title_justify="left")
        table.add_column("video")
        table.add_column("top classes (probability)")
        for p in found:
            table.add_row(p.video, ", ".join(f"{name} {prob:.1%}" for _, name, prob in p.top))
        Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(table)
        if spec.json_path is not None:
            typer.echo(f"wrote {spec.json_path}")


@app.command()
def embed(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            metavar="CKPT",
            help="A pretrain or classifier checkpoint (.safetensors, checkpoint dir or run dir).",
            show_default=False,
        ),
    ],
    inputs: Annotated[
        list[Path],
        typer.Argument(metavar="INPUT...", help="Video files, folders of videos, or manifests.", show_default=False),
    ],
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
    VideoMAE V2's temporal-detection features). Large jobs run in shards; running the same command again resumes.
    Unreadable inputs are reported and skipped (exit 3 when none could be read)."""
    from videomae_cli.errors import ConfigError, DataError
    from videomae_cli.specs import EmbedSpec, resolve_spec

    flags = {
        "checkpoint": ("CKPT", checkpoint),
        "inputs": ("INPUT", inputs),
        "out": ("--out", out),
        "pool": ("--pool", pool),
        "window_frames": ("--window-frames", window_frames),
        "window_stride": ("--window-stride", window_stride),
        "shard_size": ("--shard-size", shard_size),
        "batch_size": ("--batch-size", batch_size),
        "precision": ("--precision", precision),
        "device": ("--device", device),
        "num_workers": ("--num-workers", num_workers),
        "overwrite": ("--overwrite", overwrite or None),
        "progress": ("--progress", progress),
    }
    with user_errors():
        if out is None:
            raise ConfigError("--out: required (videomae embed CKPT INPUT... --out FILE.safetensors)")
        spec = resolve_spec(EmbedSpec, flags=flags)
        # the request is valid: now load torch (see the module docstring)
        from videomae_cli.engine.embed import embed as run_embedding
        from videomae_cli.engine.embed import index_path
        from videomae_cli.engine.progress import make_reporter

        reporter = make_reporter(spec.progress, label="embed")
        try:
            result = run_embedding(spec, reporter)
        finally:
            reporter.close()
        for bad in result.embedding.errors:
            stderr.print(f"error: {bad.reason}", markup=False)
        rows = len(result.embedding.video)
        if not rows:
            raise DataError(f"none of the {len(result.embedding.errors)} inputs could be read")
        shape = "×".join(map(str, result.embedding.features.shape))
        videos = len(set(result.embedding.video.tolist()))
        index = f" (index in {index_path(spec.out)})" if spec.out.suffix == ".npy" else ""
        typer.echo(f"wrote {spec.out}{index}: features {shape} for {rows} clips of {videos} videos")


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
            help="Transcode to DIR/videos/ as H.264 with this short side (resumable); manifests list the copies.",
        ),
    ] = None,
    decoder: Annotated[
        str | None,
        typer.Option(
            "--decoder",
            metavar="NAME",
            help="Training decoder every video must also decode with: auto (decord where installed, else pyav), "
            "decord or pyav. [default: auto]",
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
    from videomae_cli.data import prepare

    with user_errors():
        spec = prepare.build_prepare_spec(
            src=src,
            out=out,
            format=format_,
            root=root,
            val_fraction=val_fraction,
            seed=seed,
            min_frames=min_frames,
            workers=workers,
            resize_short=resize_short,
            decoder=decoder,
            progress=progress,
            synthetic=synthetic,
            num_frames=num_frames,
            size=size,
            scene=scene,
        )
        reporter = prepare.make_prepare_reporter(spec.progress)
        try:
            result = prepare.prepare_data(spec, reporter)
        finally:
            reporter.close()
        Console(highlight=False).print(prepare.render_summary(result))
        if result.problems:
            listed = result.report["counts"]["listed"]
            report = result.out / prepare.REPORT_FILE
            stderr.print(
                f"warning: left out {len(result.problems)} of {listed} videos with problems (see {report})",
                markup=False,
            )


@app.command()
def doctor() -> None:
    """Check the environment: Python, torch (CUDA, cuDNN, NCCL, gloo, devices, bf16), the required and optional
    packages, and each video decoder with a decode self-test (a tiny clip in a temporary directory, removed). Writes
    nothing. Exit code 0 when every required piece works (warnings allowed), 1 otherwise."""
    from videomae_cli.doctor import exit_code, render, run_checks, summary_line

    with user_errors():
        checks = run_checks()
        Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(render(checks))
        typer.echo(summary_line(checks))
    raise typer.Exit(exit_code(checks))


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
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the mask.")] = 0,
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
    from videomae_cli.errors import ConfigError

    with user_errors():
        if video is None or out is None:
            missing = "--video" if video is None else "--out"
            raise ConfigError(f"{missing}: required (videomae visualize-mask [CKPT] --video FILE --out FILE.png)")
        from videomae_cli import viz

        viz.output_suffix(out)
        setup = viz.setup(
            checkpoint,
            mask_type=mask_type,
            mask_ratio=mask_ratio,
            decoder_mask_ratio=decoder_mask_ratio,
            num_frames=num_frames,
            input_size=input_size,
            seed=seed,
            error_map=error_map,
        )
        columns = viz.parse_frames(frames, setup.grid)
        clip, indices = viz.read_clip(video, setup.plan)
        result = viz.visualize(clip, setup, indices, source=video.name)
        viz.write_visualization(result, out, columns)
    shown = f"{len(columns)} frames" if out.suffix.lower() == ".png" else f"{setup.grid.frames} frames animated"
    typer.echo(f"wrote {out}: {len(result.rows())} rows × {shown} | {result.title()}")


def main() -> None:
    """Console-script entry point. Under torchrun, an unexpected error on any rank is recorded with its traceback
    (torch.distributed.elastic's @record) for the launcher's failure summary."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:  # not under torchrun: keep `--help` free of the torch import
        app(prog_name="videomae")
        return
    from torch.distributed.elastic.multiprocessing.errors import record

    record(lambda: app(prog_name="videomae"))()
