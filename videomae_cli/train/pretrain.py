"""Pretraining: `setup()` builds the masked-autoencoder run from a PretrainSpec; the shared loop trains it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videomae_cli.config.schema import DEFAULT_PRETRAIN_STEPS, PretrainSpec, grid_of
from videomae_cli.data.loader import ClipBatch
from videomae_cli.data.sources import pretrain_dataset
from videomae_cli.errors import ConfigError
from videomae_cli.interop.hub import register_hub_references
from videomae_cli.masking import MaskGenerator
from videomae_cli.models.pretrain import PretrainVideoMAE
from videomae_cli.models.teacher import FrozenTeacher, load_teacher
from videomae_cli.progress import Reporter
from videomae_cli.train.launch import make_run, seed_rank_streams, start_processes
from videomae_cli.train.run import Run


class PretrainTask:
    """Masked reconstruction: the loss is the model's own (masks come with the batch)."""

    kind = "pretrain"

    def __init__(self, spec: PretrainSpec) -> None:
        self.spec = spec

    def loss(self, model: nn.Module, batch: ClipBatch, video: torch.Tensor, step: int, micro: int) -> torch.Tensor:
        return model(video, batch.tokens.to(video.device)).loss

    def after_step(self, run: Run, done: int) -> None:
        pass

    def after_epoch(self, run: Run, done: int, reporter: Reporter) -> dict[str, Any] | None:
        return None

    def describe(self) -> str:
        mask = self.spec.mask
        decoder = f" + running cell {mask.decoder_ratio}" if mask.decoder_ratio else ""
        return f"{mask.type} mask {mask.ratio}{decoder}"

    def metadata(self) -> dict[str, str]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def start_teacher(spec: PretrainSpec, device: torch.device) -> FrozenTeacher:
    """Load the frozen teacher (a path or hub id) and record its width in the spec (model.teacher_dim), so the
    student's decoder predicts it and the checkpoint builds without the teacher."""
    register_hub_references()
    teacher = load_teacher(spec, device)
    if spec.model.teacher_dim not in (None, teacher.dim):
        raise ConfigError(
            f"model.teacher_dim: the teacher's features are {teacher.dim} wide, not {spec.model.teacher_dim}"
        )
    spec.model.teacher_dim = teacher.dim
    return teacher


def setup(spec: PretrainSpec, argv: list[str] | None = None) -> Run:
    """Resolve the device, model, optimizer, data and resume point of `spec` (whose run.out must be set)."""
    dist_env, device = start_processes(spec)
    teacher = start_teacher(spec, device) if spec.model.target == "teacher" else None
    model = PretrainVideoMAE(spec.model, grid_of(spec)).to(device)
    model.teacher = teacher
    seed_rank_streams(spec, dist_env)
    masks = MaskGenerator(spec.mask, grid_of(spec), spec.run.seed)
    dataset, backend = pretrain_dataset(spec.data, spec.run.seed, masks)
    return make_run(
        spec,
        PretrainTask(spec),
        model,
        dataset,
        device,
        default_steps=DEFAULT_PRETRAIN_STEPS,
        argv=argv,
        backend=backend,
        dist_env=dist_env,
    )
