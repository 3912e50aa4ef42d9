"""What every command shares: the Typer app, the option sets, and turning errors into one line and an exit code."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console

from videomae_cli.errors import ConfigError, StorageError, VideoMAEError, describe_os_error

if TYPE_CHECKING:
    from videomae_cli.progress import Reporter

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
def user_errors(flags: Mapping[str, tuple[str, Any]] | None = None) -> Iterator[None]:
    """Turn errors into one line on stderr and the documented exit code (VIDEOMAE_DEBUG=1 re-raises). `flags`
    ({spec field: (flag, value)}) lets the line speak the command's own flags (in_flag_terms)."""
    try:
        yield
    except VideoMAEError as e:
        stderr.print(f"{e.label}{_rank_tag()}: {in_flag_terms(str(e), flags or {})}", markup=False)
        raise typer.Exit(e.exit_code) from None
    except OSError as e:  # anything the layers below did not word themselves: still one line, naming the path
        stderr.print(f"error{_rank_tag()}: {describe_os_error(e)}", markup=False)
        raise typer.Exit(StorageError.exit_code) from None
    except KeyboardInterrupt:
        stderr.print("interrupted", markup=False)
        raise typer.Exit(130) from None
    except Exception as e:
        if os.environ.get("VIDEOMAE_DEBUG") or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise  # under torchrun, main()'s @record hands this rank's traceback to the launcher's failure report
        stderr.print(f"internal error: {type(e).__name__}: {e} (set VIDEOMAE_DEBUG=1 for the traceback)", markup=False)
        raise typer.Exit(1) from None


def check_output(path: Path, field: str, kind: Literal["dir", "file"]) -> None:
    """Refuse, before anything runs, an output the command could not write: ConfigError (exit 2) naming `field`, the
    path and why: a file where a folder is needed or the other way round (or a device: outputs are renamed into
    place, never written through), a path under a file (`/dev/null/x`), a folder this process may not write to
    (read-only file system, permissions). Creates nothing; a write that fails later is a StorageError (exit 74)."""
    if kind == "dir" and os.path.lexists(path) and not os.path.isdir(path):
        what = "a file, not a directory" if os.path.isfile(path) else "not a directory"
        raise ConfigError(f"{field}: {path} is {what}")
    if kind == "file" and os.path.isdir(path):
        raise ConfigError(f"{field}: {path} is a directory, not a file")
    if kind == "file" and os.path.lexists(path) and not os.path.isfile(path):
        raise ConfigError(f"{field}: {path} is not a regular file (outputs are written beside it and renamed over it)")
    folder = path if kind == "dir" else path.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent  # the nearest one that exists: the rest is created under it
    if not os.path.isdir(folder):
        raise ConfigError(f"{field}: cannot create {path}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and os.statvfs(folder).f_flag & os.ST_RDONLY
        reason = "Read-only file system" if read_only else "Permission denied"
        where = f"to {path}" if folder == path else f"{path}: {folder}"
        raise ConfigError(f"{field}: cannot write {where}: {reason}")


def fetch_checkpoint(text: str, field: str) -> Path:
    """The local checkpoint a CKPT argument names. A hub reference (`ORG/NAME[@REV]`, `hf://…`; interop/hub.py) is
    fetched into the Hugging Face cache and, in another codebase's layout, converted once, saying so on stderr; any
    other text is a path. Called once the rest of the request is valid: nothing downloads for a request refused."""
    from videomae_cli.interop.hub import hub_checkpoint, parse_hub_ref, register_hub_references

    register_hub_references()  # and a teacher the checkpoint names may be one too
    ref = parse_hub_ref(text)
    if ref is None:
        return Path(text)
    found = hub_checkpoint(ref, field)
    stderr.print(f"hub: {found.describe()}", markup=False)
    return found.path


def hub_output_folder(text: str) -> Path | None:
    """Where a command that writes beside its checkpoint writes for a hub reference instead: runs/ORG--NAME (the
    cache is huggingface_hub's, not ours to write in); None for a local path."""
    from videomae_cli.interop.hub import parse_hub_ref

    ref = parse_hub_ref(text)
    return None if ref is None else Path("runs") / ref.folder_name


_FIELD_REFERENCE = re.compile(r"`([a-z_][a-z0-9_.]*)(?:=([^`]*))?`")
_LEADING_FIELD = re.compile(r"^([a-z_][a-z0-9_.]*): ")


def in_flag_terms(message: str, flags: Mapping[str, tuple[str, Any]]) -> str:
    """A spec error said in the command's own terms. The layers below name spec fields only; a reference written
    `field` or `field=value` becomes the command's flag (`--flag value`; a bare `--flag` for `=true`), or
    `--set field=value` where the command has no such flag; an error that starts with a field the user set by a flag
    ends with "(set by --flag)"."""
    text = field_references_as_flags(message, flags)
    leading = _LEADING_FIELD.match(text)
    if leading and "(set by " not in text:
        flag, value = flags.get(leading.group(1), (None, None))
        if flag is not None and value is not None:
            text += f" (set by {flag})"
    return text


def field_references_as_flags(message: str, flags: Mapping[str, tuple[str, Any]]) -> str:
    """`message` with each `field` or `field=value` reference said as the command's flag (in_flag_terms' first half;
    notices, which no flag "set", use it alone)."""

    def as_flag(match: re.Match[str]) -> str:
        field, value = match.groups()
        flag = flags.get(field, (None, None))[0]
        if flag is None:
            return field if value is None else f"--set {field}={value}"
        return flag if value in (None, "true") else f"{flag} {value}"

    return _FIELD_REFERENCE.sub(as_flag, message)


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


def inference_flags(
    checkpoint: str, precision: str | None, device: str | None, num_workers: int | None, progress: str | None
) -> dict[str, tuple[str, Any]]:
    """The flags evaluate, predict and embed share (config/schema.py: InferenceOptions): {spec path: (flag, value)}."""
    return {
        "checkpoint": ("CKPT", checkpoint),
        "precision": ("--precision", precision),
        "device": ("--device", device),
        "num_workers": ("--num-workers", num_workers),
        "progress": ("--progress", progress),
    }


@contextlib.contextmanager
def reporting(mode: str, rank: int = 0, flags: Mapping[str, tuple[str, Any]] | None = None) -> Iterator[Reporter]:
    """The reporter `--progress` asks for (ui/progress.py), closed however the command's work ends. With `flags`
    ({spec field: (flag, value)}), its notices speak the command's flags (field_references_as_flags)."""
    from videomae_cli.ui.progress import make_reporter

    reporter = make_reporter(mode, rank)
    try:
        yield reporter if flags is None else _FlagTerms(reporter, flags)
    finally:
        reporter.close()


class _FlagTerms:
    """A reporter whose notices name flags where the layers below wrote spec fields (`data.num_workers`)."""

    def __init__(self, reporter: Reporter, flags: Mapping[str, tuple[str, Any]]) -> None:
        self.reporter, self.flags = reporter, flags

    def notice(self, text: str) -> None:
        self.reporter.notice(field_references_as_flags(text, self.flags))

    def start(self, task: str, total: int, done: int = 0, header: str | None = None) -> None:
        self.reporter.start(task, total, done, header)

    def advance(self, count: int = 1) -> None:
        self.reporter.advance(count)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        self.reporter.log(step, metrics)

    def status(self, text: str) -> None:
        self.reporter.status(text)

    def finish(self) -> None:
        self.reporter.finish()

    def close(self) -> None:
        self.reporter.close()
