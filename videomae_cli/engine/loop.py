"""The training loop shared by pretraining and fine-tuning: `make_run()` resolves what every run needs, `train()`
runs it. What differs between the two lives in a `Task` (the loss, per-step and per-epoch hooks, extra state).

Single process for now, structured for a later DDP wrapper: the global batch, the sample stream and the schedule are
derived from the spec alone, and only the reporter/metrics/checkpoint calls touch the outside world.
"""

from __future__ import annotations

import contextlib
import math
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file
from torch import nn

from videomae_cli import __version__
from videomae_cli.data.loader import BadClip, ClipBatch, ClipNormalizer, SampledClips, train_loader
from videomae_cli.engine.checkpoint import (
    MODEL_FILE,
    list_checkpoints,
    load_train_state,
    model_metadata,
    prune_checkpoints,
    read_spec_json,
    save_checkpoint,
)
from videomae_cli.engine.optim import Schedule, make_optimizer, make_schedule
from videomae_cli.engine.progress import MetricsLog, Reporter, format_duration
from videomae_cli.errors import ConfigError, DataError, NonFiniteLossError
from videomae_cli.specs import FinetuneSpec, PretrainSpec, spec_to_yaml

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
TrainSpec = PretrainSpec | FinetuneSpec


def pick_device(choice: str) -> torch.device:
    """auto → cuda when available, else cpu; cuda without a GPU is a config error."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device: cuda requested but no CUDA device is available (set by --device)")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def autocast_for(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context of a precision name (fp32 = disabled)."""
    return torch.autocast(device.type, dtype=PRECISIONS[precision] or torch.float32, enabled=precision != "fp32")


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
) -> Run:
    """Size the run (global batch, steps, schedule), build its optimizer, and restore its checkpoint if resuming.
    The length is run.steps, else run.epochs, else `default_epochs`, else `default_steps`."""
    if spec.run.out is None:
        raise ConfigError("run.out: an output directory is required")
    out = Path(spec.run.out)
    resume_dir = find_resume_checkpoint(spec, out)
    global_batch = spec.optim.batch_size * spec.optim.accum_steps  # clips per optimizer step
    videos_per_step = global_batch // spec.data.num_sample
    if len(dataset) < videos_per_step:
        raise DataError(f"the dataset has {len(dataset)} videos, fewer than one step's {videos_per_step}")
    steps_per_epoch = len(dataset) // videos_per_step
    epochs = spec.run.epochs or (None if spec.run.steps else default_epochs)
    total = spec.run.steps or (math.ceil(epochs * steps_per_epoch) if epochs else default_steps)
    if not total:
        raise ConfigError("run.steps: give --steps or --epochs")
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
    )
    if resume_dir is not None:
        restore(run, resume_dir)
    return run


def find_resume_checkpoint(spec: TrainSpec, out: Path) -> Path | None:
    """The checkpoint directory to resume from, per run.resume (auto | none | PATH)."""
    choice = spec.run.resume
    if choice == "none":
        if list_checkpoints(out):
            raise ConfigError(
                f"run.resume: {out} already holds checkpoints; pass --resume auto to continue it, or another --out"
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
        raise ConfigError(f"run.resume: no checkpoint found at {path} (set by --resume)")
    return found[-1][1]


def restore(run: Run, checkpoint_dir: Path) -> None:
    """Load weights and optimizer/scaler/RNG/task state from a checkpoint, after checking it is the same model."""
    _, saved = read_spec_json(checkpoint_dir / MODEL_FILE)
    check_same_model(saved, run.spec)
    run.model.load_state_dict(load_file(str(checkpoint_dir / MODEL_FILE), device=str(run.device)))
    state = load_train_state(checkpoint_dir)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    if torch.cuda.is_available() and state["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
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
                    "resume with the same model or start a new --out"
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
    """Run the loop from run.start_step to the last step; returns the last logged loss (None if nothing ran)."""
    spec, out = run.spec, run.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(spec_to_yaml(spec, run.meta))
    metrics = MetricsLog(out / "metrics.jsonl")
    metrics.truncate_after(run.start_step)
    reporter.start(run.total_steps, run.start_step, describe_run(run))
    if run.start_step >= run.total_steps:
        reporter.notice(f"{out} is already complete at step {run.start_step}")
        reporter.close()
        return None
    try:
        return _loop(run, reporter, metrics)
    finally:
        reporter.close()


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


def _loop(run: Run, reporter: Reporter, metrics: MetricsLog) -> float | None:
    spec, model, opt, task = run.spec, run.model, run.optimizer, run.task
    autocast = autocast_for(run.device, spec.run.precision)
    loader = train_loader(
        run.dataset,
        spec.optim.batch_size // spec.data.num_sample,
        spec.run.seed,
        start_sample=run.start_step * run.videos_per_step,
        num_workers=spec.data.num_workers,
        pin_memory=run.device.type == "cuda",
    )
    batches, normalize = iter(loader), ClipNormalizer(run.device)
    model.train()
    loss_sum = torch.zeros((), device=run.device)
    nonfinite = torch.zeros((), dtype=torch.bool, device=run.device)
    bad_clips = BadClipLog(run.out / BAD_VIDEOS, len(run.dataset), spec.data.max_bad_fraction, reporter)
    window_start, window_steps, last_loss, started = time.perf_counter(), 0, None, time.perf_counter()
    for step in range(run.start_step, run.total_steps):
        lr = run.schedule.lr(step)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # layer-wise lr decay sets lr_scale per group
        for micro in range(spec.optim.accum_steps):
            batch = next(batches)
            bad_clips.record(batch.failures, batch.valid)
            video = normalize(batch.clips)
            with autocast:
                loss = task.loss(model, batch, video, step, micro)
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
        reporter.step(done)
        is_last = done == run.total_steps
        if done % spec.run.log_every == 0 or is_last:
            mean_loss = (loss_sum / (window_steps * spec.optim.accum_steps)).item()  # the one host sync per window
            elapsed = time.perf_counter() - window_start
            record = {
                "step": done,
                "epoch": run.epoch_at(done),
                "loss": mean_loss,
                "lr": lr,
                "clips_per_s": window_steps * run.global_batch / elapsed,
                "elapsed_s": time.perf_counter() - started,
                "bad_videos": len(bad_clips.seen),
            }
            ensure_finite(nonfinite, run, done)
            metrics.write(record)
            reporter.log(done, record)
            loss_sum.zero_()
            window_start, window_steps, last_loss = time.perf_counter(), 0, mean_loss
        if done % run.steps_per_epoch == 0 or is_last:
            ensure_finite(nonfinite, run, done)
            paused = time.perf_counter()
            extra = task.after_epoch(run, done, reporter)
            if extra:
                metrics.write({"step": done, "epoch": run.epoch_at(done), **extra})
                reporter.log(done, extra)
            window_start += time.perf_counter() - paused  # validation time is not training throughput
        if (spec.run.save_every and done % spec.run.save_every == 0) or is_last:
            ensure_finite(nonfinite, run, done)
            save_run_checkpoint(run, done)
    reporter.notice(
        f"done: {run.total_steps} steps in {format_duration(time.perf_counter() - started)}; "
        f"weights in {run.out / MODEL_FILE}"
    )
    return last_loss


BAD_VIDEOS = "bad_videos.txt"


class BadClipLog:
    """Every video that failed to decode: a warning, a line in RUN/bad_videos.txt (path, tab, reason), and a count in
    metrics.jsonl. Past `max_fraction` of the dataset the run stops with exit 3 naming the files."""

    def __init__(self, path: Path, dataset_size: int, max_fraction: float, reporter: Reporter) -> None:
        self.path, self.dataset_size, self.max_fraction, self.reporter = path, dataset_size, max_fraction, reporter
        self.seen: dict[str, str] = {}
        if path.exists():  # a resumed run keeps counting the videos it already found bad
            for line in path.read_text().splitlines():
                video, _, reason = line.partition("\t")
                self.seen[video] = reason

    def record(self, failures: list[BadClip], batch_valid: bool) -> None:
        """Log new failures; raise DataError past the allowed fraction or when no replacement clip decoded."""
        for bad in failures:
            if bad.path in self.seen:
                continue
            self.seen[bad.path] = bad.reason
            with open(self.path, "a") as f:
                f.write(f"{bad.path}\t{bad.reason}\n")
            self.reporter.notice(f"warning: skipped a video that failed to decode: {bad.reason}")
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
    """Stop with exit 4 when any loss so far was NaN/inf; nothing after the last good checkpoint is saved."""
    if bool(nonfinite):
        found = list_checkpoints(run.out)
        kept = f"the last good checkpoint is {found[-1][1]}" if found else "no checkpoint was written yet"
        raise NonFiniteLossError(f"loss became non-finite by step {step}; stopped, {kept}")


def save_run_checkpoint(run: Run, step: int) -> None:
    """Write a checkpoint of the current state, refresh RUN/model.safetensors, and keep only the newest ones."""
    state = {
        "step": step,
        "epoch": run.epoch_at(step),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "task": run.task.state_dict(),
    }
    meta = model_metadata(run.task.kind, run.spec.model_dump_json(), step=step, **run.task.metadata())
    save_checkpoint(run.out, step, run.model.state_dict(), meta, state)
    prune_checkpoints(run.out, run.spec.run.keep_last)
