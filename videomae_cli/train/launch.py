"""Starting a training run: this process's place in the job and its seeds, then `make_run()`, which sizes the run
(global batch, steps, schedule) from the spec alone, wraps the model for the ranks, builds the optimizer, restores the
checkpoint it resumes, and notes what spec.yaml records beside the spec (command line, versions, code revision).
"""

from __future__ import annotations

import contextlib
import math
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videomae_cli.data.loader import SampledClips
from videomae_cli.errors import ConfigError, DataError
from videomae_cli.runtime import resolve_precision
from videomae_cli.train import distributed
from videomae_cli.train.distributed import DistEnv
from videomae_cli.train.optim import make_optimizer, make_schedule
from videomae_cli.train.parallel import parallelize
from videomae_cli.train.run import Run, Task, TrainSpec
from videomae_cli.train.state import find_resume_checkpoint, restore
from videomae_cli.version import __version__


def start_processes(spec: TrainSpec) -> tuple[DistEnv, torch.device]:
    """This process's rank (from the launcher's environment) and device; joins the process group when distributed.
    Seeds torch with the run seed, identically on every rank (the same initial weights)."""
    dist_env = distributed.detect()
    device = distributed.start(dist_env, spec.run.device)
    if spec.run.out is not None:  # rank 0's: default run names carry a timestamp, which ranks may not agree on
        spec.run.out = Path(distributed.broadcast(str(spec.run.out)))
    torch.manual_seed(spec.run.seed)
    return dist_env, device


def seed_rank_streams(spec: TrainSpec, dist_env: DistEnv) -> None:
    """After the model is built: ranks above 0 get their own torch stream (DropPath must differ across ranks); rank 0
    keeps the single-process stream, so one process and rank 0 draw alike."""
    if dist_env.rank:
        torch.manual_seed(spec.run.seed + 1_000_003 * dist_env.rank)


def make_run(
    spec: TrainSpec,
    task: Task,
    model: nn.Module,
    dataset: SampledClips,
    device: torch.device,
    default_steps: int | None = None,
    default_epochs: float | None = None,
    argv: list[str] | None = None,
    backend: str = "synthetic",
    dist_env: DistEnv | None = None,
) -> Run:
    """Size the run (global batch, steps, schedule), build its optimizer, and restore its checkpoint if resuming.
    The length is run.steps, else run.epochs, else `default_epochs`, else `default_steps`."""
    dist_env = dist_env or DistEnv()
    if spec.run.out is None:
        raise ConfigError("run.out: an output directory is required")
    out = Path(spec.run.out)
    resume_dir, resume_notices = resume_point(spec, out, dist_env)
    spec.run.precision, precision_notice = resolve_precision(spec.run.precision, device)
    # Clips per optimizer step, over all ranks.
    global_batch = spec.optim.batch_size * dist_env.world_size * spec.optim.accum_steps
    videos_per_step = global_batch // spec.data.num_sample
    if len(dataset) < videos_per_step:
        raise DataError(f"the dataset has {len(dataset)} videos, fewer than one step's {videos_per_step}")
    steps_per_epoch = len(dataset) // videos_per_step
    epochs = spec.run.epochs or (None if spec.run.steps else default_epochs)
    total = spec.run.steps or (math.ceil(epochs * steps_per_epoch) if epochs else default_steps)
    if not total:
        raise ConfigError("run.steps: give `run.steps` or `run.epochs`")
    train_model = parallelize(model, spec, dist_env, device)  # before the optimizer: FSDP replaces the parameters
    if spec.run.compile:
        train_model = torch.compile(train_model)  # the weights stay `model`'s: checkpoints keep their names
    run = Run(
        spec=spec,
        task=task,
        out=out,
        device=device,
        model=model,
        optimizer=make_optimizer(model, spec.optim, device),
        scaler=torch.amp.GradScaler(device.type, enabled=spec.run.precision == "fp16"),
        schedule=make_schedule(spec.optim, global_batch, total, steps_per_epoch),
        dataset=dataset,
        global_batch=global_batch,
        meta=run_metadata(argv, backend),
        dist=dist_env,
        train_model=train_model,
        notices=([precision_notice] if precision_notice else []) + resume_notices,
    )
    if resume_dir is not None:
        restore(run, resume_dir)
    return run


def resume_point(spec: TrainSpec, out: Path, dist_env: DistEnv) -> tuple[Path | None, list[str]]:
    """The checkpoint to resume from and the notices about damaged ones passed over. Rank 0 checks the checkpoints
    and every rank takes its answer: all resume from the same one, or all refuse with the same line, and the files
    are hashed once rather than once per rank."""
    answer: tuple[str | None, list[str], str | None] = (None, [], None)
    if dist_env.is_main:
        notices: list[str] = []
        try:
            found = find_resume_checkpoint(spec, out, notices)
            answer = (str(found) if found is not None else None, notices, None)
        except ConfigError as e:
            answer = (None, [], str(e))
    found_name, notices, refusal = distributed.broadcast(answer)
    if refusal is not None:
        raise ConfigError(refusal)
    return (Path(found_name) if found_name is not None else None), notices


def run_metadata(argv: list[str] | None, decoder_backend: str) -> dict[str, Any]:
    """What spec.yaml records beside the spec: command line, versions, code revision, data backend."""
    return {
        "argv": list(argv if argv is not None else sys.argv),
        "versions": {
            "videomae_cli": __version__,
            "torch": str(torch.__version__),
            "python": platform.python_version(),
        },
        "git_sha": git_sha(),
        "decoder_backend": decoder_backend,
    }


def git_sha() -> str | None:
    """The revision of the videomae_cli source, when it is a git checkout."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        if result.returncode == 0:
            return result.stdout.strip()
    return None
