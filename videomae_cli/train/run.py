"""What a training run is: the `Run` every part of the loop reads (resolved from the spec by `launch.make_run()`),
and the `Task` through which pretraining and fine-tuning differ (the loss, per-step and per-epoch hooks, extra
state).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from videomae_cli.config.schema import FinetuneSpec, PretrainSpec
from videomae_cli.data.loader import ClipBatch, SampledClips
from videomae_cli.progress import Reporter
from videomae_cli.train.distributed import DistEnv
from videomae_cli.train.optim import Schedule

if TYPE_CHECKING:
    from videomae_cli.data.shards.stream import ShardStream

TrainSpec = PretrainSpec | FinetuneSpec


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
    dataset: SampledClips | ShardStream  # keyed samples, or a stream from shards
    global_batch: int
    start_step: int = 0
    resumed_from: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    dist: DistEnv = field(default_factory=DistEnv)
    train_model: nn.Module | None = None  # what the step runs: the DDP wrapper of `model`, or `model` itself
    notices: list[str] = field(default_factory=list)  # said once the run starts
    # Streamed data (shards): where each stream is, (epoch, next position), as far as the steps trained; the
    # checkpoint keeps every rank's, and a resumed run starts its streams there.
    data_cursors: dict[int, tuple[int, int]] = field(default_factory=dict)

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
