"""The training loop shared by pretraining and fine-tuning: `launch.make_run()` resolves what every run needs,
`train()` runs it. What differs between the two lives in a `Task` (train/run.py: the loss, per-step and per-epoch
hooks, extra state).

One process or many (DDP under torchrun or srun): the global batch (per-device batch × world × accumulation), the
sample stream and the schedule are derived from the spec alone, each rank trains on its turns of the one global
stream, and rank 0 alone logs and writes. SIGTERM or SIGUSR1 (cluster preemption) finishes the current step, writes a
checkpoint and exits with code 75, for `run.resume=auto` to continue exactly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from videomae_cli.checkpoint import METRICS_FILE, MODEL_FILE
from videomae_cli.config.resolve import spec_to_yaml
from videomae_cli.config.schema import DataSpec
from videomae_cli.data.loader import ClipBatch, ClipNormalizer, SampledClips, batches_from, train_loader
from videomae_cli.errors import Preempted
from videomae_cli.progress import Reporter, format_duration
from videomae_cli.runtime import autocast_for
from videomae_cli.train import distributed
from videomae_cli.train.guards import BAD_VIDEOS, BadClipLog, StopRequest, ensure_finite, stop_requested
from videomae_cli.train.lock import hold_run_directory
from videomae_cli.train.loggers import RunLog
from videomae_cli.train.parallel import gradient_sync
from videomae_cli.train.run import Run, describe_run
from videomae_cli.train.state import MetricsLog, save_run_checkpoint


def train(run: Run, reporter: Reporter) -> float | None:
    """Run the loop from run.start_step to the last step; returns the last logged loss (None if nothing ran).

    Raises Preempted (exit 75) after writing a checkpoint when SIGTERM or SIGUSR1 arrives, and ConfigError when
    another live process holds the run directory (train/lock.py).
    """
    spec, out = run.spec, run.out
    # Rank 0 creates the run directory and holds its lock to the end: no second run writes to it meanwhile.
    with hold_run_directory(out) if run.dist.is_main else contextlib.nullcontext() as lock:
        if run.dist.is_main:
            (out / "spec.yaml").write_text(spec_to_yaml(spec, run.meta))
            MetricsLog(out / METRICS_FILE).truncate_after(run.start_step)
        reporter.start(spec.kind, run.total_steps, run.start_step, describe_run(run))
        for notice in [*run.notices, lock.notice if lock else None]:
            if notice:
                reporter.notice(notice)
        if run.start_step >= run.total_steps:
            reporter.notice(f"{out} is already complete at step {run.start_step}")
            reporter.close()
            return None
        log = RunLog(spec, out, run.start_step, reporter.notice) if run.dist.is_main else None  # rank 0 logs
        try:
            with StopRequest() as stop, batches_from(_loader(run)) as batches:
                return _loop(run, batches, reporter, log, stop)
        finally:
            if log is not None:
                log.close()
            reporter.close()


def _loader(run: Run) -> DataLoader:
    """This rank's endless batches, resuming where the checkpoint left the sample stream."""
    spec = run.spec
    if not isinstance(run.dataset, SampledClips):  # streamed from shards
        from videomae_cli.data.shards.training import shard_loader

        return shard_loader(
            run.dataset,
            spec.optim.batch_size // spec.data.num_sample,
            num_workers=spec.data.num_workers,
            pin_memory=run.device.type == "cuda",
            rank=run.dist.rank,
            world=run.dist.world_size,
            prefetch=spec.data.prefetch,
            cursors=run.data_cursors,
            start_epoch=int(run.epoch_at(run.start_step)),
            batches_done=run.start_step * spec.optim.accum_steps,
        )
    return train_loader(
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


def _loop(
    run: Run, batches: Iterator[ClipBatch], reporter: Reporter, log: RunLog | None, stop: StopRequest
) -> float | None:
    spec, model, opt, task = run.spec, run.model, run.optimizer, run.task
    train_model = run.train_model if run.train_model is not None else model
    autocast = autocast_for(run.device, spec.run.precision)
    normalize = ClipNormalizer(run.device)
    model.train()
    loss_sum = torch.zeros((), device=run.device)
    nonfinite = torch.zeros((), dtype=torch.bool, device=run.device)
    bad_clips = BadClipLog(
        run.out / BAD_VIDEOS, len(run.dataset), spec.data.max_bad_fraction, reporter, main=run.dist.is_main
    )
    window_start, window_steps, last_loss, started = time.perf_counter(), 0, None, time.perf_counter()
    loader_watch = LoaderWatch(spec.data)
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
            run.data_cursors.update(batch.cursors)
            video = normalize(batch.clips)
            with gradient_sync(train_model, micro + 1 == spec.optim.accum_steps):
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
                "clips": done * run.global_batch,  # clips seen so far: the x axis that compares batch sizes
                "bad_videos": bad_clips.count,
            }
            ensure_finite(nonfinite, run, done)
            if log is not None:
                log.write(record)
            reporter.log(done, record)
            warning = loader_watch.window(record["data_wait"])
            if warning:
                reporter.notice(warning)
            loss_sum.zero_()
            window_start, window_steps, last_loss, data_wait = time.perf_counter(), 0, mean_loss, 0.0
        if done % run.steps_per_epoch == 0 or is_last:
            ensure_finite(nonfinite, run, done)
            paused = time.perf_counter()
            extra = task.after_epoch(run, done, reporter)
            if extra and log is not None:
                log.write({"step": done, "epoch": run.epoch_at(done), **extra})
                reporter.log(done, extra)
            window_start += time.perf_counter() - paused  # validation time is not training throughput
        stopping = stop_requested(stop, run)
        if (spec.run.save_every and done % spec.run.save_every == 0) or is_last or stopping:
            ensure_finite(nonfinite, run, done)
            save_run_checkpoint(run, done)
            if log is not None:
                log.draw(f"{run.out.name}: {spec.kind}, model {spec.model.name}", final=is_last or stopping)
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


DATA_WAIT_WARNING = 0.25  # share of a log window's time spent waiting for batches that makes the loader the bottleneck
DATA_WAIT_WINDOWS = 2  # consecutive windows over it: one slow window (a cold cache, a busy disk) is not a bottleneck


def loader_bottleneck(
    waits: Sequence[float], threshold: float = DATA_WAIT_WARNING, windows: int = DATA_WAIT_WINDOWS
) -> bool:
    """Whether the last `windows` log windows each spent more than `threshold` of their time waiting for data."""
    return len(waits) >= windows and min(waits[-windows:]) > threshold


class LoaderWatch:
    """Says once per run when the loader holds training back (`loader_bottleneck` over the log windows' data wait).
    The run's first window is not counted: it holds the workers' start-up and their first batches. Synthetic videos
    are not watched: they are made, not read, so there is no data path to fix (and toy runs on them do wait)."""

    def __init__(self, data: DataSpec) -> None:
        self.num_workers = data.num_workers
        self.active = data.source != "synthetic"
        self.windows = 0
        self.waits: list[float] = []  # the data wait of the latest windows, the first one left out

    def window(self, data_wait: float) -> str | None:
        """Record a log window's data wait (a fraction of its time); the warning to give, at most once, or None."""
        if not self.active:
            return None
        self.windows += 1
        if self.windows > 1:
            self.waits = [*self.waits, data_wait][-DATA_WAIT_WINDOWS:]
        if not loader_bottleneck(self.waits):
            return None
        self.active = False
        share = sum(self.waits) / len(self.waits)
        return (
            f"warning: the loader is the bottleneck: {share:.0%} of step time spent waiting for data; raise "
            f"`data.num_workers` (now {self.num_workers}), or prepare the videos for training (videomae "
            "prepare-data); videomae doctor --data DIR measures the data path"
        )
