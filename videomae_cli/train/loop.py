"""The training loop shared by pretraining and fine-tuning: `make_run()` resolves what every run needs, `train()`
runs it. What differs between the two lives in a `Task` (the loss, per-step and per-epoch hooks, extra state).

One process or many (DDP under torchrun or srun): the global batch (per-device batch × world × accumulation), the
sample stream and the schedule are derived from the spec alone, each rank trains on its turns of the one global
stream, and rank 0 alone logs and writes. SIGTERM or SIGUSR1 (cluster preemption) finishes the current step, writes a
checkpoint and exits with code 75, for `--resume auto` to continue exactly.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import platform
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from videomae_cli.checkpoint import (
    MODEL_FILE,
    list_checkpoints,
    load_train_state,
    model_metadata,
    prune_checkpoints,
    read_spec_json,
    save_checkpoint,
)
from videomae_cli.config.resolve import spec_to_yaml
from videomae_cli.config.schema import FinetuneSpec, PretrainSpec
from videomae_cli.data.loader import STOP_SIGNALS, BadClip, ClipBatch, ClipNormalizer, SampledClips, train_loader
from videomae_cli.errors import ConfigError, DataError, NonFiniteLossError, Preempted
from videomae_cli.models.vit import Blocks, set_activation_checkpointing
from videomae_cli.progress import Reporter, format_duration
from videomae_cli.runtime import autocast_for, resolve_precision
from videomae_cli.train import distributed
from videomae_cli.train.distributed import DistEnv
from videomae_cli.train.optim import Schedule, make_optimizer, make_schedule
from videomae_cli.version import __version__

TrainSpec = PretrainSpec | FinetuneSpec


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


class Task(Protocol):
    """What a kind of training adds to the shared loop."""

    kind: str  # the checkpoint kind: "pretrain" | "classifier"

    def loss(self, model: nn.Module, batch: ClipBatch, video: torch.Tensor, step: int, micro: int) -> torch.Tensor:
        """The loss of one micro-batch (`video`: the normalised clips), computed under the run's autocast."""
        ...

    def after_step(self, run: Run, done: int) -> None:
        """Called after each optimizer step (e.g. to update an EMA of the weights)."""
        ...

    def after_epoch(self, run: Run, done: int, reporter: Reporter) -> dict[str, Any] | None:
        """Called at each epoch boundary and after the last step; returns metrics to log (e.g. validation)."""
        ...

    def describe(self) -> str:
        """What this run trains, for the header line."""
        ...

    def metadata(self) -> dict[str, str]:
        """Extra safetensors metadata for the weights (e.g. class names)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Extra resume state (e.g. the best validation score, EMA weights)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Run:
    """Everything a training run needs, resolved from the spec."""

    spec: TrainSpec
    task: Task
    out: Path
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: Schedule
    dataset: SampledClips
    global_batch: int
    start_step: int = 0
    resumed_from: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    dist: DistEnv = field(default_factory=DistEnv)
    train_model: nn.Module | None = None  # what the step runs: the DDP wrapper of `model`, or `model` itself
    notices: list[str] = field(default_factory=list)  # said once the run starts

    @property
    def total_steps(self) -> int:
        return self.schedule.total

    @property
    def videos_per_step(self) -> int:
        """Videos decoded per optimizer step (each gives data.num_sample clips)."""
        return self.global_batch // self.spec.data.num_sample

    @property
    def steps_per_epoch(self) -> int:
        return len(self.dataset) // self.videos_per_step

    def epoch_at(self, step: int) -> float:
        """Passes over the dataset completed after `step` optimizer steps."""
        return step * self.videos_per_step / len(self.dataset)


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
    resume_dir = find_resume_checkpoint(spec, out)
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
        notices=[precision_notice] if precision_notice else [],
    )
    if resume_dir is not None:
        restore(run, resume_dir)
    return run


def parallelize(model: nn.Module, spec: TrainSpec, dist_env: DistEnv, device: torch.device) -> nn.Module:
    """What the training step runs: the model itself (one process), a DDP wrapper (gradients averaged in the
    backward pass), or the model sharded in place by FSDP2, block by block, then the rest."""
    set_activation_checkpointing(model, spec.run.activation_checkpointing)
    if not dist_env.is_distributed:
        return model
    if spec.run.strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for stack in (m for m in model.modules() if isinstance(m, Blocks)):
            for block in stack:
                fully_shard(block)
        fully_shard(model)
        return model
    ids = [device.index] if device.type == "cuda" else None
    # Our buffers are fixed tables, identical on every rank: never re-broadcast them (the flag's name varies).
    quiet = (
        "forward_sync_buffers"
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        else "broadcast_buffers"
    )
    return DistributedDataParallel(model, device_ids=ids, **{quiet: False})


def find_resume_checkpoint(spec: TrainSpec, out: Path) -> Path | None:
    """The checkpoint directory to resume from, per run.resume (auto | none | PATH)."""
    choice = spec.run.resume
    if choice == "none":
        if list_checkpoints(out):
            raise ConfigError(
                f"run.resume: {out} already holds checkpoints; "
                "pass `run.resume=auto` to continue it, or another `run.out`"
            )
        return None
    if choice == "auto":
        found = list_checkpoints(out)
        return found[-1][1] if found else None
    path = Path(choice)
    if (path / "train_state.pt").is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise ConfigError(f"run.resume: no checkpoint found at {path}")
    return found[-1][1]


def restore(run: Run, checkpoint_dir: Path) -> None:
    """Load weights and optimizer/scaler/RNG/task state from a checkpoint, after checking it is the same model."""
    _, saved = read_spec_json(checkpoint_dir / MODEL_FILE)
    check_same_model(saved, run.spec)
    state = load_train_state(checkpoint_dir)
    load_states(run, load_file(str(checkpoint_dir / MODEL_FILE), device=str(run.device)), state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], run.dist)
    run.task.load_state_dict(state.get("task", {}))
    run.start_step, run.resumed_from = int(state["step"]), checkpoint_dir


def check_same_model(saved: dict[str, Any], spec: TrainSpec) -> None:
    """Refuse to resume a checkpoint whose architecture or clip geometry differs from the spec."""
    current = spec.model_dump(mode="json")
    for section, keys in (("model", None), ("data", ("num_frames", "input_size"))):
        for key in keys or current[section]:
            old, new = saved.get(section, {}).get(key), current[section][key]
            if old != new:
                raise ConfigError(
                    f"{section}.{key}: the checkpoint was trained with {old!r}, the spec asks for {new!r}; "
                    "resume with the same model or start a new `run.out`"
                )


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


def train(run: Run, reporter: Reporter) -> float | None:
    """Run the loop from run.start_step to the last step; returns the last logged loss (None if nothing ran).

    Raises Preempted (exit 75) after writing a checkpoint when SIGTERM or SIGUSR1 arrives.
    """
    spec, out = run.spec, run.out
    metrics = MetricsLog(out / "metrics.jsonl")
    if run.dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "spec.yaml").write_text(spec_to_yaml(spec, run.meta))
        metrics.truncate_after(run.start_step)
    reporter.start(spec.kind, run.total_steps, run.start_step, describe_run(run))
    for notice in run.notices:
        reporter.notice(notice)
    if run.start_step >= run.total_steps:
        reporter.notice(f"{out} is already complete at step {run.start_step}")
        reporter.close()
        return None
    try:
        with StopRequest() as stop:
            return _loop(run, reporter, metrics, stop)
    finally:
        reporter.close()


class StopRequest:
    """SIGTERM / SIGUSR1 (what clusters send before preempting a job) set a flag that the loop reads after each step,
    instead of killing the process mid-step."""

    SIGNALS = STOP_SIGNALS

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for name in self.SIGNALS:
            number = getattr(signal, name, None)
            if number is None:  # SIGUSR1 does not exist on Windows
                continue
            with contextlib.suppress(ValueError):  # only the main thread may install handlers
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        self.received = signal.Signals(number).name

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def describe_run(run: Run) -> str:
    """The header line printed at the start of a run."""
    s = run.spec
    params = sum(p.numel() for p in run.model.parameters()) / 1e6
    resumed = f" | resumed from {run.resumed_from}" if run.resumed_from else ""
    return (
        f"{s.kind} {s.model.name} ({params:.1f}M params) | {s.data.num_frames}×{s.data.input_size}² clips | "
        f"{run.task.describe()} | global batch {run.global_batch} (lr {run.schedule.peak:.2e}) | "
        f"{run.total_steps} steps | {run.device} {s.run.precision} | out {run.out}{resumed}"
    )


def _loop(run: Run, reporter: Reporter, metrics: MetricsLog, stop: StopRequest) -> float | None:
    spec, model, opt, task = run.spec, run.model, run.optimizer, run.task
    train_model = run.train_model if run.train_model is not None else model
    autocast = autocast_for(run.device, spec.run.precision)
    loader = train_loader(
        run.dataset,
        spec.optim.batch_size // spec.data.num_sample,
        spec.run.seed,
        start_sample=run.start_step * run.videos_per_step,
        num_workers=spec.data.num_workers,
        pin_memory=run.device.type == "cuda",
        rank=run.dist.rank,
        world=run.dist.world_size,
        prefetch=spec.data.prefetch,
    )
    batches, normalize = iter(loader), ClipNormalizer(run.device)
    model.train()
    loss_sum = torch.zeros((), device=run.device)
    nonfinite = torch.zeros((), dtype=torch.bool, device=run.device)
    bad_clips = BadClipLog(
        run.out / BAD_VIDEOS, len(run.dataset), spec.data.max_bad_fraction, reporter, main=run.dist.is_main
    )
    window_start, window_steps, last_loss, started = time.perf_counter(), 0, None, time.perf_counter()
    data_wait = 0.0  # seconds of the log window spent waiting for the loader
    for step in range(run.start_step, run.total_steps):
        lr = run.schedule.lr(step)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # layer-wise lr decay sets lr_scale per group
        for micro in range(spec.optim.accum_steps):
            waiting = time.perf_counter()
            batch = next(batches)
            data_wait += time.perf_counter() - waiting
            bad_clips.record(batch.failures, batch.valid)
            video = normalize(batch.clips)
            with _gradient_sync(train_model, micro + 1 == spec.optim.accum_steps):
                with autocast:
                    loss = task.loss(train_model, batch, video, step, micro)
                run.scaler.scale(loss / spec.optim.accum_steps).backward()
            loss = loss.detach()
            loss_sum += loss
            nonfinite |= ~torch.isfinite(loss)
        if spec.optim.clip_grad:
            run.scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), spec.optim.clip_grad)
        run.scaler.step(opt)
        run.scaler.update()
        opt.zero_grad(set_to_none=True)
        done, window_steps = step + 1, window_steps + 1
        task.after_step(run, done)
        reporter.advance()
        is_last = done == run.total_steps
        if done % spec.run.log_every == 0 or is_last:
            bad_clips.share()
            loss_sum = distributed.mean(loss_sum)
            mean_loss = (loss_sum / (window_steps * spec.optim.accum_steps)).item()  # the one host sync per window
            elapsed = time.perf_counter() - window_start
            record = {
                "step": done,
                "epoch": run.epoch_at(done),
                "loss": mean_loss,
                "lr": lr,
                "clips_per_s": window_steps * run.global_batch / elapsed,
                "data_wait": data_wait / elapsed,  # fraction of the window's wall time spent waiting for batches
                "elapsed_s": time.perf_counter() - started,
                "bad_videos": len(bad_clips.seen),
            }
            ensure_finite(nonfinite, run, done)
            if run.dist.is_main:
                metrics.write(record)
            reporter.log(done, record)
            loss_sum.zero_()
            window_start, window_steps, last_loss, data_wait = time.perf_counter(), 0, mean_loss, 0.0
        if done % run.steps_per_epoch == 0 or is_last:
            ensure_finite(nonfinite, run, done)
            paused = time.perf_counter()
            extra = task.after_epoch(run, done, reporter)
            if extra and run.dist.is_main:
                metrics.write({"step": done, "epoch": run.epoch_at(done), **extra})
                reporter.log(done, extra)
            window_start += time.perf_counter() - paused  # validation time is not training throughput
        stopping = stop_requested(stop, run)
        if (spec.run.save_every and done % spec.run.save_every == 0) or is_last or stopping:
            ensure_finite(nonfinite, run, done)
            save_run_checkpoint(run, done)
        if stopping and not is_last:
            raise Preempted(
                f"{stop.received or 'a stop signal on another rank'} at step {done}: checkpoint written to "
                f"{run.out}; continue with `run.resume=auto`"
            )
    reporter.notice(
        f"done: {run.total_steps} steps in {format_duration(time.perf_counter() - started)}; "
        f"weights in {run.out / MODEL_FILE}"
    )
    return last_loss


def _gradient_sync(train_model: nn.Module, sync: bool) -> contextlib.AbstractContextManager[None]:
    """DDP averages gradients only on the last micro-batch of an accumulated step."""
    ddp = getattr(train_model, "_orig_mod", train_model)  # under torch.compile, the module it wraps
    if sync or not isinstance(ddp, DistributedDataParallel):
        return contextlib.nullcontext()
    return ddp.no_sync()


def stop_requested(stop: StopRequest, run: Run) -> bool:
    """Whether any rank received a stop signal (every rank must stop at the same step)."""
    if not run.dist.is_distributed:
        return stop.received is not None
    return bool(distributed.any_rank(torch.tensor(stop.received is not None, device=run.device)))


class MetricsLog:
    """Appends one JSON object per log step to metrics.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resumed run rewrites them)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in keep))


BAD_VIDEOS = "bad_videos.txt"


class BadClipLog:
    """Every video that failed to decode: a warning, a line in RUN/bad_videos.txt (path, tab, reason), and a count in
    metrics.jsonl. Past `max_fraction` of the dataset the run stops with exit 3 naming the files."""

    def __init__(self, path: Path, dataset_size: int, max_fraction: float, reporter: Reporter, main: bool = True):
        self.path, self.dataset_size, self.max_fraction, self.reporter = path, dataset_size, max_fraction, reporter
        self.main = main  # only rank 0 writes the file
        self.seen: dict[str, str] = {}
        self.unshared: list[BadClip] = []  # found on this rank since the last share()
        if path.exists():  # a resumed run keeps counting the videos it already found bad
            for line in path.read_text().splitlines():
                video, _, reason = line.partition("\t")
                self.seen[video] = reason

    def record(self, failures: list[BadClip], batch_valid: bool) -> None:
        """Log new failures; raise DataError past the allowed fraction or when no replacement clip decoded."""
        self.unshared += failures
        self._add(failures)
        self._check(batch_valid)

    def share(self) -> None:
        """Tell every rank what the others found (at log steps), so all count the same and stop together."""
        found, self.unshared = distributed.gather(self.unshared), []
        self._add([bad for rank_found in found for bad in rank_found])
        self._check(True)

    def _add(self, failures: list[BadClip]) -> None:
        for bad in failures:
            if bad.path in self.seen:
                continue
            self.seen[bad.path] = bad.reason
            if self.main:
                with open(self.path, "a") as f:
                    f.write(f"{bad.path}\t{bad.reason}\n")
            self.reporter.notice(f"warning: skipped a video that failed to decode: {bad.reason}")

    def _check(self, batch_valid: bool) -> None:
        too_many = len(self.seen) > self.max_fraction * self.dataset_size
        if too_many or not batch_valid:
            names = ", ".join(list(self.seen)[:3]) + (", ..." if len(self.seen) > 3 else "")
            why = (
                f"{len(self.seen)} of {self.dataset_size} videos failed to decode "
                f"(more than data.max_bad_fraction {self.max_fraction})"
                if too_many
                else "no decodable replacement clip was found"
            )
            raise DataError(f"{why}: {names}; see {self.path}")


def ensure_finite(nonfinite: torch.Tensor, run: Run, step: int) -> None:
    """Stop with exit 4 when any loss so far was NaN/inf (on any rank); nothing after the last good checkpoint is
    saved."""
    if bool(distributed.any_rank(nonfinite.clone())):
        found = list_checkpoints(run.out)
        kept = f"the last good checkpoint is {found[-1][1]}" if found else "no checkpoint was written yet"
        raise NonFiniteLossError(f"loss became non-finite by step {step}; stopped, {kept}")


def save_run_checkpoint(run: Run, step: int) -> None:
    """Write a checkpoint of the current state (rank 0, after every rank finished the step), refresh
    RUN/model.safetensors, and keep only the newest ones. Every rank's RNG state is saved, for an exact resume."""
    rng = distributed.gather(rng_state())  # collectives: every rank takes part
    weights, optimizer = full_states(run)
    distributed.barrier()
    if run.dist.is_main:
        state = {
            "step": step,
            "epoch": run.epoch_at(step),
            "optimizer": optimizer,
            "scaler": run.scaler.state_dict(),
            "rng": rng,  # one entry per rank
            "world_size": run.dist.world_size,
            "task": run.task.state_dict(),
        }
        meta = model_metadata(run.task.kind, run.spec.model_dump_json(), step=step, **run.task.metadata())
        save_checkpoint(run.out, step, weights, meta, state)
        prune_checkpoints(run.out, run.spec.run.keep_last)
    distributed.barrier()  # nobody runs ahead (or exits on preemption) before the checkpoint is complete


def _is_sharded(run: Run) -> bool:
    return run.dist.is_distributed and run.spec.run.strategy == "fsdp"


def full_states(run: Run) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The whole model's and optimizer's state dicts (gathered from the shards under FSDP: a collective; they land
    on rank 0, in CPU memory)."""
    if not _is_sharded(run):
        return run.model.state_dict(), run.optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(run.model, options=options)
    return model_state, get_optimizer_state_dict(run.model, run.optimizer, options=options)


def load_states(run: Run, weights: dict[str, torch.Tensor], optimizer: dict[str, Any]) -> None:
    """Load whole (unsharded) model and optimizer state dicts, sharding them under FSDP."""
    if not _is_sharded(run):
        run.model.load_state_dict(weights)
        run.optimizer.load_state_dict(optimizer)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(run.model, weights, options=options)
    set_optimizer_state_dict(run.model, run.optimizer, optimizer, options=options)


def rng_state() -> dict[str, Any]:
    """This process's RNG streams: torch (CPU, CUDA), numpy's and python's global generators."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],  # tensors: weights_only
        "python": random.getstate(),
    }


def set_rng_state(saved: list[dict[str, Any]] | dict[str, Any], dist_env: DistEnv) -> None:
    """Restore this rank's RNG streams (from a checkpoint of the same world size; otherwise rank r takes entry r mod
    the saved count, and the resume is exact only for the data, which depends on no global RNG)."""
    state = saved[dist_env.rank % len(saved)] if isinstance(saved, list) else saved
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "python" in state:
        random.setstate(_as_tuples(state["python"]))


def _as_tuples(value: Any) -> Any:
    """random.setstate needs the nested tuples it produced (a checkpoint may hand back lists)."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value
